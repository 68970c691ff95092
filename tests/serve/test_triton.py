"""``rlpol serve --engine triton``: a real tritonserver through PyTriton, queried by tritonclient.

One server for the module (a deterministic, a stochastic and a recurrent artifact); its last
test stops it with SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytriton")

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from rlpol import load_policy
from tests.serve.conftest import (
    START_TIMEOUT_S,
    assert_outputs_close,
    engine_models,
    free_port,
    in_process,
    run_concurrently,
    session_steps,
    torch_noise,
)

pytestmark = pytest.mark.slow

STATELESS = {"actor": "deterministic", "qvalue_categorical_egreedy": "random"}
THREADS = 8
SEQUENCE_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def paths(artifacts, recurrent_artifacts) -> dict[str, Path]:
    return engine_models(artifacts, recurrent_artifacts, STATELESS)


@pytest.fixture(scope="module")
def policies(paths) -> dict:
    return {name: load_policy(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def triton_server(server_factory, paths):
    """``rlpol serve --engine triton`` on free ports, every model loaded."""
    grpc_port = free_port()
    server = server_factory(
        *(f"{name}={path}" for name, path in paths.items()), "--engine", "triton",
        "--grpc-port", grpc_port, "--metrics-port", free_port(),
        "--sequence-timeout-s", SEQUENCE_TIMEOUT_S,
    )  # fmt: skip
    client = server.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(client.is_model_ready(name) for name in paths):  # Triton loads them one by one
        assert server.process.poll() is None and time.monotonic() < deadline, "models not loaded"
        time.sleep(0.2)
    server.grpc_url = f"127.0.0.1:{grpc_port}"
    return server


def _triton_shape(array: np.ndarray) -> np.ndarray:
    """A per-row scalar ``[rows]`` as Triton takes it: ``[rows, 1]``."""
    return array.reshape(len(array), -1) if array.ndim == 1 else array


def _infer(module, client, model: str, inputs: dict[str, np.ndarray], **options) -> dict:
    tensors = []
    for name, array in inputs.items():
        array = _triton_shape(array)
        tensor = module.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors, **options)
    response = result.get_response(as_json=True) if module is grpcclient else result.get_response()
    return {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}


def _expected(policy, inputs: dict[str, np.ndarray], seed: int) -> dict:
    return {name: _triton_shape(array) for name, array in in_process(policy, inputs, seed=seed).items()}


def _observations(policy, rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {info.name: rng.standard_normal((rows, *info.shape)).astype(np.float32)
            for info in policy.metadata.inputs}  # fmt: skip


@pytest.mark.parametrize("name", list(STATELESS))
def test_eight_threads_get_the_in_process_answers(triton_server, policies, name):
    policy = policies[name]
    cases = []  # (inputs and noise, expected) per thread: torch's generator is not per thread
    for index in range(THREADS):
        calls = []
        for call in range(4):
            seed = 10 * index + call
            inputs = _observations(policy, 1 + (index + call) % 3, seed)
            noise = torch_noise(policy.metadata, len(next(iter(inputs.values()))), seed)
            calls.append(({**inputs, **noise}, _expected(policy, inputs, seed)))
        cases.append(calls)

    def worker(calls) -> None:
        client = triton_server.client()
        for feed, expected in calls:
            assert_outputs_close(_infer(httpclient, client, name, feed), expected)

    run_concurrently(worker, [(calls,) for calls in cases], timeout_s=60)


def test_the_seed_parameter_makes_the_server_drawn_noise_repeatable(triton_server, policies):
    client = triton_server.client()
    inputs = _observations(policies["qvalue_categorical_egreedy"], 64, seed=3)
    first, again = (_infer(httpclient, client, "qvalue_categorical_egreedy", inputs,
                           parameters={"seed": 7}) for _ in range(2))  # fmt: skip
    other = _infer(httpclient, client, "qvalue_categorical_egreedy", inputs, parameters={"seed": 8})
    np.testing.assert_array_equal(first["action"], again["action"])
    assert not np.array_equal(first["action"], other["action"])  # eps 0.3 over 64 rows


def test_model_config_shows_the_batchers(triton_server):
    client = triton_server.client()
    config = client.get_model_config("actor")
    assert config["max_batch_size"] == 64
    assert config["dynamic_batching"]["preferred_batch_size"] == [32, 64]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    stateful = client.get_model_config("lstm")
    assert "dynamic_batching" not in stateful
    assert stateful["sequence_batching"]["oldest"]["preferred_batch_size"] == [32, 64]
    assert stateful["sequence_batching"]["max_sequence_idle_microseconds"] == SEQUENCE_TIMEOUT_S * 10**6
    assert {c["name"] for c in stateful["sequence_batching"]["control_input"]} == {
        "rlpol.sequence_start", "rlpol.sequence_end", "rlpol.sequence_id"}


def test_grpc_answers_too(triton_server, policies):
    policy = policies["actor"]
    inputs = _observations(policy, 5, seed=4)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    served = _infer(grpcclient, client, "actor", inputs)
    assert_outputs_close(served, _expected(policy, inputs, seed=0))


def test_sequence_across_a_reset_equals_the_session(triton_server, policies):
    policy = policies["lstm"]
    client, other = triton_server.client(), triton_server.client()
    starts = {0, 4}
    for step, obs, noise, expected in session_steps(policy, 8, starts):
        served = _infer(httpclient, client, "lstm", {"observation": obs, **noise},
                        sequence_id=42, sequence_start=step in starts,
                        sequence_end=step == 7)  # fmt: skip
        # another sequence, batched with it, never disturbs its state
        _infer(httpclient, other, "lstm", {"observation": -obs}, sequence_id=43,
               sequence_start=step == 0, sequence_end=step == 7)  # fmt: skip
        for name, want in expected.items():
            np.testing.assert_allclose(served[name], _triton_shape(want), rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} at step {step}")  # fmt: skip


def test_a_taken_port_is_refused_before_triton_starts(paths):
    from click.testing import CliRunner

    from rlpol.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(paths["actor"]), "--engine", "triton",
                                           "--port", str(free_port()), "--grpc-port", str(port)])  # fmt: skip
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} (--grpc-port) is not free" in result.output


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_triton_and_every_process_it_started(triton_server):
    started = _descendants(triton_server.process.pid)
    commands = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] for pid in started}
    assert any(command.endswith(b"tritonserver") for command in commands), commands
    assert any(command.endswith(b"triton_python_backend_stub") for command in commands), commands
    triton_server.process.send_signal(signal.SIGTERM)
    assert triton_server.process.wait(60) == 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if _alive(pid)]
