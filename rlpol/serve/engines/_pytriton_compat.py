"""PyTriton's private API, touched here only: sequence batching for a bound model.

PyTriton 0.7 (``nvidia-pytriton>=0.7,<0.8``) binds a model with dynamic batching only: its
public :class:`pytriton.model_config.ModelConfig` has no sequence batcher. Triton loads a
bound model with the configuration ``Model.get_model_config()`` returns, the model being the
one :meth:`Triton.bind` registered in ``Triton._model_manager`` (both private). For a stateful
artifact, :func:`use_sequence_batching` wraps that method so that the configuration carries
``sequence_batching`` instead of ``dynamic_batching``, and lists the sequence control tensors
as optional inputs too: PyTriton's python-backend proxy hands the infer callable only the
tensors the configuration's ``input`` names, and Triton fills them in from the request's
``sequence_id`` / ``sequence_start`` / ``sequence_end``.

There is no public fallback: without the private names, a stateful artifact is refused with
a message naming the PyTriton versions that work.
"""

from __future__ import annotations

from typing import Any

from rlpol.errors import ServeError

__all__ = ["PYTRITON_VERSIONS", "use_sequence_batching"]

PYTRITON_VERSIONS = ">=0.7,<0.8"
"""The PyTriton releases whose private API this module knows."""


def use_sequence_batching(triton: Any, model_name: str, sequence_batching: dict[str, Any],
                          controls: list[dict[str, Any]]) -> None:  # fmt: skip
    """Serve the bound model ``model_name`` with ``sequence_batching`` instead of dynamic.

    Call it after :meth:`Triton.bind` and before :meth:`Triton.run` loads the models.

    Args:
        triton: the :class:`pytriton.triton.Triton` the model is bound to.
        model_name: the bound model.
        sequence_batching: the configuration's ``sequence_batching`` (JSON form).
        controls: the ``input`` entries of the control tensors (name, data_type, dims).

    Raises:
        ServeError: this PyTriton does not have the private API.
    """
    manager = getattr(triton, "_model_manager", None)
    models = [model for model in getattr(manager, "models", ())
              if getattr(model, "model_name", None) == model_name]  # fmt: skip
    if len(models) != 1 or not callable(getattr(models[0], "get_model_config", None)):
        import pytriton

        raise ServeError(
            f"serving the stateful model {model_name!r} on Triton needs PyTriton's sequence "
            f"batching hook, which rlpol knows for nvidia-pytriton{PYTRITON_VERSIONS}, but this "
            f"is {getattr(pytriton, '__version__', 'an unknown version')}; install "
            f"`pip install 'nvidia-pytriton{PYTRITON_VERSIONS}'` or serve it with --engine embedded"
        )
    model = models[0]
    generated = model.get_model_config

    def with_sequence_batching() -> dict[str, Any]:
        config = generated()
        config.pop("dynamic_batching", None)
        config["sequence_batching"] = sequence_batching
        config["input"] = [*config["input"], *({**entry, "optional": True} for entry in controls)]
        return config

    model.get_model_config = with_sequence_batching
