"""Closed-loop parity: a 1,000-step auto-resetting rollout with the artifact equals the eager one.

For every actor kind x format x exploration, on the case's env (CartPole-v1 or Pendulum-v1),
and with the ONNX artifacts on a ParallelEnv of 4. Env and torch are seeded identically;
stochastic artifacts draw their noise inputs in the eager modules' order.
"""

from __future__ import annotations

import pytest
import torch

from rlpol import ParallelEnv, load_policy
from rlpol.testing import POLICY_CASES, policy_case
from rlpol.verify import check_artifact, seeded_rollout

FORMATS = [".onnx", ".pt"]
EXPLORATIONS = ["deterministic", "random"]
CASES = [case.name for case in POLICY_CASES]


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case_name", CASES)
def test_rollout_parity(artifacts, case_name, suffix, exploration):
    env, policy, path = artifacts.get(case_name, suffix, exploration)
    report = check_artifact(env, policy, load_policy(path, trust_code=True), steps=1000, seed=0)
    assert report.closed_loop.ok and report.replay.ok, report.rows()
    assert report.ok and not report.drifted
    keys = {field.key for field in report.fields}
    assert {"action", ("next", "observation"), ("next", "reward"), ("next", "done")} <= keys
    assert len(report.fields) >= 8


@pytest.fixture(scope="module")
def parallel_env():
    """One ParallelEnv of 4 per (env id, env kwargs), shared by the module's tests."""
    envs = {}

    def get(case):
        key = (case.env_id, tuple(sorted(case.env_kwargs.items())))
        if key not in envs:
            envs[key] = ParallelEnv(4, case.make_env_fn())
        return envs[key]

    yield get
    for env in envs.values():
        env.close()


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("case_name", CASES)
def test_parallel_env_parity(artifacts, parallel_env, case_name, exploration):
    _, policy, path = artifacts.get(case_name, ".onnx", exploration)
    env = parallel_env(policy_case(case_name))
    report = check_artifact(env, policy, load_policy(path, trust_code=True), steps=1000, seed=1)
    assert report.closed_loop.ok and report.replay.ok, report.rows()
    assert report.fields[0].shape[:2] == (4, 1000)


def test_parity_catches_a_wrong_artifact(artifacts):
    env, policy, _ = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    _, _, other = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    # an artifact that explores is not the greedy policy
    report = check_artifact(env, policy, load_policy(other, trust_code=True), steps=200, seed=0,
                            exploration="deterministic")
    assert not report.ok
    assert {field.key for field in report.fields if not field.ok} >= {"action"}
    # other weights: the action values differ from the first step
    retrained = policy_case("qvalue_onehot").make_policy(env, seed=99)
    _, _, greedy = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    report = check_artifact(env, retrained, load_policy(greedy, trust_code=True), steps=200, seed=0)
    assert not report.ok
    values = next(field for field in report.fields if field.key == "action_value")
    assert values.first_divergence == 0 and values.max_abs_diff > 1e-3


def test_seeded_rollouts_with_the_artifact_repeat(artifacts):
    env, _, path = artifacts.get("tanh_normal", ".onnx", "random")
    exported = load_policy(path, trust_code=True)
    first = seeded_rollout(env, exported, steps=300, seed=4, exploration="random")
    second = seeded_rollout(env, exported, steps=300, seed=4, exploration="random")
    assert (first == second).all()
    third = seeded_rollout(env, exported, steps=300, seed=5, exploration="random")
    assert not torch.equal(first["action"], third["action"])


def _field(key, first, note=""):
    from rlpol.verify.parity import FieldParity

    return FieldParity(key, "float32", (10, 1), 0.0 if first is None else 1e-3, first, note)


@pytest.mark.parametrize(
    "closed, replay_ok, first_input, ok, drifted",
    [
        ([_field("action", None)], True, None, True, False),  # exact
        ([_field("action", 5)], True, 3, True, True),  # inputs drifted first: float rounding
        ([_field("action", 3)], True, 3, True, True),
        ([_field("action", 2)], True, 3, False, False),  # diverged on identical inputs
        ([_field("action", 5)], False, 3, False, False),  # wrong on identical inputs
        ([_field("action", 5)], True, None, False, False),
        ([_field("action", 0, note="missing in exported")], True, 0, False, False),
    ],
)
def test_drift_is_accepted_only_after_inputs_differ(closed, replay_ok, first_input, ok, drifted):
    from rlpol.verify import CheckReport, ParityReport

    replay = ParityReport((_field("action", None if replay_ok else 0),), 1e-5, 1e-5)
    report = CheckReport(ParityReport(tuple(closed), 1e-5, 1e-5), replay, first_input)
    assert report.ok is ok and report.drifted is drifted
