"""``rlpol serve`` against tritonclient: metadata, binary and JSON infer, noise, batching."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from rlpol.artifact import parse_metadata, read_metadata
from rlpol.testing import POLICY_CASES
from tests.serve.conftest import assert_outputs_close, in_process, run_concurrently, torch_noise

CASES = [case.name for case in POLICY_CASES]


def _observations(policy, rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {info.name: rng.standard_normal((rows, *info.shape)).astype(np.float32)
            for info in policy.metadata.inputs}  # fmt: skip


def _infer(client, model: str, inputs: dict[str, np.ndarray], *, binary: bool, **options):
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape),
                                       {np.float32: "FP32", np.bool_: "BOOL"}[array.dtype.type])
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    outputs = None
    if not binary:  # ask for every output as JSON data
        meta = json.loads(client.get_model_metadata(model)["parameters"]["rlpol"])
        outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=False)
                   for o in meta["outputs"]]  # fmt: skip
    result = client.infer(model, tensors, outputs=outputs, **options)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def test_server_metadata_and_health(zoo_server):
    client = zoo_server.client()
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "rlpol" and "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", [*CASES, "lstm"])
def test_model_metadata_names_the_artifact_tensors(zoo_server, zoo, name):
    client = zoo_server.client()
    assert client.is_model_ready(name) and client.is_model_ready(name, "1")
    metadata = client.get_model_metadata(name)
    _, expected = read_metadata(zoo[name])
    assert metadata["name"] == name and metadata["versions"] == ["1"]
    assert parse_metadata(metadata["parameters"]["rlpol"]) == expected
    v2 = {"float32": "FP32", "int64": "INT64", "bool": "BOOL"}
    assert metadata["inputs"] == [
        *({"name": i.name, "datatype": v2[i.dtype], "shape": [-1, *i.shape]} for i in expected.inputs),
        *({"name": n.name, "datatype": "FP32", "shape": [-1, *n.shape]} for n in expected.noise),
    ]
    assert metadata["outputs"] == [
        {"name": o.name, "datatype": v2[o.dtype], "shape": [-1, *o.shape]} for o in expected.outputs
    ]
    assert client.get_model_metadata(name, "1") == metadata
    config = client.get_model_config(name)
    assert config["max_batch_size"] == 64 and ("sequence_batching" in config) == (name == "lstm")


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("name", CASES)
def test_infer_equals_load_policy(zoo_server, zoo_policies, name, binary):
    policy = zoo_policies[name]
    inputs = _observations(policy, 5, seed=1)
    noise = torch_noise(policy.metadata, 5, seed=2)  # what load_policy draws after this seed
    served = _infer(zoo_server.client(), name, {**inputs, **noise}, binary=binary)
    assert_outputs_close(served, in_process(policy, inputs, seed=2))


def test_server_draws_noise_seeded_per_request(zoo_server, zoo_policies):
    client = zoo_server.client()
    policy = zoo_policies["normal"]
    inputs = _observations(policy, 4, seed=3)
    first = _infer(client, "normal", inputs, binary=True, parameters={"seed": 11})
    again = _infer(client, "normal", inputs, binary=True, parameters={"seed": 11})
    other = _infer(client, "normal", inputs, binary=True, parameters={"seed": 12})
    unseeded = [_infer(client, "normal", inputs, binary=True) for _ in range(2)]
    assert_outputs_close(again, first)
    assert not np.allclose(other["action"], first["action"])
    assert not np.allclose(unseeded[0]["action"], unseeded[1]["action"])
    # the documented draw: numpy.random.default_rng(seed), each noise input in order
    rng = np.random.default_rng(11)
    noise = {n.name: rng.standard_normal((4, *n.shape), dtype=np.float32)
             for n in policy.metadata.noise}  # fmt: skip
    assert_outputs_close(first, _infer(client, "normal", {**inputs, **noise}, binary=True))
    # a noise input given in the request is used as given
    zeros = {n.name: np.zeros((4, *n.shape), np.float32) for n in policy.metadata.noise}
    given = _infer(client, "normal", {**inputs, **zeros}, binary=True)
    np.testing.assert_allclose(given["action"], given["loc"], rtol=1e-6)


def test_sixteen_concurrent_clients_with_mixed_models_and_batches(zoo_server, zoo_policies):
    names = ["qvalue_onehot", "actor", "normal", "categorical"]
    plans = []
    for thread in range(16):
        name = names[thread % len(names)]
        policy = zoo_policies[name]
        requests = []
        for step in range(12):
            rows = 1 + (thread * 7 + step * 3) % 9
            inputs = _observations(policy, rows, seed=100 * thread + step)
            noise = torch_noise(policy.metadata, rows, seed=step)
            requests.append(({**inputs, **noise}, in_process(policy, inputs, seed=step)))
        plans.append((name, requests))
    before = _batch_requests(zoo_server.metrics())

    def client_thread(name, requests, binary):
        client = zoo_server.client()
        for inputs, expected in requests:
            assert_outputs_close(_infer(client, name, inputs, binary=binary), expected)

    run_concurrently(client_thread, [(name, requests, i % 3 != 0)
                                     for i, (name, requests) in enumerate(plans)], timeout_s=120)  # fmt: skip
    count, total = (after - start for after, start in zip(_batch_requests(zoo_server.metrics()), before))
    assert count < 16 * 12 and total == 16 * 12  # some graph calls served several requests


def _batch_requests(text: str) -> tuple[float, float]:
    """(graph calls, requests they served) summed over every model."""
    count = sum(map(float, re.findall(r"^rlpol_batch_requests_count\{.*\} (\S+)$", text, re.M)))
    total = sum(map(float, re.findall(r"^rlpol_batch_requests_sum\{.*\} (\S+)$", text, re.M)))
    return count, total


def test_metrics_are_prometheus_text(zoo_server, zoo_policies):
    client = zoo_server.client()
    policy = zoo_policies["actor"]
    _infer(client, "actor", _observations(policy, 3, seed=0), binary=True)
    with pytest.raises(InferenceServerException):
        client.infer("actor", [httpclient.InferInput("observation", [1, 2], "FP32")
                               .set_data_from_numpy(np.zeros((1, 2), np.float32))])  # fmt: skip
    text = zoo_server.metrics()
    for metric in ("rlpol_requests_total", "rlpol_request_duration_seconds_bucket",
                   "rlpol_batch_rows_bucket", "rlpol_queue_rows", "rlpol_live_sequences",
                   "rlpol_inference_duration_seconds_count"):  # fmt: skip
        assert f"\n{metric}{{" in text, metric
    ok = re.search(r'rlpol_requests_total\{model="actor",status="200",version="1"\} (\S+)', text)
    bad = re.search(r'rlpol_requests_total\{model="actor",status="400",version="1"\} (\S+)', text)
    assert float(ok.group(1)) >= 1 and float(bad.group(1)) >= 1


def test_onnx_server_is_light_and_torch_free(zoo_server):
    pid = zoo_server.process.pid
    maps = open(f"/proc/{pid}/maps").read()
    assert "libtorch" not in maps and "/torch/" not in maps
    rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read()).group(1))
    assert rss_kib < 200 * 1024, f"the server holds {rss_kib / 1024:.0f} MiB"
    assert zoo_server.ready_after_s < 30
