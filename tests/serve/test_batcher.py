"""The dynamic batcher's choice of thread: small graph calls run on the event loop's thread
(a real thread pool that counts what it is handed, a real ONNX model)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rlpol import load_policy
from rlpol.serve.batcher import Batcher, Job
from rlpol.serve.metrics import Metrics
from rlpol.serve.model import ServedModel
from tests.serve.conftest import assert_outputs_close, in_process


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the calls handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


async def _serve(model: ServedModel, observations: list[np.ndarray], *, inline_below_s: float,
                 concurrent: bool) -> tuple[list[Job], list[list[np.ndarray]], int]:  # fmt: skip
    """Each observation's job and outputs through a Batcher, and how many calls went to a
    thread."""
    executor = CountingExecutor()
    batcher = Batcher(model, max_batch=8, max_delay_s=0.002, executor=executor,
                      metrics=Metrics().model(model.name, model.version),
                      inline_below_s=inline_below_s)  # fmt: skip
    jobs = [Job({"observation": obs}, len(obs)) for obs in observations]
    if concurrent:
        outputs = await asyncio.gather(*(batcher.submit(job) for job in jobs))
    else:
        outputs = [await batcher.submit(job) for job in jobs]
    await batcher.close()
    executor.shutdown()
    return jobs, outputs, executor.calls


def _assert_answers(model: ServedModel, policy, observations: list[np.ndarray],
                    outputs: list[list[np.ndarray]]) -> None:  # fmt: skip
    """Each observation's outputs equal the in-process policy's."""
    for obs, got in zip(observations, outputs, strict=True):
        expected = in_process(policy, {"observation": obs})
        assert_outputs_close(dict(zip((slot.name for slot in model.outputs), got)), expected)


@pytest.fixture(scope="module")
def cartpole(artifacts):
    path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")[2]
    return ServedModel("cartpole", "1", path), load_policy(path)


@pytest.mark.parametrize("concurrent", [False, True])
@pytest.mark.parametrize(("inline_below_s", "on_threads"), [(0.0, "all"), (60.0, "first")])
def test_graph_calls_run_inline_below_the_limit_with_the_same_answers(cartpole, inline_below_s,
                                                                      on_threads, concurrent):  # fmt: skip
    model, policy = cartpole
    rng = np.random.default_rng(0)
    observations = [rng.standard_normal((rows, 4)).astype(np.float32) for rows in (1, 3, 1, 2, 1)]
    _, outputs, calls = asyncio.run(_serve(model, observations, inline_below_s=inline_below_s,
                                           concurrent=concurrent))  # fmt: skip
    if on_threads == "first":
        assert calls == 1  # the first call measures the graph; the rest run on the loop
    elif concurrent:
        assert 1 <= calls <= len(observations)  # batched: fewer calls than requests
    else:
        assert calls == len(observations)  # one by one: each its own call, each on a thread
    _assert_answers(model, policy, observations, outputs)


def test_the_choice_of_thread_reads_cpu_time_not_a_wait_for_the_gil(cartpole):
    """A thread spinning in Python holds the GIL while the graph calls run: each call then
    lasts milliseconds of wall time waiting for it (the switch interval is 5 ms), but well
    under a millisecond of its thread's CPU time, so after the first call every call still
    runs inline (wall time would send each to a thread)."""
    model, policy = cartpole
    rng = np.random.default_rng(1)
    observations = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(6)]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        _, outputs, calls = asyncio.run(_serve(model, observations, inline_below_s=2e-3,
                                               concurrent=False))  # fmt: skip
    finally:
        stop.set()
        spinner.join()
    assert calls == 1
    _assert_answers(model, policy, observations, outputs)


def test_a_lone_client_runs_at_once_after_a_queued_call(cartpole):
    """A client that sends each request after the last one's answer: after the first call
    (queued, to measure the graph on a thread) every job runs at once in ``submit``, never
    queued. A queued job's future is resolved by its batch; one run at once leaves it unset.
    The first batch's task is still in the batcher's task set when its answer wakes the
    client (done callbacks run a turn of the loop later): it must not count as running."""
    model, policy = cartpole
    rng = np.random.default_rng(2)
    observations = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(6)]
    jobs, outputs, calls = asyncio.run(_serve(model, observations, inline_below_s=60.0,
                                              concurrent=False))  # fmt: skip
    assert calls == 1
    assert [job.future.done() for job in jobs] == [True] + [False] * 5
    _assert_answers(model, policy, observations, outputs)
