"""Tests of rlpol.toolkit.specs.gym: gymnasium spaces to specs, and their values round trip."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlpol.errors import SpecError
from rlpol.toolkit.specs import (
    Binary,
    Bounded,
    Categorical,
    Composite,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    Unbounded,
    spec_from_gym_space,
)

GYM_SPACES = [
    gym.spaces.Box(-1.0, 1.0, (3,)),
    gym.spaces.Box(-np.inf, np.inf, (2, 2)),
    gym.spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8),
    gym.spaces.Box(-3, 3, (2,), dtype=np.int32),
    gym.spaces.Box(np.array([0.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float64),
    gym.spaces.Discrete(5),
    gym.spaces.MultiDiscrete([3, 2, 4]),
    gym.spaces.MultiBinary(5),
    gym.spaces.MultiBinary((2, 3)),
    gym.spaces.Dict(
        {
            "position": gym.spaces.Box(-1.0, 1.0, (2,)),
            "inner": gym.spaces.Dict({"gear": gym.spaces.Discrete(3)}),
        }
    ),
]


def _id(value: object) -> str:
    return repr(value).split("(")[0]


def test_box_spaces_become_bounded_or_unbounded() -> None:
    assert spec_from_gym_space(gym.spaces.Box(-1.0, 1.0, (3,))) == Bounded(-1.0, 1.0, (3,))
    assert spec_from_gym_space(gym.spaces.Box(-np.inf, np.inf, (3,))) == Unbounded((3,))
    top = np.finfo(np.float32).max
    assert spec_from_gym_space(gym.spaces.Box(-top, top, (2,))) == Unbounded((2,))
    as_f64 = spec_from_gym_space(gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float64))
    assert as_f64 == Bounded(0.0, 1.0, (2,), dtype=torch.float64)
    # as in TorchRL 0.14, bounds at the dtype's extremes count as infinite
    pixels = spec_from_gym_space(gym.spaces.Box(0, 255, (4, 4, 3), dtype=np.uint8))
    assert pixels == Unbounded((4, 4, 3), dtype=torch.uint8)
    levels = spec_from_gym_space(gym.spaces.Box(0, 9, (2,), dtype=np.int64))
    assert levels == Bounded(0, 9, (2,), dtype=torch.int64) and levels.domain == "discrete"


def test_discrete_spaces_follow_the_action_encoding() -> None:
    assert spec_from_gym_space(gym.spaces.Discrete(4)) == OneHot(4)
    discrete = gym.spaces.Discrete(4)
    assert spec_from_gym_space(discrete, categorical_action_encoding=True) == Categorical(4)
    multi = gym.spaces.MultiDiscrete([3, 2])
    assert spec_from_gym_space(multi) == MultiOneHot([3, 2])
    assert spec_from_gym_space(multi, categorical_action_encoding=True) == MultiCategorical([3, 2])
    assert spec_from_gym_space(gym.spaces.MultiBinary(4)) == Binary(4)
    assert spec_from_gym_space(gym.spaces.MultiBinary((2, 3))) == Binary(shape=(2, 3))


def test_nested_dict_space_becomes_nested_composite() -> None:
    space = GYM_SPACES[-1]
    spec = spec_from_gym_space(space, categorical_action_encoding=True)
    expected = Composite(position=Bounded(-1.0, 1.0, (2,)), inner=Composite(gear=Categorical(3)))
    assert spec == expected


def test_cartpole_and_pendulum_spaces() -> None:
    cartpole, pendulum = gym.make("CartPole-v1"), gym.make("Pendulum-v1")
    observation = spec_from_gym_space(cartpole.observation_space)
    high = np.array([4.8, np.inf, 0.41887903, np.inf], dtype=np.float32)
    assert observation == Bounded(-high, high)
    assert spec_from_gym_space(cartpole.action_space) == OneHot(2)
    assert spec_from_gym_space(pendulum.observation_space) == Bounded(
        np.array([-1.0, -1.0, -8.0]), np.array([1.0, 1.0, 8.0])
    )
    assert spec_from_gym_space(pendulum.action_space) == Bounded(-2.0, 2.0, (1,))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_specs_drive_a_real_env(env_id: str) -> None:
    env = gym.make(env_id)
    observation_spec = spec_from_gym_space(env.observation_space)
    action_spec = spec_from_gym_space(env.action_space)
    observation, _ = env.reset(seed=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        observation_spec.check(observation_spec.from_numpy(observation), key="observation")
        action = action_spec.to_numpy(action_spec.rand(generator=generator))
        assert env.action_space.contains(action)
        observation, *_ = env.step(action)
    env.close()


@pytest.mark.parametrize("space", GYM_SPACES, ids=_id)
@pytest.mark.parametrize("categorical", [False, True])
def test_gym_values_round_trip(
    space: gym.spaces.Space,
    categorical: bool,
    assert_gym_equal: Callable[[object, object], None],
) -> None:
    spec = spec_from_gym_space(space, categorical_action_encoding=categorical)
    space.seed(0)
    for _ in range(5):
        value = space.sample()
        tensor = spec.from_numpy(value)
        assert spec.is_in(tensor)
        back = spec.to_numpy(tensor)
        assert space.contains(back)
        assert_gym_equal(back, value)
        assert space.contains(spec.to_numpy(spec.rand()))


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (gym.spaces.Tuple((gym.spaces.Discrete(2),)), "Tuple"),
        (gym.spaces.Text(5), "Text"),
        (gym.spaces.Discrete(3, start=1), "start=1 is not supported"),
        (gym.spaces.MultiDiscrete([[2, 3], [4, 5]]), "one-dimensional nvec"),
        (gym.spaces.MultiDiscrete([2, 3], start=[1, 0]), "is not supported, only start=0"),
        (gym.spaces.Dict({"a": gym.spaces.Tuple((gym.spaces.Discrete(2),))}), "Tuple"),
        ("Box", "supported gymnasium spaces are Box, Discrete"),
    ],
)
def test_unsupported_spaces_raise(space: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_gym_space(space)
