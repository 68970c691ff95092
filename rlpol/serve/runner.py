"""Where the app's jobs run: the seam between the v2 app and an engine.

The app (:mod:`rlpol.serve.app`) reads, decodes and answers requests, and keeps the
sequence stores and metrics; a :class:`Runner` runs the :class:`~rlpol.serve.batcher.Job`
each request becomes. The embedded server's runner is :class:`BatchingRunner` (the dynamic
batcher, graph calls on threads of this process); Ray Serve's forwards each job to a model
deployment's replicas (:mod:`rlpol.serve.engines.ray_app`). Both feed a sequence's state and
keep its next one in the app's :class:`~rlpol.serve.sequences.SequenceStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rlpol.serve.batcher import Batcher, Job
from rlpol.serve.metrics import ModelMetrics
from rlpol.serve.model import ServedModel
from rlpol.serve.sequences import SequenceStore

__all__ = ["BatchingRunner", "ModelKey", "RunResult", "Runner"]

ModelKey = tuple[str, str]
"""A served model version: ``(name, version)``."""


@dataclass(frozen=True)
class RunResult:
    """A job's outputs, and what the response should tell about where it ran.

    Attributes:
        outputs: one array per graph output (graph order), ``[rows, *shape]``.
        parameters: the response's ``parameters`` (empty: none), for example Ray Serve's
            ``{"rlpol_replica": "...", "rlpol_batch_rows": 8}``.
    """

    outputs: list[np.ndarray]
    parameters: dict[str, str | int] = field(default_factory=dict)


class Runner(Protocol):
    """Runs the jobs of an app's models (started and closed by the app's lifespan)."""

    async def start(self, models: list[ServedModel], *, sequences: dict[ModelKey, SequenceStore],
                    metrics: dict[ModelKey, ModelMetrics]) -> None:  # fmt: skip
        """Get ready to run ``models``, whose sequence stores and metrics the app owns."""

    def arriving(self, model: ServedModel) -> contextlib.AbstractContextManager[None]:
        """Mark a request for ``model`` as being read and decoded (a batch may wait for it)."""

    async def run(self, model: ServedModel, job: Job) -> RunResult:
        """The outputs of ``job``.

        Raises:
            RequestError: the server is shutting down (503), or the job's sequence was not
                started (400).
        """

    async def close(self) -> None:
        """Finish the jobs already submitted, then stop."""


class BatchingRunner:
    """The embedded server's runner: one :class:`~rlpol.serve.batcher.Batcher` per model.

    Args:
        max_batch: rows per batched graph call at most.
        max_delay_s: how long a batch waits for more rows, at most.
        workers: batches of one model that may run at once (threads per model).
    """

    def __init__(self, *, max_batch: int, max_delay_s: float, workers: int) -> None:
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.workers = workers
        self.batchers: dict[ModelKey, Batcher] = {}
        self._executor: ThreadPoolExecutor | None = None

    async def start(self, models: list[ServedModel], *, sequences: dict[ModelKey, SequenceStore],
                    metrics: dict[ModelKey, ModelMetrics]) -> None:  # fmt: skip
        self._executor = ThreadPoolExecutor(
            max_workers=min(64, self.workers * len(models)), thread_name_prefix="rlpol-run"
        )
        for model in models:
            key = model.name, model.version
            self.batchers[key] = Batcher(
                model, max_batch=self.max_batch, max_delay_s=self.max_delay_s,
                executor=self._executor, instances=self.workers, metrics=metrics[key],
                sequences=sequences.get(key),
            )  # fmt: skip

    def arriving(self, model: ServedModel) -> contextlib.AbstractContextManager[None]:
        return self.batchers[model.name, model.version].arriving()

    async def run(self, model: ServedModel, job: Job) -> RunResult:
        return RunResult(await self.batchers[model.name, model.version].submit(job))

    async def close(self) -> None:
        await asyncio.gather(*(batcher.close() for batcher in self.batchers.values()))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
