"""What ``--engine triton`` binds for one served model: its tensors and its infer callable.

:func:`binding` reads the model's :data:`~rlpol.serve.triton_config.ConfigTarget.PYTRITON`
configuration (one builder, :mod:`rlpol.serve.triton_config`): the inputs a client sends (the
observation-side inputs, noise optional), every output, each per-row scalar as ``[batch, 1]``.

:class:`TritonKernel` is the infer callable PyTriton calls with the requests Triton batched: it
completes each request's feed as the embedded server does (:func:`~rlpol.serve.feeds.
complete_feed`: noise drawn from ``default_rng(seed)`` when the request has the parameter
``seed``; initial states), runs the artifact's graph once on all of them
(:meth:`ServedModel.run`, onnxruntime for ONNX) and splits the outputs back. For a stateful
model each request carries Triton's sequence controls (:data:`~rlpol.serve.triton_config.
SEQUENCE_CONTROLS`) and the kernel keeps each sequence's state in a
:class:`~rlpol.serve.sequences.SequenceStore`, as the embedded server does; Triton routes every
request of a sequence to the same model instance, and so to the same kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rlpol.serve.feeds import complete_feed
from rlpol.serve.model import ServedModel
from rlpol.serve.sequences import SequenceControl, SequenceStore
from rlpol.serve.triton_config import SEQUENCE_CONTROLS, ConfigTarget, model_config, triton_dims

__all__ = ["Binding", "TritonKernel", "binding"]


@dataclass(frozen=True)
class Binding:
    """One model's PyTriton binding, in model_config.proto's JSON form.

    Attributes:
        config: the model's PYTRITON configuration (:func:`model_config`).
        inputs: its ``input`` entries (name, data_type, dims, optional).
        outputs: its ``output`` entries.
        controls: a stateful model's control tensors as ``input`` entries, else ``[]``.
    """

    config: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    controls: list[dict[str, Any]]


def binding(model: ServedModel, *, max_batch: int, max_delay_ms: float,
            sequence_timeout_s: float) -> Binding:  # fmt: skip
    """``model``'s PyTriton binding under the given batching."""
    config = model_config(model, target=ConfigTarget.PYTRITON, max_batch=max_batch,
                          max_delay_ms=max_delay_ms, sequence_timeout_s=sequence_timeout_s)  # fmt: skip
    controls = []
    if model.stateful:
        controls = [{"name": name, "data_type": data_type, "dims": [1]}
                    for name, (_, data_type) in SEQUENCE_CONTROLS.items()]  # fmt: skip
    return Binding(config, config["input"], config["output"], controls)


class _Request(Protocol):
    """What the kernel reads of a ``pytriton.proxy.types.Request``."""

    data: dict[str, np.ndarray]
    parameters: dict[str, Any] | None


class TritonKernel:
    """The infer callable of one model instance.

    Args:
        model: the served model.
        rng: the generator of the noise a request without ``seed`` omits.
        sequence_timeout_s: a stateful model's idle timeout (Triton's own drops the sequence
            at the same time).
    """

    def __init__(self, model: ServedModel, *, rng: np.random.Generator,
                 sequence_timeout_s: float) -> None:  # fmt: skip
        self.model = model
        self.rng = rng
        self.sequences = (SequenceStore(model, idle_timeout_s=sequence_timeout_s)
                          if model.stateful else None)  # fmt: skip
        self._shapes = {**{name: slot.shape for name, slot in model.slots.items()},
                        **{slot.name: slot.shape for slot in model.outputs}}  # fmt: skip

    def __call__(self, requests: Sequence[_Request]) -> list[dict[str, np.ndarray]]:
        """The responses to a batch of requests, one dict of ``[rows_i, *dims]`` arrays each.

        Each request's ``data`` holds ``[rows_i, *dims]`` arrays by input name (dims as
        :func:`triton_dims` writes them), and for a stateful model the control tensors.
        """
        if self.sequences is not None:
            self.sequences.expire()
        feeds, controls = [], []
        for request in requests:
            data = {name: array.reshape(len(array), *self._shapes[name])
                    for name, array in request.data.items() if name not in SEQUENCE_CONTROLS}  # fmt: skip
            rows = len(next(iter(data.values())))
            control = self._control(request.data)
            if control is not None:
                data.update(self.sequences.feed(control, rows))
            seed = (request.parameters or {}).get("seed")
            feeds.append(complete_feed(self.model, data, rows, self.rng,
                                       seed=None if seed is None else int(seed),
                                       in_sequence=control is not None))  # fmt: skip
            controls.append(control)
        responses = []
        for control, outputs in zip(controls, self.model.run(feeds)):
            named = {slot.name: array for slot, array in zip(self.model.outputs, outputs)}
            if control is not None:
                self.sequences.update(control, named)
            responses.append({name: array.reshape(len(array), *triton_dims(self._shapes[name]))
                              for name, array in named.items()})  # fmt: skip
        return responses

    def _control(self, data: dict[str, np.ndarray]) -> SequenceControl | None:
        """The request's sequence controls (a stateful model's), each a ``[1, 1]`` tensor."""
        if self.sequences is None:
            return None
        def value(name: str) -> int:
            return int(data[name].ravel()[0])

        return SequenceControl(value("rlpol.sequence_id"), start=bool(value("rlpol.sequence_start")),
                               end=bool(value("rlpol.sequence_end")))  # fmt: skip
