"""The "TorchRL modules" cells of the seed tutorial, run on rlpol with only imports changed.

Each test is one cell (or a cell and the one that prints its result), in the tutorial's
order, with ``fetch_device()`` returning ``"cpu"``. The asserts check what the tutorial
prints: keys, shapes and dtypes.
"""

from __future__ import annotations

import pytest
import torch

# The tutorial's tensordict imports stay as they are; its torchrl imports become rlpol ones.
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch.distributions import Normal

from rlpol import (
    MLP,
    Actor,
    EGreedyModule,
    ExplorationType,
    GymEnv,
    OneHot,
    ProbabilisticActor,
    QValueModule,
    set_exploration_type,
)

TED_KEYS = {"action", "done", "observation", "terminated", "truncated"}
NEXT_KEYS = {"done", "observation", "reward", "terminated", "truncated"}


def fetch_device() -> str:
    return "cpu"


@pytest.fixture
def pendulum():
    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1", device=fetch_device())
    env.set_seed(0)
    yield env
    env.close()


@pytest.fixture
def cartpole():
    torch.manual_seed(0)
    env = GymEnv("CartPole-v1", device=fetch_device())
    env.set_seed(0)
    yield env
    env.close()


def assert_ted(rollout, steps: int, obs_dim: int, extra: set[str] = frozenset()):
    assert rollout.batch_size == (steps,)
    assert set(rollout.keys()) == TED_KEYS | {"next"} | set(extra)
    assert set(rollout["next"].keys()) == NEXT_KEYS
    assert rollout["observation"].shape == (steps, obs_dim)
    assert rollout["observation"].dtype == torch.float32
    assert rollout["next", "reward"].shape == (steps, 1)


def test_cell_34_35_lazy_linear_policy(pendulum):
    env = pendulum
    module = torch.nn.LazyLinear(out_features=env.action_spec.shape[-1], device=fetch_device())
    policy = TensorDictModule(module, in_keys=["observation"], out_keys=["action"])
    rollout = env.rollout(max_steps=10, policy=policy)
    assert_ted(rollout, 10, 3)
    assert rollout["action"].shape == (10, 1)
    assert rollout["action"].dtype == torch.float32


def test_cell_38_mlp_actor(pendulum):
    env = pendulum
    module = MLP(
        out_features=env.action_spec.shape[-1],
        num_cells=[32, 64],
        activation_class=torch.nn.Tanh,
        device=fetch_device(),
    )
    policy = Actor(module)  # Actor is shorthand for the previously defined TensorDictModule.
    assert policy.in_keys == ["observation"] and policy.out_keys == ["action"]
    rollout = env.rollout(max_steps=10, policy=policy)
    assert_ted(rollout, 10, 3)
    assert rollout["action"].shape == (10, 1)


def make_probabilistic_policy():
    backbone = MLP(in_features=3, out_features=2, device=fetch_device())
    extractor = NormalParamExtractor()
    module = torch.nn.Sequential(backbone, extractor)
    td_module = TensorDictModule(module, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        td_module,
        in_keys=["loc", "scale"],  # Parameters of Gaussian distribution.
        out_keys=["action"],
        distribution_class=Normal,
        return_log_prob=True,
    )


def test_cell_41_probabilistic_actor(pendulum):
    env = pendulum
    policy = make_probabilistic_policy()
    rollout = env.rollout(max_steps=10, policy=policy)
    assert_ted(rollout, 10, 3, {"loc", "scale", "action_log_prob"})
    for key in ("action", "loc", "scale", "action_log_prob"):
        assert rollout[key].shape == (10, 1), key
        assert rollout[key].dtype == torch.float32, key
    assert (rollout["scale"] > 0).all()


def test_set_exploration_type_mean_and_random(pendulum):
    env = pendulum
    policy = make_probabilistic_policy()
    with set_exploration_type(ExplorationType.MEAN):
        # takes the mean as action
        rollout = env.rollout(max_steps=10, policy=policy)
    assert torch.equal(rollout["action"], rollout["loc"])
    with set_exploration_type(ExplorationType.RANDOM):
        # Samples actions according to the dist
        rollout = env.rollout(max_steps=10, policy=policy)
    assert not torch.isclose(rollout["action"], rollout["loc"]).any()
    expected = Normal(rollout["loc"], rollout["scale"]).log_prob(rollout["action"])
    torch.testing.assert_close(rollout["action_log_prob"], expected)


def test_cell_42_44_egreedy_on_pendulum(pendulum):
    env = pendulum
    policy = Actor(MLP(3, 1, num_cells=[32, 64], device=fetch_device()))
    exploration_module = EGreedyModule(spec=env.action_spec, annealing_num_steps=1000, eps_init=0.5)
    exploration_policy = TensorDictSequential(policy, exploration_module)

    with set_exploration_type(ExplorationType.MEAN):
        # Turns off exploration
        rollout = env.rollout(max_steps=10, policy=exploration_policy)
    greedy = policy(rollout.select("observation").clone())["action"]
    torch.testing.assert_close(rollout["action"], greedy)

    with set_exploration_type(ExplorationType.RANDOM):
        # Turns on exploration
        rollout = env.rollout(max_steps=10, policy=exploration_policy)
    greedy = policy(rollout.select("observation").clone())["action"]
    explored = ~torch.isclose(rollout["action"], greedy).squeeze(-1)
    assert 0 < explored.sum() < 10
    assert env.action_spec.is_in(rollout["action"])

    exploration_module.step()
    assert exploration_module.eps.item() == pytest.approx(0.5 - 0.4 / 1000)


def make_qvalue_policy(env):
    num_actions = 2
    value_net = TensorDictModule(
        MLP(out_features=num_actions, num_cells=[32, 32], device=fetch_device()),
        in_keys=["observation"],
        out_keys=["action_value"],
    )
    return TensorDictSequential(
        value_net,  # writes action values in our tensordict
        QValueModule(action_space=env.action_spec),  # Reads the "action_value" entry by default
    )


def test_cell_45_cartpole_action_spec(cartpole):
    spec = cartpole.action_spec
    assert isinstance(spec, OneHot)
    assert spec.shape == (2,) and spec.n == 2 and spec.dtype == torch.int64
    assert "shape=torch.Size([2])" in repr(spec)


def test_cell_51_53_qvalue_rollout(cartpole):
    policy = make_qvalue_policy(cartpole)
    rollout = cartpole.rollout(max_steps=3, policy=policy)
    assert_ted(rollout, 3, 4, {"action_value", "chosen_action_value"})
    assert rollout["action"].shape == (3, 2) and rollout["action"].dtype == torch.int64
    assert rollout["action_value"].shape == (3, 2)
    assert rollout["action_value"].dtype == torch.float32
    assert rollout["chosen_action_value"].shape == (3, 1)
    assert (rollout["action"].sum(-1) == 1).all()
    index = rollout["action"].argmax(-1, keepdim=True)
    torch.testing.assert_close(
        rollout["chosen_action_value"], rollout["action_value"].gather(-1, index)
    )
    assert torch.equal(index, rollout["action_value"].argmax(-1, keepdim=True))


def test_cell_54_egreedy_on_qvalue_policy(cartpole):
    policy = make_qvalue_policy(cartpole)
    policy_explore = TensorDictSequential(policy, EGreedyModule(cartpole.action_spec))

    with set_exploration_type(ExplorationType.RANDOM):
        rollout_explore = cartpole.rollout(max_steps=3, policy=policy_explore)
    assert rollout_explore["action"].shape == (3, 2)
    assert rollout_explore["action"].dtype == torch.int64
    assert cartpole.action_spec.is_in(rollout_explore["action"])
    assert rollout_explore["chosen_action_value"].shape == (3, 1)
