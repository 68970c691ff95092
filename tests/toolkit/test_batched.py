"""SerialEnv and ParallelEnv on gymnasium.vector: batch shapes and per-row TED semantics."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from rlpol import GymEnv, ParallelEnv, SerialEnv, StepCounter, TransformedEnv
from rlpol.errors import SpecError

BATCHED = [SerialEnv, ParallelEnv]


@pytest.mark.parametrize("cls", BATCHED)
def test_lambda_maker_and_shapes(cls):
    env = cls(3, lambda: GymEnv("CartPole-v1"))
    try:
        assert env.batch_size == torch.Size([3])
        assert env.action_spec.shape == torch.Size([3, 2])
        td = env.reset()
        assert td["observation"].shape == torch.Size([3, 4])
        assert td["done"].shape == torch.Size([3, 1])
        rollout = env.rollout(50, break_when_any_done=False)
        assert rollout.batch_size == torch.Size([3, 50])
        assert rollout["next", "reward"].shape == torch.Size([3, 50, 1])
        _assert_row_ted(rollout)
    finally:
        env.close()


def _assert_row_ted(rollout):
    done = rollout["next", "done"].squeeze(-1)
    obs, next_obs = rollout["observation"], rollout["next", "observation"]
    continuing = ~done[:, :-1]
    assert torch.equal(obs[:, 1:][continuing], next_obs[:, :-1][continuing])
    assert done.any(), "random CartPole must finish an episode in 50 steps"
    finished = done[:, :-1]
    assert not torch.equal(obs[:, 1:][finished], next_obs[:, :-1][finished])
    assert not rollout["done"].any()


def test_serial_and_parallel_agree_when_seeded():
    results = []
    for cls in BATCHED:
        env = cls(2, lambda: GymEnv("CartPole-v1"))
        env.set_seed(5)
        torch.manual_seed(5)
        results.append(env.rollout(60, break_when_any_done=False))
        env.close()
    assert (results[0] == results[1]).all()


def test_break_when_any_done_in_batch():
    env = SerialEnv(4, lambda: GymEnv("CartPole-v1"))
    rollout = env.rollout(500)
    done = rollout["next", "done"].squeeze(-1)
    assert done[:, -1].any() and not done[:, :-1].any()


def test_step_counter_on_batched_env_resets_per_row():
    env = TransformedEnv(SerialEnv(2, lambda: GymEnv("Pendulum-v1")), StepCounter(max_steps=4))
    rollout = env.rollout(10, break_when_any_done=False)
    counts = rollout["next", "step_count"].squeeze(-1)
    assert counts.tolist() == [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2]] * 2


def test_list_of_makers_with_matching_specs():
    env = SerialEnv(2, [lambda: GymEnv("CartPole-v1"), lambda: gym.make("CartPole-v1")])
    assert env.rollout(3).batch_size == torch.Size([2, 3])


def test_mismatched_makers_are_refused():
    with pytest.raises(SpecError, match="share observation and action spaces"):
        SerialEnv(2, [lambda: GymEnv("CartPole-v1"), lambda: GymEnv("Acrobot-v1")])
