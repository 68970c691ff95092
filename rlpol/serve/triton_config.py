"""A served model's Triton model configuration, one builder for every place that needs one.

:func:`model_config` returns the configuration as a dict in the JSON form of Triton's
``model_config.proto`` (``max_batch_size``, ``input``, ``output``, ``dynamic_batching`` ...),
for one of three targets (:class:`ConfigTarget`):

==============  ===========================================================================
target          what reads it
==============  ===========================================================================
EMBEDDED        ``GET /v2/models/{name}/config`` of rlpol's own server: every request-side
                tensor, state and reset inputs optional, sequences driven by the request
                parameters ``sequence_id`` / ``sequence_start`` / ``sequence_end``
PYTRITON        ``rlpol serve --engine triton``: the inputs and noise a client sends, the
                state kept by rlpol per sequence, the sequence controls delivered as the
                tensors :data:`SEQUENCE_CONTROLS` names
ONNXRUNTIME     ``rlpol triton-repo``: the native onnxruntime backend, the state pairs as
                Triton's implicit state and the reset input (``is_init``) as the START control
==============  ===========================================================================

A stateless model gets ``dynamic_batching``; a stateful one ``sequence_batching`` instead (Triton
refuses both), whose ``oldest`` strategy batches across sequences with the same preferred sizes
and queue delay. Triton needs a non-empty ``dims`` for every tensor under batching, so a per-row
scalar (trailing shape ``[]``) is ``dims: [1]``: ONNXRUNTIME reshapes it back to ``[]`` for the
graph (``reshape``); for PYTRITON the client sends ``[batch, 1]``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from rlpol.artifact.metadata import StateInfo
from rlpol.serve.model import ServedModel, Slot

__all__ = ["CONFIG_TYPES", "SEQUENCE_CONTROLS", "ConfigTarget", "initial_state_file",
           "model_config", "preferred_batch_sizes", "triton_dims"]  # fmt: skip

CONFIG_TYPES = {"BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "INT8": "TYPE_INT8",
                "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64",
                "FP16": "TYPE_FP16", "FP32": "TYPE_FP32", "FP64": "TYPE_FP64"}  # fmt: skip
"""KServe v2 datatype: the model configuration's ``data_type``."""

SEQUENCE_CONTROLS = {
    "rlpol.sequence_start": ("CONTROL_SEQUENCE_START", "TYPE_INT32"),
    "rlpol.sequence_end": ("CONTROL_SEQUENCE_END", "TYPE_INT32"),
    "rlpol.sequence_id": ("CONTROL_SEQUENCE_CORRID", "TYPE_UINT64"),
}
"""PYTRITON's sequence control tensors: name: (control kind, data type), each ``[batch, 1]``."""


class ConfigTarget(str, Enum):
    """Which server reads the configuration (see the module docstring)."""

    EMBEDDED = "embedded"
    PYTRITON = "pytriton"
    ONNXRUNTIME = "onnxruntime"


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """The batch sizes the batcher prefers to form: half the largest and the largest.

    Examples:
        >>> preferred_batch_sizes(64), preferred_batch_sizes(1)
        ([32, 64], [1])
    """
    return sorted({max(1, max_batch // 2), max_batch})


def triton_dims(shape: tuple[int, ...]) -> list[int]:
    """The ``dims`` Triton takes for a trailing ``shape`` under batching: ``[1]`` for ``[]``.

    Examples:
        >>> triton_dims(()), triton_dims((1, 8))
        ([1], [1, 8])
    """
    return list(shape) or [1]


def _tensor(slot: Slot, target: ConfigTarget, *, optional: bool = False) -> dict[str, Any]:
    dims = list(slot.shape) if target is ConfigTarget.EMBEDDED else triton_dims(slot.shape)
    entry: dict[str, Any] = {"name": slot.name, "data_type": CONFIG_TYPES[slot.datatype],
                             "dims": dims}  # fmt: skip
    if target is ConfigTarget.ONNXRUNTIME and not slot.shape:
        entry["reshape"] = {"shape": []}
    if optional:
        entry["optional"] = True
    return entry


def _optional(slot: Slot, target: ConfigTarget) -> bool:
    """Whether a request may omit ``slot``: state and reset inputs, and noise unless the
    native backend (which cannot draw it) runs the graph."""
    return slot.role in ("state", "reset") or (slot.role == "noise"
                                               and target is not ConfigTarget.ONNXRUNTIME)


def _sequence_batching(model: ServedModel, target: ConfigTarget, *, max_batch: int,
                       delay_us: int, idle_us: int) -> dict[str, Any]:  # fmt: skip
    batching: dict[str, Any] = {
        "max_sequence_idle_microseconds": idle_us,
        "oldest": {"max_candidate_sequences": max_batch,
                   "preferred_batch_size": preferred_batch_sizes(max_batch),
                   "max_queue_delay_microseconds": delay_us},
    }  # fmt: skip
    if target is ConfigTarget.PYTRITON:
        batching["control_input"] = [
            {"name": name, "control": [_control(kind, data_type)]}
            for name, (kind, data_type) in SEQUENCE_CONTROLS.items()
        ]
    elif target is ConfigTarget.ONNXRUNTIME:
        resets = sorted({pair.reset_input for pair in model.metadata.states} - {None})
        batching["control_input"] = [
            {"name": name, "control": [_control("CONTROL_SEQUENCE_START", "TYPE_BOOL")]}
            for name in resets
        ]
        batching["state"] = [_state(model, pair) for pair in model.metadata.states]
    return batching


def _control(kind: str, data_type: str) -> dict[str, Any]:
    """One sequence control: its false/true values in ``data_type``, or the id's data type."""
    if kind == "CONTROL_SEQUENCE_CORRID":
        return {"kind": kind, "data_type": data_type}
    values = {"TYPE_INT32": ("int32_false_true", [0, 1]),
              "TYPE_BOOL": ("bool_false_true", [False, True])}[data_type]  # fmt: skip
    return {"kind": kind, values[0]: values[1]}


def _state(model: ServedModel, pair: StateInfo) -> dict[str, Any]:
    """An implicit state entry: the state input fed back from its output, fresh ``initial``."""
    slot = model.slots[pair.input]
    initial: dict[str, Any] = {"name": f"{pair.input}.initial",
                               "data_type": CONFIG_TYPES[slot.datatype],
                               "dims": triton_dims(slot.shape)}  # fmt: skip
    if pair.initial == 0:
        initial["zero_data"] = True
    else:  # triton_repo writes the file: the initial value, raw, in the slot's dtype
        initial["data_file"] = initial_state_file(pair.input)
    return {"input_name": pair.input, "output_name": pair.output,
            "data_type": CONFIG_TYPES[slot.datatype], "dims": triton_dims(slot.shape),
            "initial_state": [initial]}  # fmt: skip


def initial_state_file(state_input: str) -> str:
    """The file under ``<model>/initial_state/`` holding a non-zero initial state."""
    return f"{state_input}.bin"


def model_config(model: ServedModel, *, target: ConfigTarget, max_batch: int,
                 max_delay_ms: float, sequence_timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """``model``'s Triton model configuration for ``target``, in model_config.proto's JSON form.

    Args:
        model: the served model.
        target: which server reads it.
        max_batch: ``max_batch_size``, rows per batched graph call at most.
        max_delay_ms: the batcher's queue delay (``max_queue_delay_microseconds``).
        sequence_timeout_s: a stateful model's ``max_sequence_idle_microseconds``.

    Returns:
        ``{"name", "max_batch_size", "input", "output", "dynamic_batching" |
        "sequence_batching"}``, plus ``"platform"`` and ``"backend"`` for ONNXRUNTIME. Input
        and output ``dims`` exclude the batch axis.
    """
    states = model.metadata.states
    held: set[str | None] = set()  # fed by rlpol's sequences (PYTRITON) or Triton (ONNXRUNTIME)
    if target is not ConfigTarget.EMBEDDED:
        held = {pair.input for pair in states} | {pair.reset_input for pair in states}
    implicit = {pair.output for pair in states} if target is ConfigTarget.ONNXRUNTIME else set()
    result: dict[str, Any] = {"name": model.name, "max_batch_size": max_batch}
    if target is ConfigTarget.ONNXRUNTIME:
        result.update(platform="onnxruntime_onnx", backend="onnxruntime")
    result["input"] = [_tensor(slot, target, optional=_optional(slot, target))
                       for slot in model.slots.values() if slot.name not in held]  # fmt: skip
    result["output"] = [_tensor(slot, target) for slot in model.outputs
                        if slot.name not in implicit]  # fmt: skip
    delay_us = int(max_delay_ms * 1000)
    if model.stateful:
        result["sequence_batching"] = _sequence_batching(
            model, target, max_batch=max_batch, delay_us=delay_us,
            idle_us=int(sequence_timeout_s * 1e6),
        )  # fmt: skip
    else:
        result["dynamic_batching"] = {"max_queue_delay_microseconds": delay_us,
                                      "preferred_batch_size": preferred_batch_sizes(max_batch)}  # fmt: skip
    return result
