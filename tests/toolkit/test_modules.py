"""Networks, actors and the Q-value modules of rlpol.toolkit.modules."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import OneHotCategorical as TDOneHotCategorical
from torch import distributions as D
from torch import nn

from rlpol.errors import InputMismatchError, SpecError
from rlpol.toolkit.modules import (
    MLP,
    Actor,
    AdditiveGaussianModule,
    ConvNet,
    EGreedyModule,
    ExplorationType,
    ProbabilisticActor,
    ProbabilisticModule,
    QValueActor,
    QValueModule,
    TanhNormal,
    set_exploration_type,
)
from rlpol.toolkit.noise import noise_source, stochastic_modules
from rlpol.toolkit.specs import Bounded, Categorical, MultiOneHot, OneHot, Unbounded

OBS_DIM = 3
BATCH = 5


def obs_td(batch: int = BATCH, dim: int = OBS_DIM) -> TensorDict:
    return TensorDict(observation=torch.randn(batch, dim), batch_size=[batch])


class FixedDraws:
    """A noise source handing out given tensors, in order, whatever module asks."""

    def __init__(self, draws, parameters=None):
        self._draws = list(draws)
        self._parameters = parameters or {}

    def draws(self, module, batch_shape, device):
        taken, self._draws = (
            self._draws[: len(module.noise_specs)],
            self._draws[len(module.noise_specs) :],
        )
        return taken

    def parameters(self, module):
        params = dict(module.exploration_parameters())
        params.update(self._parameters)
        return params


# ---------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------


def test_mlp_positional_form_and_widths():
    net = MLP(3, 1, num_cells=[32, 64])
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 32), (32, 64), (64, 1)]
    assert isinstance(net[-1], nn.Linear)  # no activation after the last layer
    assert net(torch.zeros(10, 3)).shape == (10, 1)


def test_mlp_defaults_three_layers_of_32():
    net = MLP(4, 2)
    assert net.num_cells == [32, 32, 32]
    assert sum(isinstance(m, nn.Linear) for m in net) == 4
    assert all(isinstance(m, nn.Tanh) for m in net[1::2])


def test_mlp_lazy_first_layer():
    net = MLP(out_features=2, num_cells=[8])
    assert isinstance(net[0], nn.LazyLinear)
    assert net(torch.zeros(5, 7)).shape == (5, 2)
    assert net[0].in_features == 7


def test_mlp_shape_out_features_and_several_inputs():
    net = MLP(out_features=(2, 3), depth=1, num_cells=4)
    assert net(torch.zeros(5, 2), torch.zeros(5, 3)).shape == (5, 2, 3)


def test_mlp_last_layer_options():
    net = MLP(
        3, 2, depth=1, activate_last_layer=True, bias_last_layer=False, activation_class=nn.ReLU
    )
    assert isinstance(net[-1], nn.ReLU)
    assert net[-2].bias is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_features": 3}, "out_features"),
        ({"out_features": 1, "num_cells": 16}, "depth"),
        ({"out_features": 1, "num_cells": [16, 16], "depth": 3}, "depth=3"),
    ],
)
def test_mlp_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_convnet_batch_dims():
    net = ConvNet(3, num_cells=[8, 16], kernel_sizes=3, strides=2)
    assert net(torch.zeros(4, 3, 32, 32)).shape == (4, 16 * 7 * 7)
    assert net(torch.zeros(2, 5, 3, 32, 32)).shape == (2, 5, 16 * 7 * 7)
    assert net(torch.zeros(3, 32, 32)).shape == (16 * 7 * 7,)


def test_convnet_lazy_and_no_aggregator():
    net = ConvNet(num_cells=[4], kernel_sizes=[3], aggregator_class=None)
    assert isinstance(net[0], nn.LazyConv2d)
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 4, 6, 6)
    assert isinstance(ConvNet(depth=2)[2], nn.Conv2d)


def test_default_atari_dqn_is_the_nature_network():
    net = ConvNet.default_atari_dqn(6)
    cnn, mlp = net
    assert type(net) is nn.Sequential and isinstance(cnn, ConvNet) and isinstance(mlp, MLP)
    assert isinstance(cnn[0], nn.LazyConv2d) and isinstance(mlp[0], nn.LazyLinear)
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (32, (8, 8), (4, 4), (0, 0)), (64, (4, 4), (2, 2), (0, 0)), (64, (3, 3), (1, 1), (0, 0))
    ]  # fmt: skip
    assert all(isinstance(m, nn.ReLU) for m in [*cnn[1::2], mlp[1]])
    out = net(torch.rand(3, 4, 84, 84))
    assert out.shape == (3, 6) and out.dtype == torch.float32
    assert (mlp[0].in_features, mlp[0].out_features, mlp[2].out_features) == (3136, 512, 6)
    # conv 8224 + 32832 + 36928, linear 3136*512+512, head 512*6+6: the paper's 1.69M
    assert sum(p.numel() for p in net.parameters()) == 1_687_206
    assert net(torch.rand(2, 5, 4, 84, 84)).shape == (2, 5, 6)


def test_convnet_per_layer_lists_must_match_depth():
    with pytest.raises(ValueError, match="kernel_sizes"):
        ConvNet(3, num_cells=[4, 4], kernel_sizes=[3, 3, 3])


# ---------------------------------------------------------------------------------------
# Actor
# ---------------------------------------------------------------------------------------


def test_actor_defaults():
    spec = Bounded(-2.0, 2.0, (1,))
    actor = Actor(MLP(OBS_DIM, 1), spec=spec)
    assert actor.in_keys == ["observation"]
    assert actor.out_keys == ["action"]
    assert actor.spec is spec
    out = actor(obs_td())
    assert out["action"].shape == (BATCH, 1)
    assert out["action"].dtype == torch.float32


def test_actor_custom_keys():
    actor = Actor(nn.Linear(2, 1), in_keys="pos", out_keys=["act"])
    out = actor(TensorDict(pos=torch.zeros(4, 2), batch_size=[4]))
    assert out["act"].shape == (4, 1)


# ---------------------------------------------------------------------------------------
# ProbabilisticActor
# ---------------------------------------------------------------------------------------


def gaussian_actor(distribution_class, spec=None, **kwargs):
    backbone = TensorDictModule(
        nn.Sequential(MLP(OBS_DIM, 2), NormalParamExtractor()),
        in_keys=["observation"],
        out_keys=["loc", "scale"],
    )
    return ProbabilisticActor(
        backbone,
        in_keys=["loc", "scale"],
        spec=spec,
        distribution_class=distribution_class,
        **kwargs,
    )


def logits_actor(distribution_class, n=4, spec=None, **kwargs):
    backbone = TensorDictModule(MLP(OBS_DIM, n), in_keys=["observation"], out_keys=["logits"])
    return ProbabilisticActor(
        backbone, in_keys=["logits"], spec=spec, distribution_class=distribution_class, **kwargs
    )


def test_normal_actor_deterministic_and_random():
    actor = gaussian_actor(D.Normal, return_log_prob=True)
    td = obs_td()
    out = actor(td.clone())  # DETERMINISTIC by default
    assert torch.equal(out["action"], out["loc"])
    assert out["action_log_prob"].shape == (BATCH, 1)
    assert actor.log_prob_key == "action_log_prob"
    with set_exploration_type(ExplorationType.RANDOM):
        out = actor(td.clone())
    assert not torch.equal(out["action"], out["loc"])
    expected = D.Normal(out["loc"], out["scale"]).log_prob(out["action"])
    torch.testing.assert_close(out["action_log_prob"], expected)


def test_normal_random_sample_is_loc_plus_scale_times_draw():
    actor = gaussian_actor(D.Normal)
    eps = torch.randn(BATCH, 1)
    with noise_source(FixedDraws([eps])), set_exploration_type(ExplorationType.RANDOM):
        out = actor(obs_td())
    torch.testing.assert_close(out["action"], out["loc"] + out["scale"] * eps)


def test_default_interaction_type_random():
    actor = gaussian_actor(D.Normal, default_interaction_type=ExplorationType.RANDOM)
    out = actor(obs_td())
    assert not torch.equal(out["action"], out["loc"])


def test_tanh_normal_actor_within_spec_bounds():
    spec = Bounded(-2.0, 2.0, (1,))
    actor = gaussian_actor(TanhNormal, spec=spec, return_log_prob=True)
    td = obs_td(1000)
    out = actor(td.clone())
    torch.testing.assert_close(out["action"], 2.0 * torch.tanh(out["loc"]))
    with set_exploration_type(ExplorationType.RANDOM):
        out = actor(td.clone())
    assert spec.is_in(out["action"])
    assert out["action_log_prob"].shape == (1000,)
    assert torch.isfinite(out["action_log_prob"]).all()


def test_tanh_normal_mean_and_mode_use_the_deterministic_sample_without_drawing():
    actor = gaussian_actor(TanhNormal, spec=Bounded(-1.0, 1.0, (1,)))
    td = obs_td()
    for kind in (ExplorationType.MEAN, ExplorationType.MODE, ExplorationType.MEDIAN):
        state = torch.get_rng_state()
        with set_exploration_type(kind):
            out = actor(td.clone())
        assert torch.equal(torch.get_rng_state(), state)
        torch.testing.assert_close(out["action"], torch.tanh(out["loc"]))


def test_tanh_normal_log_prob_finite_when_saturated():
    dist = TanhNormal(torch.full((2, 1), 30.0), torch.ones(2, 1), low=-2.0, high=2.0)
    value = dist.sample_from_noise(torch.zeros(2, 1))
    assert torch.isfinite(dist.log_prob(value)).all()
    assert (value < 2.0).all()


def test_tanh_normal_needs_bounds_from_a_bounded_spec():
    with pytest.raises(SpecError, match="Bounded"):
        gaussian_actor(TanhNormal, spec=OneHot(2))


def test_categorical_actor():
    actor = logits_actor(D.Categorical, return_log_prob=True)
    td = obs_td()
    out = actor(td.clone())
    assert out["action"].dtype == torch.int64
    assert out["action"].shape == (BATCH,)
    assert torch.equal(out["action"], out["logits"].argmax(-1))
    assert actor[-1].noise_specs[0].distribution == "uniform"
    with set_exploration_type(ExplorationType.MEAN):  # a category, not a mean of categories
        assert torch.equal(actor(td.clone())["action"], out["logits"].argmax(-1))
    with set_exploration_type(ExplorationType.RANDOM):
        out = actor(obs_td(2000))
    assert set(out["action"].tolist()) == {0, 1, 2, 3}
    assert out["action_log_prob"].shape == (2000,)


def test_categorical_inverse_cdf():
    actor = ProbabilisticModule(["logits"], distribution_class=D.Categorical)
    logits = torch.log(torch.tensor([[0.2, 0.0, 0.5, 0.3]])).expand(5, 4)
    u = torch.tensor([0.0, 0.19, 0.2, 0.69, 0.999])
    td = TensorDict(logits=logits, batch_size=[5])
    with noise_source(FixedDraws([u])), set_exploration_type(ExplorationType.RANDOM):
        out = actor(td)
    assert out["action"].tolist() == [0, 0, 2, 2, 3]  # never the zero-probability action 1


@pytest.mark.parametrize("distribution_class", [D.OneHotCategorical, TDOneHotCategorical])
def test_one_hot_categorical_actor(distribution_class):
    spec = OneHot(4)
    actor = logits_actor(distribution_class, spec=spec, return_log_prob=True)
    td = obs_td()
    out = actor(td.clone())
    assert out["action"].dtype == torch.int64
    assert torch.equal(out["action"].argmax(-1), out["logits"].argmax(-1))
    assert spec.is_in(out["action"])
    with set_exploration_type(ExplorationType.RANDOM):
        out = actor(obs_td(500))
    assert spec.is_in(out["action"])
    assert out["action_log_prob"].shape == (500,)
    assert actor[-1].noise_specs[0].shape == ()


def test_probabilistic_actor_needs_a_tensordict_module():
    with pytest.raises(TypeError, match="TensorDictModule"):
        ProbabilisticActor(nn.Linear(3, 2), in_keys=["loc", "scale"], distribution_class=D.Normal)


def test_unsupported_distribution_under_random():
    backbone = TensorDictModule(
        nn.Sequential(nn.Linear(3, 2), nn.Softplus(), NormalParamExtractor()),
        in_keys=["observation"],
        out_keys=["concentration1", "concentration0"],
    )
    actor = ProbabilisticActor(
        backbone, in_keys=["concentration1", "concentration0"], distribution_class=D.Beta
    )
    with set_exploration_type(ExplorationType.MEAN):
        actor(obs_td())
    with (
        pytest.raises(SpecError, match="supported distributions"),
        set_exploration_type(ExplorationType.RANDOM),
    ):
        actor(obs_td())


def test_probabilistic_actor_is_found_by_stochastic_modules():
    actor = gaussian_actor(D.Normal)
    found = stochastic_modules(TensorDictSequential(actor, AdditiveGaussianModule(Unbounded((1,)))))
    assert [type(m).__name__ for _, m in found] == ["ProbabilisticModule", "AdditiveGaussianModule"]


def test_noise_specs_from_spec_before_any_call():
    assert gaussian_actor(D.Normal, spec=Bounded(-1, 1, (2,)))[-1].noise_specs[0].shape == (2,)
    with pytest.raises(SpecError, match="not known yet"):
        _ = gaussian_actor(D.Normal)[-1].noise_specs


# ---------------------------------------------------------------------------------------
# Q-values
# ---------------------------------------------------------------------------------------

VALUES = torch.tensor([[0.1, 0.5, 0.3], [0.9, 0.2, 0.4]])


@pytest.mark.parametrize(
    ("action_space", "spec", "one_hot"),
    [
        (OneHot(3), None, True),
        ("one_hot", None, True),
        ("one-hot", None, True),
        ("categorical", None, False),
        (Categorical(3), None, False),
        (None, OneHot(3), True),
        (None, Categorical(3), False),
    ],
)
def test_qvalue_module_action_spaces(action_space, spec, one_hot):
    module = QValueModule(action_space, spec=spec)
    assert module.action_space == ("one_hot" if one_hot else "categorical")
    out = module(TensorDict(action_value=VALUES.clone(), batch_size=[2]))
    assert out["action"].dtype == torch.int64
    if one_hot:
        assert out["action"].tolist() == [[0, 1, 0], [1, 0, 0]]
    else:
        assert out["action"].tolist() == [1, 0]
    assert out["chosen_action_value"].shape == (2, 1)
    torch.testing.assert_close(out["chosen_action_value"], torch.tensor([[0.5], [0.9]]))


def test_qvalue_module_mask():
    module = QValueModule("categorical", action_mask_key="action_mask")
    mask = torch.tensor([[True, False, True], [False, True, True]])
    out = module(TensorDict(action_value=VALUES.clone(), action_mask=mask, batch_size=[2]))
    assert out["action"].tolist() == [2, 2]
    torch.testing.assert_close(out["chosen_action_value"], torch.tensor([[0.3], [0.4]]))


@pytest.mark.parametrize(
    ("action_space", "spec", "match"),
    [
        (None, None, "needs the action space"),
        ("binary", None, "supports action_space"),
        (MultiOneHot([2, 3]), None, "supports"),
        ("categorical", OneHot(3), "agree"),
        (OneHot(3), OneHot(3), "only one"),
    ],
)
def test_qvalue_module_bad_action_space(action_space, spec, match):
    with pytest.raises(SpecError, match=match):
        QValueModule(action_space, spec=spec)


def test_qvalue_actor_wraps_a_plain_module():
    actor = QValueActor(MLP(4, 2), spec=OneHot(2))
    out = actor(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
    assert sorted(out.keys()) == ["action", "action_value", "chosen_action_value", "observation"]
    assert out["action"].shape == (3, 2)
    assert actor.in_keys == ["observation"]


def test_qvalue_actor_takes_a_tensordict_module():
    value_net = TensorDictModule(MLP(4, 2), in_keys=["obs"], out_keys=["q"])
    actor = QValueActor(value_net, action_space="categorical", action_value_key="q")
    out = actor(TensorDict(obs=torch.randn(3, 4), batch_size=[3]))
    assert out["action"].shape == (3,)
    with pytest.raises(ValueError, match="action_value_key"):
        QValueActor(value_net, action_space="categorical")


def test_qvalue_module_ties_take_the_first_index_and_actions_are_contiguous():
    values = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]]).T.contiguous().T  # transposed
    assert not values.is_contiguous()
    out = QValueModule("one_hot")(TensorDict(action_value=values, batch_size=[2]))
    assert out["action"].tolist() == [[1, 0, 0], [0, 1, 0]]
    assert out["action"].is_contiguous()


QVALUE_ACTOR_OPTIONS = {
    "default": lambda actor: actor,
    "inplace": lambda actor: setattr(actor, "inplace", True) or actor,
    "not inplace": lambda actor: setattr(actor, "inplace", False) or actor,
    "selected": lambda actor: actor.select_out_keys("action"),
    "selected then reset": lambda actor: actor.select_out_keys("action").reset_out_keys(),
}


@pytest.mark.parametrize("options", list(QVALUE_ACTOR_OPTIONS))
def test_qvalue_actor_forward_equals_the_sequence_forward(options):
    """The direct two-module call QValueActor takes with default options, and the generic
    TensorDictSequential.forward it defers to otherwise, give the same tensordict."""
    actor = QVALUE_ACTOR_OPTIONS[options](QValueActor(MLP(4, 2), spec=OneHot(2)))
    given = TensorDict(observation=torch.randn(3, 4), batch_size=[3])
    inputs = given.clone(), given.clone()
    got = actor(inputs[0])
    want = TensorDictSequential.forward(actor, inputs[1])
    assert set(got.keys()) == set(want.keys())
    for key in want.keys():
        assert torch.equal(got[key], want[key]), key
    assert (got is inputs[0]) == (want is inputs[1])
    if options == "selected":
        assert set(got.keys()) == {"observation", "action"}


def test_qvalue_actor_runs_modules_appended_to_it():
    actor = QValueActor(MLP(4, 2), spec=OneHot(2))
    actor.module.append(TensorDictModule(lambda a: a * 2, in_keys=["action"], out_keys=["twice"]))
    out = actor(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
    assert torch.equal(out["twice"], out["action"] * 2)


# ---------------------------------------------------------------------------------------
# Missing keys
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Actor(MLP(3, 1)), r"'observation' \(shape \[\*B, 3\]\).*holds \['obs'\]"),
        (lambda: gaussian_actor(D.Normal), r"'observation'.*holds \['obs'\]"),
        (lambda: QValueActor(MLP(3, 2), spec=OneHot(2)), r"'observation' \(shape \[\*B, 3\]\)"),
        (lambda: QValueModule(OneHot(2)), r"'action_value' \(shape \[\*B, 2\]\)"),
        (lambda: EGreedyModule(OneHot(2)), r"'action' \(shape \[\*B, 2\]\)"),
    ],
)
def test_missing_key_raises_input_mismatch(make, match):
    module = make()
    with pytest.raises(InputMismatchError, match=match):
        module(TensorDict(obs=torch.zeros(2, 3), batch_size=[2]))


# ---------------------------------------------------------------------------------------
# Traceability: torch.export (non-strict) and torch.jit.trace
# ---------------------------------------------------------------------------------------


class PolicyWrapper(nn.Module):
    """Tensors in, tensors out: builds the tensordict, calls the policy under fixed draws."""

    def __init__(self, policy, out_keys):
        super().__init__()
        self.policy = policy
        self.out_keys = out_keys

    def forward(self, observation, *draws):
        td = TensorDict(observation=observation, batch_size=observation.shape[:-1])
        with noise_source(FixedDraws(draws)), set_exploration_type(ExplorationType.RANDOM):
            td = self.policy(td)
        return tuple(td.get(key) for key in self.out_keys)


def _traceable_cases():
    normal = gaussian_actor(D.Normal, spec=Bounded(-1, 1, (1,)), return_log_prob=True)
    tanh = gaussian_actor(TanhNormal, spec=Bounded(-2, 2, (1,)), return_log_prob=True)
    categorical = logits_actor(D.Categorical, spec=Categorical(4))
    one_hot = logits_actor(TDOneHotCategorical, spec=OneHot(4))
    qvalue = TensorDictSequential(
        QValueActor(MLP(3, 2), spec=OneHot(2)), EGreedyModule(OneHot(2), 0.5)
    )
    gaussian = TensorDictSequential(
        Actor(MLP(3, 1)), AdditiveGaussianModule(Bounded(-1, 1, (1,)), sigma_init=0.3)
    )
    n = 6
    return {
        "normal": (normal, ["action", "action_log_prob"], [torch.randn(n, 1)]),
        "tanh_normal": (tanh, ["action", "action_log_prob"], [torch.randn(n, 1)]),
        "categorical": (categorical, ["action"], [torch.rand(n)]),
        "one_hot_categorical": (one_hot, ["action"], [torch.rand(n)]),
        "qvalue_egreedy": (
            qvalue,
            ["action", "chosen_action_value"],
            [torch.rand(n), torch.rand(n)],
        ),
        "actor_gaussian": (gaussian, ["action"], [torch.randn(n, 1)]),
    }


TRACEABLE = _traceable_cases()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", list(TRACEABLE))
def test_export_and_jit_trace(name):
    policy, out_keys, draws = TRACEABLE[name]
    wrapper = PolicyWrapper(policy, out_keys)
    obs = torch.randn(draws[0].shape[0], OBS_DIM)
    eager = wrapper(obs, *draws)
    batch = torch.export.Dim("batch", min=2)
    dynamic = ({0: batch}, tuple({0: batch} for _ in draws))
    exported = torch.export.export(wrapper, (obs, *draws), dynamic_shapes=dynamic, strict=False)
    for got, want in zip(exported.module()(obs, *draws), eager):
        torch.testing.assert_close(got, want)
        assert got.dtype == want.dtype
    other = [torch.cat([d, d[:3]]) for d in (obs, *draws)]  # another batch size
    for got, want in zip(exported.module()(*other), wrapper(*other)):
        torch.testing.assert_close(got, want)
    traced = torch.jit.trace(wrapper, (obs, *draws), check_trace=False)
    for got, want in zip(traced(obs, *draws), eager):
        torch.testing.assert_close(got, want)
    assert "rand" not in str(exported.graph)


# ---------------------------------------------------------------------------------------
# Docstring examples
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module_name", ["networks", "distributions", "probabilistic", "actors", "exploration"]
)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(f"rlpol.toolkit.modules.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
