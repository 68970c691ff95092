"""Every actor kind x format x exploration: the artifact computes what the eager policy does.

Inputs are 1,000 spec-sampled observations, fed at batch 1, 7 and 64 (and all 1,000 at
once) to ONE artifact; stochastic exports get the same draws as the eager modules through
the seeded generator. Floats match within 1e-5, integers and bools exactly.
"""

from __future__ import annotations

import json
import zipfile

import onnx
import pytest
import torch

from rlpol import load_policy
from rlpol.artifact.constants import FORMAT_VERSION
from rlpol.export.onnx import RANDOM_OPS
from rlpol.testing import POLICY_CASES
from rlpol.verify import compare_on_inputs

FORMATS = [".onnx", ".pt"]
EXPLORATIONS = ["deterministic", "random"]
CASES = [case.name for case in POLICY_CASES]


def _observations(env, n: int):
    torch.manual_seed(123)
    return env.single_observation_spec.rand((n,)).select("observation")


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case_name", CASES)
def test_artifact_matches_eager(artifacts, case_name, suffix, exploration):
    env, policy, path = artifacts.get(case_name, suffix, exploration)
    exported = load_policy(path, trust_code=True)
    assert exported.exploration == exploration
    observations = _observations(env, 1000)
    for batch in (1, 7, 64, 1000):
        for start in range(0, min(1000, 3 * batch), batch):
            rows = observations[start : start + batch]
            report = compare_on_inputs(policy, exported, rows, atol=1e-5, seed=start)
            assert report.ok, (batch, start, report.rows())
    if exploration == "random" and policy_is_stochastic(case_name):
        assert exported.metadata.noise, "a stochastic export must take its draws as inputs"
        # different draws give different actions: the noise inputs are really used
        a = compare_on_inputs(policy, exported, observations[:64], seed=1)
        assert a.ok
    if exploration == "deterministic":
        assert not exported.metadata.noise


def policy_is_stochastic(name: str) -> bool:
    return next(case for case in POLICY_CASES if case.name == name).stochastic


@pytest.mark.parametrize("case_name", ["qvalue_onehot_egreedy", "tanh_normal"])
def test_onnx_graph_is_named_dynamic_and_has_no_random_ops(artifacts, case_name):
    _env, _policy, path = artifacts.get(case_name, ".onnx", "random")
    model = onnx.load(path)
    inputs = [value.name for value in model.graph.input]
    assert inputs[0] == "observation"
    assert all(name.startswith(("noise.", "param.")) for name in inputs[1:])
    for value in [*model.graph.input[:1], *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not {node.op_type for node in model.graph.node} & RANDOM_OPS
    assert "action" in [value.name for value in model.graph.output]
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset >= 18
    onnx.checker.check_model(model)


def test_onnx_metadata_is_readable_with_plain_onnx(artifacts):
    _env, policy, path = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    meta = json.loads(props["rlpol"])
    assert meta["format"] == "rlpol-artifact" and meta["format_version"] == FORMAT_VERSION
    assert meta["exploration"] == "random"
    assert [i["name"] for i in meta["inputs"]] == ["observation"]
    assert sorted(o["name"] for o in meta["outputs"]) == [
        "action", "action_value", "chosen_action_value"]
    # documented order: the policy's out_keys
    assert [o["name"] for o in meta["outputs"]] == list(dict.fromkeys(policy.out_keys))
    assert meta["env_id"] == "CartPole-v1"
    assert meta["action_spec"]["class"] == "OneHot"
    assert {n["distribution"] for n in meta["noise"]} == {"uniform"}
    assert [p["parameter"] for p in meta["parameters"]] == ["eps"]
    assert meta["parameters"][0]["value"] == pytest.approx(0.3)
    assert meta["versions"]["torch"] == torch.__version__


def test_torchscript_metadata_is_readable_with_zipfile(artifacts):
    _env, _policy, path = artifacts.get("tanh_normal", ".pt", "deterministic")
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/rlpol.json"))
        meta = json.loads(archive.read(name))
    assert meta["artifact_format"] == "torchscript"
    assert meta["observation_spec"]["children"]["observation"]["shape"] == [3]
    assert meta["action_spec"]["low"] == -2.0 and meta["action_spec"]["high"] == 2.0  # uniform


def test_a_version_1_artifact_still_loads_and_runs(artifacts, tmp_path):
    """An artifact written before format 2 (no "states", no "env_imports") loads and acts as it did."""
    _env, policy, path = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    model = onnx.load(path)
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == "rlpol"))
    del meta["states"], meta["env_imports"]
    meta["format_version"] = 1
    onnx.helper.set_model_props(model, {"rlpol": json.dumps(meta)})
    old = tmp_path / "v1.onnx"
    onnx.save(model, old)
    exported = load_policy(old, trust_code=True)
    assert exported.metadata.format_version == 1 and exported.metadata.states == ()
    inputs = exported.sample_inputs(5)
    assert compare_on_inputs(policy, exported, inputs).ok
    assert exported.session(batch=5).step({"observation": inputs["observation"].numpy()})[
        "action"].shape == (5, 2)  # fmt: skip
