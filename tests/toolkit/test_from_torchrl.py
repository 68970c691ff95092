"""TorchRL objects as rlpol's: specs, envs and transforms, module substitutes (needs torchrl).

Runs in the interop job (``.ci/run``: torchrl 0.14.1 with tensordict 0.14.3); skipped where
torchrl is not installed. Each conversion is checked against the TorchRL object itself:
spec samples, env rollouts driven by one policy, module outputs on one batch.
"""

from __future__ import annotations

import pytest
import torch

torchrl = pytest.importorskip("torchrl")

from tensordict import TensorDict  # noqa: E402
from tensordict.nn import TensorDictModule, TensorDictSequential  # noqa: E402
from torch import nn  # noqa: E402
from torchrl import data as trl_data  # noqa: E402
from torchrl import envs as trl_envs  # noqa: E402
from torchrl import modules as trl_modules  # noqa: E402

from rlpol.errors import ExportError, SpecError  # noqa: E402
from rlpol.toolkit import envs as rl_envs  # noqa: E402
from rlpol.toolkit import modules as rl_modules  # noqa: E402
from rlpol.toolkit import specs as rl_specs  # noqa: E402
from rlpol.toolkit.from_torchrl import is_torchrl, rlpol_env, rlpol_policy, rlpol_spec  # noqa: E402
from rlpol.verify.parity import compare_rollouts  # noqa: E402

SPECS = [
    (lambda: trl_data.Bounded(-1.0, 2.0, (3,)), rl_specs.Bounded),
    (lambda: trl_data.Bounded(0, 5, (2,), dtype=torch.int64), rl_specs.Bounded),
    (lambda: trl_data.Unbounded((3,)), rl_specs.Unbounded),
    (lambda: trl_data.Categorical(4), rl_specs.Categorical),
    (lambda: trl_data.OneHot(4), rl_specs.OneHot),
    (lambda: trl_data.Binary(3), rl_specs.Binary),
    (lambda: trl_data.MultiCategorical([2, 3]), rl_specs.MultiCategorical),
    (lambda: trl_data.MultiOneHot([2, 3]), rl_specs.MultiOneHot),
]


@pytest.mark.parametrize(("make", "expected_class"), SPECS)
def test_each_spec_keeps_class_shape_dtype_and_accepts_torchrl_samples(make, expected_class):
    theirs = make()
    ours = rlpol_spec(theirs)
    assert type(ours) is expected_class
    assert (ours.shape, ours.dtype) == (theirs.shape, theirs.dtype)
    for _ in range(20):
        assert ours.is_in(theirs.rand())
    if isinstance(theirs, trl_data.Bounded):
        assert torch.equal(ours.low, theirs.space.low) and torch.equal(ours.high, theirs.space.high)


def test_a_nested_composite_keeps_its_tree():
    theirs = trl_data.Composite(a=trl_data.Unbounded(2), b=trl_data.Composite(c=trl_data.OneHot(3)))
    ours = rlpol_spec(theirs)
    assert sorted(map(str, ours.keys(True, True))) == ["('b', 'c')", "a"]
    assert isinstance(ours["b", "c"], rl_specs.OneHot)


def test_an_unknown_spec_is_a_spec_error_naming_it():
    with pytest.raises(SpecError, match="NonTensor"):
        rlpol_spec(trl_data.NonTensor(shape=()))


def _rollouts(theirs, ours, policy, steps=60):
    """Rollouts of one policy in both envs from one seed (TorchRL's set_seed resets at once,
    rlpol's at the next reset: one more reset aligns them)."""
    theirs.set_seed(0)
    expected = theirs.rollout(steps, policy, break_when_any_done=False)
    ours.set_seed(0)
    ours.reset()
    actual = ours.rollout(steps, policy, break_when_any_done=False)
    return expected, actual


def pendulum_policy():
    return TensorDictModule(lambda o: (o[..., :1] * 0.7).clamp(-2, 2), ["observation"], ["action"])


def test_a_gym_env_with_transforms_rolls_out_like_torchrl():
    theirs = trl_envs.TransformedEnv(trl_envs.GymEnv("Pendulum-v1"), trl_envs.Compose(
        trl_envs.ObservationNorm(loc=torch.tensor([0.1, 0.0, 1.0]), scale=torch.tensor(0.5),
                                 in_keys=["observation"]),
        trl_envs.DoubleToFloat(), trl_envs.StepCounter(50), trl_envs.InitTracker(),
        trl_envs.RewardSum(), trl_envs.CatFrames(3, dim=-1, in_keys=["observation"]),
    ))  # fmt: skip
    ours = rlpol_env(theirs)
    assert isinstance(ours, rl_envs.TransformedEnv) and ours.env_id == "Pendulum-v1"
    assert [type(t).__name__ for t in ours.transforms] == [
        "ObservationNorm", "DoubleToFloat", "StepCounter", "InitTracker", "RewardSum", "CatFrames",
    ]
    expected, actual = _rollouts(theirs, ours, pendulum_policy())
    report = compare_rollouts(expected, actual.select(*expected.keys(True, True)))
    assert report.ok, report.rows()
    assert expected["next", "truncated"].any()  # StepCounter(50) truncated, in both


@pytest.mark.parametrize("categorical", [False, True], ids=["one-hot", "categorical"])
def test_a_discrete_env_keeps_its_action_encoding(categorical):
    theirs = trl_envs.GymEnv("CartPole-v1", categorical_action_encoding=categorical)
    ours = rlpol_env(theirs)
    assert type(ours.action_spec).__name__ == type(theirs.action_spec).__name__

    def push_toward_the_lean(angle: torch.Tensor) -> torch.Tensor:
        index = (angle > 0).long()
        return index if categorical else torch.nn.functional.one_hot(index, 2)

    policy = TensorDictModule(lambda o: push_toward_the_lean(o[..., 2]), ["observation"], ["action"])
    expected, actual = _rollouts(theirs, ours, policy)
    report = compare_rollouts(expected, actual)
    assert report.ok, report.rows()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: trl_envs.SerialEnv(2, lambda: trl_envs.GymEnv("CartPole-v1")), "SerialEnv"),
        (lambda: trl_envs.GymEnv("CartPole-v1", frame_skip=2), "frame_skip=2"),
        (lambda: trl_envs.TransformedEnv(trl_envs.GymEnv("CartPole-v1"),
                                         trl_envs.RenameTransform(["observation"], ["obs"])),
         "RenameTransform"),
    ],
    ids=["batched", "frame-skip", "unknown-transform"],
)
def test_envs_rlpol_cannot_rebuild_are_export_errors(make, match):
    with pytest.raises(ExportError, match=match):
        rlpol_env(make())


def test_is_torchrl_tells_torchrl_objects_from_others():
    assert is_torchrl(trl_modules.MLP(out_features=2))
    assert not is_torchrl(rl_modules.MLP(4, 2)) and not is_torchrl(nn.Linear(2, 2))


PENDULUM_SPEC = trl_data.Bounded(-2.0, 2.0, (1,))
CARTPOLE_SPEC = trl_data.OneHot(2, dtype=torch.int64)


def _params(out: int) -> TensorDictModule:
    net = nn.Sequential(trl_modules.MLP(in_features=3, out_features=out, num_cells=[8]))
    if out == 2:
        net.append(trl_modules.NormalParamExtractor())
    return TensorDictModule(net, ["observation"], ["loc", "scale"] if out == 2 else ["logits"])


MODULES = {
    "tanh_normal": lambda: trl_modules.ProbabilisticActor(
        _params(2), in_keys=["loc", "scale"], distribution_class=trl_modules.TanhNormal,
        distribution_kwargs={"low": -2.0, "high": 2.0}, spec=PENDULUM_SPEC, return_log_prob=True,
    ),
    "tanh_normal_default_bounds": lambda: trl_modules.ProbabilisticActor(
        _params(2), in_keys=["loc", "scale"], distribution_class=trl_modules.TanhNormal,
        spec=PENDULUM_SPEC,  # TorchRL keeps [-1, 1] here: so must the substitute
    ),
    "one_hot_categorical": lambda: trl_modules.ProbabilisticActor(
        TensorDictModule(trl_modules.MLP(in_features=3, out_features=2, num_cells=[8]),
                         ["observation"], ["logits"]),
        in_keys=["logits"], distribution_class=trl_modules.OneHotCategorical,
        spec=CARTPOLE_SPEC, return_log_prob=True,
    ),
    "egreedy": lambda: TensorDictSequential(
        trl_modules.QValueActor(trl_modules.MLP(in_features=3, out_features=2, num_cells=[8]),
                                in_keys=["observation"], spec=CARTPOLE_SPEC),
        trl_modules.EGreedyModule(CARTPOLE_SPEC, eps_init=0.5, eps_end=0.1,
                                  annealing_num_steps=10),
    ),
    "lstm": lambda: trl_modules.LSTMModule(input_size=3, hidden_size=5, in_key="observation",
                                           out_key="embed"),
    "gru": lambda: trl_modules.GRUModule(input_size=3, hidden_size=5, in_key="observation",
                                         out_key="embed"),
}


def _batch(name: str) -> TensorDict:
    """Observations [6, 3] (some saturating a tanh), and recurrent states for the RNNs."""
    td = TensorDict(observation=torch.randn(6, 3) * 3, batch_size=[6])
    if name in ("lstm", "gru"):
        for key in ("recurrent_state_h", "recurrent_state_c", "recurrent_state"):
            td[key] = torch.randn(6, 1, 5)
        td["is_init"] = torch.tensor([[True], [False]] * 3)
    return td


@pytest.mark.parametrize("name", list(MODULES))
def test_each_substitute_computes_the_torchrl_modules_deterministic_outputs(name):
    original, batch = MODULES[name](), _batch(name)
    converted, substitutes = rlpol_policy(original, batch)
    assert substitutes and converted is not original
    assert not any(is_torchrl(m) and type(m).__name__ in ("EGreedyModule", "LSTMModule",
                   "GRUModule", "SafeProbabilisticModule") for m in converted.modules())
    with torch.no_grad(), rl_modules.set_exploration_type(rl_modules.ExplorationType.DETERMINISTIC):
        expected, actual = original(batch.clone()), converted(batch.clone())
    for key in expected.keys(True, True):
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=0)


def test_the_egreedy_substitute_keeps_the_current_eps_and_its_schedule():
    original = MODULES["egreedy"]()
    original[-1].step(4)  # 0.5 -> 0.34
    converted, _ = rlpol_policy(original, _batch("egreedy"))
    module = converted[-1]
    assert isinstance(module, rl_modules.EGreedyModule)
    assert module.eps.item() == pytest.approx(original[-1].eps.item())
    module.step(100)
    assert module.eps.item() == pytest.approx(0.1)


def test_a_tanh_normal_without_bounds_keeps_torchrls_default_bounds():
    converted, _ = rlpol_policy(MODULES["tanh_normal_default_bounds"](), _batch("tanh"))
    td = converted(TensorDict(observation=torch.randn(500, 3) * 10, batch_size=[500]))
    assert td["action"].abs().max() <= 1.0  # not the spec's [-2, 2]


def test_a_distribution_rlpol_cannot_sample_is_an_export_error_naming_it():
    actor = trl_modules.ProbabilisticActor(
        _params(2), in_keys=["loc", "scale"], distribution_class=trl_modules.TruncatedNormal,
        spec=PENDULUM_SPEC,
    )
    with pytest.raises(ExportError, match="TruncatedNormal"):
        rlpol_policy(actor, _batch("tanh"))


def test_a_policy_without_torchrl_modules_is_returned_as_it_is():
    policy = rl_modules.Actor(rl_modules.MLP(3, 1, num_cells=[4]))
    assert rlpol_policy(policy) == (policy, ())
