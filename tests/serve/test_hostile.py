"""Bad input never crashes or wedges the server: a 4xx ``{"error": ...}`` naming the problem."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import ZOO_BODY_TIMEOUT_S, ZOO_MAX_BODY_BYTES, read_response

INFER = "/v2/models/qvalue_onehot/infer"


def _input(**overrides) -> dict:
    return {"name": "observation", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3],
            **overrides}  # fmt: skip


def _body(*inputs, **fields) -> bytes:
    return json.dumps({"inputs": list(inputs) or [_input()], **fields}).encode()


OBS = np.arange(4, dtype=np.float32).tobytes()


def _binary_header(size: int) -> dict:
    return {"Inference-Header-Content-Length": str(len(_body(_binary_input(size))))}


def _binary_input(size: int) -> dict:
    return {"name": "observation", "shape": [1, 4], "datatype": "FP32",
            "parameters": {"binary_data_size": size}}  # fmt: skip


def _binary(size: int, data: bytes) -> bytes:
    return _body(_binary_input(size)) + data


HOSTILE = [
    # (id, path, body, headers, status, words in the error)
    ("malformed-json", INFER, b'{"inputs": [', {}, 400, "not valid JSON"),
    ("not-an-object", INFER, b"[1, 2]", {}, 400, "expected an object"),
    ("bad-utf8", INFER, b'{"inputs": "\xff"}', {}, 400, "not valid JSON"),
    ("no-inputs", INFER, b"{}", {}, 400, 'no "inputs"'),
    ("unknown-model", "/v2/models/nope/infer", _body(), {}, 404, "unknown model 'nope'"),
    ("unknown-version", "/v2/models/qvalue_onehot/versions/7/infer", _body(), {}, 404,
     "no version '7'"),
    ("unknown-input", INFER, _body(_input(), _input(name="obs")), {}, 400, "no input 'obs'"),
    ("missing-input", INFER, _body(_input(name="noise.x")), {}, 400, "no input"),
    ("wrong-shape", INFER, _body(_input(shape=[1, 5], data=[0] * 5)), {}, 400,
     "has shape [1, 5]; expected [batch, 4]"),
    ("short-data", INFER, _body(_input(data=[0, 1, 2])), {}, 400, "has 3 values"),
    ("long-data", INFER, _body(_input(data=[0] * 5)), {}, 400, "has 5 values"),
    ("ragged-data", INFER, _body(_input(data=[[0, 1], [2]])), {}, 400, "lists of equal lengths"),
    ("wrong-datatype", INFER, _body(_input(datatype="INT64")), {}, 400,
     "datatype 'INT64'; expected 'FP32'"),
    ("non-numeric", INFER, _body(_input(data=["a", "b", "c", "d"])), {}, 400, "not all numbers"),
    ("null-data", INFER, _body(_input(data=[None] * 4)), {}, 400, "not all numbers"),
    ("data-not-a-list", INFER, _body(_input(data="0123")), {}, 400, "expected a list"),
    ("negative-batch", INFER, _body(_input(shape=[-1, 4])), {}, 400, "batch >= 1"),
    ("zero-batch", INFER, _body(_input(shape=[0, 4], data=[])), {}, 400, "batch >= 1"),
    ("huge-batch", INFER, _body(_input(shape=[10**12, 4])), {}, 400, "has 4 values"),
    ("float-shape", INFER, _body(_input(shape=[1.0, 4])), {}, 400, "has shape"),
    ("unknown-output", INFER, _body(outputs=[{"name": "nope"}]), {}, 400, "does not have"),
    ("bad-parameters", INFER, _body(parameters=[1]), {}, 400, "expected a JSON object"),
    ("bad-seed", INFER, _body(parameters={"seed": -1}), {}, 400, "parameter 'seed'"),
    ("sequence-for-stateless", INFER, _body(parameters={"sequence_id": 3, "sequence_start": True}),
     {}, 400, "is stateless"),
    ("binary-size-mismatch", INFER, _binary(12, OBS[:12]), _binary_header(12), 400,
     "binary_data_size 12 but its shape [1, 4] of FP32 needs 16 bytes"),
    ("binary-data-short", INFER, _binary(16, OBS[:8]), _binary_header(16), 400,
     "only 8 bytes of binary data are left"),
    ("header-length-beyond-body", INFER, _body(), {"Inference-Header-Content-Length": "99999"},
     400, "Inference-Header-Content-Length"),
    ("header-length-not-a-number", INFER, _body(), {"Inference-Header-Content-Length": "x"},
     400, "Inference-Header-Content-Length"),
    ("unclaimed-binary", INFER, _body() + b"\0" * 8,
     {"Inference-Header-Content-Length": str(len(_body()))}, 400, "no input's binary_data_size"),
    ("body-over-limit", INFER, b" " * (ZOO_MAX_BODY_BYTES + 1), {}, 413, "at most"),
    ("unknown-route", "/v2/nope", b"", {}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "words"),
                         [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])  # fmt: skip
def test_hostile_request_gets_a_4xx_json_error(zoo_server, path, body, headers, status, words):
    got, answer = zoo_server.request("POST", path, body, headers)
    assert got == status, answer
    error = json.loads(answer)["error"]
    assert words in error, error
    assert zoo_server.is_ready()


def test_get_on_infer_is_405(zoo_server):
    status, answer = zoo_server.request("GET", INFER)
    assert status == 405 and "error" in json.loads(answer)


def test_tritonclient_sees_the_error_message(zoo_server):
    client = zoo_server.client()
    tensor = httpclient.InferInput("observation", [2, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"has shape \[2, 3\]; expected \[batch, 4\]"):
        client.infer("qvalue_onehot", [tensor])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("nope")


def _raw(server, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(data)
    return sock


def _head(length: int) -> bytes:
    return (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


def test_slow_client_gets_408_and_others_are_served_meanwhile(zoo_server):
    body = _body()
    sock = _raw(zoo_server, _head(len(body)) + body[:10])
    try:
        started = time.monotonic()
        assert zoo_server.post_json(INFER, json.loads(body))[0] == 200  # not blocked by it
        answer = read_response(sock).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within" in answer
        assert time.monotonic() - started < ZOO_BODY_TIMEOUT_S + 10
    finally:
        sock.close()
    assert zoo_server.is_ready()


def test_vanished_client_leaves_the_server_ready(zoo_server):
    body = _body()
    for cut in (0, 10, len(body) - 1):
        _raw(zoo_server, _head(len(body)) + body[:cut]).close()
    sock = _raw(zoo_server, _head(len(body)) + body)
    sock.close()  # gone before the answer
    _raw(zoo_server, b"POST /v2/models/qv HTTP/1.1\r\nContent-Le").close()  # half a header
    time.sleep(0.2)
    assert zoo_server.is_ready()
    assert zoo_server.post_json(INFER, json.loads(body))[0] == 200
