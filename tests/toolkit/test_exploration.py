"""Exploration modules: statistics, spec membership, masks, and the randomness protocol."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import distributions as D

from rlpol.errors import InputMismatchError, SpecError
from rlpol.toolkit.modules import (
    MLP,
    Actor,
    AdditiveGaussianModule,
    EGreedyModule,
    ExplorationType,
    InteractionType,
    OrnsteinUhlenbeckProcessModule,
    ProbabilisticActor,
    QValueModule,
    TanhNormal,
    exploration_type,
    set_exploration_type,
    set_interaction_type,
)
from rlpol.toolkit.noise import draw, noise_source, stochastic_modules
from rlpol.toolkit.specs import Binary, Bounded, Categorical, MultiOneHot, OneHot, Unbounded

N_ROWS = 10_000


class ReplaySource:
    """Feeds recorded draws back, in call order (what an exporter or a runtime does)."""

    def __init__(self, draws, parameters=None):
        self._draws = list(draws)
        self._parameters = parameters or {}
        self.calls = []

    def draws(self, module, batch_shape, device):
        n = len(module.noise_specs)
        taken, self._draws = self._draws[:n], self._draws[n:]
        for spec, tensor in zip(module.noise_specs, taken):
            assert tuple(tensor.shape) == (*batch_shape, *spec.shape)
        self.calls.append(type(module).__name__)
        return taken

    def parameters(self, module):
        params = dict(module.exploration_parameters())
        params.update(self._parameters)
        return params


def record_draws(policy, batch_shape, seed):
    """The draws the eager policy takes after ``torch.manual_seed(seed)``, per the protocol."""
    torch.manual_seed(seed)
    return [
        draw(spec, batch_shape)
        for _, module in stochastic_modules(policy)
        for spec in module.noise_specs
    ]


def action_td(action: torch.Tensor, **extra) -> TensorDict:
    return TensorDict(action=action, **extra, batch_size=action.shape[:1])


# ---------------------------------------------------------------------------------------
# Aliases and switches
# ---------------------------------------------------------------------------------------


def test_exploration_type_aliases():
    assert ExplorationType is InteractionType
    assert set_exploration_type is set_interaction_type
    assert exploration_type() is None
    with set_exploration_type(ExplorationType.MEAN):
        assert exploration_type() is ExplorationType.MEAN


@pytest.mark.parametrize(
    "make",
    [
        lambda: EGreedyModule(OneHot(3), eps_init=1.0),
        lambda: AdditiveGaussianModule(Bounded(-1, 1, (2,))),
        lambda: OrnsteinUhlenbeckProcessModule(Bounded(-1, 1, (2,))),
    ],
)
@pytest.mark.parametrize(
    ("kind", "explores"),
    [
        (None, True),
        (ExplorationType.RANDOM, True),
        (ExplorationType.MEAN, False),
        (ExplorationType.MODE, False),
        (ExplorationType.DETERMINISTIC, False),
    ],
)
def test_explores_only_under_random_or_unset(make, kind, explores):
    module = make()
    shape = (64, *module.spec.shape)
    action = OneHot(3).rand((64,)) if isinstance(module, EGreedyModule) else torch.zeros(shape)
    td = action_td(action.clone(), is_init=torch.ones(64, 1, dtype=torch.bool))
    state = torch.get_rng_state()
    with set_exploration_type(kind):
        assert module.is_exploring() is explores
        out = module(td)
    assert torch.equal(torch.get_rng_state(), state) is not explores  # no draw when idle
    assert torch.equal(out["action"], action) is not explores


# ---------------------------------------------------------------------------------------
# EGreedyModule
# ---------------------------------------------------------------------------------------


def test_egreedy_explore_fraction_follows_the_documented_draws():
    eps, n, seed = 0.3, 4, 7
    module = EGreedyModule(Categorical(n), eps_init=eps, eps_end=eps)
    greedy = torch.zeros(N_ROWS, dtype=torch.int64)
    torch.manual_seed(seed)
    u_explore, u_action = [draw(spec, (N_ROWS,)) for spec in module.noise_specs]
    torch.manual_seed(seed)
    out = module(action_td(greedy.clone()))["action"]
    explore = u_explore < eps
    fraction = explore.float().mean().item()
    assert abs(fraction - eps) < 3 * math.sqrt(eps * (1 - eps) / N_ROWS)
    expected = torch.where(explore, torch.floor(u_action * n).long(), greedy)
    assert torch.equal(out, expected)
    # the changed rows: exploring rows whose random pick differs from the greedy action
    changed = (out != greedy).float().mean().item()
    assert abs(changed - eps * (n - 1) / n) < 0.02


def test_egreedy_anneals():
    module = EGreedyModule(OneHot(2), eps_init=0.5, eps_end=0.1, annealing_num_steps=4)
    assert module.eps.item() == pytest.approx(0.5)
    module.step()
    assert module.eps.item() == pytest.approx(0.4)
    module.step(2)
    assert module.eps.item() == pytest.approx(0.2)
    module.step(100)
    assert module.eps.item() == pytest.approx(0.1)
    assert module.exploration_parameters() == {"eps": module.eps}


@pytest.mark.parametrize(
    "spec",
    [OneHot(5), Categorical(5), Bounded(-2.0, 2.0, (3,)), Bounded(0, 9, (2,), dtype=torch.int64)],
)
def test_egreedy_random_actions_stay_in_spec(spec):
    module = EGreedyModule(spec, eps_init=1.0)
    out = module(action_td(spec.zero((2000,))))["action"]
    assert spec.is_in(out)
    assert out.dtype == spec.dtype
    if isinstance(spec, Bounded):
        low, high = spec.low, spec.high
        assert (out.float().mean(0) - (low + high).float() / 2).abs().max() < 0.3
    else:
        index = out.argmax(-1) if isinstance(spec, OneHot) else out
        assert set(index.tolist()) == set(range(5))


@pytest.mark.parametrize("spec", [OneHot(5), Categorical(5)])
def test_egreedy_respects_the_action_mask(spec):
    torch.manual_seed(0)
    mask = torch.rand(N_ROWS, 5) < 0.5
    mask[:, 3] = True  # at least one allowed action per row
    module = EGreedyModule(spec, eps_init=1.0, action_mask_key="action_mask")
    out = module(action_td(spec.zero((N_ROWS,)), action_mask=mask))["action"]
    index = out.argmax(-1) if isinstance(spec, OneHot) else out
    assert mask.gather(-1, index.unsqueeze(-1)).all()
    assert set(index.tolist()) == set(range(5))  # every action is reachable somewhere


def test_egreedy_mask_picks_the_kth_allowed_action():
    module = EGreedyModule(Categorical(4), eps_init=1.0, action_mask_key="mask")
    mask = torch.tensor([[True, False, True, True]] * 3)
    draws = [torch.zeros(3), torch.tensor([0.1, 0.4, 0.9])]  # k = 0, 1, 2
    with noise_source(ReplaySource(draws)):
        out = module(action_td(torch.zeros(3, dtype=torch.int64), mask=mask))["action"]
    assert out.tolist() == [0, 2, 3]


def test_egreedy_exploration_parameters_come_from_the_source():
    module = EGreedyModule(Categorical(3), eps_init=1.0)
    greedy = torch.ones(100, dtype=torch.int64)
    draws = [torch.full((100,), 0.5), torch.zeros(100)]
    with noise_source(ReplaySource(draws, {"eps": torch.tensor(0.0)})):
        out = module(action_td(greedy.clone()))["action"]
    assert torch.equal(out, greedy)


@pytest.mark.parametrize("spec", [MultiOneHot([2, 3]), Binary(3), Unbounded((2,))])
def test_egreedy_unsupported_specs(spec):
    with pytest.raises(SpecError, match="supports OneHot, Categorical and Bounded"):
        EGreedyModule(spec)


def test_egreedy_bad_arguments():
    with pytest.raises(ValueError, match="decrease"):
        EGreedyModule(OneHot(2), eps_init=0.1, eps_end=0.5)
    with pytest.raises(ValueError, match="annealing_num_steps"):
        EGreedyModule(OneHot(2), annealing_num_steps=0)
    with pytest.raises(SpecError, match="action_mask_key"):
        EGreedyModule(Bounded(-1, 1, (1,)), action_mask_key="mask")


@pytest.mark.parametrize(
    ("spec", "action"),
    [
        (OneHot(3), torch.zeros(4, 2, dtype=torch.int64)),
        (OneHot(3), torch.zeros(5, dtype=torch.int64)),
        (Categorical(3), torch.zeros(4, 3, dtype=torch.int64)),
    ],
)
def test_egreedy_wrong_action_shape(spec, action):
    module = EGreedyModule(spec)
    with pytest.raises(InputMismatchError, match="spec's shape"):
        module(action_td(action))


@pytest.mark.parametrize("spec", [OneHot(3).expand(4), Categorical(3).expand(4)])
def test_egreedy_batched_spec(spec):
    module = EGreedyModule(spec, eps_init=1.0)
    out = module(action_td(spec.zero()))["action"]
    assert out.shape == spec.shape
    assert spec.is_in(out)
    assert module.noise_specs[1].shape == ()


# ---------------------------------------------------------------------------------------
# AdditiveGaussianModule
# ---------------------------------------------------------------------------------------


def test_additive_gaussian_noise_statistics():
    sigma, mean, std = 0.5, 0.2, 2.0
    module = AdditiveGaussianModule(
        Unbounded((2,)), sigma_init=sigma, sigma_end=sigma, mean=mean, std=std
    )
    out = module(action_td(torch.zeros(N_ROWS, 2)))["action"]
    tolerance = 4 * sigma * std / math.sqrt(N_ROWS)
    assert (out.mean(0) - sigma * mean).abs().max() < tolerance
    assert (out.std(0) - sigma * std).abs().max() < 0.05 * sigma * std


def test_additive_gaussian_clamps_to_bounds():
    spec = Bounded(-1.0, 1.0, (3,))
    module = AdditiveGaussianModule(spec, sigma_init=5.0)
    out = module(action_td(torch.zeros(1000, 3)))["action"]
    assert spec.is_in(out)
    assert (out.abs() == 1.0).any()
    unsafe = AdditiveGaussianModule(spec, sigma_init=5.0, safe=False)
    assert not spec.is_in(unsafe(action_td(torch.zeros(1000, 3)))["action"])


def test_additive_gaussian_anneals_and_rejects_discrete_specs():
    module = AdditiveGaussianModule(Bounded(-1, 1, (1,)), annealing_num_steps=10)
    module.step(5)
    assert module.sigma.item() == pytest.approx(0.55)
    assert set(module.exploration_parameters()) == {"sigma"}
    with pytest.raises(SpecError, match="Bounded and Unbounded"):
        AdditiveGaussianModule(OneHot(2))


# ---------------------------------------------------------------------------------------
# OrnsteinUhlenbeckProcessModule
# ---------------------------------------------------------------------------------------


def test_ou_state_and_reset():
    spec = Bounded(-1.0, 1.0, (2,))
    module = OrnsteinUhlenbeckProcessModule(spec)
    is_init = torch.ones(3, 1, dtype=torch.bool)
    td = action_td(torch.zeros(3, 2), is_init=is_init)
    td = module(td)
    assert td["_ou_steps"].tolist() == [1, 1, 1]
    assert td["_ou_prev_noise"].shape == (3, 2)
    for _ in range(4):
        td["action"] = torch.zeros(3, 2)
        td["is_init"] = torch.tensor([[False], [True], [False]])
        td = module(td)
    assert td["_ou_steps"].tolist() == [5, 1, 5]
    assert spec.is_in(td["action"])


def test_ou_noise_is_autocorrelated():
    module = OrnsteinUhlenbeckProcessModule(Unbounded((1,)), sigma=1.0, theta=0.15, dt=0.01)
    td = action_td(torch.zeros(N_ROWS, 1), is_init=torch.ones(N_ROWS, 1, dtype=torch.bool))
    noises = []
    for _ in range(3):
        td["action"] = torch.zeros(N_ROWS, 1)
        td = module(td)
        td["is_init"] = torch.zeros(N_ROWS, 1, dtype=torch.bool)
        noises.append(td["_ou_prev_noise"].squeeze(-1))
    correlation = torch.corrcoef(torch.stack([noises[1], noises[2]]))[0, 1]
    assert correlation > 0.5


def test_ou_matches_the_documented_formula():
    module = OrnsteinUhlenbeckProcessModule(
        Unbounded((1,)), eps_init=0.5, eps_end=0.5, theta=0.3, mu=0.1, sigma=0.2, dt=0.04
    )
    z = torch.tensor([[1.0], [-2.0]])
    td = action_td(torch.ones(2, 1), is_init=torch.ones(2, 1, dtype=torch.bool))
    with noise_source(ReplaySource([z])):
        td = module(td)
    noise = 0.3 * 0.1 * 0.04 + 0.2 * math.sqrt(0.04) * z
    torch.testing.assert_close(td["_ou_prev_noise"], noise)
    torch.testing.assert_close(td["action"], 1.0 + 0.5 * noise)


def test_ou_warns_once_without_is_init():
    module = OrnsteinUhlenbeckProcessModule(Unbounded((1,)))
    with pytest.warns(UserWarning, match="InitTracker"):
        module(action_td(torch.zeros(2, 1)))


# ---------------------------------------------------------------------------------------
# Reproducibility and replay (the exporter's contract)
# ---------------------------------------------------------------------------------------

BATCH = 16


def _gaussian_actor(distribution_class, spec):
    backbone = TensorDictModule(
        torch.nn.Sequential(MLP(3, 2), NormalParamExtractor()),
        in_keys=["observation"],
        out_keys=["loc", "scale"],
    )
    return ProbabilisticActor(
        backbone,
        ["loc", "scale"],
        spec=spec,
        distribution_class=distribution_class,
        return_log_prob=True,
    )


def _logits_actor(distribution_class, spec):
    backbone = TensorDictModule(MLP(3, 4), in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(
        backbone, ["logits"], spec=spec, distribution_class=distribution_class
    )


def _qvalue_egreedy():
    value_net = TensorDictModule(MLP(3, 4), in_keys=["observation"], out_keys=["action_value"])
    return TensorDictSequential(value_net, QValueModule(OneHot(4)), EGreedyModule(OneHot(4), 0.5))


POLICIES = {
    "normal": lambda: _gaussian_actor(D.Normal, Bounded(-1, 1, (1,))),
    "tanh_normal": lambda: _gaussian_actor(TanhNormal, Bounded(-2, 2, (1,))),
    "categorical": lambda: _logits_actor(D.Categorical, Categorical(4)),
    "one_hot_categorical": lambda: _logits_actor(D.OneHotCategorical, OneHot(4)),
    "qvalue_egreedy": _qvalue_egreedy,
    "actor_gaussian": lambda: TensorDictSequential(
        Actor(MLP(3, 2)), AdditiveGaussianModule(Bounded(-1, 1, (2,)), sigma_init=0.5)
    ),
    "tanh_then_gaussian": lambda: TensorDictSequential(
        _gaussian_actor(TanhNormal, Bounded(-2, 2, (1,))),
        AdditiveGaussianModule(Bounded(-2, 2, (1,)), sigma_init=0.3),
    ),
    "actor_ou": lambda: TensorDictSequential(
        Actor(MLP(3, 2)), OrnsteinUhlenbeckProcessModule(Bounded(-1, 1, (2,)))
    ),
}


def _observation():
    return TensorDict(
        observation=torch.linspace(-1, 1, BATCH * 3).reshape(BATCH, 3),
        is_init=torch.ones(BATCH, 1, dtype=torch.bool),
        batch_size=[BATCH],
    )


@pytest.mark.parametrize("name", list(POLICIES))
def test_eager_draws_reproduce(name):
    policy = POLICIES[name]()
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        with set_exploration_type(ExplorationType.RANDOM):
            outputs.append(policy(_observation())["action"])
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("name", list(POLICIES))
def test_replayed_draws_give_the_eager_output(name):
    policy = POLICIES[name]()
    seed = 11
    draws = record_draws(policy, (BATCH,), seed)
    torch.manual_seed(seed)
    with set_exploration_type(ExplorationType.RANDOM):
        eager = policy(_observation())
    source = ReplaySource(draws)
    with noise_source(source), set_exploration_type(ExplorationType.RANDOM):
        replayed = policy(_observation())
    assert source.calls == [type(m).__name__ for _, m in stochastic_modules(policy)]
    for key in eager.keys(include_nested=True, leaves_only=True):
        torch.testing.assert_close(replayed[key], eager[key], rtol=0, atol=0)


def test_module_generator_is_used_for_eager_draws():
    generator = torch.Generator().manual_seed(5)
    module = EGreedyModule(Categorical(10), eps_init=1.0, generator=generator)
    state = torch.get_rng_state()
    first = module(action_td(torch.zeros(50, dtype=torch.int64)))["action"]
    assert torch.equal(torch.get_rng_state(), state)
    generator.manual_seed(5)
    again = module(action_td(torch.zeros(50, dtype=torch.int64)))["action"]
    assert torch.equal(first, again)


# ---------------------------------------------------------------------------------------
# Rollouts on batched envs (the spec carries the batch dim)
# ---------------------------------------------------------------------------------------


def test_egreedy_rollout_on_a_batched_cartpole():
    from rlpol import GymEnv, SerialEnv

    env = SerialEnv(3, lambda: GymEnv("CartPole-v1"))
    try:
        env.set_seed(0)
        torch.manual_seed(0)
        value_net = TensorDictModule(MLP(4, 2), in_keys=["observation"], out_keys=["action_value"])
        policy = TensorDictSequential(
            value_net, QValueModule(env.action_spec), EGreedyModule(env.action_spec, 0.5)
        )
        with set_exploration_type(ExplorationType.RANDOM):
            rollout = env.rollout(5, policy, break_when_any_done=False)
        assert rollout["action"].shape == (3, 5, 2)
        assert OneHot(2).is_in(rollout["action"])
    finally:
        env.close()


def test_ou_rollout_resets_with_init_tracker():
    from rlpol import GymEnv, InitTracker, SerialEnv, TransformedEnv

    env = TransformedEnv(SerialEnv(2, lambda: GymEnv("Pendulum-v1")), InitTracker())
    try:
        env.set_seed(0)
        policy = TensorDictSequential(
            Actor(MLP(3, 1)), OrnsteinUhlenbeckProcessModule(env.action_spec, sigma=0.5)
        )
        rollout = env.rollout(4, policy)
        assert rollout["_ou_steps"].tolist() == [[1, 2, 3, 4], [1, 2, 3, 4]]
        assert rollout["is_init"][:, 0].all() and not rollout["is_init"][:, 1:].any()
        assert Bounded(-2.0, 2.0, (1,)).is_in(rollout["action"])
        second = env.rollout(2, policy)  # reset: the process restarts
        assert second["_ou_steps"].tolist() == [[1, 2], [1, 2]]
    finally:
        env.close()
