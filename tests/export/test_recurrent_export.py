"""Exporting recurrent policies: state as graph inputs/outputs, state pairs, clear errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from rlpol import Compose, GymEnv, InitTracker, TransformedEnv, export_policy, load_policy
from rlpol.artifact.reader import read_metadata
from rlpol.errors import ExportError
from rlpol.testing import recurrent_env, recurrent_qvalue
from rlpol.toolkit.modules import GRUModule, set_recurrent_mode
from rlpol.verify import quick_check

# (kind, num_layers, suffix, exploration): every module and depth on ONNX, a subset elsewhere
CASES = [
    *[(kind, layers, ".onnx", "random") for kind in ("lstm", "gru") for layers in (1, 2)],
    ("lstm", 2, ".onnx", "deterministic"),
    ("gru", 1, ".pt", "deterministic"),
    ("lstm", 2, ".pt", "random"),
    ("gru", 2, ".pt2", "random"),
]
STATE_NAMES = {"lstm": ["recurrent_state_h", "recurrent_state_c"], "gru": ["recurrent_state"]}


@pytest.mark.parametrize(("kind", "layers", "suffix", "exploration"), CASES)
def test_state_is_graph_inputs_and_outputs(recurrent_artifacts, kind, layers, suffix, exploration):
    policy, path = recurrent_artifacts.get(kind, layers, suffix, exploration)
    _, meta = read_metadata(path)  # for ONNX this also checks the graph against the metadata
    states = STATE_NAMES[kind]
    assert [info.name for info in meta.inputs] == ["observation", *states, "is_init"]
    assert [info.name for info in meta.outputs][: 1 + len(states)] == [
        "embed", *(f"next.{name}" for name in states)
    ]
    assert [(s.input, s.output, s.dtype, s.shape, s.initial, s.reset_input) for s in meta.states] == [
        (name, f"next.{name}", "float32", (layers, 8), 0.0, "is_init") for name in states
    ]  # fmt: skip
    # a dynamic batch: the artifact equals the eager policy at batch 1 and 7, over a sequence
    report = quick_check(policy, path)
    assert report.ok, report.summary()


def test_export_forces_step_mode(tmp_path):
    policy = recurrent_qvalue("gru")
    with set_recurrent_mode(True):
        path = export_policy(policy, tmp_path / "gru.pt", env=recurrent_env(policy))
    exported = load_policy(path, trust_code=True)
    inputs = exported.sample_inputs(4)
    torch.testing.assert_close(exported(inputs.clone())["action_value"],
                               policy(inputs.clone())["action_value"])  # fmt: skip


def test_the_graph_resets_rows_where_is_init(recurrent_artifacts):
    _, path = recurrent_artifacts.get("lstm", 2, ".onnx", "random")
    exported = load_policy(path, trust_code=True)
    inputs = exported.sample_inputs(4)
    inputs["is_init"] = torch.tensor([[True], [False], [True], [False]])
    zeroed = inputs.clone()
    for key in ("recurrent_state_h", "recurrent_state_c"):
        zeroed[key] = torch.zeros_like(zeroed[key])
    torch.manual_seed(0)
    out = exported(inputs)
    torch.manual_seed(0)
    reference = exported(zeroed)
    for key in ("embed", ("next", "recurrent_state_h")):
        torch.testing.assert_close(out[key][0::2], reference[key][0::2], atol=0, rtol=0)
        assert not torch.equal(out[key][1::2], reference[key][1::2])


# -- an env or example that does not carry the state ----------------------------------------
def _bare():
    return GymEnv("CartPole-v1")


def _no_primer():
    return TransformedEnv(GymEnv("CartPole-v1"), InitTracker())


def _no_init_tracker():
    primer = recurrent_qvalue("lstm", 2)[0].make_tensordict_primer()
    return TransformedEnv(GymEnv("CartPole-v1"), primer)


def _other_shape():
    primer = GRUModule(input_size=4, hidden_size=8).make_tensordict_primer()  # 1 layer
    return TransformedEnv(GymEnv("CartPole-v1"), Compose(InitTracker(), primer))


BAD_ENVS = [
    (_bare, "lstm", r"LSTMModule 'module\.0' reads 'recurrent_state_h' \(\[\*B, 2, 8\] float32\), "
     r"which the env does not provide; append policy\.get_submodule\('module\.0'\)\."
     r"make_tensordict_primer\(\) to the env: TransformedEnv\(env, Compose\(InitTracker\(\)"),
    (_no_primer, "gru", r"reads 'recurrent_state' .*append policy\.get_submodule\('module\.0'\)"
     r"\.make_tensordict_primer\(\)"),
    (_no_init_tracker, "lstm", r"reads 'is_init' \(\[\*B, 1\] bool\), which the env does not "
     r"provide; append InitTracker\(\) to the env"),
    (_other_shape, "gru", r"the env gives 'recurrent_state' of shape \[\*B, 1, 8\], but the "
     r"policy's GRUModule 'module\.0' \(num_layers=2, hidden_size=8\) reads \[\*B, 2, 8\]; build "
     r"the env's primer with policy\.get_submodule\('module\.0'\)\.make_tensordict_primer\(\)"),
]  # fmt: skip


@pytest.mark.parametrize(("make_env", "kind", "match"), BAD_ENVS,
                         ids=[make.__name__ for make, _, _ in BAD_ENVS])  # fmt: skip
def test_an_env_without_the_state_is_refused(tmp_path, make_env, kind, match):
    policy = recurrent_qvalue(kind, 2)
    with pytest.raises(ExportError, match=match):
        export_policy(policy, tmp_path / "policy.onnx", env=make_env())
    assert not (tmp_path / "policy.onnx").exists()


def test_an_example_without_is_init_is_refused(tmp_path):
    policy = recurrent_qvalue("gru")
    example = TensorDict(observation=torch.zeros(4), recurrent_state=torch.zeros(1, 8))
    with pytest.raises(ExportError, match=r"reads 'is_init' .*which the example does not "
                       r"provide; add 'is_init' to the example"):  # fmt: skip
        export_policy(policy, tmp_path / "policy.pt", example=example)
