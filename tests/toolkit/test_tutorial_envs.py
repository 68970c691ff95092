"""The environment cells of the seed tutorial, imports changed from torchrl to rlpol.

Each test is one cell (or a run of cells sharing state) of
``shared/seed/torchrl-tutorial.txt`` and asserts what the tutorial prints.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict

from rlpol import GymEnv, StepCounter, TransformedEnv, step_mdp

ROOT_KEYS = ["done", "observation", "terminated", "truncated"]
NEXT_KEYS = ["done", "observation", "reward", "terminated", "truncated"]


def fetch_device() -> str:
    """Returns 'cuda' if GPU is available otherwise 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def env():
    warnings.filterwarnings("ignore")
    env = GymEnv("Pendulum-v1", device=fetch_device())
    yield env
    env.close()


def _assert_fields(td: TensorDict, expected: dict[str, tuple[list[int], torch.dtype]]) -> None:
    assert sorted(k for k in td.keys() if k != "next") == sorted(expected)
    for key, (shape, dtype) in expected.items():
        assert td[key].shape == torch.Size(shape), key
        assert td[key].dtype == dtype, key
        assert td[key].device.type == fetch_device()


def test_reset_cell(env):
    reset = env.reset()
    print(reset)
    assert reset.batch_size == torch.Size([])
    _assert_fields(
        reset,
        {
            "done": ([1], torch.bool),
            "observation": ([3], torch.float32),
            "terminated": ([1], torch.bool),
            "truncated": ([1], torch.bool),
        },
    )
    assert not reset["done"].any()


def test_rand_action_cell(env):
    reset = env.reset()
    reset_with_action = env.rand_action(reset)
    assert reset_with_action is reset
    assert reset_with_action["action"].shape == torch.Size([1])
    assert reset_with_action["action"].dtype == torch.float32
    assert -2.0 <= reset_with_action["action"].item() <= 2.0
    assert sorted(reset_with_action.keys()) == ["action", *ROOT_KEYS]


def test_step_cell_writes_ted(env):
    reset_with_action = env.rand_action(env.reset())
    stepped_data = env.step(reset_with_action)
    assert sorted(stepped_data.keys()) == ["action", "done", "next", "observation", "terminated", "truncated"]
    nxt = stepped_data["next"]
    assert sorted(nxt.keys()) == NEXT_KEYS
    assert nxt["reward"].shape == torch.Size([1]) and nxt["reward"].dtype == torch.float32
    assert nxt["observation"].shape == torch.Size([3])
    for key in ("done", "terminated", "truncated"):
        assert nxt[key].dtype == torch.bool and nxt[key].shape == torch.Size([1])
    # the root keeps time t: the observation that was acted on
    assert not torch.equal(stepped_data["observation"], nxt["observation"])


def test_step_mdp_cell(env):
    stepped_data = env.step(env.rand_action(env.reset()))
    data = step_mdp(stepped_data)
    assert sorted(data.keys()) == ROOT_KEYS
    assert torch.equal(data["observation"], stepped_data["next", "observation"])


def test_rollout_cell(env):
    rollout = env.rollout(max_steps=10)
    print(rollout)
    assert rollout.batch_size == torch.Size([10])
    assert sorted(rollout.keys()) == ["action", "done", "next", "observation", "terminated", "truncated"]
    assert rollout["action"].shape == torch.Size([10, 1])
    assert rollout["next", "observation"].shape == torch.Size([10, 3])
    assert rollout["next", "reward"].shape == torch.Size([10, 1])
    assert rollout["next", "done"].dtype == torch.bool
    assert torch.equal(rollout["observation"][1:], rollout["next", "observation"][:-1])


def test_step_counter_cell(env):
    transformed_env = TransformedEnv(env, StepCounter(max_steps=10))
    rollout = transformed_env.rollout(max_steps=100)
    print(rollout)
    assert rollout.batch_size == torch.Size([10])
    assert rollout["next", "step_count"].dtype == torch.int64
    assert rollout["next", "step_count"].shape == torch.Size([10, 1])
    assert rollout["next", "step_count"].squeeze(-1).tolist() == list(range(1, 11))
    truncated = rollout["next", "truncated"]
    assert truncated.squeeze(-1).tolist() == [False] * 9 + [True]
    assert rollout["next", "done"][-1].item() is True
