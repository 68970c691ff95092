"""Stateful sequences, as Triton's sequence batcher drives a recurrent model.

A request with the parameter ``sequence_id`` belongs to a sequence. ``sequence_start`` true
starts it (or starts it again): the state inputs get their initial value and the reset input
(``is_init``) is True. Every later request of the sequence gets the next state its previous
request wrote (the metadata's state pairs) and ``is_init`` False; ``sequence_end`` true
forgets the state after that request. A sequence nobody stepped for ``idle_timeout_s`` seconds
is forgotten too (:meth:`SequenceStore.expire`). The rows of a sequence are fixed by its first
request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlpol.errors import RequestError
from rlpol.serve.model import ServedModel

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "SequenceControl", "SequenceStore"]

DEFAULT_IDLE_TIMEOUT_S = 60.0
"""Seconds a sequence may stay idle before its state is dropped."""


@dataclass(frozen=True)
class SequenceControl:
    """A request's sequence parameters.

    Attributes:
        id: ``sequence_id`` (a non-zero integer or a non-empty string).
        start: ``sequence_start``: this request starts the sequence.
        end: ``sequence_end``: the state is dropped after this request.
    """

    id: int | str
    start: bool = False
    end: bool = False


@dataclass
class _Sequence:
    rows: int
    state: dict[str, np.ndarray]  # by state input name, [rows, *shape]
    last_used: float


class SequenceStore:
    """The live sequences of one served model.

    Args:
        model: a stateful :class:`ServedModel`.
        idle_timeout_s: seconds after which an idle sequence is dropped.
        clock: the time source (seconds, monotonic).
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._pairs = model.metadata.states
        self._resets = sorted({s.reset_input for s in self._pairs} - {None})
        self._live: dict[int | str, _Sequence] = {}

    def __len__(self) -> int:
        return len(self._live)

    def feed(self, control: SequenceControl, rows: int) -> dict[str, np.ndarray]:
        """The state and reset inputs of the sequence's next request of ``rows`` rows.

        Raises:
            RequestError: the sequence was never started (or ended, or expired) and this
                request does not start it, or it has another number of rows.
        """
        model = self.model
        if control.start:
            feed = {}
            for pair in self._pairs:
                slot = model.slots[pair.input]
                feed[pair.input] = np.full((rows, *slot.shape), pair.initial, slot.dtype)
            starting = True
        else:
            live = self._live.get(control.id)
            if live is None:
                raise RequestError(
                    f"model {model.name!r} has no live sequence {control.id!r}: it was never "
                    "started, it ended, or it was idle longer than "
                    f"{self.idle_timeout_s:g} s; send its first request with sequence_start "
                    "true"
                )
            if live.rows != rows:
                raise RequestError(
                    f"sequence {control.id!r} of model {model.name!r} has {live.rows} rows but "
                    f"this request has {rows}; every request of a sequence has the rows of "
                    "its first"
                )
            feed = dict(live.state)
            starting = False
        for name in self._resets:
            feed[name] = np.full((rows, 1), starting)
        return feed

    def update(self, control: SequenceControl, outputs: dict[str, np.ndarray]) -> None:
        """Keep the next state a request of the sequence wrote (or drop it at the end)."""
        if control.end:
            self._live.pop(control.id, None)
            return
        state = {pair.input: outputs[pair.output].copy() for pair in self._pairs}
        rows = len(next(iter(state.values())))
        self._live[control.id] = _Sequence(rows, state, self._clock())

    def expire(self) -> int:
        """Drop the sequences idle for longer than the timeout; how many were dropped."""
        limit = self._clock() - self.idle_timeout_s
        stale = [key for key, live in self._live.items() if live.last_used < limit]
        for key in stale:
            del self._live[key]
        return len(stale)
