"""Recurrent policies: TorchRL's ``LSTMModule`` and ``GRUModule``, with a step mode that exports.

A recurrent module reads an input (``[*B, F]``), its state (``[*B, num_layers,
hidden_size]`` per state entry) and ``is_init`` (bool, ``[*B, 1]``), and writes its output
(``[*B, hidden_size]``) and the next state under ``("next", ...)``. Where ``is_init`` is
True the state read is replaced by zeros first: an episode starts from a zero state. The
env supplies both inputs: append ``InitTracker()`` and ``module.make_tensordict_primer()``
to it, and each step's ``("next", state)`` becomes the following root's state.

Two modes, chosen with :func:`set_recurrent_mode` (or ``default_recurrent_mode=``):

* **step mode** (the default, for rollouts and deployment): one step per call, computed
  with plain torch ops on the weights of the wrapped ``torch.nn.LSTM`` / ``torch.nn.GRU``,
  with the reset as ``torch.where(is_init, 0, state)``. No Python branch depends on a
  value, so ``torch.export``, ``torch.onnx.export(dynamo=True)`` and ``torch.jit.trace``
  trace it with a dynamic batch. :meth:`~_RecurrentModule.cell` is this step on tensors.
* **recurrent mode** (for training on trajectories): the tensordict is ``[*B, T]``, time
  last. The sequences are split where ``is_init`` is True inside a row, padded, packed and
  run through the ``nn.LSTM`` / ``nn.GRU`` in one call (cuDNN where available), as TorchRL
  does. The output equals T step-mode calls that thread the state; ``("next", state)``
  holds each sequence's final state at its last step and zeros at the other steps.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rlpol.errors import InputMismatchError
from rlpol.toolkit.keys import IS_INIT, NEXT, OBSERVATION, NestedKey
from rlpol.toolkit.modules._common import _present_keys, check_in_keys, format_shape

if TYPE_CHECKING:
    from rlpol.toolkit.envs.primer import TensorDictPrimer

__all__ = ["GRUModule", "LSTMModule", "recurrent_mode", "set_recurrent_mode"]

EMBED = "embed"

_RECURRENT_MODE: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "rlpol_recurrent_mode", default=None
)


def recurrent_mode() -> bool | None:
    """The mode set by the innermost :func:`set_recurrent_mode` block, None outside any."""
    return _RECURRENT_MODE.get()


@contextlib.contextmanager
def set_recurrent_mode(mode: bool | None = True) -> Iterator[None]:
    """Run the recurrent modules inside the block in recurrent mode (``True``) or step mode.

    ``None`` lets each module use its ``default_recurrent_mode``. Works as a decorator too.

    Args:
        mode: ``True`` for whole trajectories ``[*B, T]``, ``False`` for single steps.

    Raises:
        TypeError: ``mode`` is not a bool or None.

    Examples:
        >>> from rlpol.toolkit.modules import LSTMModule, recurrent_mode, set_recurrent_mode
        >>> lstm = LSTMModule(input_size=3, hidden_size=8)
        >>> with set_recurrent_mode(True):
        ...     print(recurrent_mode(), lstm.recurrent_mode)
        True True
        >>> print(recurrent_mode(), lstm.recurrent_mode)
        None False
    """
    if mode is not None and not isinstance(mode, bool):
        raise TypeError(
            f"set_recurrent_mode takes True (trajectories), False (single steps) or None, "
            f"got {mode!r}."
        )
    token = _RECURRENT_MODE.set(mode)
    try:
        yield
    finally:
        _RECURRENT_MODE.reset(token)


def _key_path(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _resolve_keys(
    owner: str,
    key: NestedKey | None,
    keys: Sequence[NestedKey] | None,
    default_key: NestedKey,
    state_keys: Sequence[NestedKey],
    name: str,
) -> list[NestedKey]:
    """``[key, *state_keys]`` from ``key=``, or ``keys=`` as given; never both."""
    if key is not None and keys is not None:
        raise ValueError(
            f"{owner} takes {name}_key or {name}_keys, not both; got {name}_key={key!r} and "
            f"{name}_keys={list(keys)!r}."
        )
    if keys is None:
        return [default_key if key is None else key, *state_keys]
    return [k if isinstance(k, str) else tuple(k) for k in keys]


class _RecurrentModule(TensorDictModuleBase):
    """What LSTMModule and GRUModule share: keys, modes, checks, the step and the sequence.

    Subclasses name the wrapped ``nn`` class and its attribute, the default state keys, and
    implement :meth:`_layer`, one layer's step.
    """

    RNN_CLASS: ClassVar[type[nn.RNNBase]]
    RNN_ATTRIBUTE: ClassVar[str]
    DEFAULT_IN_KEYS: ClassVar[list[NestedKey]]
    DEFAULT_OUT_KEYS: ClassVar[list[NestedKey]]

    def __init__(
        self,
        input_size: int | None = None,
        hidden_size: int | None = None,
        num_layers: int = 1,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        in_key: NestedKey | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_key: NestedKey | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        device: torch.device | str | None = None,
        rnn: nn.RNNBase | None = None,
        default_recurrent_mode: bool | None = None,
    ) -> None:
        super().__init__()
        rnn = self._build_rnn(rnn, input_size, hidden_size, num_layers, bias, dropout, device)
        setattr(self, self.RNN_ATTRIBUTE, rnn)  # `module.lstm` / `module.gru`, as TorchRL
        self.in_keys, self.out_keys = self._build_keys(in_key, in_keys, out_key, out_keys)
        self.default_recurrent_mode = bool(default_recurrent_mode)

    def _build_rnn(self, rnn, input_size, hidden_size, num_layers, bias, dropout, device):
        owner = type(self).__name__
        attribute = self.RNN_ATTRIBUTE
        if rnn is None:
            if input_size is None or hidden_size is None:
                raise ValueError(
                    f"{owner} needs input_size and hidden_size, or an nn.{self.RNN_CLASS.__name__} "
                    f"as {attribute}=..."
                )
            return self.RNN_CLASS(
                input_size, hidden_size, num_layers, bias=bias, batch_first=True,
                dropout=dropout, device=device,
            )  # fmt: skip
        if input_size is not None or hidden_size is not None:
            raise ValueError(
                f"{owner} takes {attribute}=... or input_size/hidden_size, not both: the "
                f"sizes come from the {attribute}."
            )
        if not isinstance(rnn, self.RNN_CLASS):
            raise TypeError(
                f"{owner}({attribute}=...) takes an nn.{self.RNN_CLASS.__name__}, got "
                f"{type(rnn).__name__}."
            )
        if not rnn.batch_first or rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError(
                f"{owner}({attribute}=...) needs batch_first=True, bidirectional=False and "
                f"proj_size=0, got batch_first={rnn.batch_first}, "
                f"bidirectional={rnn.bidirectional}, proj_size={getattr(rnn, 'proj_size', 0)}."
            )
        return rnn

    def _build_keys(self, in_key, in_keys, out_key, out_keys) -> tuple[list, list]:
        owner = type(self).__name__
        n_states = len(self.DEFAULT_IN_KEYS)
        ins = _resolve_keys(owner, in_key, in_keys, OBSERVATION, self.DEFAULT_IN_KEYS, "in")
        outs = _resolve_keys(owner, out_key, out_keys, EMBED, self.DEFAULT_OUT_KEYS, "out")
        if ins[-1] == IS_INIT:
            ins = ins[:-1]
        if len(ins) != 1 + n_states:
            raise ValueError(
                f"{owner} reads an input and {n_states} state entr"
                f"{'y' if n_states == 1 else 'ies'} (then 'is_init'), e.g. in_keys="
                f"{['observation', *self.DEFAULT_IN_KEYS]}; got in_keys={ins}."
            )
        if len(outs) != 1 + n_states:
            raise ValueError(
                f"{owner} writes an output and {n_states} state entr"
                f"{'y' if n_states == 1 else 'ies'}, e.g. out_keys="
                f"{['embed', *self.DEFAULT_OUT_KEYS]}; got out_keys={outs}."
            )
        return [*ins, IS_INIT], outs

    # -- properties -----------------------------------------------------------------------
    @property
    def rnn(self) -> nn.RNNBase:
        """The wrapped ``nn.LSTM`` / ``nn.GRU`` (also ``module.lstm`` / ``module.gru``)."""
        return getattr(self, self.RNN_ATTRIBUTE)

    @property
    def recurrent_mode(self) -> bool:
        """True in recurrent mode: :func:`set_recurrent_mode`'s, else ``default_recurrent_mode``."""
        mode = _RECURRENT_MODE.get()
        return self.default_recurrent_mode if mode is None else mode

    @property
    def state_shape(self) -> tuple[int, int]:
        """The per-row shape of each state entry: ``(num_layers, hidden_size)``."""
        return (self.rnn.num_layers, self.rnn.hidden_size)

    @property
    def state_keys(self) -> list[NestedKey]:
        """The state entries read (``in_keys`` between the input and ``is_init``)."""
        return self.in_keys[1:-1]

    # -- the step -------------------------------------------------------------------------
    def _layer(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        weights: tuple[torch.Tensor | None, ...],
    ) -> tuple[torch.Tensor, ...]:
        """One layer's step: the new state of that layer, its output first."""
        raise NotImplementedError

    def _weights(self, layer: int) -> tuple[torch.Tensor | None, ...]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of ``layer``, as ``nn.LSTM`` names them."""
        rnn = self.rnn
        return tuple(
            getattr(rnn, f"{name}_l{layer}", None)  # no bias_* attributes when bias=False
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def cell(
        self,
        input: torch.Tensor,
        states: Sequence[torch.Tensor],
        is_init: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step on tensors: the step mode's computation, traceable with a dynamic batch.

        Args:
            input: ``[*B, input_size]``.
            states: one ``[*B, num_layers, hidden_size]`` tensor per state entry
                (``(h, c)`` for an LSTM, ``(h,)`` for a GRU).
            is_init: bool ``[*B, 1]``; True rows start from a zero state.

        Returns:
            ``(output, next_states)``: the last layer's output ``[*B, hidden_size]`` and the
            next states, shaped as ``states``. Equal to ``nn.LSTM`` / ``nn.GRU`` applied to
            one step with the (reset) states.
        """
        reset = is_init.unsqueeze(-1)  # [*B, 1, 1] against [*B, num_layers, hidden_size]
        states = tuple(torch.where(reset, torch.zeros_like(s), s) for s in states)
        rnn = self.rnn
        x = input
        per_layer = []
        for layer in range(rnn.num_layers):
            new = self._layer(x, tuple(s[..., layer, :] for s in states), self._weights(layer))
            per_layer.append(new)
            x = new[0]
            if rnn.dropout and layer < rnn.num_layers - 1:
                x = F.dropout(x, rnn.dropout, rnn.training)
        next_states = tuple(torch.stack(layer_states, -2) for layer_states in zip(*per_layer))
        return x, next_states

    # -- the sequence ---------------------------------------------------------------------
    def _sequence(
        self,
        input: torch.Tensor,
        states: Sequence[torch.Tensor],
        is_init: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Recurrent mode: ``[*B, T, F]`` split at ``is_init``, padded, packed, one RNN call."""
        *lead, steps, features = input.shape
        rows = input.reshape(-1, steps, features).shape[0]
        starts = is_init.reshape(rows, steps).clone()
        starts[:, 0] = True  # every row starts a sequence, reset or not
        starts = starts.reshape(-1)
        segment = starts.cumsum(0) - 1  # [rows * T]: the sequence of each step
        first = starts.nonzero().squeeze(-1)  # [S]: the flat step each sequence starts at
        lengths = torch.bincount(segment, minlength=first.numel())
        position = torch.arange(rows * steps, device=input.device) - first[segment]
        padded = input.new_zeros(first.numel(), int(lengths.max()), features)
        padded[segment, position] = input.reshape(-1, features)
        reset = is_init.reshape(-1)[first].reshape(-1, 1, 1)
        initial = tuple(
            torch.where(reset, 0.0, s.reshape(-1, *self.state_shape)[first])
            .transpose(0, 1)
            .contiguous()
            for s in states
        )  # [num_layers, S, hidden_size], as nn.LSTM takes them
        packed = pack_padded_sequence(padded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        output, final = self.rnn(packed, initial if len(initial) > 1 else initial[0])
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=padded.shape[1])
        final = final if isinstance(final, tuple) else (final,)
        last = first + lengths - 1
        next_states = []
        for state in final:
            full = state.new_zeros(rows * steps, *self.state_shape)
            full[last] = state.transpose(0, 1)
            next_states.append(full.reshape(*lead, steps, *self.state_shape))
        return output[segment, position].reshape(*lead, steps, -1), tuple(next_states)

    # -- the tensordict interface ---------------------------------------------------------
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Read the input, the states and ``is_init``; write the output and the next states.

        Raises:
            InputMismatchError: an entry is missing, or has the wrong shape or dtype.
        """
        recurrent = self.recurrent_mode
        self._check_inputs(tensordict, recurrent)
        input = tensordict.get(self.in_keys[0])
        states = tuple(tensordict.get(key) for key in self.state_keys)
        is_init = tensordict.get(IS_INIT)
        run = self._sequence if recurrent else self.cell
        output, next_states = run(input, states, is_init)
        tensordict.set(self.out_keys[0], output)
        for key, state in zip(self.out_keys[1:], next_states):
            tensordict.set(key, state)
        return tensordict

    def _check_inputs(self, tensordict: TensorDictBase, recurrent: bool) -> None:
        owner = type(self).__name__
        value_key = self.in_keys[0]
        check_in_keys(owner, tensordict, [value_key], {value_key: (self.rnn.input_size,)})
        missing = [key for key in self.in_keys[1:] if tensordict.get(key, None) is None]
        if missing:
            raise InputMismatchError(
                f"{owner} needs {', '.join(map(repr, missing))} (the recurrent state, "
                f"{format_shape(self.state_shape)} float32, and 'is_init', [*B, 1] bool), but "
                f"the tensordict holds {_present_keys(tensordict)}. The env provides them: "
                f"append InitTracker() and module.make_tensordict_primer() to it, e.g. "
                f"TransformedEnv(env, Compose(InitTracker(), module.make_tensordict_primer()))."
            )
        value = tensordict.get(value_key)
        if recurrent and tensordict.batch_dims < 1:
            raise InputMismatchError(
                f"{owner} in recurrent mode reads trajectories: a tensordict of batch size "
                f"[*B, T], time last; got batch size {list(tensordict.batch_size)}. Pass a "
                "rollout, or call it outside set_recurrent_mode(True) for single steps."
            )
        if value.shape[-1] != self.rnn.input_size:
            raise InputMismatchError(
                f"{owner} expects {value_key!r} of shape {format_shape((self.rnn.input_size,))}, "
                f"found {list(value.shape)}."
            )
        lead = tuple(value.shape[:-1])
        expected = {key: (*lead, *self.state_shape) for key in self.state_keys}
        expected[IS_INIT] = (*lead, 1)
        for key, shape in expected.items():
            found = tensordict.get(key)
            if tuple(found.shape) != shape:
                raise InputMismatchError(
                    f"{owner} expects {key!r} of shape {list(shape)} (the input's leading "
                    f"shape {list(lead)}, then {list(shape[len(lead) :])}), found "
                    f"{list(found.shape)}. The state must come from the primer of a module "
                    f"with num_layers={self.rnn.num_layers}, hidden_size={self.rnn.hidden_size}."
                )
        if tensordict.get(IS_INIT).dtype != torch.bool:
            raise InputMismatchError(
                f"{owner} expects {IS_INIT!r} of dtype torch.bool (as InitTracker "
                f"writes it), found {tensordict.get(IS_INIT).dtype}."
            )

    def make_tensordict_primer(self) -> TensorDictPrimer:
        """The transform that puts zero states in the env's tensordicts, as TorchRL's.

        Returns:
            a :class:`~rlpol.toolkit.envs.TensorDictPrimer` of the state entries, float
            ``[*batch_size, num_layers, hidden_size]`` (the weights' dtype, float32 unless
            changed).

        Raises:
            ValueError: an out state key is not ``("next", <its in state key>)``.
        """
        from rlpol.toolkit.envs.primer import TensorDictPrimer
        from rlpol.toolkit.specs import Unbounded

        for in_key, out_key in zip(self.state_keys, self.out_keys[1:]):
            if _key_path(out_key) != (NEXT, *_key_path(in_key)):
                raise ValueError(
                    f"{type(self).__name__}.make_tensordict_primer() needs each out state key "
                    f"to be ('next', <in state key>), so that a step's state is the next "
                    f"root's; got in_keys={self.in_keys}, out_keys={self.out_keys}."
                )
        dtype = self.rnn.weight_hh_l0.dtype
        return TensorDictPrimer(
            {key: Unbounded(self.state_shape, dtype=dtype) for key in self.state_keys}
        )


class LSTMModule(_RecurrentModule):
    """An ``nn.LSTM`` that reads and writes tensordicts, as TorchRL's ``LSTMModule``.

    Reads ``in_keys = [in_key, "recurrent_state_h", "recurrent_state_c", "is_init"]`` and
    writes ``out_keys = [out_key, ("next", "recurrent_state_h"), ("next",
    "recurrent_state_c")]``. Shapes, in step mode (recurrent mode adds ``T`` after ``*B``):
    input ``[*B, input_size]``, each state ``[*B, num_layers, hidden_size]`` float,
    ``is_init`` ``[*B, 1]`` bool, output ``[*B, hidden_size]``. See the module docstring
    for the two modes.

    Args:
        input_size: the input's last dimension.
        hidden_size: the width of the output and of each state layer.
        num_layers: stacked LSTM layers.

    Keyword Args:
        bias: use the ``b_ih`` / ``b_hh`` biases.
        dropout: dropout between layers (in training mode), as ``nn.LSTM``.
        in_key: the input entry (default ``"observation"``); the state keys follow.
        in_keys: all three (or four, ``"is_init"`` last) input keys; exclusive with in_key.
        out_key: the output entry (default ``"embed"``); the next-state keys follow.
        out_keys: all three output keys; exclusive with out_key.
        device: where the weights live.
        lstm: an ``nn.LSTM(batch_first=True)`` to wrap instead of building one (its state
            dict is the module's, under ``lstm.``).
        default_recurrent_mode: the mode outside any :func:`set_recurrent_mode` block
            (default False: step mode).

    Raises:
        ValueError: inconsistent sizes or keys, or an unsupported ``lstm``.
        InputMismatchError: at call time, when an entry is missing or misshapen.

    Examples:
        >>> import torch
        >>> from rlpol import Compose, GymEnv, InitTracker, TransformedEnv
        >>> from rlpol.toolkit.modules import LSTMModule
        >>> lstm = LSTMModule(input_size=4, hidden_size=8, in_key="observation", out_key="embed")
        >>> env = TransformedEnv(
        ...     GymEnv("CartPole-v1"), Compose(InitTracker(), lstm.make_tensordict_primer())
        ... )
        >>> print(lstm(env.reset()))
        TensorDict(batch_size=[], device=cpu, fields={
            done: bool[1],
            embed: f32[8],
            is_init: bool[1],
            next: {recurrent_state_c: f32[1,8], recurrent_state_h: f32[1,8]},
            observation: f32[4],
            recurrent_state_c: f32[1,8],
            recurrent_state_h: f32[1,8],
            terminated: bool[1],
            truncated: bool[1]})
    """

    RNN_CLASS = nn.LSTM
    RNN_ATTRIBUTE = "lstm"
    DEFAULT_IN_KEYS = ["recurrent_state_h", "recurrent_state_c"]
    DEFAULT_OUT_KEYS = [(NEXT, "recurrent_state_h"), (NEXT, "recurrent_state_c")]

    def __init__(self, *args, lstm: nn.LSTM | None = None, **kwargs) -> None:
        super().__init__(*args, rnn=lstm, **kwargs)  # the arguments are _RecurrentModule's

    def _layer(self, x, state, weights):
        h, c = state
        weight_ih, weight_hh, bias_ih, bias_hh = weights
        gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUModule(_RecurrentModule):
    """An ``nn.GRU`` that reads and writes tensordicts, as TorchRL's ``GRUModule``.

    Reads ``in_keys = [in_key, "recurrent_state", "is_init"]`` and writes ``out_keys =
    [out_key, ("next", "recurrent_state")]``. Shapes as :class:`LSTMModule`'s, with one
    state entry.

    Args and Keyword Args: as :class:`LSTMModule`'s (``num_layers`` stacked GRU layers,
    ``dropout`` as ``nn.GRU``'s, ``in_keys`` / ``out_keys`` of two entries), with ``gru=``, an
    ``nn.GRU(batch_first=True)`` to wrap, in place of ``lstm=``.

    Raises:
        ValueError: inconsistent sizes or keys, or an unsupported ``gru``.
        InputMismatchError: at call time, when an entry is missing or misshapen.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.modules import GRUModule, set_recurrent_mode
        >>> gru = GRUModule(input_size=3, hidden_size=8, num_layers=2)
        >>> trajectories = TensorDict(
        ...     observation=torch.randn(4, 10, 3),
        ...     recurrent_state=torch.zeros(4, 10, 2, 8),
        ...     is_init=torch.zeros(4, 10, 1, dtype=torch.bool),
        ...     batch_size=[4, 10],
        ... )
        >>> with set_recurrent_mode(True):
        ...     print(gru(trajectories))
        TensorDict(batch_size=[4,10], fields={
            embed: f32[8],
            is_init: bool[1],
            next: {recurrent_state: f32[2,8]},
            observation: f32[3],
            recurrent_state: f32[2,8]})
    """

    RNN_CLASS = nn.GRU
    RNN_ATTRIBUTE = "gru"
    DEFAULT_IN_KEYS = ["recurrent_state"]
    DEFAULT_OUT_KEYS = [(NEXT, "recurrent_state")]

    def __init__(self, *args, gru: nn.GRU | None = None, **kwargs) -> None:
        super().__init__(*args, rnn=gru, **kwargs)  # the arguments are _RecurrentModule's

    def _layer(self, x, state, weights):
        (h,) = state
        weight_ih, weight_hh, bias_ih, bias_hh = weights
        r_x, z_x, n_x = F.linear(x, weight_ih, bias_ih).chunk(3, -1)
        r_h, z_h, n_h = F.linear(h, weight_hh, bias_hh).chunk(3, -1)
        r = torch.sigmoid(r_x + r_h)
        z = torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        return ((1 - z) * n + z * h,)
