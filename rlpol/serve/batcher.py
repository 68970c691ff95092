"""Dynamic batching: requests for one model version run together in one graph call.

Each :class:`Batcher` serves one :class:`~rlpol.serve.model.ServedModel` (one name and
version: models and versions are never mixed). Requests queue as :class:`Job` s; the batcher
takes the oldest, then keeps adding queued jobs until the batch holds ``max_batch`` rows or
``max_delay_s`` has passed since it began, runs the graph once on an executor thread
(onnxruntime releases the GIL) and hands each job its own rows of the outputs. A model whose
last graph call took under ``inline_below_s`` (default :data:`INLINE_BELOW_S`) of its
thread's CPU time runs on the event loop's thread instead: for a graph that small the hop to
a thread and back costs more than the call (measured: CartPole's 64x64 MLP, about 20 us of
``session.run``). CPU time, not wall time: a call that waited for the GIL or for a core
(the loop's thread busy, a client on the same machine) is not longer for it, and must not
send every later call to a thread. A job of more than ``max_batch`` rows runs alone. Up to
``instances`` batches of one model run at once.

It waits for more rows only when more are likely: while other requests for the model are
being read and decoded (:meth:`Batcher.arriving`), or when its previous batch held more than
one request. A lone client is therefore never delayed by ``max_delay_s``; when nothing else
is queued, arriving or running and the graph runs inline, its request does not even queue
(it runs at once, in :meth:`Batcher.submit`).

Two requests of one sequence never share a batch, nor run at once: the later waits for the
earlier's next state (:mod:`rlpol.serve.sequences`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from rlpol.errors import RequestError
from rlpol.serve.metrics import ModelMetrics
from rlpol.serve.model import ServedModel
from rlpol.serve.sequences import SequenceControl, SequenceStore

__all__ = ["INLINE_BELOW_S", "Batcher", "Job", "shutting_down"]

INLINE_BELOW_S = 100e-6
"""Graph calls shorter than this (the model's last one, in CPU seconds of the thread that
made it) run on the event loop's thread."""


def shutting_down() -> RequestError:
    """The 503 a job submitted after the server began to stop gets (from any runner)."""
    return RequestError("the server is shutting down; retry on another replica", status=503)


@dataclass
class Job:
    """One request's rows, waiting for a batch.

    Attributes:
        feed: every graph input but the parameters (and, in a sequence, but the state and
            reset inputs, which the sequence feeds), each ``[rows, *shape]``.
        rows: the request's batch size.
        sequence: its sequence parameters, or None.
        future: resolved with the job's outputs (graph order, ``[rows, *shape]``).
    """

    feed: dict[str, np.ndarray]
    rows: int
    sequence: SequenceControl | None = None
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """Collects the jobs of one model version into batched graph calls.

    Args:
        model: the served model.
        max_batch: rows per graph call at most (1: no batching).
        max_delay_s: how long a batch waits for more rows, at most.
        executor: where graph calls run.
        instances: batches of this model that may run at once.
        metrics: the model's metric children.
        sequences: the model's sequence store (stateful models), else None.
        inline_below_s: graph calls that last took less CPU time run on the event loop's
            thread.
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        max_batch: int,
        max_delay_s: float,
        executor: Executor,
        instances: int = 1,
        metrics: ModelMetrics,
        sequences: SequenceStore | None = None,
        inline_below_s: float = INLINE_BELOW_S,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.sequences = sequences
        self.inline_below_s = inline_below_s
        self._executor = executor
        self.metrics = metrics
        self._slots = asyncio.Semaphore(instances)
        self._pending: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        self._busy: set[int | str] = set()  # sequences with a job in a running batch
        self._arriving = 0
        self._last_batch_requests = 1
        self._tasks: set[asyncio.Task] = set()
        # batches taken and not yet answered; not len(_tasks): a done task leaves _tasks a turn
        # of the loop after its jobs' waiters resume, so a lone client would find it each time
        self._running = 0
        self._closing = False
        self._output_names = [slot.name for slot in model.outputs]
        self._last_call_s = float("inf")  # unknown until the first call, made on a thread
        self._loop_task = asyncio.create_task(self._loop())

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request for this model as being read and decoded (batches wait for it)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    def _sequences_changed(self) -> None:
        """Update the live-sequence gauge after a batch."""
        if self.sequences is not None:
            self.metrics.live_sequences.set(len(self.sequences))

    async def submit(self, job: Job) -> list[np.ndarray]:
        """Queue ``job`` and wait for its outputs.

        Raises:
            RequestError: the server is shutting down (503), or the job's sequence was not
                started.
        """
        if self._closing:
            raise shutting_down()
        if self._alone_and_inline(job):
            return self._run_now(job)
        self._pending.append(job)
        self.metrics.queue_rows.inc(job.rows)
        self._wakeup.set()
        return await job.future

    def _alone_and_inline(self, job: Job) -> bool:
        """Whether ``job`` would be a batch of its own, run on the event loop's thread."""
        return (job.sequence is None and self._last_call_s < self.inline_below_s
                and not (self._pending or self._arriving or self._running)
                and self._last_batch_requests == 1)  # fmt: skip

    def _run_now(self, job: Job) -> list[np.ndarray]:
        """``job``'s outputs from a graph call of its own, made here."""
        results, seconds = self._timed_run([job.feed])
        self._observe(seconds, rows=job.rows, requests=1)
        return results[0]

    def _timed_run(self, feeds: list[dict[str, np.ndarray]]) -> tuple[list[list[np.ndarray]], float]:
        """:meth:`ServedModel.run` on ``feeds``, on whichever thread runs it, and its wall
        time (for the metric); its CPU time on this thread is kept (the next choice of thread)."""
        start, start_cpu = time.perf_counter(), time.thread_time()
        results = self.model.run(feeds)
        self._last_call_s = time.thread_time() - start_cpu
        return results, time.perf_counter() - start

    def _observe(self, seconds: float, *, rows: int, requests: int) -> None:
        """Record a graph call of ``rows`` rows for ``requests`` requests (the loop's thread)."""
        self.metrics.inference.observe(seconds)
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_requests.observe(requests)

    async def close(self) -> None:
        """Run every queued job, wait for the running batches, then stop."""
        self._closing = True
        self._wakeup.set()
        await self._loop_task
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._collect()
            if batch is None:
                self._slots.release()
                return
            self._running += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _collect(self) -> list[Job] | None:
        """The next batch (None once closing with nothing queued)."""
        batch: list[Job] = []
        rows = 0
        while True:
            rows = self._take(batch, rows)
            if batch:
                break
            if self._closing and not self._pending:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while rows < self.max_batch and (self._arriving or self._last_batch_requests > 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            rows = self._take(batch, rows)
        self.metrics.queue_rows.dec(rows)
        self._last_batch_requests = len(batch)
        self._busy.update(job.sequence.id for job in batch if job.sequence is not None)
        return batch

    def _take(self, batch: list[Job], rows: int) -> int:
        """Move queued jobs that fit into ``batch``, oldest first; the batch's rows after."""
        deferred: list[Job] = []
        in_batch = {job.sequence.id for job in batch if job.sequence is not None}
        pending = self._pending
        while pending and rows < self.max_batch:
            job = pending[0]
            sequence = job.sequence
            if sequence is not None and (sequence.id in self._busy or sequence.id in in_batch):
                deferred.append(pending.popleft())  # its sequence's previous step comes first
                continue
            if batch and rows + job.rows > self.max_batch:
                break
            pending.popleft()
            batch.append(job)
            rows += job.rows
            if sequence is not None:
                in_batch.add(sequence.id)
        pending.extendleft(reversed(deferred))
        return rows

    async def _run(self, batch: list[Job]) -> None:
        try:
            feeds, jobs = [], []
            for job in batch:
                if job.future.done():  # cancelled while queued
                    continue
                feed = job.feed
                if job.sequence is not None:
                    try:
                        feed = {**feed, **self.sequences.feed(job.sequence, job.rows)}
                    except RequestError as error:
                        job.future.set_exception(error)
                        continue
                feeds.append(feed)
                jobs.append(job)
            if not jobs:
                return
            if self._last_call_s < self.inline_below_s:
                results, seconds = self._timed_run(feeds)
            else:
                loop = asyncio.get_running_loop()
                results, seconds = await loop.run_in_executor(self._executor, self._timed_run,
                                                              feeds)  # fmt: skip
            self._observe(seconds, rows=sum(job.rows for job in jobs), requests=len(jobs))
            for job, outputs in zip(jobs, results):
                if job.sequence is not None:
                    self.sequences.update(job.sequence, dict(zip(self._output_names, outputs)))
                if not job.future.done():
                    job.future.set_result(outputs)
            self._sequences_changed()
        except Exception as error:  # a failing graph call fails its jobs, never the loop
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
        finally:
            for job in batch:
                if job.sequence is not None:
                    self._busy.discard(job.sequence.id)
            self._running -= 1
            self._slots.release()
            self._wakeup.set()
