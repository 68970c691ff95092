"""The bundle layout: a deployable directory of models, their metadata and test vectors.

A bundle is what ``rlpol bundle`` writes and ``rlpol verify`` (or a client in another
language, see ``examples/``) replays::

    DIR/
      rlpol.json            the metadata document of model.onnx, as a plain JSON file
      model.onnx            ONNX (onnxruntime, onnxruntime-node / -web, OpenVINO)
      model.pt              TorchScript (libtorch: torch::jit::load)
      model.aoti.pt2        AOTInductor package (only with ``--aoti``)
      test_data_set_0/      one graph call, in ONNX's backend-test layout:
        input_0.pb ...        one serialized onnx.TensorProto per graph input, in graph order
        output_0.pb ...       (inputs, then noise, then parameters), named like it; one per
      test_data_set_1/      graph output, named like it, holding the eager policy's result
      ...

Each data set is one self-contained call: everything the graph reads is in its inputs, the
noise draws and exploration parameters included, so any runtime replays it without rlpol.
The data sets, in index order (:func:`data_set_dir` names them):

* ``0``: batch 1, a sample of the observation spec;
* ``1``: a larger batch: spec samples, then extreme rows (each observation at its bounds);
* ``2`` onwards, stateful policies only (the metadata has ``states``): a sequence of steps,
  one data set per step. At each step the state inputs hold exactly the state outputs of the
  step before (the state's ``initial`` value at the first step), and the reset input
  (``is_init``) is True for every row at the first step and for some rows mid-sequence.

This module only reads and writes the layout; it imports neither torch nor the exporter.
``onnx`` (for ``onnx.numpy_helper``) is imported when a data set is read or written.

Examples:
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> written = DataSet(inputs={"observation": np.zeros((1, 3), np.float32)},
    ...                   outputs={"action": np.ones((1, 1), np.float32)})
    >>> write_data_set(root, 0, written).name
    'test_data_set_0'
    >>> (read,) = read_data_sets(root)
    >>> read.name, list(read.inputs), read.outputs["action"].tolist()
    ('test_data_set_0', ['observation'], [[1.0]])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlpol._atomic import atomic_write_bytes
from rlpol.artifact.metadata import ArtifactMetadata, parse_metadata
from rlpol.errors import ArtifactError

__all__ = [
    "DATA_SET_PREFIX",
    "METADATA_FILE",
    "MODEL_FILES",
    "DataSet",
    "bundle_metadata_text",
    "data_set_dir",
    "read_bundle_metadata",
    "read_data_sets",
    "write_data_set",
]

METADATA_FILE = "rlpol.json"
# the model files a bundle may hold, by artifact format, in the order they are verified
MODEL_FILES = {
    "onnx": "model.onnx",
    "torchscript": "model.pt",
    "aot_inductor": "model.aoti.pt2",
}
DATA_SET_PREFIX = "test_data_set_"
_DATA_SET = re.compile(rf"{DATA_SET_PREFIX}(\d+)")
_TENSOR_FILE = re.compile(r"(input|output)_(\d+)\.pb")


@dataclass(frozen=True)
class DataSet:
    """One graph call: its inputs and the expected outputs, by graph name, in graph order.

    Attributes:
        inputs: graph input name -> array ``[batch, *shape]`` (0-d for parameters), in the
            graph's input order (inputs, noise, parameters).
        outputs: graph output name -> the eager policy's array, in the graph's output order.
        name: the data set's directory name (``test_data_set_0``); empty before it is written.
    """

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    name: str = field(default="")


def data_set_dir(directory: str | os.PathLike[str], index: int) -> Path:
    """The directory of data set ``index`` in the bundle ``directory``."""
    return Path(directory) / f"{DATA_SET_PREFIX}{index}"


def write_data_set(directory: str | os.PathLike[str], index: int, data_set: DataSet) -> Path:
    """Write ``data_set`` as ``test_data_set_<index>/`` in ``directory``; return its path.

    Raises:
        ArtifactError: an array has a dtype ONNX's ``numpy_helper`` cannot store.
    """
    from onnx import numpy_helper

    target = data_set_dir(directory, index)
    target.mkdir()
    for role, arrays in (("input", data_set.inputs), ("output", data_set.outputs)):
        for position, (name, array) in enumerate(arrays.items()):
            try:
                proto = numpy_helper.from_array(np.ascontiguousarray(array), name)
            except (TypeError, ValueError, KeyError) as error:
                raise ArtifactError(
                    f"cannot store {role} {name!r} ({array.dtype}) as an onnx.TensorProto: "
                    f"{error}; test vectors hold numpy dtypes only"
                ) from error
            atomic_write_bytes(target / f"{role}_{position}.pb", proto.SerializeToString())
    return target


def read_data_sets(directory: str | os.PathLike[str]) -> list[DataSet]:
    """Every ``test_data_set_<N>/`` of the bundle ``directory``, in index order.

    Raises:
        ArtifactError: the directory holds no data set, a data set's files are not numbered
            ``input_0.pb``, ``input_1.pb``, ... (same for outputs), or a file is not a
            serialized ``onnx.TensorProto``.
    """
    directory = Path(directory)
    found = sorted(
        (int(match.group(1)), path)
        for path in _children(directory)
        if path.is_dir() and (match := _DATA_SET.fullmatch(path.name))
    )
    if not found:
        raise ArtifactError(
            f"'{directory}' holds no {DATA_SET_PREFIX}<N> directory; expected a bundle written "
            "by `rlpol bundle POLICY_FILE DIR`"
        )
    return [_read_data_set(path) for _, path in found]


def _read_data_set(path: Path) -> DataSet:
    from onnx import TensorProto, numpy_helper

    files: dict[str, dict[int, Path]] = {"input": {}, "output": {}}
    for child in _children(path):
        match = _TENSOR_FILE.fullmatch(child.name)
        if match:
            files[match.group(1)][int(match.group(2))] = child
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for role, numbered in files.items():
        if sorted(numbered) != list(range(len(numbered))) or not numbered:
            raise ArtifactError(
                f"data set '{path}' has {role} files {sorted(p.name for p in numbered.values())}; "
                f"expected {role}_0.pb, {role}_1.pb, ... with none missing; rewrite the bundle"
            )
        arrays[role] = {}
        for position in range(len(numbered)):
            proto = TensorProto()
            try:
                proto.ParseFromString(numbered[position].read_bytes())
                array = numpy_helper.to_array(proto).copy()  # writable, as torch wants
            except Exception as error:  # protobuf's DecodeError, onnx's own errors
                raise ArtifactError(
                    f"'{numbered[position]}' is not a serialized onnx.TensorProto "
                    f"({type(error).__name__}); rewrite the bundle with `rlpol bundle`"
                ) from error
            arrays[role][proto.name or f"{role}_{position}"] = array
    return DataSet(inputs=arrays["input"], outputs=arrays["output"], name=path.name)


def bundle_metadata_text(metadata: ArtifactMetadata) -> str:
    """The text of a bundle's ``rlpol.json``: the document the models embed, as it is stored.

    (Not re-indented: a pixel policy's spec bounds would push it past ``MAX_METADATA_BYTES``.)
    """
    return metadata.to_json()


def read_bundle_metadata(directory: str | os.PathLike[str]) -> ArtifactMetadata:
    """The validated metadata of the bundle ``directory`` (its ``rlpol.json``).

    Raises:
        ArtifactError: ``rlpol.json`` is missing, unreadable or not a valid metadata document.
    """
    path = Path(directory) / METADATA_FILE
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ArtifactError(
            f"cannot read '{path}' ({error.strerror}); expected a bundle written by "
            "`rlpol bundle POLICY_FILE DIR`"
        ) from None
    try:
        return parse_metadata(text)
    except ArtifactError as error:
        raise ArtifactError(f"'{path}': {error.message}") from None


def _children(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError as error:
        raise ArtifactError(
            f"cannot read bundle directory '{directory}' ({error.strerror}); check the path"
        ) from None
