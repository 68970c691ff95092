"""The KServe v2 / Open Inference Protocol codec: infer requests in, responses out, numpy.

A request body is a JSON object, optionally followed by Triton's binary tensor extension: the
header ``Inference-Header-Content-Length`` gives the JSON's length in bytes, and every input
whose ``parameters`` hold ``binary_data_size`` takes that many bytes of what follows, in
input order (row-major, little-endian, one byte per BOOL). Outputs are written as binary
when the request asks (``parameters.binary_data_output``, or an output's own
``parameters.binary_data``), else as JSON ``data`` lists.

Every problem with a request raises :class:`~rlpol.errors.RequestError` (400) that names the
tensor, what it held and what the model expects. Nothing here runs a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlpol.errors import RequestError
from rlpol.serve.model import ServedModel, Slot
from rlpol.serve.sequences import SequenceControl

__all__ = [
    "HEADER_LENGTH",
    "InferRequest",
    "decode_infer_request",
    "encode_infer_response",
    "model_metadata",
]

HEADER_LENGTH = "inference-header-content-length"
_MAX_SEED = 2**63 - 1


@dataclass
class InferRequest:
    """A decoded infer request.

    Attributes:
        id: the request's ``id``, echoed in the response (None if absent).
        inputs: the fed tensors by name, each ``[rows, *shape]`` of its slot's dtype.
        rows: the batch size shared by every input.
        outputs: the requested output names with their binary flag (None: every output).
        binary_output: whether outputs without their own flag are written as binary.
        sequence: the sequence parameters (None outside a sequence).
        seed: the ``seed`` parameter for the server-drawn noise (None: the server's generator).
    """

    id: str | None
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: list[tuple[str, bool | None]] | None
    binary_output: bool
    sequence: SequenceControl | None
    seed: int | None


def _bad(message: str) -> RequestError:
    return RequestError(message, status=400)


def _split(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    """The JSON header (decoded) and the binary part of a request body."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 <= length <= len(body):
            raise _bad(
                f"the Inference-Header-Content-Length header is {header_length[:40]!r} but the "
                f"body has {len(body)} bytes; expected the JSON header's length in bytes"
            )
        binary = memoryview(body)[length:]
        body = body[:length]
    try:
        header = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, deep nesting
        raise _bad(f"the request body is not valid JSON ({str(exc)[:200]}); expected an "
                   "infer request object") from None  # fmt: skip
    if not isinstance(header, dict):
        raise _bad(f"the request body is a JSON {type(header).__name__}; expected an object "
                   'with an "inputs" list')  # fmt: skip
    return header, binary


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"{where} parameters are a {type(value).__name__}; expected a JSON object")
    return value


def _flag(parameters: dict[str, Any], name: str, where: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise _bad(f"{where} parameter {name!r} is {value!r}; expected true or false")
    return value


def _sequence(parameters: dict[str, Any]) -> SequenceControl | None:
    if "sequence_id" not in parameters:
        return None
    sequence_id = parameters["sequence_id"]
    valid_int = type(sequence_id) is int and sequence_id >= 0
    if not (valid_int or (isinstance(sequence_id, str) and len(sequence_id) <= 256)):
        raise _bad(f"the request parameter 'sequence_id' is {str(sequence_id)[:60]!r}; "
                   "expected a non-negative integer or a string")  # fmt: skip
    if sequence_id in (0, ""):
        return None  # Triton's "not in a sequence"
    return SequenceControl(
        sequence_id,
        start=_flag(parameters, "sequence_start", "the request"),
        end=_flag(parameters, "sequence_end", "the request"),
    )


def _seed(parameters: dict[str, Any]) -> int | None:
    seed = parameters.get("seed")
    if seed is None:
        return None
    if type(seed) is not int or not 0 <= seed <= _MAX_SEED:
        raise _bad(f"the request parameter 'seed' is {str(seed)[:60]!r}; expected an integer "
                   f"from 0 to {_MAX_SEED}")  # fmt: skip
    return seed


def _shape(value: object, slot: Slot) -> tuple[int, ...]:
    expected = f"[batch, {', '.join(map(str, slot.shape))}]".replace(", ]", "]")
    if (
        not isinstance(value, list)
        or any(type(dim) is not int for dim in value)
        or len(value) != 1 + len(slot.shape)
        or tuple(value[1:]) != slot.shape
        or not value
        or value[0] < 1
    ):
        raise _bad(
            f"input {slot.name!r} has shape {str(value)[:80]}; expected {expected} with "
            "batch >= 1"
        )
    return tuple(value)


def _from_json(data: object, slot: Slot, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON ``data`` list (flat or nested, row-major) as an array of ``shape``."""
    count = math.prod(shape)
    if not isinstance(data, list):
        raise _bad(f"input {slot.name!r} has data {str(data)[:40]!r}; expected a list of "
                   f"{count} {slot.datatype} values")  # fmt: skip
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # ragged nesting
        array = None
    kinds = "b" if slot.dtype.kind == "b" else ("iu" if slot.dtype.kind in "iu" else "iuf")
    if array is None or array.dtype.kind not in kinds:
        what = "booleans" if slot.dtype.kind == "b" else (
            "integers" if slot.dtype.kind in "iu" else "numbers")  # fmt: skip
        raise _bad(
            f"input {slot.name!r} (datatype {slot.datatype}) holds data that are not all "
            f"{what} in lists of equal lengths; expected {count} {what}"
        )
    if array.size != count:
        raise _bad(
            f"input {slot.name!r} has {array.size} values but its shape {list(shape)} needs "
            f"{count}; send exactly one value per element"
        )
    if slot.dtype.kind in "iu" and array.size:
        info = np.iinfo(slot.dtype)
        if array.min() < info.min or array.max() > info.max:
            raise _bad(f"input {slot.name!r} holds values outside the {slot.datatype} range "
                       f"[{info.min}, {info.max}]")  # fmt: skip
    return array.astype(slot.dtype, copy=False).reshape(shape)


def _from_binary(chunk: memoryview, slot: Slot, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    if len(chunk) != count * slot.dtype.itemsize:
        raise _bad(
            f"input {slot.name!r} has binary_data_size {len(chunk)} but its shape "
            f"{list(shape)} of {slot.datatype} needs {count * slot.dtype.itemsize} bytes"
        )
    array = np.frombuffer(chunk, dtype=slot.dtype.newbyteorder("<")).reshape(shape)
    if slot.dtype.kind == "b" and array.view(np.uint8).max(initial=0) > 1:
        raise _bad(f"input {slot.name!r} (BOOL) holds bytes other than 0 and 1")
    return array if array.flags.aligned else array.copy()


def _input(entry: object, index: int, model: ServedModel, binary: memoryview, offset: int):
    """One ``inputs`` entry: ``(name, array, bytes of binary data it took)``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _bad(f'inputs[{index}] is {str(entry)[:60]}; expected an object with "name", '
                   '"shape", "datatype" and "data" (or binary_data_size)')  # fmt: skip
    name = entry["name"]
    slot = model.slots.get(name)
    if slot is None:
        raise _bad(f"model {model.name!r} has no input {name[:80]!r}; its inputs are "
                   f"{list(model.slots)}")  # fmt: skip
    if entry.get("datatype") != slot.datatype:
        raise _bad(f"input {name!r} has datatype {str(entry.get('datatype'))[:20]!r}; "
                   f"expected {slot.datatype!r}")  # fmt: skip
    shape = _shape(entry.get("shape"), slot)
    parameters = _parameters(entry.get("parameters"), f"input {name!r}")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in entry:
            raise _bad(f"input {name!r} has neither data nor binary_data_size")
        return name, _from_json(entry["data"], slot, shape), 0
    if type(size) is not int or size < 0 or offset + size > len(binary):
        raise _bad(
            f"input {name!r} has binary_data_size {str(size)[:40]} but only "
            f"{len(binary) - offset} bytes of binary data are left after the JSON header; "
            "send Inference-Header-Content-Length and the tensors' bytes in input order"
        )
    return name, _from_binary(binary[offset:offset + size], slot, shape), size


def _requested_outputs(value: object, model: ServedModel) -> list[tuple[str, bool | None]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad('"outputs" is not a list; expected a list of {"name": ...} objects')
    known = {slot.name for slot in model.outputs}
    requested = []
    for index, entry in enumerate(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in known:
            raise _bad(f"outputs[{index}] asks for {str(name)[:80]!r}, which model "
                       f"{model.name!r} does not have; its outputs are {sorted(known)}")  # fmt: skip
        parameters = _parameters(entry.get("parameters"), f"output {name!r}")
        flag = parameters.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise _bad(f"output {name!r} parameter 'binary_data' is {flag!r}; expected a bool")
        requested.append((name, flag))
    return requested


def decode_infer_request(
    body: bytes, header_length: str | None, model: ServedModel
) -> InferRequest:
    """Decode and check an infer request for ``model``.

    Args:
        body: the whole request body.
        header_length: the ``Inference-Header-Content-Length`` header (None: all JSON).
        model: the model the request is for.

    Raises:
        RequestError: (400) naming the first problem: malformed JSON, an unknown input or
            output, a wrong datatype or shape, data that does not fill the shape,
            non-numeric data, a missing required input, inputs of different batch sizes.
    """
    header, binary = _split(body, header_length)
    parameters = _parameters(header.get("parameters"), "the request")
    entries = header.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise _bad('the request has no "inputs" list; expected one entry per model input, '
                   f"{model.required}")  # fmt: skip
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for index, entry in enumerate(entries):
        name, array, used = _input(entry, index, model, binary, offset)
        if name in inputs:
            raise _bad(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise _bad(f"the body has {len(binary) - offset} bytes of binary data that no input's "
                   "binary_data_size claims")  # fmt: skip
    missing = [name for name in model.required if name not in inputs]
    if missing:
        raise _bad(f"the request lacks input(s) {missing} of model {model.name!r}; it needs "
                   f"{model.required}")  # fmt: skip
    batches = {name: len(array) for name, array in inputs.items()}
    if len(set(batches.values())) > 1:
        raise _bad(f"the inputs have different batch sizes {batches}; expected one batch size")
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id)[:256] if request_id is not None else None,
        inputs=inputs,
        rows=next(iter(batches.values())),
        outputs=_requested_outputs(header.get("outputs"), model),
        binary_output=_flag(parameters, "binary_data_output", "the request"),
        sequence=_sequence(parameters),
        seed=_seed(parameters),
    )


def encode_infer_response(
    model: ServedModel, request: InferRequest, outputs: list[np.ndarray], *,
    parameters: dict[str, str | int] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and headers for ``outputs`` (graph order, ``[rows, *shape]``).

    ``parameters``, when not empty, become the response's ``parameters`` object.
    """
    by_name = {slot.name: (slot, array) for slot, array in zip(model.outputs, outputs)}
    selected = request.outputs or [(slot.name, None) for slot in model.outputs]
    entries, chunks = [], []
    for name, flag in selected:
        slot, array = by_name[name]
        entry: dict[str, Any] = {"name": name, "datatype": slot.datatype,
                                 "shape": list(array.shape)}  # fmt: skip
        if request.binary_output if flag is None else flag:
            data = np.ascontiguousarray(array, dtype=slot.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        response["id"] = request.id
    if parameters:
        response["parameters"] = parameters
    response["outputs"] = entries
    text = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return text, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(text))}
    return b"".join([text, *chunks]), headers


def _tensor(slot: Slot) -> dict[str, Any]:
    return {"name": slot.name, "datatype": slot.datatype, "shape": [-1, *slot.shape]}


def model_metadata(model: ServedModel, versions: list[str]) -> dict[str, Any]:
    """The v2 model metadata object of ``model`` (``GET /v2/models/{name}``).

    ``inputs`` lists every tensor a request may feed (graph names, v2 datatypes, ``-1`` for
    the batch axis); ``parameters`` holds the rlpol metadata document (``rlpol``, JSON text)
    and which inputs are optional (``optional_inputs``: noise, state and reset inputs,
    comma-separated).
    """
    optional = [slot.name for slot in model.slots.values() if slot.role != "input"]
    return {
        "name": model.name,
        "versions": versions,
        "platform": {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch",
                     "exported_program": "pytorch_export"}[model.artifact_format],
        "inputs": [_tensor(slot) for slot in model.slots.values()],
        "outputs": [_tensor(slot) for slot in model.outputs],
        "parameters": {
            "rlpol": model.metadata.to_json(),
            "optional_inputs": ",".join(optional),
            "stateful": model.stateful,
        },
    }
