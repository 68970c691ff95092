"""Recurrent policies at export: check the env carries their state, and declare state pairs.

A policy holding an :class:`~rlpol.toolkit.modules.LSTMModule` or
:class:`~rlpol.toolkit.modules.GRUModule` reads its state (``recurrent_state_h``, ...) and
``is_init`` like observations, and writes the next state under ``("next", ...)``. The graph
is traced in step mode (:func:`~rlpol.toolkit.modules.set_recurrent_mode` ``False``, see
:mod:`rlpol.export.graph`): one step, the reset ``where(is_init, 0, state)`` inside it. So
the state becomes graph inputs and outputs like any other entry, and the metadata declares
each *state pair* (:class:`~rlpol.artifact.metadata.StateInfo`): which output feeds which
input at the next step, and which input resets it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from rlpol.artifact.metadata import StateInfo
from rlpol.errors import ExportError
from rlpol.export.graph import TensorSlot
from rlpol.toolkit.keys import IS_INIT, NEXT, NestedKey
from rlpol.toolkit.modules import GRUModule, LSTMModule
from rlpol.toolkit.modules._common import format_shape

__all__ = ["check_recurrent_example", "recurrent_modules", "state_pairs"]

RecurrentModule = LSTMModule | GRUModule


def recurrent_modules(policy: torch.nn.Module) -> list[tuple[str, RecurrentModule]]:
    """The recurrent modules inside ``policy`` with their qualified names (``"0"``)."""
    return [
        (name, module)
        for name, module in policy.named_modules()
        if isinstance(module, (LSTMModule, GRUModule))
    ]


def check_recurrent_example(
    policy: torch.nn.Module, example: TensorDictBase, *, from_env: bool
) -> None:
    """Check ``example`` holds each recurrent module's state and ``is_init``, shaped right.

    Args:
        policy: the policy to export.
        example: the export example (one batch dim), from the env's spec or the caller.
        from_env: whether ``example`` came from the env's observation spec (the fix differs).

    Raises:
        ExportError: a state entry or ``is_init`` is missing (the env lacks the module's
            primer or ``InitTracker``), or a state's shape is not the module's
            ``[*B, num_layers, hidden_size]``; the message names the key and the fix.
    """
    for name, module in recurrent_modules(policy):
        owner = f"{type(module).__name__} {name!r}" if name else type(module).__name__
        expected = {key: module.state_shape for key in module.state_keys}
        expected[IS_INIT] = (1,)
        for key, shape in expected.items():
            value = example.get(key, None)
            if value is None:
                raise ExportError(
                    f"the policy's {owner} reads {key!r} ({format_shape(shape)} "
                    f"{'bool' if key == IS_INIT else 'float32'}), which the "
                    f"{'env' if from_env else 'example'} does not provide; "
                    + _fix(key, name, from_env)
                )
            if tuple(value.shape[1:]) != tuple(shape):
                raise ExportError(
                    f"the {'env' if from_env else 'example'} gives {key!r} of shape "
                    f"{format_shape(value.shape[1:])}, but the policy's {owner} "
                    f"(num_layers={module.rnn.num_layers}, hidden_size={module.rnn.hidden_size})"
                    f" reads {format_shape(shape)}; "
                    + (f"build the env's primer with {_module(name)}.make_tensordict_primer()"
                       if from_env else _fix(key, name, from_env))
                )


def _module(name: str) -> str:
    return f"policy.get_submodule({name!r})" if name else "policy"


def _fix(key: NestedKey, name: str, from_env: bool) -> str:
    module = _module(name)
    if not from_env:
        return f"add {key!r} to the example, as the env's primer and InitTracker write it"
    transform = "InitTracker()" if key == IS_INIT else f"{module}.make_tensordict_primer()"
    return (
        f"append {transform} to the env: TransformedEnv(env, Compose(InitTracker(), "
        f"{module}.make_tensordict_primer()))"
    )


def state_pairs(
    inputs: Sequence[TensorSlot], outputs: Sequence[TensorSlot], dtype_name
) -> tuple[StateInfo, ...]:
    """The state pairs of a graph: every input whose ``("next", *key)`` is an output.

    Args:
        inputs: the graph's observation-side inputs.
        outputs: the graph's outputs.
        dtype_name: turns a torch dtype into its metadata name.

    Returns:
        one :class:`StateInfo` per pair, in input order, initial value 0, reset by the
        ``is_init`` input where the graph reads one.
    """
    written = {_path(slot.key): slot for slot in outputs}
    reset = next((slot.name for slot in inputs if slot.key == IS_INIT), None)
    pairs = []
    for slot in inputs:
        out = written.get((NEXT, *_path(slot.key)))
        if out is None:
            continue
        if (out.dtype, out.shape) != (slot.dtype, slot.shape):
            raise ExportError(
                f"the policy reads {slot.key!r} as {slot.dtype} {format_shape(slot.shape)} but "
                f"writes {out.key!r} as {out.dtype} {format_shape(out.shape)}; a state's next "
                "value must have the state's dtype and shape"
            )
        pairs.append(StateInfo(slot.name, out.name, dtype_name(slot.dtype), slot.shape,
                               0.0, reset))  # fmt: skip
    return tuple(pairs)


def _path(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)
