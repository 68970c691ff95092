"""A zoo of small policies of every actor kind, for tests, benchmarks and examples.

Each :class:`PolicyCase` builds a fresh env and a policy with seeded random weights. The
zoo covers what rlpol exports: deterministic actors, Gaussian actors (Normal, TanhNormal),
categorical actors, Q-value actors (one-hot and categorical actions) and the exploration
modules (epsilon-greedy, additive Gaussian noise). :func:`recurrent_qvalue` and
:func:`recurrent_env` build the recurrent ones (an LSTM or GRU under a Q-value head) with the
env they need (``InitTracker`` and the module's primer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    NormalParamExtractor,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
)
from torch.distributions import Categorical, Normal

from rlpol.toolkit.envs import Compose, EnvBase, GymEnv, InitTracker, ParallelEnv, TransformedEnv
from rlpol.toolkit.modules import (
    MLP,
    Actor,
    AdditiveGaussianModule,
    EGreedyModule,
    GRUModule,
    LSTMModule,
    OneHotCategorical,
    ProbabilisticActor,
    QValueActor,
    QValueModule,
    TanhNormal,
)

__all__ = [
    "POLICY_CASES",
    "RECURRENT_MODULES",
    "PolicyCase",
    "assert_same_tensordict",
    "policy_case",
    "recurrent_env",
    "recurrent_qvalue",
]


@dataclass(frozen=True)
class PolicyCase:
    """One policy kind on its env.

    Attributes:
        name: a short id (test ids, benchmark rows).
        env_id: the gymnasium id of the env the policy acts in.
        build: makes the policy for an env (weights from torch's generator, seeded by
            :meth:`make_policy`).
        env_kwargs: keyword arguments of :class:`GymEnv` (e.g. categorical actions).
        stochastic: whether the policy has random draws under ``RANDOM``.
    """

    name: str
    env_id: str
    build: Callable[[EnvBase], TensorDictModuleBase]
    env_kwargs: dict = field(default_factory=dict)
    stochastic: bool = True

    def make_env(self) -> GymEnv:
        return GymEnv(self.env_id, **self.env_kwargs)

    def make_env_fn(self) -> Callable[[], GymEnv]:
        """A picklable-enough maker for batched envs."""
        env_id, kwargs = self.env_id, dict(self.env_kwargs)
        return lambda: GymEnv(env_id, **kwargs)

    def make_policy(self, env: EnvBase, *, seed: int = 0) -> TensorDictModuleBase:
        torch.manual_seed(seed)
        return self.build(env).eval()


def _features(env: EnvBase) -> int:
    return env.single_observation_spec["observation"].shape[-1]


def _actions(env: EnvBase) -> int:
    spec = env.single_action_spec
    return int(getattr(spec, "n", None) or spec.shape[-1])


def _mlp_actor(env: EnvBase) -> TensorDictModuleBase:
    return Actor(MLP(_features(env), _actions(env), num_cells=[32, 32]))


def _mlp_actor_gaussian(env: EnvBase) -> TensorDictModuleBase:
    return TensorDictSequential(
        _mlp_actor(env), AdditiveGaussianModule(env.single_action_spec, sigma_init=0.3)
    )


def _gaussian(distribution: type) -> Callable[[EnvBase], TensorDictModuleBase]:
    def build(env: EnvBase) -> TensorDictModuleBase:
        net = torch.nn.Sequential(
            MLP(_features(env), 2 * _actions(env), num_cells=[32, 32]), NormalParamExtractor()
        )
        return ProbabilisticActor(
            TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
            in_keys=["loc", "scale"],
            spec=env.single_action_spec,
            distribution_class=distribution,
            return_log_prob=True,
        )

    return build


def _categorical(distribution: type) -> Callable[[EnvBase], TensorDictModuleBase]:
    def build(env: EnvBase) -> TensorDictModuleBase:
        net = MLP(_features(env), _actions(env), num_cells=[32, 32])
        return ProbabilisticActor(
            TensorDictModule(net, in_keys=["observation"], out_keys=["logits"]),
            in_keys=["logits"],
            spec=env.single_action_spec,
            distribution_class=distribution,
            return_log_prob=True,
        )

    return build


def _qvalue(egreedy: bool) -> Callable[[EnvBase], TensorDictModuleBase]:
    def build(env: EnvBase) -> TensorDictModuleBase:
        spec = env.single_action_spec
        actor = QValueActor(MLP(_features(env), _actions(env), num_cells=[32, 32]), spec=spec)
        if not egreedy:
            return actor
        return TensorDictSequential(actor, EGreedyModule(spec, eps_init=0.3))

    return build


_CATEGORICAL = {"categorical_action_encoding": True}

POLICY_CASES: list[PolicyCase] = [
    PolicyCase("actor", "Pendulum-v1", _mlp_actor, stochastic=False),
    PolicyCase("actor_gaussian_noise", "Pendulum-v1", _mlp_actor_gaussian),
    PolicyCase("normal", "Pendulum-v1", _gaussian(Normal)),
    PolicyCase("tanh_normal", "Pendulum-v1", _gaussian(TanhNormal)),
    PolicyCase("categorical", "CartPole-v1", _categorical(Categorical), _CATEGORICAL),
    PolicyCase("onehot_categorical", "CartPole-v1", _categorical(OneHotCategorical)),
    PolicyCase("qvalue_onehot", "CartPole-v1", _qvalue(False), stochastic=False),
    PolicyCase("qvalue_onehot_egreedy", "CartPole-v1", _qvalue(True)),
    PolicyCase("qvalue_categorical", "CartPole-v1", _qvalue(False), _CATEGORICAL, False),
    PolicyCase("qvalue_categorical_egreedy", "CartPole-v1", _qvalue(True), _CATEGORICAL),
]


RECURRENT_MODULES = {"lstm": LSTMModule, "gru": GRUModule}


def recurrent_qvalue(
    kind: str,
    num_layers: int = 1,
    *,
    env_id: str = "CartPole-v1",
    hidden_size: int = 8,
    eps: float = 0.3,
    seed: int = 0,
) -> TensorDictSequential:
    """A recurrent Q-value policy with epsilon-greedy exploration, seeded random weights.

    ``TensorDictSequential(LSTMModule | GRUModule (observation -> embed), MLP (embed ->
    action_value), QValueModule, EGreedyModule)``; the recurrent module is ``policy[0]``.

    Args:
        kind: ``"lstm"`` or ``"gru"`` (:data:`RECURRENT_MODULES`).
        num_layers: stacked recurrent layers.
        env_id: a gymnasium id with a flat observation and a discrete action.
        hidden_size: the recurrent width.
        eps: epsilon of the exploration module.
        seed: seeds torch's generator before the weights are drawn.
    """
    torch.manual_seed(seed)
    spec = GymEnv(env_id).single_action_spec
    features = GymEnv(env_id).single_observation_spec["observation"].shape[-1]
    rnn = RECURRENT_MODULES[kind](input_size=features, hidden_size=hidden_size,
                                  num_layers=num_layers)  # fmt: skip
    head = TensorDictModule(MLP(hidden_size, spec.shape[-1], num_cells=[16]), ["embed"],
                            ["action_value"])  # fmt: skip
    return TensorDictSequential(
        rnn, head, QValueModule(action_space=spec), EGreedyModule(spec, eps_init=eps)
    ).eval()


def recurrent_env(
    policy: TensorDictSequential, *, env_id: str = "CartPole-v1", num_envs: int | None = None
) -> TransformedEnv:
    """``env_id`` (or ``ParallelEnv(num_envs)`` of it) with ``InitTracker`` and the primer."""
    base = GymEnv(env_id) if num_envs is None else ParallelEnv(num_envs, lambda: GymEnv(env_id))
    return TransformedEnv(base, Compose(InitTracker(), policy[0].make_tensordict_primer()))


def policy_case(name: str) -> PolicyCase:
    """The case called ``name``."""
    for case in POLICY_CASES:
        if case.name == name:
            return case
    raise KeyError(f"no policy case {name!r}; cases: {[case.name for case in POLICY_CASES]}")


def assert_same_tensordict(actual: TensorDictBase, expected: TensorDictBase) -> None:
    """Assert two rollouts (or any tensordicts) are equal field by field.

    Compares the types, batch sizes and devices, the leaf keys in order (and ``"next"``'s
    keys in order), and each leaf's dtype, shape, strides and values (exactly).

    Raises:
        AssertionError: naming the first key that differs.
    """
    assert type(actual) is type(expected)
    assert actual.batch_size == expected.batch_size
    assert actual.device == expected.device
    keys = list(expected.keys(include_nested=True, leaves_only=True))
    assert list(actual.keys(include_nested=True, leaves_only=True)) == keys
    if "next" in expected.keys():
        assert list(actual["next"].keys()) == list(expected["next"].keys())
    for key in keys:
        a, b = actual.get(key), expected.get(key)
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        assert a.stride() == b.stride(), key
        assert torch.equal(a, b), key
