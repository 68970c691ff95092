"""The Ray Serve application: the v2 app in an ingress, the models in batched deployments.

=========================  ========  =====================================================
deployment                 replicas  what it does
=========================  ========  =====================================================
``rlpol`` (the ingress)    1         the same Starlette app as the embedded server
                                     (:func:`~rlpol.serve.app.create_app`): routes,
                                     decoding, errors, sequences, metrics; its runner
                                     (:class:`RayRunner`) sends each job to a model
``model-<name>-<version>``  N         :class:`ModelReplica`: ``@serve.batch`` batches the
                                     jobs of concurrent requests into one graph call
=========================  ========  =====================================================

A sequence's state stays in the ingress (one replica, so one store): the ingress feeds a
sequence's state with its job and keeps the next state the answer holds, one request of a
sequence at a time, so any model replica can run any step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from rlpol.serve.app import ServeConfig, create_app
from rlpol.serve.batcher import Job, shutting_down
from rlpol.serve.metrics import ModelMetrics
from rlpol.serve.model import ServedModel
from rlpol.serve.repository import ModelRepository, ModelSource
from rlpol.serve.runner import ModelKey, RunResult
from rlpol.serve.sequences import SequenceStore

__all__ = ["Ingress", "ModelReplica", "RayRunner", "ReplicaAnswer", "build_application"]

Feed = dict[str, np.ndarray]
"""Every graph input but the parameters, by name, each ``[rows, *shape]``."""


@dataclass(frozen=True)
class ReplicaAnswer:
    """What a model replica returns for one job.

    Attributes:
        outputs: one array per graph output (graph order), ``[rows, *shape]``.
        replica: the replica's id (``serve.get_replica_context().replica_tag``).
        batch_rows: the rows of the graph call the job ran in.
        batch_requests: the jobs of that call.
        seconds: the graph call's time.
    """

    outputs: list[np.ndarray]
    replica: str
    batch_rows: int
    batch_requests: int
    seconds: float


def _rows(feeds: list[Feed]) -> int:
    """The rows of a batch of feeds (``@serve.batch`` fills batches by rows, not requests)."""
    return sum(len(next(iter(feed.values()))) for feed in feeds)


class ModelReplica:
    """One replica of one model version: batched graph calls of the ingress's jobs.

    Args:
        source: the model version to load.
        trust_code: allow a ``.pt2`` archive.
        max_batch: rows per graph call at most (a larger job runs alone, :meth:`run_alone`).
        max_delay_s: how long a batch waits for more rows, at most.
    """

    def __init__(self, source: ModelSource, *, trust_code: bool, max_batch: int,
                 max_delay_s: float) -> None:  # fmt: skip
        self.model = ServedModel(source.name, source.version, source.path, trust_code=trust_code)
        self.replica = serve.get_replica_context().replica_tag
        self.run.set_max_batch_size(max_batch)
        self.run.set_batch_wait_timeout_s(max_delay_s)

    @serve.batch(batch_size_fn=_rows)
    async def run(self, feeds: list[Feed]) -> list[ReplicaAnswer]:
        """Run the jobs ``@serve.batch`` collected in one graph call (called with one feed)."""
        return await asyncio.to_thread(self._call, feeds)

    async def run_alone(self, feed: Feed) -> ReplicaAnswer:
        """Run a job of more than ``max_batch`` rows in a graph call of its own."""
        return (await asyncio.to_thread(self._call, [feed]))[0]

    def _call(self, feeds: list[Feed]) -> list[ReplicaAnswer]:
        start = time.perf_counter()
        results = self.model.run(feeds)
        seconds = time.perf_counter() - start
        rows = _rows(feeds)
        return [ReplicaAnswer(outputs, self.replica, rows, len(feeds), seconds)
                for outputs in results]  # fmt: skip


@dataclass
class _Turn:
    """One sequence's lock, and how many requests hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class RayRunner:
    """The ingress's runner: each job goes to a replica of its model's deployment.

    Args:
        handles: each model version's deployment handle.
        max_batch: a job of more rows runs alone (:meth:`ModelReplica.run_alone`).
    """

    def __init__(self, handles: dict[ModelKey, DeploymentHandle], *, max_batch: int) -> None:
        self.handles = handles
        self.max_batch = max_batch
        self._sequences: dict[ModelKey, SequenceStore] = {}
        self._metrics: dict[ModelKey, ModelMetrics] = {}
        self._turns: dict[tuple[ModelKey, int | str], _Turn] = {}
        self._closing = False

    async def start(self, models: list[ServedModel], *, sequences: dict[ModelKey, SequenceStore],
                    metrics: dict[ModelKey, ModelMetrics]) -> None:  # fmt: skip
        self._sequences = sequences
        self._metrics = metrics

    def arriving(self, model: ServedModel) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the replicas batch what reaches them

    async def run(self, model: ServedModel, job: Job) -> RunResult:
        if self._closing:
            raise shutting_down()
        key = model.name, model.version
        if job.sequence is None:
            return await self._call(key, job.feed, job.rows)
        sequences = self._sequences[key]
        async with self._turn(key, job.sequence.id):
            feed = {**job.feed, **sequences.feed(job.sequence, job.rows)}
            result = await self._call(key, feed, job.rows)
            names = [slot.name for slot in model.outputs]
            sequences.update(job.sequence, dict(zip(names, result.outputs)))
            self._metrics[key].live_sequences.set(len(sequences))
        return result

    async def close(self) -> None:
        self._closing = True

    @contextlib.asynccontextmanager
    async def _turn(self, key: ModelKey, sequence: int | str):
        """Hold sequence ``sequence``'s lock: its requests run one at a time, in order."""
        turn = self._turns.setdefault((key, sequence), _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._turns[key, sequence]

    async def _call(self, key: ModelKey, feed: Feed, rows: int) -> RunResult:
        handle = self.handles[key]
        method = handle.run if rows <= self.max_batch else handle.run_alone
        try:
            answer: ReplicaAnswer = await method.remote(feed)
        except RayTaskError as error:  # the replica's own error, not Ray's traceback of it
            raise error.cause from None
        metrics = self._metrics[key]
        metrics.inference.observe(answer.seconds)
        metrics.batch_rows.observe(answer.batch_rows)
        metrics.batch_requests.observe(answer.batch_requests)
        return RunResult(answer.outputs, {"rlpol_replica": answer.replica,
                                          "rlpol_batch_rows": answer.batch_rows})  # fmt: skip


class Ingress:
    """The ingress deployment: the v2 app, its jobs run by :class:`RayRunner`.

    Args:
        sources: the model versions (loaded here for their tensor tables and metadata).
        handles: their deployments' handles, in ``sources``' order.
        config: batching and limits.
        trust_code: allow ``.pt2`` archives.
    """

    def __init__(self, sources: list[ModelSource], handles: list[DeploymentHandle], *,
                 config: ServeConfig, trust_code: bool) -> None:  # fmt: skip
        self.repository = ModelRepository(sources, trust_code=trust_code)
        self.config = config
        self.runner = RayRunner({(s.name, s.version): h for s, h in zip(sources, handles)},
                                max_batch=config.max_batch)  # fmt: skip

    def __serve_build_asgi_app__(self) -> Any:
        """The ASGI app Ray Serve runs in this replica (with its lifespan)."""
        return create_app(self.repository, self.config, runner=self.runner)


def build_application(sources: list[ModelSource], *, config: ServeConfig, trust_code: bool,
                      replicas: int, max_replicas: int | None) -> serve.Application:  # fmt: skip
    """The Serve application: the ingress bound to one deployment per model version.

    Args:
        sources: the model versions.
        config: batching (``max_batch``, ``max_delay_ms``) and limits.
        trust_code: allow ``.pt2`` archives.
        replicas: replicas of each model (with ``max_replicas``: the fewest).
        max_replicas: None (a fixed count), or the most replicas Serve's autoscaler may
            start for each model.
    """
    scaling: dict[str, Any] = {"num_replicas": replicas}
    if max_replicas is not None:
        scaling = {"autoscaling_config": {"min_replicas": replicas, "initial_replicas": replicas,
                                          "max_replicas": max_replicas}}  # fmt: skip
    # replicas are placed by count: a CPU reservation each would not fit a laptop's cores
    actor = {"num_cpus": 0}
    model = serve.deployment(ModelReplica, max_ongoing_requests=4 * config.max_batch,
                             ray_actor_options=actor, **scaling)  # fmt: skip
    handles = [
        model.options(name=f"model-{s.name}-{s.version}").bind(
            s, trust_code=trust_code, max_batch=config.max_batch,
            max_delay_s=config.max_delay_ms / 1000)
        for s in sources
    ]
    ingress = serve.deployment(serve.ingress()(Ingress), name="rlpol", num_replicas=1,
                               ray_actor_options=actor, max_ongoing_requests=1000)  # fmt: skip
    return ingress.bind(sources, handles, config=config, trust_code=trust_code)
