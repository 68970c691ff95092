"""From a decoded request to a :class:`~rlpol.serve.batcher.Job`: the graph inputs it feeds.

* Noise inputs the request omits are drawn here, each in metadata order with
  :func:`~rlpol.serve.model.draw_noise`, from ``numpy.random.default_rng(seed)`` when the
  request has the parameter ``seed``, else from the server's own generator. Noise inputs the
  request gives are used as given.
* Outside a sequence, a stateful model's omitted state inputs get their initial value, and an
  omitted reset input (``is_init``) is True where no state was given (a fresh episode) and
  False where one was (the caller threads the state itself).
* Inside a sequence (``sequence_id``) the state and reset inputs are the sequence's to feed
  (:mod:`rlpol.serve.sequences`); a request may not give them.
"""

from __future__ import annotations

import numpy as np

from rlpol.errors import RequestError
from rlpol.serve.batcher import Job
from rlpol.serve.model import ServedModel, draw_noise
from rlpol.serve.protocol import InferRequest

__all__ = ["build_job", "complete_feed"]


def build_job(model: ServedModel, request: InferRequest, rng: np.random.Generator) -> Job:
    """The job of ``request``: every graph input but the parameters (and sequence-fed ones).

    Args:
        model: the model the request is for.
        request: the decoded request.
        rng: the server's generator, for noise when the request has no ``seed``.

    Raises:
        RequestError: (400) a sequence for a stateless model, or a sequence request that
            feeds state or reset inputs.
    """
    rows = request.rows
    feed = request.inputs
    sequence = request.sequence
    if sequence is not None:
        if not model.stateful:
            raise RequestError(
                f"model {model.name!r} is stateless (no state pairs); send its requests without "
                "sequence_id"
            )
        held = [name for name in feed if model.slots[name].role in ("state", "reset")]
        if held:
            raise RequestError(
                f"the request is in sequence {sequence.id!r} but feeds {held}; in a sequence the "
                "server feeds the state and reset inputs, send only "
                f"{[n for n, s in model.slots.items() if s.role in ('input', 'noise')]}"
            )
    return Job(complete_feed(model, feed, rows, rng, seed=request.seed,
                             in_sequence=sequence is not None), rows, sequence)  # fmt: skip


def complete_feed(model: ServedModel, feed: dict[str, np.ndarray], rows: int,
                  rng: np.random.Generator, *, seed: int | None = None,
                  in_sequence: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """``feed`` with the inputs a request may omit filled in (see the module docstring).

    Args:
        model: the model fed.
        feed: the request's arrays by graph input name, each ``[rows, *shape]``.
        rows: the request's batch rows.
        rng: the server's generator, for noise when ``seed`` is None.
        seed: the request's ``seed`` parameter: its noise comes from
            ``numpy.random.default_rng(seed)``.
        in_sequence: the sequence feeds the state and reset inputs: leave them out.

    Returns:
        a new dict: ``feed``'s arrays and the drawn noise (float32), and outside a sequence
        the initial states and the reset input.
    """
    feed = dict(feed)
    noise_rng = np.random.default_rng(seed) if seed is not None else rng
    given_state = any(model.slots[name].role == "state" for name in feed)
    for name, slot in model.slots.items():
        if name in feed:
            continue
        if slot.role == "noise":
            feed[name] = draw_noise(slot, rows, noise_rng)
        elif not in_sequence and slot.role == "state":
            feed[name] = np.full((rows, *slot.shape), slot.initial, slot.dtype)
        elif not in_sequence and slot.role == "reset":
            feed[name] = np.full((rows, *slot.shape), not given_state, slot.dtype)
    return feed
