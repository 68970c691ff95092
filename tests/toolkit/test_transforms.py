"""Transforms: StepCounter, RewardSum, DoubleToFloat, ObservationNorm, IndexSelect, InitTracker,
Compose, and transforms as tensordict modules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase, TensorDictSequential

from rlpol import (
    MLP,
    Compose,
    DoubleToFloat,
    GymEnv,
    IndexSelect,
    InitTracker,
    ObservationNorm,
    QValueActor,
    RewardSum,
    SerialEnv,
    SpecError,
    StepCounter,
    TensorDictPrimer,
    TransformedEnv,
    Unbounded,
    export_policy,
    load_policy,
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


def test_index_select_masks_cartpole_velocities():
    raw_env, env = GymEnv("CartPole-v1"), TransformedEnv(GymEnv("CartPole-v1"), IndexSelect([0, 2]))
    push_right = torch.tensor([0, 1], dtype=env.action_spec.dtype)  # one-hot: push right

    def policy(td):
        return td.set("action", push_right)

    raw_env.set_seed(3)
    env.set_seed(3)
    raw = raw_env.rollout(20, policy, break_when_any_done=False)
    masked = env.rollout(20, policy, break_when_any_done=False)
    assert masked["observation"].shape == (20, 2)
    torch.testing.assert_close(masked["observation"], raw["observation"][:, [0, 2]])
    torch.testing.assert_close(masked["next", "observation"], raw["next", "observation"][:, [0, 2]])
    spec = env.observation_spec["observation"]
    assert spec.shape == (2,)
    torch.testing.assert_close(spec.low, raw_env.observation_spec["observation"].low[[0, 2]])
    assert spec.is_in(masked["observation"][0])


def test_index_select_keeps_order_out_keys_and_batch_dims():
    select = IndexSelect([3, 1], out_keys=["velocities"])
    env = TransformedEnv(SerialEnv(3, lambda: GymEnv("CartPole-v1")), select)
    td = env.reset()
    assert td["observation"].shape == (3, 4) and td["velocities"].shape == (3, 2)
    torch.testing.assert_close(td["velocities"], td["observation"][:, [3, 1]])
    assert env.observation_spec["velocities"].shape == (3, 2)
    assert select.to_dict() == {
        "type": "IndexSelect", "in_keys": ["observation"], "out_keys": ["velocities"],
        "indices": [3, 1],
    }  # fmt: skip


@pytest.mark.parametrize("indices", [[], [0, -1], [1.0], [True]])
def test_index_select_refuses_bad_indices(indices):
    with pytest.raises(ValueError, match=r"non-empty list of ints >= 0"):
        IndexSelect(indices)


def test_index_select_says_which_spec_does_not_fit():
    with pytest.raises(SpecError, match=r"of size 4 .* pick indices below 4"):
        TransformedEnv(GymEnv("CartPole-v1"), IndexSelect([0, 4]))
    with pytest.raises(SpecError, match=r"got a OneHot spec; apply it to a continuous"):
        TransformedEnv(GymEnv("FrozenLake-v1"), IndexSelect([0]))


def test_index_select_folds_into_an_artifact_that_takes_raw_observations(tmp_path):
    env = TransformedEnv(GymEnv("CartPole-v1"), IndexSelect([0, 2]))
    torch.manual_seed(0)
    policy = QValueActor(MLP(2, 2, num_cells=[8]), spec=env.action_spec)
    exported = load_policy(export_policy(policy, tmp_path / "masked.onnx", env=env), trust_code=True)
    assert exported.metadata.inputs[0].shape == (4,)  # the raw CartPole observation
    assert exported.metadata.transforms == (IndexSelect([0, 2]).to_dict(),)
    raw = torch.randn(7, 4)
    eager = policy(TensorDict({"observation": raw[:, [0, 2]]}, [7]))
    out = exported(TensorDict({"observation": raw}, [7]))
    torch.testing.assert_close(out["action_value"], eager["action_value"])


# -- transforms as tensordict modules -------------------------------------------------------
def _norm_chain() -> Compose:
    return Compose(
        DoubleToFloat(),
        ObservationNorm(loc=1.0, scale=2.0, in_keys=["observation"]),
        IndexSelect([0, 2], out_keys=["masked"]),
        ObservationNorm(loc=0.0, scale=-1.0, in_keys=["masked"], standard_normal=True),
        StepCounter(),
    )


def test_compose_is_a_list_of_the_same_transform_objects():
    chain = _norm_chain()
    members = list(chain)
    assert len(chain) == 5 and isinstance(chain, TensorDictModuleBase)
    assert chain[1] is members[1] and chain[-1] is members[-1]
    head = chain[:-1]
    assert isinstance(head, Compose) and list(head) == members[:-1]
    assert all(a is b for a, b in zip(head, members))
    reward_sum = RewardSum()
    assert chain.append(reward_sum) is chain and chain[-1] is reward_sum and len(chain) == 6
    with pytest.raises(TypeError, match=r"Compose takes Transform instances, got function"):
        Compose(lambda td: td)


def test_compose_keys_are_those_of_a_tensordict_sequential_of_its_members():
    chain = _norm_chain()
    sequential = TensorDictSequential(*chain)
    assert chain.in_keys == sequential.in_keys == ["observation"]
    assert chain.out_keys == sequential.out_keys == ["observation", "masked"]
    # StepCounter, RewardSum, InitTracker and TensorDictPrimer read and write nothing here
    bookkeeping = [StepCounter(), RewardSum(), InitTracker(), TensorDictPrimer(h=Unbounded((2,)))]
    assert all(t.in_keys == [] and t.out_keys == [] for t in bookkeeping)


def test_compose_forward_maps_a_raw_tensordict_as_the_env_does():
    chain = _norm_chain()
    env = TransformedEnv(GymEnv(_Float64Env()), _norm_chain())
    td = env.reset()
    raw = TensorDict({"observation": torch.arange(3, dtype=torch.float64)}, [])
    out = chain(raw)
    assert out["observation"].tolist() == td["observation"].tolist() == [1.0, 3.0, 5.0]
    assert out["masked"].tolist() == td["masked"].tolist() == [-1.0, -5.0]
    assert "step_count" not in out  # StepCounter's forward is the identity
    policy = TensorDictSequential(
        chain[:-1], QValueActor(MLP(2, 2), in_keys=["masked"], action_space="categorical")
    )
    action = policy(TensorDict({"observation": torch.zeros(4, 3, dtype=torch.float64)}, [4]))
    assert action["action"].shape == (4,) and action["masked"].tolist() == [[-1.0, -1.0]] * 4


def test_transform_tensors_are_buffers_that_move_with_the_module():
    norm = ObservationNorm(loc=torch.ones(3), scale=2.0)
    assert set(norm.state_dict()) == {"loc", "scale"}
    moved = Compose(norm, IndexSelect([1])).to("meta")
    assert moved[0].loc.device.type == "meta" and moved[1]._index.device.type == "meta"


@pytest.mark.cuda
def test_a_transformed_env_moves_its_transform_buffers():
    env = TransformedEnv(GymEnv("CartPole-v1"), ObservationNorm(loc=torch.ones(4), scale=2.0))
    env.to("cuda")
    assert env.transform.loc.is_cuda and env.transform.scale.is_cuda


def test_observation_transform_apply_of_a_function_is_module_apply():
    chain = Compose(ObservationNorm(loc=0.0, scale=1.0), IndexSelect([0]))
    seen = []
    chain.apply(lambda module: seen.append(type(module).__name__))
    assert seen == ["ObservationNorm", "IndexSelect", "ModuleList", "Compose"]
    assert chain[0].apply(torch.tensor([3.0])).tolist() == [3.0]
