"""``rlpol triton-repo``: a Triton model repository for the native onnxruntime backend.

For each model :func:`write_triton_repo` writes, in Triton's layout::

    REPO/<name>/config.pbtxt     # ConfigTarget.ONNXRUNTIME, validated by model_config.proto
    REPO/<name>/1/model.onnx     # the artifact, exploration parameters given defaults
    REPO/<name>/initial_state/   # only for a state whose initial value is not 0

The native backend feeds the graph only what a request (or Triton's implicit state) holds, so
the artifact's exploration parameters (``param.1.eps``, unbatched graph inputs) get their
metadata values as defaults (initializers), and a ``random`` artifact's noise inputs are required:
the client draws them. The repository is built in a temp directory beside ``REPO`` and
renamed into place, so a failure never leaves a half-written repository.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlpol._atomic import atomic_directory
from rlpol.artifact.constants import METADATA_KEY
from rlpol.artifact.reader import read_metadata
from rlpol.errors import ServeError
from rlpol.serve.model import ServedModel
from rlpol.serve.repository import resolve_sources
from rlpol.serve.triton_config import ConfigTarget, initial_state_file, model_config

__all__ = ["render_config", "write_triton_repo"]


def render_config(config: dict) -> str:
    """``config`` (model_config.proto's JSON form) as ``config.pbtxt`` text.

    Parsing it into tritonclient's ``ModelConfig`` message is the validation: an unknown
    field, a wrong type or an unknown enum value is refused.

    Raises:
        ServeError: the config does not fit model_config.proto, or tritonclient is missing.
    """
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as error:  # RuntimeError: tritonclient without grpcio
        raise ServeError(f"rlpol triton-repo validates config.pbtxt with tritonclient's protobuf "
                         f"definitions ({error}); install them with "
                         "`pip install 'tritonclient[grpc]'`") from error  # fmt: skip
    try:
        message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as error:
        raise ServeError(f"the Triton model config of {config.get('name')!r} does not fit "
                         f"model_config.proto ({error}); please report it as an rlpol "
                         "bug") from error  # fmt: skip
    return text_format.MessageToString(message)


def _onnx_for_triton(model: ServedModel):
    """The artifact's ONNX graph, its exploration parameters defaulting to their values.

    Each parameter stays a graph input and gets an initializer of the same name, its default:
    onnxruntime lists such an input as an overridable initializer, not as an input the backend
    must feed. The embedded metadata drops the parameters (their values are now the graph's),
    so the file is still an rlpol artifact (``rlpol inspect``, ``rlpol serve REPO``).
    """
    import dataclasses

    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model.path))
    for parameter in model.metadata.parameters:
        proto.graph.initializer.append(
            numpy_helper.from_array(np.array(parameter.value, np.float32), parameter.name))
    metadata = dataclasses.replace(model.metadata, parameters=())
    (entry,) = (prop for prop in proto.metadata_props if prop.key == METADATA_KEY)
    entry.value = metadata.to_json()
    return proto


def write_triton_repo(arguments: list[str], output: str | Path, *, max_batch: int = 64,
                      max_delay_ms: float = 2.0, sequence_timeout_s: float = 60.0,
                      force: bool = False) -> list[str]:  # fmt: skip
    """Write the Triton model repository of ``arguments``' ONNX artifacts to ``output``.

    Args:
        arguments: artifact files, ``name=PATH`` pairs or rlpol model repositories, as
            ``rlpol serve`` takes them (:func:`~rlpol.serve.repository.resolve_sources`);
            one version per model.
        output: the repository directory; missing or empty unless ``force``.
        max_batch: ``max_batch_size``.
        max_delay_ms: the batcher's queue delay.
        sequence_timeout_s: a stateful model's idle timeout.
        force: replace a non-empty ``output``.

    Returns:
        the model names written, in order.

    Raises:
        ServeError: a TorchScript artifact, two versions of one model, a non-empty
            ``output`` without ``force``, or ``output`` cannot be written; ``output`` is
            left as it was.
        ArtifactError: a file is not an rlpol artifact.

    Examples:
        >>> import tempfile
        >>> write_triton_repo(["missing.onnx"], tempfile.mkdtemp() + "/repo")
        Traceback (most recent call last):
        ...
        rlpol.errors.ServeError: 'missing.onnx': no such file or directory; expected an artifact file, name=PATH or a model repository directory
    """
    output = Path(output)
    sources = resolve_sources(arguments)
    models = []
    for source in sources:
        if any(model.name == source.name for model in models):
            raise ServeError(f"model {source.name!r} is given in two versions; a Triton "
                             "repository from rlpol triton-repo holds one version per model, "
                             "name the other one with name=PATH")  # fmt: skip
        artifact_format, _ = read_metadata(source.path)
        if artifact_format != "onnx":
            raise ServeError(f"{str(source.path)!r} is a {artifact_format} artifact; Triton's "
                             "onnxruntime backend runs ONNX only: export it with "
                             f"`rlpol export POLICY_FILE -o {source.name}.onnx`")  # fmt: skip
        models.append(ServedModel(source.name, "1", source.path))
    if output.is_dir() and any(output.iterdir()) and not force:
        raise ServeError(f"{str(output)!r} is not empty; pass --force to replace it, or choose "
                         "a new directory")  # fmt: skip
    try:
        with atomic_directory(output) as staging:
            for model in models:
                _write_model(model, staging / model.name, max_batch=max_batch,
                             max_delay_ms=max_delay_ms, sequence_timeout_s=sequence_timeout_s)  # fmt: skip
    except OSError as error:
        raise ServeError(f"cannot write the Triton repository {str(output)!r} ({error}); choose a "
                         "directory in a writable place") from error  # fmt: skip
    return [model.name for model in models]


def _write_model(model: ServedModel, directory: Path, **batching) -> None:
    """``directory/config.pbtxt``, ``directory/1/model.onnx`` and any initial state files."""
    import onnx

    config = model_config(model, target=ConfigTarget.ONNXRUNTIME, **batching)
    text = render_config(config)
    (directory / "1").mkdir(parents=True)
    (directory / "config.pbtxt").write_text(text)
    onnx.save(_onnx_for_triton(model), str(directory / "1" / "model.onnx"))
    for pair in model.metadata.states:
        if pair.initial != 0:
            slot = model.slots[pair.input]
            (directory / "initial_state").mkdir(exist_ok=True)
            data = np.full(slot.shape or (1,), pair.initial, slot.dtype)
            (directory / "initial_state" / initial_state_file(pair.input)).write_bytes(
                data.tobytes())
