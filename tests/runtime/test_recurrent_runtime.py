"""Running recurrent artifacts: rollouts equal eager ones, sessions, checks, plain onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpol import ExplorationType, GymEnv, InputMismatchError, load_policy
from rlpol.testing import recurrent_env, recurrent_qvalue
from rlpol.verify import check_artifact, compare_rollouts, quick_check, seeded_rollout

STEPS = 300
# every module, depth and exploration on ONNX; a subset on TorchScript and .pt2
ROLLOUT_CASES = [
    *[(kind, layers, ".onnx", exploration) for kind in ("lstm", "gru") for layers in (1, 2)
      for exploration in ("random", "deterministic")],
    ("lstm", 1, ".pt", "random"),
    ("gru", 2, ".pt", "deterministic"),
    ("lstm", 2, ".pt2", "random"),
]  # fmt: skip
PARALLEL_CASES = [("lstm", 2, ".onnx", "random"), ("gru", 1, ".pt", "random")]


def _assert_rollouts_equal(env, policy, exported, exploration, steps=STEPS):
    expected = seeded_rollout(env, policy, steps=steps, seed=0, exploration=exploration)
    actual = seeded_rollout(env, exported, steps=steps, seed=0, exploration=exploration)
    report = compare_rollouts(expected, actual, atol=1e-5, rtol=1e-5)
    assert report.ok, [row for row in report.rows() if "ok" not in str(row)]
    assert set(expected.keys(True, True)) == set(actual.keys(True, True))
    return expected


@pytest.mark.parametrize(("kind", "layers", "suffix", "exploration"), ROLLOUT_CASES)
def test_rollout_equals_eager(recurrent_artifacts, kind, layers, suffix, exploration):
    policy, path = recurrent_artifacts.get(kind, layers, suffix, exploration)
    exported = load_policy(path, trust_code=True)
    rollout = _assert_rollouts_equal(recurrent_env(policy), policy, exported, exploration)
    assert rollout["is_init"].sum() >= 4  # several episodes, the state reset each time
    assert rollout["next", "recurrent_state_h" if kind == "lstm" else "recurrent_state"].abs().sum() > 0


def test_a_stateful_artifact_offers_a_kernel_writing_the_next_state(recurrent_artifacts):
    """The kernel reads the state and is_init from the root and writes ("next", state)."""
    policy, path = recurrent_artifacts.get("gru", 1, ".pt", "deterministic")
    kernel = load_policy(path, trust_code=True).array_kernel(recurrent_env(policy).reset())
    assert {"recurrent_state", "is_init"} <= set(kernel.in_keys)
    assert ("next", "recurrent_state") in kernel.out_keys


def test_a_hooked_stateful_artifact_still_offers_no_kernel(recurrent_artifacts):
    policy, path = recurrent_artifacts.get("gru", 1, ".pt", "deterministic")
    exported = load_policy(path, trust_code=True)
    exported.register_forward_hook(lambda *args: None)
    assert exported.array_kernel(recurrent_env(policy).reset()) is None


@pytest.mark.parametrize(("kind", "layers", "suffix", "exploration"), PARALLEL_CASES)
def test_parallel_rollout_with_staggered_resets(recurrent_artifacts, kind, layers, suffix,
                                                exploration):  # fmt: skip
    policy, path = recurrent_artifacts.get(kind, layers, suffix, exploration)
    env = recurrent_env(policy, num_envs=3)
    try:
        rollout = _assert_rollouts_equal(env, policy, load_policy(path, trust_code=True), exploration)
    finally:
        env.close()
    starts = rollout["is_init"].squeeze(-1)[:, 1:]
    assert (starts.sum(1) >= 3).all()  # every env restarted several times...
    assert not (starts[0] == starts[1]).all()  # ...at different steps


def test_check_artifact_across_episodes(recurrent_artifacts):
    policy, path = recurrent_artifacts.get("gru", 2, ".pt", "deterministic")
    report = check_artifact(recurrent_env(policy), policy, load_policy(path, trust_code=True), steps=STEPS)
    assert report.ok and report.closed_loop.ok


def test_check_artifact_names_the_missing_transform(recurrent_artifacts):
    policy, path = recurrent_artifacts.get("gru", 2, ".pt", "deterministic")
    with pytest.raises(InputMismatchError, match=r"reads 'recurrent_state', which the env does "
                       r"not provide; the env lacks its primer .*TransformedEnv\(env, Compose\("
                       r"InitTracker\(\), module\.make_tensordict_primer\(\)\)\)"):  # fmt: skip
        check_artifact(GymEnv("CartPole-v1"), policy, load_policy(path, trust_code=True), steps=5)


def test_quick_check_sees_a_state_only_difference(recurrent_artifacts):
    """Single rows cannot tell a wrong recurrent weight (the state is zero at a reset)."""
    policy, path = recurrent_artifacts.get("lstm", 1, ".pt", "random")
    other = recurrent_qvalue("lstm", 1)
    with torch.no_grad():
        other[0].lstm.weight_hh_l0.add_(0.5)
    assert quick_check(policy, path).ok
    assert not quick_check(other, path).ok


# -- sessions: numpy steps holding the state --------------------------------------------------
def test_session_equals_the_rollout(recurrent_artifacts):
    """A session driven by a rollout's observations and resets writes the rollout's actions."""
    policy, path = recurrent_artifacts.get("lstm", 2, ".onnx", "random")
    exported = load_policy(path, trust_code=True)
    rollout = seeded_rollout(recurrent_env(policy), exported, steps=120, seed=0,
                             exploration="random")  # fmt: skip
    session = exported.session(batch=1)
    assert session.input_names == ["observation"]
    assert "next.recurrent_state_h" not in session.output_names
    torch.manual_seed(0)
    with torch.no_grad():
        for t in range(120):
            out = session.step({"observation": rollout["observation"][t : t + 1].numpy()},
                               reset=rollout["is_init"][t].numpy())  # fmt: skip
            np.testing.assert_array_equal(out["action"][0], rollout["action"][t].numpy())
            np.testing.assert_array_equal(session.state["recurrent_state_h"][0],
                                          rollout["next", "recurrent_state_h"][t].numpy())


def test_session_reset_and_errors(recurrent_artifacts):
    _, path = recurrent_artifacts.get("gru", 1, ".pt", "deterministic")
    session = load_policy(path, trust_code=True).session(batch=3)
    obs = {"observation": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)}
    first = session.step(obs)
    assert first["action"].shape == (3, 2) and first["action"].dtype == np.int64
    second = session.step(obs)
    assert not np.array_equal(first["embed"], second["embed"])  # the state moved on
    session.reset(np.array([True, False, True]))
    assert (session.state["recurrent_state"][[0, 2]] == 0).all()
    third = session.step(obs)
    np.testing.assert_array_equal(third["embed"][[0, 2]], first["embed"][[0, 2]])
    np.testing.assert_array_equal(session.step(obs, reset=np.ones(3, bool))["embed"], first["embed"])
    with pytest.raises(InputMismatchError, match=r"takes \['observation'\].*missing"):
        session.step({})
    with pytest.raises(InputMismatchError, match=r"'observation' has shape \[2, 4\]; expected \[3, 4\]"):
        session.step({"observation": obs["observation"][:2]})
    with pytest.raises(InputMismatchError, match=r"reset mask must be bool \[3\]"):
        session.reset(np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="batch >= 1"):
        load_policy(path, trust_code=True).session(batch=0)


# -- plain onnxruntime, threading the state by the metadata's names ----------------------------
def test_readme_onnxruntime_loop(recurrent_artifacts):
    """The README's loop (only onnxruntime, gymnasium and the metadata) acts as the eager policy."""
    policy, path = recurrent_artifacts.get("lstm", 2, ".onnx", "deterministic")
    # --- the README's "Recurrent policies" loop, verbatim ---
    import json

    import gymnasium as gym
    import onnx
    import onnxruntime as ort

    meta = json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["rlpol"])
    session = ort.InferenceSession(path)
    state = {s["input"]: np.full([1, *s["shape"]], s["initial"], np.float32) for s in meta["states"]}
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    is_init, actions = np.ones((1, 1), bool), []
    for _ in range(200):
        feed = {"observation": obs[None].astype(np.float32), "is_init": is_init, **state}
        out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        state = {s["input"]: out[s["output"]] for s in meta["states"]}
        action = int(out["action"][0].argmax())  # one-hot action
        obs, _, terminated, truncated, _ = env.step(action)
        is_init = np.full((1, 1), terminated or truncated)
        if terminated or truncated:
            obs, _ = env.reset()
        actions.append(action)
    # --- end of the README's loop ---
    eager = seeded_rollout(recurrent_env(policy), policy, steps=200, seed=0,
                           exploration=ExplorationType.DETERMINISTIC)  # fmt: skip
    assert actions == eager["action"].argmax(-1).tolist()
    assert eager["is_init"].sum() >= 3


def test_the_rebuilt_env_threads_the_state(recurrent_artifacts):
    """``make_artifact_env`` (what ``rlpol run`` acts in) adds InitTracker and the primer."""
    from rlpol.runtime import make_artifact_env

    _, path = recurrent_artifacts.get("lstm", 2, ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    env = make_artifact_env(policy.metadata)
    rollout = env.rollout(60, policy, break_when_any_done=False)
    init = rollout["is_init"][..., 0]
    state = rollout["recurrent_state_h"]
    assert init[0] and torch.equal(state[init], torch.zeros_like(state[init]))
    carried = ~init[1:]
    assert torch.equal(state[1:][carried], rollout["next", "recurrent_state_h"][:-1][carried])
