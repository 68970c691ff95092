"""Starting and stopping: model repositories, TorchScript on demand, SIGTERM drains."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time

import numpy as np
import pytest

from rlpol import load_policy
from tests.serve.conftest import ServerProcess, assert_outputs_close, in_process, read_response


@pytest.fixture(scope="module")
def repository(tmp_path_factory, artifacts):
    """``DIR/cartpole/{1,2}/model.onnx`` (two policies) and ``DIR/pendulum/3/model.pt``."""
    root = tmp_path_factory.mktemp("repository")
    files = {
        ("cartpole", "1"): artifacts.get("qvalue_onehot", ".onnx", "deterministic")[2],
        ("cartpole", "2"): artifacts.get("onehot_categorical", ".onnx", "deterministic")[2],
        ("pendulum", "3"): artifacts.get("actor", ".pt", "deterministic")[2],
    }
    for (name, version), path in files.items():
        (root / name / version).mkdir(parents=True)
        shutil.copy(path, root / name / version / f"model{path.suffix}")
    (root / "cartpole" / "notes").mkdir()  # not a version: ignored, as Triton does
    return root, files


def test_torchscript_is_served_only_with_trust_code(server_factory, repository):
    root, _ = repository
    with pytest.raises(RuntimeError, match=r"TorchScript archive.*--trust-code"):
        server_factory(root)


def test_model_repository_with_versions_and_torchscript(server_factory, repository):
    root, files = repository
    server = server_factory(root, "--trust-code")
    client = server.client()
    assert client.get_model_metadata("cartpole")["versions"] == ["1", "2"]
    obs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for version in ("1", "2", None):
        path = files["cartpole", version or "2"]  # no version: the highest
        where = "" if version is None else f"/versions/{version}"
        status, answer = server.post_json(
            f"/v2/models/cartpole{where}/infer",
            {"inputs": [{"name": "observation", "shape": [3, 4], "datatype": "FP32",
                         "data": obs.tolist()}]},  # nested lists are row-major data too
        )  # fmt: skip
        assert status == 200, answer
        served = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
        expected = in_process(load_policy(path), {"observation": obs})
        assert_outputs_close({k: v.astype(expected[k].dtype) for k, v in served.items()}, expected)
    obs = np.ones((2, 3), np.float32)
    status, answer = server.post_json("/v2/models/pendulum/infer", {"inputs": [
        {"name": "observation", "shape": [2, 3], "datatype": "FP32", "data": obs.ravel().tolist()}]})
    assert status == 200, answer
    expected = in_process(load_policy(files["pendulum", "3"], trust_code=True), {"observation": obs})
    np.testing.assert_allclose(np.array(answer["outputs"][0]["data"]).reshape(2, 1),
                               expected["action"], rtol=1e-5, atol=1e-5)  # fmt: skip
    assert "libtorch" in open(f"/proc/{server.process.pid}/maps").read()  # loaded on demand


def test_bad_arguments_exit_1_with_a_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    for args, words in ([tmp_path / "missing.onnx"], "no such file"), ([tmp_path / "empty"], "holds no model"):
        with pytest.raises(RuntimeError, match=f"exited with 1:(.|\n)*Error: .*{words}"):
            ServerProcess([str(a) for a in args])


def test_sigterm_drains_in_flight_requests_and_exits_0(artifacts):
    path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")[2]
    server = ServerProcess([f"q={path}"])
    try:
        body = json.dumps({"inputs": [{"name": "observation", "shape": [1, 4], "datatype": "FP32",
                                       "data": [0.1, 0.2, 0.3, 0.4]}]}).encode()  # fmt: skip
        head = (f"POST /v2/models/q/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                "\r\n\r\n").encode()  # fmt: skip
        in_flight = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(head + body[:20])  # the request is in flight: half its body sent
            in_flight.append(sock)
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None  # still draining
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection(("127.0.0.1", server.port), timeout=5).sendall(head + body)
            raise ConnectionRefusedError  # (accepted but would not be served)
        expected = in_process(load_policy(path), {"observation": np.array([[0.1, 0.2, 0.3, 0.4]],
                                                                          np.float32)})  # fmt: skip
        for sock in in_flight:
            sock.sendall(body[20:])
            answer = read_response(sock)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            outputs = json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"]
            served = {o["name"]: o["data"] for o in outputs}
            np.testing.assert_allclose(served["action_value"], expected["action_value"].ravel(),
                                       rtol=1e-5)  # fmt: skip
        assert server.process.wait(30) == 0
    finally:
        server.stop()
