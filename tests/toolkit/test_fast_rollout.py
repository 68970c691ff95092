"""The fast rollout path: the same TED tensordict as the generic path, field by field.

``env.rollout`` runs an :class:`~rlpol.toolkit.envs.fast_rollout.ArrayPolicy` (a loaded
artifact) in a plain GymEnv / SerialEnv / ParallelEnv without a tensordict per step. Every
test here runs the same seeded rollout twice, fast and generic (``use_fast_rollout(False)``),
and compares keys (in order), batch size, and each leaf's dtype, shape, strides and values,
after checking that the fast path was really taken.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential

from rlpol import (
    MLP,
    Actor,
    ExplorationType,
    GymEnv,
    ParallelEnv,
    QValueActor,
    RolloutPath,
    SerialEnv,
    StepCounter,
    TransformedEnv,
    export_policy,
    load_policy,
    record_rollout_plans,
    set_exploration_type,
)
from rlpol.errors import InputMismatchError, SpecError
from rlpol.testing import POLICY_CASES, assert_same_tensordict, policy_case
from rlpol.toolkit.envs.fast_rollout import ArrayPolicy, action_validator, use_fast_rollout
from rlpol.toolkit.noise import NoiseSpec, draw
from rlpol.toolkit.specs import Categorical, OneHot, Unbounded

FORMATS = [".onnx", ".pt"]
EXPLORATIONS = ["deterministic", "random"]
# continuous (plain, Gaussian noise, TanhNormal), categorical actions, one-hot Q-values
# with and without e-greedy noise, categorical Q-values with noise
CASES = [
    "actor",
    "actor_gaussian_noise",
    "tanh_normal",
    "categorical",
    "qvalue_onehot",
    "qvalue_onehot_egreedy",
    "qvalue_categorical_egreedy",
]
STEPS = 300


@pytest.fixture
def plans():
    """The plans of the rollouts a test runs (``rlpol.record_rollout_plans``)."""
    with record_rollout_plans() as recorded:
        yield recorded


def array_loops(plans):
    """The array loops the recorded rollouts ran, in order (generic rollouts left out)."""
    return [plan.loop.value for plan in plans if plan.path is not RolloutPath.GENERIC]


def both_rollouts(env, policy, *, steps=STEPS, seed=0, **kwargs):
    """``(fast, generic)``: the same seeded rollout on both paths."""
    results = []
    for enabled in (True, False):
        env.set_seed(seed)
        torch.manual_seed(seed)
        with use_fast_rollout(enabled):
            results.append(env.rollout(steps, policy, **kwargs))
    return results


@pytest.mark.parametrize("break_when_any_done", [False, True])
@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case_name", CASES)
def test_gym_env(artifacts, plans, case_name, suffix, exploration, break_when_any_done):
    env, _, path = artifacts.get(case_name, suffix, exploration)
    fast, generic = both_rollouts(
        env, load_policy(path, trust_code=True), break_when_any_done=break_when_any_done
    )
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(fast, generic)
    if break_when_any_done and generic.shape[0] < STEPS:
        assert generic["next", "done"][-1].all()
    else:
        assert generic.shape == (STEPS,)


@pytest.mark.parametrize("break_when_any_done", [False, True])
@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case_name", CASES)
def test_serial_env(artifacts, plans, case_name, suffix, exploration, break_when_any_done):
    _, _, path = artifacts.get(case_name, suffix, exploration)
    env = SerialEnv(3, policy_case(case_name).make_env_fn())
    try:
        fast, generic = both_rollouts(
            env, load_policy(path, trust_code=True), break_when_any_done=break_when_any_done
        )
    finally:
        env.close()
    assert array_loops(plans) == ["sub_envs"]
    assert_same_tensordict(fast, generic)
    assert fast.shape[0] == 3


@pytest.mark.parametrize("case_name", ["qvalue_onehot_egreedy", "actor_gaussian_noise"])
def test_parallel_env(artifacts, plans, case_name):
    _, _, path = artifacts.get(case_name, ".onnx", "random")
    env = ParallelEnv(2, policy_case(case_name).make_env_fn())
    try:
        fast, generic = both_rollouts(env, load_policy(path, trust_code=True), break_when_any_done=False)
        cut_fast, cut_generic = both_rollouts(env, load_policy(path, trust_code=True), steps=500)
    finally:
        env.close()
    assert array_loops(plans) == ["vector", "vector"]
    assert_same_tensordict(fast, generic)
    assert_same_tensordict(cut_fast, cut_generic)


def test_a_generator_is_used_on_both_paths(artifacts, plans):
    _, _, path = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    env = GymEnv("CartPole-v1")
    results = []
    for enabled in (True, False):
        policy = load_policy(path, generator=torch.Generator().manual_seed(3), trust_code=True)
        env.set_seed(0)
        with use_fast_rollout(enabled):
            results.append(env.rollout(STEPS, policy, break_when_any_done=False))
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(*results)


def test_the_global_generator_ends_in_the_same_state(artifacts):
    env, _, path = artifacts.get("tanh_normal", ".onnx", "random")
    policy = load_policy(path, trust_code=True)
    states = []
    for enabled in (True, False):
        env.set_seed(0)
        torch.manual_seed(0)
        with use_fast_rollout(enabled):
            env.rollout(50, policy, break_when_any_done=False)
        states.append(torch.get_rng_state())
    assert torch.equal(*states)


@pytest.mark.parametrize("size", [(), (1,), (4,), (16,), (17,), (3, 33)])
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_drawing_into_a_buffer_equals_draw(size, distribution):
    """The kernel draws noise with ``out=``: the values must be ``draw``'s, bit for bit."""
    spec = NoiseSpec("x", distribution, ())
    torch.manual_seed(7)
    expected = draw(spec, size)
    out = torch.empty(size)
    torch.manual_seed(7)
    (torch.randn if distribution == "normal" else torch.rand)(size, generator=None, out=out)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("kind", ["exported", "eager"])
def test_auto_reset_false_leaves_the_first_step_in_the_given_root(artifacts, plans, kind):
    env, policy, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    if kind == "exported":
        policy = load_policy(path, trust_code=True)
    roots, results = [], []
    for enabled in (True, False):
        env.set_seed(4)
        root = env.reset()
        with use_fast_rollout(enabled), torch.no_grad():
            results.append(env.rollout(40, policy, auto_reset=False, tensordict=root))
        roots.append(root)
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(*results)
    assert list(roots[0].keys(True, True)) == list(roots[1].keys(True, True))
    assert (roots[0] == roots[1]).all()


def test_input_errors_are_the_forward_errors(artifacts):
    """A Pendulum policy in CartPole: the shape error of the first call, on both paths."""
    _, _, path = artifacts.get("actor", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    env = GymEnv("CartPole-v1")
    messages = []
    for enabled in (True, False):
        with use_fast_rollout(enabled), pytest.raises(InputMismatchError) as error:
            env.rollout(10, policy)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "expected float32 of shape [*B, 3]" in messages[0]


def test_transforms_and_hooks_take_the_generic_path(artifacts, plans):
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    counted = TransformedEnv(GymEnv("CartPole-v1"), StepCounter())
    assert counted.rollout(20, policy, break_when_any_done=False)["step_count"].shape == (20, 1)
    seen = []
    handle = policy.register_forward_hook(lambda module, args, out: seen.append(1))
    try:
        env.rollout(20, policy, break_when_any_done=False)
    finally:
        handle.remove()
    assert array_loops(plans) == [] and len(seen) == 20


def test_an_eager_policy_with_gradients_takes_the_generic_path(plans):
    """Outputs that require grad keep their graph in the generic TED: no arrays for them."""
    case = policy_case("qvalue_onehot")
    env = case.make_env()
    rollout = env.rollout(20, case.make_policy(env), break_when_any_done=False)
    assert array_loops(plans) == [] and rollout.shape == (20,)
    assert rollout["action_value"].requires_grad
    assert not isinstance(case.make_policy(env), ArrayPolicy)


class DictObservationEnv(gym.Env):
    """A dict observation (flat, or with a nested entry) and a continuous action."""

    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def __init__(self, nested: bool) -> None:
        inner = {"touch": gym.spaces.MultiBinary(3)}
        self.observation_space = gym.spaces.Dict(
            {
                "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                "sensors": gym.spaces.Dict(inner) if nested else inner["touch"],
            }
        )
        self.nested = nested

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        return self._observation(), float(np.sum(action)), False, self.t >= 7, {}

    def _observation(self):
        touch = self.np_random.integers(0, 2, 3).astype(np.int8)
        return {
            "position": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "sensors": {"touch": touch} if self.nested else touch,
        }


class Concat(torch.nn.Module):
    def forward(self, position, touch):
        return torch.cat([position, touch.float()], dim=-1)


@pytest.mark.parametrize("nested", [False, True])
def test_dict_observations(tmp_path, plans, nested):
    """Flat dict observations take the fast path, nested keys the generic one; both give
    each step its own values."""
    env = GymEnv(DictObservationEnv(nested))
    touch = ("sensors", "touch") if nested else "sensors"
    features = ("agent", "features") if nested else "features"
    policy = TensorDictSequential(
        TensorDictModule(Concat(), in_keys=["position", touch], out_keys=[features]),
        TensorDictModule(MLP(5, 2, num_cells=[8]), in_keys=[features], out_keys=["action"]),
    )
    path = export_policy(policy, tmp_path / "dict.onnx", env=env)
    fast, generic = both_rollouts(env, load_policy(path, trust_code=True), steps=30, break_when_any_done=False)
    assert array_loops(plans) == ([] if nested else ["gym"])
    assert_same_tensordict(fast, generic)
    # what the policy wrote at step t is computed from root t (not from a later step)
    expected = torch.cat([generic["position"], generic.get(touch).float()], -1)
    torch.testing.assert_close(generic.get(features), expected)


# -- the protocol on its own: a scripted policy that plays given actions -------------------------


class Scripted(TensorDictModuleBase):
    """Plays ``actions[t]`` at call ``t`` and writes ``twice`` = 2 * observation[..., :1];
    implements ArrayPolicy with the same outputs."""

    def __init__(self, actions: torch.Tensor) -> None:
        super().__init__()
        self.in_keys, self.out_keys = ["observation"], ["action", "twice"]
        self.actions = actions
        self.calls = 0

    def forward(self, tensordict):
        tensordict.set("action", self.actions[self.calls].clone())
        tensordict.set("twice", tensordict.get("observation")[..., :1] * 2)
        self.calls += 1
        return tensordict

    def array_kernel(self, root):
        return ScriptedKernel(self, root.batch_dims)


class ScriptedKernel:
    in_keys = ["observation"]
    out_keys = ["action", "twice"]

    def __init__(self, policy: Scripted, batch_dims: int) -> None:
        self.policy, self.batch_dims = policy, batch_dims

    def __call__(self, inputs):
        action = self.policy.actions[self.policy.calls].numpy()
        self.policy.calls += 1
        rows = inputs[0].shape[0]
        return [action.reshape(rows, *action.shape[self.batch_dims :]), inputs[0][:, :1] * 2]


def scripted_rollouts(env, actions, steps):
    results, errors = [], []
    for enabled in (True, False):
        env.set_seed(0)
        policy = Scripted(actions)
        with use_fast_rollout(enabled):
            try:
                results.append(env.rollout(steps, policy, break_when_any_done=False))
            except SpecError as error:
                errors.append(str(error))
    return results, errors


def test_scripted_policy_on_both_paths(plans):
    actions = torch.nn.functional.one_hot(torch.randint(0, 2, (60,)), 2)
    results, errors = scripted_rollouts(GymEnv("CartPole-v1"), actions, 60)
    assert not errors and array_loops(plans) == ["gym"]
    assert_same_tensordict(*results)


@pytest.mark.parametrize(
    ("categorical", "bad"),
    [(False, torch.tensor([1, 1])), (False, torch.tensor([2, -1])), (True, torch.tensor(2))],
)
def test_an_invalid_action_is_the_same_spec_error(plans, categorical, bad):
    env = GymEnv("CartPole-v1", categorical_action_encoding=categorical)
    good = torch.tensor(1) if categorical else torch.tensor([0, 1])
    actions = torch.stack([good] * 5 + [bad] + [good] * 4)
    _, errors = scripted_rollouts(env, actions, 10)
    assert len(errors) == 2 and errors[0] == errors[1]
    assert errors[0].startswith("action: expected")


@pytest.mark.parametrize(
    "spec",
    [OneHot(3), OneHot(2, dtype=torch.bool), Categorical(4), Unbounded((2,))],
    ids=repr,
)
def test_action_validator_never_accepts_what_check_refuses(spec):
    valid = action_validator(spec)
    generator = torch.Generator().manual_seed(0)
    candidates = [spec.rand((5,), generator=generator), spec.rand(generator=generator)]
    for _ in range(200):
        shape = (*[(3,), ()][int(torch.randint(2, (), generator=generator))], *spec.shape)
        values = torch.randint(-1, 3, shape, generator=generator).to(spec.dtype)
        candidates.append(values)
    candidates += [torch.zeros((2, 5)), torch.zeros(spec.shape, dtype=torch.float64)]
    for value in candidates:
        if valid(value):
            assert spec.is_in(value), value
    assert all(valid(spec.rand((4,), generator=generator)) for _ in range(10))


def test_a_plain_observation_cast_matches_from_numpy():
    """The fast path writes gymnasium's observations with numpy casts; from_numpy must agree."""
    spec = Unbounded((3,), dtype=torch.float32)
    value = np.array([1e-40, 1.0 + 2**-30, -3.3e38], dtype=np.float64)
    buffer = np.empty(3, dtype=np.float32)
    buffer[...] = value
    assert torch.equal(spec.from_numpy(value), torch.from_numpy(buffer))
    assert torch.equal(spec.from_numpy(value), torch.tensor(value, dtype=torch.float32))


def test_stacked_policy_outputs_survive_a_reused_root(artifacts):
    """The buffers a fast rollout returns are its own: a second rollout does not change them."""
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    first = env.rollout(30, policy, break_when_any_done=False)
    copy = first.clone()
    env.rollout(30, policy, break_when_any_done=False)
    assert (first == copy).all()
    assert isinstance(first, TensorDict)


def test_export_and_rollout_in_a_serial_env_of_one(tmp_path, plans):
    """Batch size [1]: rows of one, as the generic path stacks them."""
    case = policy_case("categorical")
    env = SerialEnv(1, case.make_env_fn())
    try:
        path = export_policy(case.make_policy(env), tmp_path / "one.pt", env=env,
                             exploration="random")
        fast, generic = both_rollouts(env, load_policy(path, trust_code=True), break_when_any_done=False)
    finally:
        env.close()
    assert array_loops(plans) == ["sub_envs"]
    assert_same_tensordict(fast, generic)


# -- observations that are not a float32 array of the space's dtype ------------------------------


class Float64Observations(gym.ObservationWrapper):
    """CartPole whose observations come as float64 while the space says float32."""

    def observation(self, observation):
        return observation.astype(np.float64)


class FloatFeatures(torch.nn.Module):
    def forward(self, observation):
        return observation.float()


def _make_float64_cartpole():
    return GymEnv(Float64Observations(gym.make("CartPole-v1")))


@pytest.mark.parametrize(
    "make_env",
    [
        _make_float64_cartpole,
        lambda: GymEnv("FrozenLake-v1"),  # Discrete: one-hot observations, integer scalars
    ],
    ids=["float64-observations", "one-hot-observations"],
)
@pytest.mark.parametrize("batched", [False, True], ids=["GymEnv", "SerialEnv"])
def test_observations_converted_like_from_numpy(tmp_path, plans, make_env, batched):
    env = SerialEnv(2, make_env) if batched else make_env()
    features = env.single_observation_spec["observation"].shape[-1]
    actions = env.single_action_spec.shape[-1]
    policy = TensorDictSequential(
        TensorDictModule(FloatFeatures(), in_keys=["observation"], out_keys=["features"]),
        QValueActor(MLP(features, actions, num_cells=[8]), in_keys=["features"],
                    spec=env.single_action_spec),
    )
    try:
        path = export_policy(policy, tmp_path / "policy.onnx", env=env)
        fast, generic = both_rollouts(env, load_policy(path, trust_code=True), steps=60,
                                      break_when_any_done=False)
    finally:
        env.close()
    assert len(array_loops(plans)) == 1
    assert_same_tensordict(fast, generic)


# -- eager tensordict policies (ModuleKernel) -------------------------------------------------


@pytest.mark.parametrize("break_when_any_done", [False, True])
@pytest.mark.parametrize("exploration", [ExplorationType.DETERMINISTIC, ExplorationType.RANDOM])
@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda case: case.name)
def test_eager_policy_in_gym_env(plans, case, exploration, break_when_any_done):
    env = case.make_env()
    policy = case.make_policy(env)
    with torch.no_grad(), set_exploration_type(exploration):
        fast, generic = both_rollouts(env, policy, break_when_any_done=break_when_any_done)
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(fast, generic)
    assert set(policy.out_keys) <= set(fast.keys())


@pytest.mark.parametrize("case_name", ["qvalue_categorical_egreedy", "tanh_normal"])
@pytest.mark.parametrize("batched", [SerialEnv, ParallelEnv])
def test_eager_policy_in_batched_env(plans, case_name, batched):
    case = policy_case(case_name)
    env = batched(3, case.make_env_fn())
    policy = case.make_policy(env)
    try:
        with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
            fast, generic = both_rollouts(env, policy, break_when_any_done=False)
            cut_fast, cut_generic = both_rollouts(env, policy, steps=500)
    finally:
        env.close()
    assert len(array_loops(plans)) == 2
    assert_same_tensordict(fast, generic)
    assert_same_tensordict(cut_fast, cut_generic)
    assert fast.shape == (3, STEPS)


class Counter(TensorDictModuleBase):
    """Reads what it wrote at the previous step (``step_mdp`` carries it over), and the
    root's done flag."""

    in_keys = ["observation", "done"]
    out_keys = ["count", "done_seen", "action"]

    def forward(self, tensordict):
        count = tensordict.get("count", torch.zeros(1, dtype=torch.int64))
        tensordict.set("count", count + 1)
        tensordict.set("done_seen", tensordict.get("done").clone())
        tensordict.set("action", torch.tensor([0, 1]) if count % 2 else torch.tensor([1, 0]))
        return tensordict


def test_eager_policy_sees_its_previous_outputs(plans):
    env = GymEnv("CartPole-v1")
    fast, generic = both_rollouts(env, Counter(), steps=50, break_when_any_done=False)
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(fast, generic)
    assert fast["count"][:, 0].tolist() == list(range(1, 51))
    assert fast["next", "done"].any() and not fast["done_seen"].any()


class Rewriter(TensorDictModuleBase):
    """Writes over an env entry, or a nested entry: cases the fast path leaves alone."""

    in_keys = ["observation"]

    def __init__(self, out_key):
        super().__init__()
        self.out_keys = [out_key, "action"]
        self.out_key = out_key

    def forward(self, tensordict):
        tensordict.set(self.out_key, tensordict.get("observation") * 2)
        tensordict.set("action", torch.tensor([1.0]))
        return tensordict


@pytest.mark.parametrize("out_key", ["observation", ("agent", "features")])
def test_eager_policy_writing_env_or_nested_entries_takes_the_generic_path(plans, out_key):
    env = GymEnv("Pendulum-v1")
    rollout = env.rollout(10, Rewriter(out_key), break_when_any_done=False)
    assert array_loops(plans) == []
    assert rollout.get(out_key).shape == (10, 3)


class Shifty(TensorDictModuleBase):
    """Writes ``extra`` with another shape, or not at all, from step ``change_at`` on."""

    in_keys = ["observation"]
    out_keys = ["extra", "action"]

    def __init__(self, change_at, drop):
        super().__init__()
        self.calls, self.change_at, self.drop = 0, change_at, drop

    def forward(self, tensordict):
        self.calls += 1
        if self.calls <= self.change_at:
            tensordict.set("extra", torch.zeros(2))
        elif not self.drop:
            tensordict.set("extra", torch.zeros(3))
        tensordict.set("action", torch.tensor([0.5]))
        return tensordict


def test_eager_policy_reshaping_an_output_is_an_error_naming_the_step():
    env = GymEnv("Pendulum-v1")
    with pytest.raises(InputMismatchError) as error:
        env.rollout(10, Shifty(change_at=4, drop=False), break_when_any_done=False)
    message = str(error.value)
    assert "'extra'" in message and "at step 5" in message
    assert "float32 of shape [2]" in message and "float32 of shape [3]" in message
    assert "use_fast_rollout(False)" in message


def test_eager_policy_no_longer_writing_an_output_leaves_the_carried_value(plans):
    """``step_mdp`` carries ``extra`` over, so both paths keep its last value."""
    env = GymEnv("Pendulum-v1")
    results = []
    for enabled in (True, False):
        env.set_seed(0)
        with use_fast_rollout(enabled):
            policy = Shifty(change_at=4, drop=True)
            results.append(env.rollout(10, policy, break_when_any_done=False))
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(*results)
    assert results[0]["extra"].shape == (10, 2)


class Scale(torch.nn.Module):
    def forward(self, observation):
        return observation * 0.5


def test_eager_policy_rewriting_an_env_entry_undeclared_takes_the_generic_path(plans):
    """``selected_out_keys`` hides that the sequence rewrites ``observation``."""
    env = GymEnv("Pendulum-v1")
    torch.manual_seed(0)
    policy = TensorDictSequential(
        TensorDictModule(Scale(), in_keys=["observation"], out_keys=["observation"]),
        Actor(MLP(3, 1, num_cells=[8])),
        selected_out_keys=["action"],
    )
    assert policy.out_keys == ["action"]
    with torch.no_grad():
        fast, generic = both_rollouts(env, policy, steps=20, break_when_any_done=False)
    assert array_loops(plans) == []
    assert_same_tensordict(fast, generic)


class LateWriter(TensorDictModuleBase):
    """From step ``at`` on: writes a new entry, deletes an env entry, or rewrites one."""

    in_keys = ["observation"]
    out_keys = ["action"]

    def __init__(self, at, change):
        super().__init__()
        self.calls, self.at, self.change = 0, at, change

    def forward(self, tensordict):
        self.calls += 1
        tensordict.set("action", torch.tensor([0.5]))
        if self.calls >= self.at:
            if self.change == "new-key":
                tensordict.set("late", torch.zeros(1))
            elif self.change == "deleted-env-key":
                del tensordict["truncated"]
            else:
                tensordict.set("observation", tensordict.get("observation") * 2)
        return tensordict


@pytest.mark.parametrize("change", ["new-key", "deleted-env-key", "rewritten-env-key"])
def test_eager_policy_changing_its_entries_later_is_an_error_naming_the_step(change):
    env = GymEnv("Pendulum-v1")
    with pytest.raises(InputMismatchError) as error:
        env.rollout(10, LateWriter(at=4, change=change), break_when_any_done=False)
    message = str(error.value)
    assert "at step 4" in message and "use_fast_rollout(False)" in message


def test_eager_policy_keeps_the_given_roots_key_order(plans):
    """An extra entry before the env's in a given root stays first, as the generic stack has it."""
    case = policy_case("actor")
    env = case.make_env()
    policy = case.make_policy(env)
    results = []
    for enabled in (True, False):
        env.set_seed(3)
        root = TensorDict({"episode_id": torch.tensor([7]), **env.reset()}, [], device="cpu")
        with use_fast_rollout(enabled), torch.no_grad():
            results.append(env.rollout(15, policy, auto_reset=False, tensordict=root))
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(*results)
    assert next(iter(results[0].keys())) == "episode_id"


class NoDeclaredKeys(TensorDictModuleBase):
    """A tensordict module may leave in_keys/out_keys undeclared."""

    def forward(self, tensordict):
        tensordict.set("action", tensordict.get("observation")[..., :1].clamp(-2, 2))
        return tensordict


def test_eager_policy_without_declared_keys(plans):
    policy = NoDeclaredKeys()
    assert not hasattr(policy, "out_keys")
    fast, generic = both_rollouts(GymEnv("Pendulum-v1"), policy, steps=20)
    assert array_loops(plans) == ["gym"]
    assert_same_tensordict(fast, generic)
