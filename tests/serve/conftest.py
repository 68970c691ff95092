"""A real ``rlpol serve`` in a subprocess on a free loopback port, always stopped.

:func:`start_server` launches ``python -m rlpol serve ...``, waits (bounded) for
``/v2/health/ready`` and returns a :class:`ServerProcess`; the ``server_factory`` fixture
stops every server it started (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

pytest.importorskip("tritonclient.http")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A running server: its process, port and how long it took to become ready."""

    def __init__(self, args: list[str], *, log: Path | None = None) -> None:
        """Start ``rlpol serve ARGS --port PORT``; its output goes to ``log`` (a file the test
        can read while it runs) or to a pipe read when it exits."""
        self.port = free_port()
        self.log = log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        started = time.monotonic()
        self._output = open(log, "wb") if log is not None else subprocess.PIPE
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rlpol", "serve", *args, "--port", str(self.port)],
            env=env, cwd=ROOT, stdout=self._output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rlpol serve exited with {self.process.returncode}:\n"
                                   f"{self.output()}")  # fmt: skip
            try:
                if self.request("GET", "/v2/health/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - started > START_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"rlpol serve was not ready within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        self.ready_after_s = time.monotonic() - started

    def output(self) -> str:
        """What the server printed: so far (with a log file), else all of it (once exited)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return self.process.stdout.read().decode()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(self.url, connection_timeout=30,
                                                network_timeout=30)  # fmt: skip

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, *, timeout: float = 30) -> tuple[int, bytes]:  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def post_json(self, path: str, document: object) -> tuple[int, dict]:
        status, body = self.request("POST", path, json.dumps(document).encode(),
                                    {"Content-Type": "application/json"})  # fmt: skip
        return status, json.loads(body)

    def is_ready(self) -> bool:
        return self.request("GET", "/v2/health/ready", timeout=10)[0] == 200

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[1].decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        else:
            self._output.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def server_factory():
    started: list[ServerProcess] = []

    def start(*args: str, log: Path | None = None) -> ServerProcess:
        server = ServerProcess([str(arg) for arg in args], log=log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def in_process(policy, inputs: dict[str, np.ndarray], *, seed: int | None = None) -> dict:
    """``policy`` (an ExportedPolicy) on ``inputs`` by graph name; outputs by graph name.

    With ``seed``, torch's generator is seeded first, so the noise it draws is
    :func:`torch_noise`'s for the same seed.
    """
    meta = policy.metadata
    rows = len(next(iter(inputs.values())))
    td = TensorDict({info.key: torch.from_numpy(inputs[info.name].copy())
                     for info in meta.inputs}, batch_size=[rows])  # fmt: skip
    if seed is not None:
        torch.manual_seed(seed)
    out = policy(td)
    return {info.name: out.get(info.key).numpy() for info in meta.outputs}


def torch_noise(metadata, rows: int, seed: int) -> dict[str, np.ndarray]:
    """The noise inputs ``load_policy`` draws after ``torch.manual_seed(seed)``, in order."""
    from rlpol.toolkit.noise import NoiseSpec, draw

    torch.manual_seed(seed)
    return {n.name: draw(NoiseSpec(n.draw, n.distribution, n.shape), (rows,)).numpy()
            for n in metadata.noise}  # fmt: skip


def engine_models(artifacts, recurrent_artifacts, stateless: dict[str, str]) -> dict[str, Path]:
    """The models an engine test serves: ``stateless`` (case name: exploration) as ONNX, plus
    the stateful LSTM (``"lstm"``, ``random``), by model name."""
    paths = {name: artifacts.get(name, ".onnx", exploration)[2]
             for name, exploration in stateless.items()}  # fmt: skip
    paths["lstm"] = recurrent_artifacts.get("lstm", 1, ".onnx", "random")[1]
    return paths


def session_steps(policy, steps: int, starts: set[int]):
    """The in-process side of a sequence test: ``policy``'s batch-1 session over ``steps``
    random observations, reset at each step in ``starts`` but 0.

    Yields:
        ``(step, observation [1, 4] float32, noise by graph name, expected outputs)``; the
        noise is what the session drew (:func:`torch_noise` with ``seed=step``), for the
        server to be given.
    """
    session = policy.session(batch=1)
    rng = np.random.default_rng(0)
    for step in range(steps):
        obs = rng.standard_normal((1, 4)).astype(np.float32)
        noise = torch_noise(policy.metadata, 1, seed=step)
        if step in starts - {0}:
            session.reset()
        torch.manual_seed(step)  # the session draws the same noise
        yield step, obs, noise, session.step({"observation": obs})


def run_concurrently(work, plans: list[tuple], *, timeout_s: float) -> None:
    """``work(*plan)`` for every plan at once, one thread each; fails with the threads' first
    failures (an assertion in ``work`` included), or when a thread is still running after
    ``timeout_s``."""
    failures: list[BaseException] = []

    def guarded(*plan) -> None:
        try:
            work(*plan)
        except BaseException as error:  # reported by the calling thread
            failures.append(error)

    threads = [threading.Thread(target=guarded, args=plan) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not failures, failures[:3]
    assert not any(thread.is_alive() for thread in threads)


def assert_outputs_close(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, want in expected.items():
        got = actual[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


ZOO_SEQUENCE_TIMEOUT_S = 2.0
ZOO_BODY_TIMEOUT_S = 2.0
ZOO_MAX_BODY_BYTES = 2**20


@pytest.fixture(scope="session")
def zoo(artifacts, recurrent_artifacts):
    """Every zoo policy kind as ONNX (``random`` where it draws noise) plus an LSTM.

    Returns:
        ``{model name: path}``; model names are the policy case names and ``"lstm"``.
    """
    from rlpol.testing import POLICY_CASES

    paths = {}
    for case in POLICY_CASES:
        exploration = "random" if case.stochastic else "deterministic"
        paths[case.name] = artifacts.get(case.name, ".onnx", exploration)[2]
    paths["lstm"] = recurrent_artifacts.get("lstm", 1, ".onnx", "random")[1]
    return paths


@pytest.fixture(scope="session")
def zoo_server(server_factory, zoo):
    """One server for the whole zoo (ONNX only, so torch-free), with short limits."""
    return server_factory(
        *(f"{name}={path}" for name, path in zoo.items()),
        "--sequence-timeout-s", ZOO_SEQUENCE_TIMEOUT_S, "--body-timeout-s", ZOO_BODY_TIMEOUT_S,
        "--max-body-bytes", ZOO_MAX_BODY_BYTES,
    )  # fmt: skip


@pytest.fixture(scope="session")
def zoo_policies(zoo):
    """``{model name: load_policy(path)}`` for the in-process side."""
    from rlpol import load_policy

    return {name: load_policy(path) for name, path in zoo.items()}


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response read from ``sock``: its head, then Content-Length bytes (or
    what arrives until the server closes)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0
