"""Transforms: StepCounter, RewardSum, DoubleToFloat, ObservationNorm, InitTracker, Compose."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlpol import (
    Compose,
    DoubleToFloat,
    GymEnv,
    InitTracker,
    ObservationNorm,
    RewardSum,
    StepCounter,
    TransformedEnv,
)


def test_step_counter_truncates_and_restarts_after_auto_reset():
    env = TransformedEnv(GymEnv("Pendulum-v1"), StepCounter(max_steps=7))
    rollout = env.rollout(20, break_when_any_done=False)
    counts = rollout["next", "step_count"].squeeze(-1).tolist()
    assert counts == [1, 2, 3, 4, 5, 6, 7] * 2 + [1, 2, 3, 4, 5, 6]
    assert rollout["step_count"].squeeze(-1).tolist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0]
    truncated = rollout["next", "truncated"].squeeze(-1)
    assert truncated.nonzero().squeeze(-1).tolist() == [6, 13]
    assert env.observation_spec["step_count"].dtype == torch.int64


def test_reward_sum_resets_with_episodes():
    env = TransformedEnv(GymEnv("CartPole-v1"), RewardSum())
    env.set_seed(0)
    rollout = env.rollout(300, break_when_any_done=False)
    episode_reward = rollout["next", "episode_reward"].squeeze(-1)
    done = rollout["next", "done"].squeeze(-1)
    # CartPole pays 1 per step: the running sum is the step index within the episode
    starts = torch.cat([torch.tensor([True]), done[:-1]])
    expected, running = [], 0.0
    for start in starts.tolist():
        running = 1.0 if start else running + 1.0
        expected.append(running)
    assert episode_reward.tolist() == expected


class _Float64Env(gym.Env):
    observation_space = gym.spaces.Box(-10, 10, (3,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.arange(3, dtype=np.float64), {}

    def step(self, action):
        return np.arange(3, dtype=np.float64) + 1, 0.0, False, False, {}


def test_double_to_float_and_observation_norm_compose():
    base = GymEnv(_Float64Env())
    assert base.observation_spec["observation"].dtype == torch.float64
    env = TransformedEnv(
        base,
        Compose(
            DoubleToFloat(),
            ObservationNorm(loc=torch.tensor([1.0, 1.0, 1.0]), scale=2.0, standard_normal=True),
        ),
    )
    assert env.observation_spec["observation"].dtype == torch.float32
    td = env.reset()
    assert td["observation"].dtype == torch.float32
    assert td["observation"].tolist() == [-0.5, 0.0, 0.5]
    stepped = env.step(env.rand_action(td))
    assert stepped["next", "observation"].tolist() == [0.0, 0.5, 1.0]


def test_observation_norm_default_is_torchrl_affine():
    norm = ObservationNorm(loc=1.0, scale=3.0)
    assert norm.apply(torch.tensor([2.0])).tolist() == [7.0]


def test_init_tracker_marks_episode_starts():
    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(StepCounter(max_steps=3), InitTracker()))
    rollout = env.rollout(7, break_when_any_done=False)
    assert rollout["is_init"].squeeze(-1).tolist() == [True, False, False] * 2 + [True]
    assert not rollout["next", "is_init"].any()
