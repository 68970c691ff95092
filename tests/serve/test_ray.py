"""``rlpol serve --engine ray``: a real local Ray Serve, 2 replicas per model, tritonclient."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from rlpol import load_policy
from rlpol.errors import ServeError
from tests.serve.conftest import (
    ServerProcess,
    assert_outputs_close,
    engine_models,
    in_process,
    run_concurrently,
    session_steps,
    torch_noise,
)

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")
pytestmark = pytest.mark.slow

REPLICAS = 2
MAX_REPLICAS = 3  # autoscaling between 2 and 3; Serve waits 30 s of load before adding one
THREADS = 8
STATELESS = {"qvalue_onehot": "deterministic", "normal": "random"}


@pytest.fixture(scope="module")
def models(artifacts, recurrent_artifacts) -> dict[str, Path]:
    """A deterministic, a stochastic and a stateful (LSTM) ONNX artifact, by model name."""
    return engine_models(artifacts, recurrent_artifacts, STATELESS)


@pytest.fixture(scope="module")
def policies(models):
    return {name: load_policy(path) for name, path in models.items()}


@pytest.fixture(scope="module")
def ray_server(models, tmp_path_factory):
    """One Ray Serve server for the module (the SIGTERM test, last, stops it)."""
    log = tmp_path_factory.mktemp("ray") / "serve.log"
    server = ServerProcess([*(f"{name}={path}" for name, path in models.items()),
                            "--engine", "ray", "--replicas", str(REPLICAS),
                            "--max-replicas", str(MAX_REPLICAS)], log=log)  # fmt: skip
    yield server
    server.stop()


def _infer(client, model: str, inputs: dict[str, np.ndarray], **options) -> tuple[dict, dict]:
    """The outputs by name, and the response's parameters."""
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors, **options)
    response = result.get_response()
    outputs = {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}
    return outputs, response.get("parameters", {})


def _plan(policy, thread: int, steps: int) -> list[tuple[dict, dict]]:
    """``steps`` (request inputs with their noise, the in-process outputs) of 1-5 rows."""
    requests = []
    for step in range(steps):
        rows = 1 + (thread * 3 + step) % 5
        rng = np.random.default_rng(100 * thread + step)
        inputs = {info.name: rng.standard_normal((rows, *info.shape)).astype(np.float32)
                  for info in policy.metadata.inputs}  # fmt: skip
        noise = torch_noise(policy.metadata, rows, seed=step)
        requests.append(({**inputs, **noise}, in_process(policy, inputs, seed=step)))
    return requests


def test_eight_threads_get_the_in_process_answers_from_both_replicas(ray_server, policies):
    names = list(STATELESS)
    plans = [(names[t % len(names)], _plan(policies[names[t % len(names)]], t, 6))
             for t in range(THREADS)]  # fmt: skip
    replicas: dict[str, set[str]] = defaultdict(set)

    def client_thread(name: str, requests: list) -> None:
        client = ray_server.client()
        for inputs, expected in requests:
            outputs, parameters = _infer(client, name, inputs)
            assert_outputs_close(outputs, expected)
            assert parameters["rlpol_batch_rows"] >= len(next(iter(inputs.values())))
            replicas[name].add(parameters["rlpol_replica"])

    run_concurrently(client_thread, plans, timeout_s=60)
    for name in names:
        assert REPLICAS <= len(replicas[name]) <= MAX_REPLICAS, (name, replicas[name])


def test_a_request_over_max_batch_runs_alone(ray_server, policies):
    policy = policies["qvalue_onehot"]
    rows = 64 + 6  # the default --max-batch is 64: @serve.batch would refuse the request
    obs = np.random.default_rng(5).standard_normal((rows, 4)).astype(np.float32)
    outputs, parameters = _infer(ray_server.client(), "qvalue_onehot", {"observation": obs})
    assert_outputs_close(outputs, in_process(policy, {"observation": obs}))
    assert parameters["rlpol_batch_rows"] == rows


def test_metadata_and_config_equal_the_embedded_servers(ray_server, server_factory, models):
    embedded = server_factory(*(f"{name}={path}" for name, path in models.items())).client()
    served = ray_server.client()
    assert served.get_server_metadata() == embedded.get_server_metadata()
    for name in models:
        assert served.get_model_metadata(name) == embedded.get_model_metadata(name)
        assert served.get_model_config(name) == embedded.get_model_config(name)
        assert served.is_model_ready(name, "1")


def test_a_sequence_across_a_reset_equals_the_session(ray_server, policies):
    policy = policies["lstm"]
    client = ray_server.client()
    starts = {0, 4}
    for step, obs, noise, expected in session_steps(policy, 8, starts):
        served, _ = _infer(client, "lstm", {"observation": obs, **noise}, sequence_id=42,
                           sequence_start=step in starts)  # fmt: skip
        for name, want in expected.items():
            np.testing.assert_allclose(served[name], want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} at step {step}")  # fmt: skip
    assert "rlpol_live_sequences{" in ray_server.metrics()


def test_a_hostile_request_gets_a_json_4xx_and_the_server_stays_ready(ray_server):
    bad_shape = {"inputs": [{"name": "observation", "shape": [2, 3], "datatype": "FP32",
                             "data": [0.0] * 6}]}  # fmt: skip
    status, answer = ray_server.post_json("/v2/models/qvalue_onehot/infer", bad_shape)
    assert status == 400 and "observation" in answer["error"], answer
    status, answer = ray_server.post_json("/v2/models/nope/infer", bad_shape)
    assert status == 404 and "unknown model 'nope'" in answer["error"], answer
    status, body = ray_server.request("POST", "/v2/models/qvalue_onehot/infer", b"{not json")
    assert status == 400 and "error" in json.loads(body)
    assert ray_server.is_ready()


_DEPLOYMENT_CONFIGS = """
import json, sys, ray
from ray.serve.context import _get_global_client
ray.init(address=sys.argv[1], log_to_driver=False)
details = _get_global_client().get_serve_details()["applications"]["rlpol"]["deployments"]
print(json.dumps({name: d["deployment_config"] for name, d in details.items()}))
"""


def test_the_autoscaling_option_reaches_the_deployments(ray_server, models):
    address = re.search(r"local Ray cluster at (\S+)", ray_server.output()).group(1)
    # a driver joining by address uses the cluster's token (~/.ray/auth_token) only when asked
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    probe = subprocess.run([sys.executable, "-c", _DEPLOYMENT_CONFIGS, address], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-2000:]
    configs = json.loads(probe.stdout.strip().splitlines()[-1])
    assert configs["rlpol"]["num_replicas"] == 1  # the ingress, which holds the sequences
    for name in models:
        scaling = configs[f"model-{name}-1"]["autoscaling_config"]
        assert (scaling["min_replicas"], scaling["max_replicas"]) == (REPLICAS, MAX_REPLICAS)


def test_max_replicas_below_replicas_exits_1_with_a_sentence(models):
    with pytest.raises(RuntimeError, match=r"exited with 1:(.|\n)*--max-replicas 1 is below "
                                           r"--replicas 2"):  # fmt: skip
        ServerProcess([str(models["normal"]), "--engine", "ray", "--replicas", "2",
                       "--max-replicas", "1"])  # fmt: skip


@pytest.mark.parametrize("option", [["--max-replicas", "2"], ["--replicas", "2"],
                                    ["--address", "127.0.0.1:6379"]])  # fmt: skip
def test_ray_options_need_engine_ray(models, option):
    from click.testing import CliRunner

    from rlpol.cli import main

    result = CliRunner().invoke(main, ["serve", str(models["normal"]), *option])
    assert result.exit_code == 1
    assert f"{option[0]} is an option of --engine ray, not of --engine embedded" in result.output


def test_a_port_in_use_is_refused_before_a_cluster_starts(models):
    from rlpol.serve.engines import EngineOptions
    from rlpol.serve.engines.ray import serve

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=rf"127.0.0.1:{port} \(--port\) is not free .*; "
                                             "stop what listens there or pass another --port"):  # fmt: skip
            serve([str(models["normal"])], host="127.0.0.1", port=port, config=None,
                  trust_code=False, options=EngineOptions())  # fmt: skip
    assert not ray.is_initialized()


def _processes() -> dict[int, tuple[int, str, str]]:
    """Every live process: pid -> (parent pid, state, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], command)
    return table


def _started_by(pid: int, session: str) -> set[int]:
    """``pid``'s descendants, and the processes (Ray daemons) naming its Ray session dir."""
    table = _processes()
    found, frontier = set(), {pid}
    while frontier:
        found |= frontier
        frontier = {child for child, (parent, _, _) in table.items() if parent in frontier} - found
    found |= {p for p, (_, _, command) in table.items() if session in command}
    return found - {pid}


def _running(pids: set[int]) -> set[int]:
    """The ones still running (a zombie has exited; the container's init may not reap it)."""
    table = _processes()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


def test_sigterm_stops_everything_it_started_and_exits_0(ray_server):  # last: stops the server
    session = re.search(r"\(logs: (\S+)\)", ray_server.output()).group(1)
    started = _started_by(ray_server.process.pid, session)
    table = _processes()
    commands = " ".join(table[pid][2] for pid in started if pid in table)
    assert "raylet" in commands and "gcs_server" in commands and len(started) >= 5, started
    assert ray_server.stop() == 0, ray_server.output()[-3000:]
    deadline = time.monotonic() + 15
    while _running(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    table = _processes()
    assert not _running(started), [table[pid][2][:120] for pid in _running(started)]
