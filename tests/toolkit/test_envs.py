"""GymEnv and the TED invariants: reset/step/rollout, seeding, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlpol import GymEnv, OneHot, step_mdp
from rlpol.errors import EnvClosedError, InputMismatchError, SpecError, UnknownEnvError
from rlpol.toolkit.specs import Bounded, Categorical, Composite

ENV_IDS = ["CartPole-v1", "Pendulum-v1"]


def test_cartpole_specs_are_torchrl_defaults():
    env = GymEnv("CartPole-v1")
    assert isinstance(env.action_spec, OneHot)
    assert env.action_spec.shape == torch.Size([2]) and env.action_spec.dtype == torch.int64
    assert env.observation_spec["observation"].shape == torch.Size([4])
    assert env.reward_spec.shape == torch.Size([1])
    assert sorted(env.done_spec.keys()) == ["done", "terminated", "truncated"]


def test_categorical_action_encoding():
    env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    assert isinstance(env.action_spec, Categorical)
    td = env.rollout(5)
    assert td["action"].shape == torch.Size([5]) and td["action"].dtype == torch.int64


def test_pendulum_action_spec_is_bounded():
    env = GymEnv("Pendulum-v1")
    assert isinstance(env.action_spec, Bounded)
    assert env.action_spec.low.tolist() == [-2.0] and env.action_spec.high.tolist() == [2.0]


def test_env_instance_is_accepted():
    env = GymEnv(gym.make("CartPole-v1"))
    assert env.env_id == "CartPole-v1"
    assert env.reset()["observation"].shape == torch.Size([4])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_ted_invariants_over_500_auto_reset_steps(env_id):
    env = GymEnv(env_id)
    env.set_seed(0)
    rollout = env.rollout(500, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([500])
    done = rollout["next", "done"].squeeze(-1)
    assert torch.equal(
        done, rollout["next", "terminated"].squeeze(-1) | rollout["next", "truncated"].squeeze(-1)
    )
    obs, next_obs = rollout["observation"], rollout["next", "observation"]
    continuing = ~done[:-1]
    assert torch.equal(obs[1:][continuing], next_obs[:-1][continuing])
    # after a done the next root is a fresh reset, not the final observation
    if done[:-1].any():
        assert not torch.equal(obs[1:][done[:-1]], next_obs[:-1][done[:-1]])
        assert not rollout["done"][1:][done[:-1]].any()
    assert rollout["next", "reward"].dtype == torch.float32
    assert rollout["next", "reward"].shape == torch.Size([500, 1])
    if env_id == "CartPole-v1":
        assert done.sum() >= 5  # random CartPole episodes last ~20 steps
        assert torch.all(rollout["next", "reward"] == 1.0)


def test_break_when_any_done_stops_at_first_done():
    env = GymEnv("CartPole-v1")
    env.set_seed(3)
    rollout = env.rollout(1000)
    done = rollout["next", "done"].squeeze(-1)
    assert done[-1] and not done[:-1].any()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_rollouts_repeat(env_id):
    env = GymEnv(env_id)
    runs = []
    for _ in range(2):
        env.set_seed(7)
        torch.manual_seed(7)
        runs.append(env.rollout(200, break_when_any_done=False))
    assert (runs[0] == runs[1]).all()
    env.set_seed(8)
    torch.manual_seed(8)
    assert not torch.equal(env.rollout(200, break_when_any_done=False)["observation"],
                           runs[0]["observation"])


def test_rollout_keeps_policy_keys():
    env = GymEnv("CartPole-v1")

    def policy(td):
        td["action"] = env.action_spec.rand()
        td["extra"] = torch.ones(3)
        return td

    rollout = env.rollout(4, policy)
    assert rollout["extra"].shape == torch.Size([4, 3])


def test_step_mdp_drops_action_and_reward_keeps_other():
    env = GymEnv("Pendulum-v1")
    td = env.rand_action(env.reset())
    td["loc"] = torch.zeros(1)
    out = step_mdp(env.step(td))
    assert "action" not in out.keys() and "reward" not in out.keys()
    assert "loc" in out.keys()
    assert sorted(step_mdp(env.step(env.rand_action(env.reset())), keep_other=False).keys()) == [
        "done", "observation", "terminated", "truncated"]


def test_unknown_env_id_suggests_close_ids():
    with pytest.raises(UnknownEnvError, match=r"unknown environment id 'CartPol-v1'.*CartPole-v1"):
        GymEnv("CartPol-v1")


@pytest.mark.parametrize(
    "action, message",
    [
        (torch.zeros(3, dtype=torch.int64), r"action: expected shape"),
        (torch.tensor([1.0, 0.0]), r"action.*dtype"),
        (torch.tensor([1, 1]), r"action"),
    ],
)
def test_bad_action_names_key_and_shapes(action, message):
    env = GymEnv("CartPole-v1")
    td = env.reset()
    td["action"] = action
    with pytest.raises(SpecError, match=message):
        env.step(td)


def test_out_of_range_discrete_action():
    env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    td = env.reset()
    td["action"] = torch.tensor(5)
    with pytest.raises(SpecError, match=r"action: expected shape \[\*B\] dtype torch.int64"):
        env.step(td)


def test_continuous_action_outside_bounds_reaches_gymnasium_clipped():
    # TorchRL behaviour: an unsquashed Gaussian sample is passed on; Pendulum clips it.
    env = GymEnv("Pendulum-v1")
    env.set_seed(0)
    td = env.reset()
    td["action"] = torch.tensor([5.0])
    over = env.step(td)["next", "observation"]
    env.set_seed(0)
    td = env.reset()
    td["action"] = torch.tensor([2.0])
    assert torch.equal(env.step(td)["next", "observation"], over)


def test_continuous_action_of_wrong_shape():
    env = GymEnv("Pendulum-v1")
    td = env.reset()
    td["action"] = torch.zeros(2)
    with pytest.raises(SpecError, match=r"action: expected shape \[\*B, 1\].*received shape \[2\]"):
        env.step(td)


def test_missing_action_is_named():
    env = GymEnv("CartPole-v1")
    with pytest.raises(InputMismatchError, match="'action'"):
        env.step(env.reset())


def test_stepping_a_closed_env():
    env = GymEnv("CartPole-v1")
    td = env.rand_action(env.reset())
    env.close()
    with pytest.raises(EnvClosedError, match="closed"):
        env.step(td)
    with pytest.raises(EnvClosedError):
        env.reset()


class _DictObsEnv(gym.Env):
    """A tiny env with a nested Dict observation, to test key mapping."""

    observation_space = gym.spaces.Dict(
        {
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "sensors": gym.spaces.Dict({"touch": gym.spaces.MultiBinary(3)}),
        }
    )
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action), self.t >= 4, False, {}

    def _obs(self):
        return {
            "position": np.full(2, self.t / 10, np.float32),
            "sensors": {"touch": np.array([self.t % 2, 0, 1], np.int8)},
        }


def test_dict_observation_becomes_nested_keys():
    env = GymEnv(_DictObsEnv())
    assert isinstance(env.observation_spec, Composite)
    assert env.observation_spec["sensors", "touch"].shape == torch.Size([3])
    rollout = env.rollout(10)
    assert rollout.batch_size == torch.Size([4])
    assert rollout["next", "position"][:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert rollout["next", "sensors", "touch"][:, 0].tolist() == [1, 0, 1, 0]
    assert torch.equal(rollout["next", "reward"].squeeze(-1), rollout["action"].argmax(-1).float())


def test_nested_keys_written_by_a_policy_are_not_aliased_across_steps():
    env = GymEnv("CartPole-v1")

    def policy(td):
        td["action"] = env.action_spec.rand()
        td["agent", "memory"] = td["observation"].clone()
        return td

    rollout = env.rollout(5, policy, break_when_any_done=False)
    assert torch.equal(rollout["agent", "memory"], rollout["observation"])
