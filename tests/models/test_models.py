"""The reference policy files in ``models/``: contract, shipped weights, and recipe smoke runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from tensordict.nn import TensorDictModuleBase

from rlpol.export.policy_file import load_policy_file
from rlpol.toolkit.envs import EnvBase
from rlpol.toolkit.modules import ExplorationType, set_exploration_type

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
MODEL_FILES = [
    "cartpole_qvalue.py",
    "pendulum_normal.py",
    "acrobot_qvalue.py",
    "cartpole_masked_lstm.py",
]
EPISODE_SEEDS = [0, 1, 2, 3, 4]
TINY_BUDGET = {"total_steps": 300, "learning_starts": 100, "batch_size": 64, "log_interval": 150}
TINY_BUDGETS = {  # the recipes that are not DQN / SAC name their own
    "cartpole_masked_lstm.py": {
        "total_steps": 100, "num_envs": 2, "rollout_length": 50, "updates_per_round": 2,
        "batch_size": 4, "log_interval": 1,
    },
}  # fmt: skip


def load_model_file(name: str) -> ModuleType:
    """Import ``models/<name>`` as a fresh module (registered: dataclasses look it up)."""
    path = MODELS_DIR / name
    module_name = f"_test_models_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


@pytest.fixture(params=MODEL_FILES, scope="module")
def model(request: pytest.FixtureRequest) -> ModuleType:
    return load_model_file(request.param)


def episode_returns(env: EnvBase, policy: TensorDictModuleBase, seeds: list[int]) -> list[float]:
    returns = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for seed in seeds:
            env.set_seed(seed)
            rollout = env.rollout(10_000, policy, break_when_any_done=True)
            returns.append(rollout["next", "reward"].sum().item())
    return returns


@pytest.mark.parametrize("name", MODEL_FILES)
def test_import_has_no_side_effects(name: str) -> None:
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    module = load_model_file(name)
    assert torch.equal(torch.get_rng_state(), rng_state), "importing built or trained something"
    assert torch.get_num_threads() == threads
    for attribute in ("ENV_ID", "RETURN_THRESHOLD", "Config", "build_policy", "train"):
        assert hasattr(module, attribute), f"{name} lacks {attribute}"
    assert not hasattr(module, "env") and not hasattr(module, "policy")


def test_make_env_and_policy_run_a_rollout(model: ModuleType) -> None:
    env = model.make_env()
    assert isinstance(env, EnvBase)
    assert env.env_id == model.ENV_ID
    policy = model.make_policy(env)
    assert isinstance(policy, TensorDictModuleBase)
    rollout = env.rollout(50, policy)
    assert 1 <= rollout.shape[-1] <= 50
    assert env.action_spec.is_in(rollout["action"][0])
    env.close()


def test_shipped_policy_reaches_threshold(model: ModuleType) -> None:
    env = model.make_env()
    returns = episode_returns(env, model.make_policy(env), EPISODE_SEEDS)
    mean = sum(returns) / len(returns)
    assert mean >= model.RETURN_THRESHOLD, f"returns {returns}, mean {mean}"
    env.close()


def test_shipped_weights_fit_build_policy(model: ModuleType) -> None:
    env = model.make_env()
    state_dict = torch.load(model.WEIGHTS, weights_only=True)
    assert state_dict.keys() == model.build_policy(env).state_dict().keys()
    env.close()


def test_rlpol_loads_the_policy_file(model: ModuleType) -> None:
    loaded = load_policy_file(Path(model.__file__))
    assert isinstance(loaded.policy, TensorDictModuleBase)
    assert loaded.env.env_id == model.ENV_ID
    loaded.env.close()


def test_train_with_a_tiny_budget_is_reproducible(model: ModuleType, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    config = model.Config(**TINY_BUDGETS.get(Path(model.__file__).name, TINY_BUDGET))
    first = model.train(config, out=tmp_path / "first.pt")
    second = model.train(config, out=tmp_path / "second.pt")
    assert torch.get_num_threads() == threads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.pt", "second.pt"]  # no temps

    env = model.make_env()
    policy = model.make_policy(env, first)  # strict load into the deployed architecture
    weights = torch.load(second, weights_only=True)
    for key, value in policy.state_dict().items():
        assert torch.equal(value, weights[key]), f"{key} differs between two runs of one seed"
    env.rollout(10, policy)
    env.close()


def test_command_line_trains_and_evaluates(
    model: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "w.pt"
    model.main(["train", "--total-steps", "50", "--seed", "3", "--out", str(out)])
    assert out.is_file()
    model.main(["evaluate", "--weights", str(out)])
    assert "mean return over 20 episodes" in capsys.readouterr().out


# -- cartpole_masked_lstm: memory matters ----------------------------------------------------
def _parameters(policy: TensorDictModuleBase) -> int:
    return sum(p.numel() for p in policy.parameters())


def test_masked_lstm_folds_to_a_raw_observation_and_carries_its_state() -> None:
    model = load_model_file("cartpole_masked_lstm.py")
    env = model.make_env()
    assert env.base_env.observation_spec["observation"].shape == (4,)  # what an artifact takes
    assert env.observation_spec["observation"].shape == (len(model.OBSERVED),)
    rollout = env.rollout(30, model.make_policy(env), break_when_any_done=False)
    assert rollout["is_init"][0].item() and not rollout["is_init"][1:].any()
    # the state a step writes is the next step's state: the policy remembers
    torch.testing.assert_close(rollout["recurrent_state_h"][1:], rollout["next", "recurrent_state_h"][:-1])
    assert rollout["recurrent_state_h"][1:].abs().sum() > 0
    env.close()


def test_memoryless_baseline_has_a_similar_size() -> None:
    model = load_model_file("cartpole_masked_lstm.py")
    env = model.make_env()
    lstm, memoryless = model.build_policy(env), model.build_policy(env, model.Config(memoryless=True))
    assert 0.5 <= _parameters(memoryless) / _parameters(lstm) <= 1.5
    env.close()


@pytest.mark.slow
def test_memoryless_baseline_stays_below_the_threshold() -> None:
    """The same DAgger recipe and budget without the LSTM does not solve masked CartPole."""
    model = load_model_file("cartpole_masked_lstm.py")
    policy = model.train_policy(model.Config(memoryless=True))
    env = model.make_env()
    mean = model.evaluate(policy, env)
    assert mean < model.RETURN_THRESHOLD / 2, f"the memoryless baseline reached {mean}"
    env.close()
