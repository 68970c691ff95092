"""The rollout engine's contract: subclasses get the same rollout on every path it chooses.

For each method a subclass may override, a subclass that changes what it computes rolls out
with an exported policy, an eager module and random actions, on the path
:func:`rlpol.rollout_plan` chooses and on the generic path; the two TEDs must be equal field
by field, and must differ from the unmodified env's (so the override is really seen). Hooks
(``read_obs``, ``read_reward``, ``read_action``, ``read_done``) stay on the array paths; any
other overridden stepping method sends the rollout down the generic path.
"""

from __future__ import annotations

import inspect
from types import FunctionType

import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictModuleBase

from rlpol import (
    GymEnv,
    RolloutPath,
    SerialEnv,
    StepCounter,
    TransformedEnv,
    load_policy,
    record_rollout_plans,
    rollout_plan,
    use_fast_rollout,
)
from rlpol.testing import assert_same_tensordict
from rlpol.toolkit.envs.plan import ArrayLoop, array_stepping_refusal, declare_array_stepping

STEPS = 120
WORKERS = 3
SCALE = 100.0


def _scaled(td):
    td.set("observation", td.get("observation") * SCALE)
    return td


def _every_seventh(env, terminated, truncated):
    """Truncate every seventh step (a counter on the env), as a time limit would."""
    env.calls = getattr(env, "calls", 0) + 1
    truncated = np.logical_or(truncated, env.calls % 7 == 0)
    done = np.logical_or(terminated, truncated)
    return terminated, truncated, done, bool(np.any(done))


def _more_reward(stepped):
    stepped.set(("next", "reward"), stepped.get(("next", "reward")) + 5)
    return stepped


def _scaled_next_root(result):
    stepped, root = result
    return stepped, _scaled(root)


# name -> (the base class's method -> an override that changes the rollout)
OVERRIDES = {
    "read_obs": lambda parent: lambda self, obs: {"observation": np.asarray(obs) * SCALE},
    "read_reward": lambda parent: lambda self, reward: np.asarray(reward) * 2.0 + 1.0,
    "read_action": lambda parent: lambda self, action: 1 - parent(self, action),
    "read_done": lambda parent: lambda self, terminated=None, truncated=None, done=None: (
        _every_seventh(self, terminated, truncated)
    ),
    "_step": lambda parent: lambda self, td: _scaled(parent(self, td)),
    "_reset": lambda parent: lambda self, td: _scaled(parent(self, td)),
    "_observation_source": lambda parent: lambda self, obs: {
        key: value * SCALE for key, value in parent(self, obs).items()
    },
    "step": lambda parent: lambda self, td: _more_reward(parent(self, td)),
    "step_and_maybe_reset": lambda parent: lambda self, td: _scaled_next_root(parent(self, td)),
    "_reset_done": lambda parent: lambda self, root, done: _scaled(parent(self, root, done)),
    "_reset_rows": lambda parent: lambda self, done: _scaled(parent(self, done)),
}
SINGLE_ONLY = {
    "_reward_tensor": lambda parent: lambda self, reward: parent(self, reward) * 3,
    "_reset_observation": lambda parent: lambda self: np.asarray(parent(self)) * SCALE,
}
BATCHED_ONLY = {
    "_root_from": lambda parent: lambda self, obs: _scaled(parent(self, obs)),
}
ALL_OVERRIDES = {**OVERRIDES, **SINGLE_ONLY, **BATCHED_ONLY}
HOOKS = {"read_obs", "read_reward", "read_action", "read_done", "_reset_observation"}


def subclass(base, name):
    """A subclass of ``base`` whose ``name`` is :data:`ALL_OVERRIDES`'s change of it."""
    body = ALL_OVERRIDES[name](getattr(base, name))
    return type(f"{base.__name__}Overriding{name}", (base,), {name: body})


def make_env(base, cls):
    if base is GymEnv:
        return cls("CartPole-v1")
    return cls(WORKERS, lambda: GymEnv("CartPole-v1"))


CASES = [
    *[(GymEnv, name) for name in (*OVERRIDES, *SINGLE_ONLY)],
    *[(SerialEnv, name) for name in (*OVERRIDES, *BATCHED_ONLY)],
]


def seeded(env, policy, *, fast):
    env.set_seed(0)
    torch.manual_seed(0)
    env.calls = 0
    with use_fast_rollout(fast), torch.no_grad():
        return env.rollout(STEPS, policy, break_when_any_done=False)


@pytest.fixture(scope="module")
def policies(artifacts):
    _, eager, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    return {"exported": load_policy(path, trust_code=True), "eager": eager, "random": None}


@pytest.mark.parametrize("kind", ["exported", "eager", "random"])
@pytest.mark.parametrize(("base", "name"), CASES, ids=lambda v: getattr(v, "__name__", v))
def test_an_override_gets_the_same_rollout_on_every_path(policies, base, name, kind):
    cls = subclass(base, name)
    env, plain = make_env(base, cls), make_env(base, base)
    policy = policies[kind]
    try:
        plan = rollout_plan(env, policy)
        with record_rollout_plans() as taken:
            chosen = seeded(env, policy, fast=True)
        generic = seeded(env, policy, fast=False)
        unchanged = seeded(plain, policy, fast=False)
    finally:
        env.close()
        plain.close()
    assert_same_tensordict(chosen, generic)
    assert not (chosen == unchanged).all(), f"overriding {name} changed nothing"
    stays_fast = name in HOOKS and not (base is SerialEnv and name == "read_done")
    if kind == "random":
        assert plan.path is RolloutPath.GENERIC
    elif stays_fast:
        expected = RolloutPath.ARRAY_POLICY if kind == "exported" else RolloutPath.EAGER_MODULE
        assert plan.path is expected, plan.reason
        assert plan.loop is (ArrayLoop.GYM if base is GymEnv else ArrayLoop.VECTOR)
    else:
        assert plan.path is RolloutPath.GENERIC
        assert name in plan.reason
    assert taken[0].path is (plan.path if stays_fast or kind == "random" else RolloutPath.GENERIC)


def _methods_the_generic_path_calls(base):
    """Every attribute of ``base`` (methods and properties) that a generic rollout touches."""
    names = {
        name for name in dir(base)
        if not name.startswith("__")
        and isinstance(inspect.getattr_static(base, name), (FunctionType, property))
    }  # fmt: skip
    called: set[str] = set()

    def recorder(name, value):
        if isinstance(value, property):
            return property(lambda self: (called.add(name), value.fget(self))[1])

        def method(self, *args, **kwargs):
            called.add(name)
            return value(self, *args, **kwargs)

        return method

    traced = type("Traced", (base,), {n: recorder(n, inspect.getattr_static(base, n)) for n in names})
    env = make_env(base, traced)
    try:
        with use_fast_rollout(False):
            env.rollout(30, lambda td: env.rand_action(td), break_when_any_done=False)
    finally:
        env.close()
    return called


@pytest.mark.parametrize("base", [GymEnv, SerialEnv], ids=lambda c: c.__name__)
def test_every_method_the_generic_path_calls_is_honoured_or_refused(base):
    """A pass-through override of any method the generic path calls either is a declared
    hook (and has a test above) or sends the rollout down the generic path."""
    called = _methods_the_generic_path_calls(base)
    assert {"_step", "_reset", "read_obs", "read_action"} <= called
    declared = base.__array_stepping__
    for name in sorted(called):
        value = inspect.getattr_static(base, name)
        cls = type(f"PassThrough{name}", (base,), {name: value})
        refusal = array_stepping_refusal(cls)
        if name in declared.hooks:
            assert refusal is None, name
            assert name in ALL_OVERRIDES, f"no test overrides {name}"
        elif name not in declared.neutral:
            assert refusal is not None and name in refusal, name


def test_a_subclass_that_declares_array_stepping_owns_it():
    class Redeclared(GymEnv):
        def _step(self, tensordict):
            return GymEnv._step(self, tensordict)

    assert "_step" in array_stepping_refusal(Redeclared)
    assert array_stepping_refusal(declare_array_stepping()(Redeclared)) is None


def test_a_gym_env_subclass_with_its_own_stepping_cannot_be_batched():
    cls = subclass(GymEnv, "read_obs")
    with pytest.raises(TypeError, match=r"read_obs.*SerialEnv / ParallelEnv subclass"):
        SerialEnv(2, lambda: cls("CartPole-v1"))


def test_batched_read_done_resets_the_rows_it_ends():
    cls = subclass(SerialEnv, "read_done")
    env = make_env(SerialEnv, cls)
    try:
        rollout = seeded(env, None, fast=True)
    finally:
        env.close()
    ended = rollout["next", "truncated"][:, :-1, 0]
    assert ended[:, 6].all()  # every row truncated at the seventh step
    starts = rollout["observation"][:, 1:][ended]
    assert starts.abs().max() <= 0.05  # CartPole's reset draws states in [-0.05, 0.05]


@pytest.mark.parametrize(
    ("make", "policy", "path", "reason"),
    [
        (lambda: GymEnv("CartPole-v1"), "exported", "array_policy", "runs on numpy arrays"),
        (lambda: GymEnv("CartPole-v1"), "eager", "eager_module", "if its first call writes"),
        (lambda: GymEnv("CartPole-v1"), "callable", "generic", "neither an ArrayPolicy"),
        (
            lambda: TransformedEnv(GymEnv("CartPole-v1"), StepCounter()), "exported",
            "generic", "the transform StepCounter has no array step",
        ),
    ],
)
def test_the_plan_gives_its_reason(policies, make, policy, path, reason):
    env = make()
    chosen = policies.get(policy, lambda td: env.rand_action(td))
    plan = rollout_plan(env, chosen)
    assert plan.path.value == path and reason in plan.reason
    with use_fast_rollout(False):
        assert rollout_plan(env, chosen).reason == "use_fast_rollout(False) is in effect"


def test_a_refusal_found_during_the_rollout_is_recorded(policies):
    """The plan says ARRAY_POLICY; the policy's forward hook makes its kernel refuse."""
    env = GymEnv("CartPole-v1")
    policy = policies["exported"]
    assert rollout_plan(env, policy).path is RolloutPath.ARRAY_POLICY
    handle = policy.register_forward_hook(lambda *args: None)
    try:
        env.rollout(5, policy)
    finally:
        handle.remove()
    assert env.last_rollout_plan.path is RolloutPath.GENERIC
    assert "offers no kernel" in env.last_rollout_plan.reason


class _Counter(TensorDictModuleBase):
    """A stateful policy: reads ``memory``, writes ``("next", "memory")`` = memory + 1."""

    in_keys = ["observation"]
    out_keys = ["action", ("next", "memory")]

    def forward(self, td):
        memory = td.get("memory")
        td.set("action", torch.nn.functional.one_hot(torch.zeros(td.batch_size, dtype=torch.long), 2))
        td.set(("next", "memory"), memory + 1)
        return td


@pytest.mark.parametrize("base", [GymEnv, SerialEnv], ids=lambda c: c.__name__)
def test_state_written_to_next_flows_to_the_next_root(base):
    env = make_env(base, base)
    root = env.reset()
    root.set("memory", torch.zeros(*env.batch_size, 1))  # what a primer adds
    try:
        rollout = env.rollout(6, _Counter(), auto_reset=False, tensordict=root)
    finally:
        env.close()
    assert env.last_rollout_plan.path is RolloutPath.GENERIC
    assert "next" in env.last_rollout_plan.reason
    steps = torch.arange(1.0, 7.0).expand(*env.batch_size, 6)
    assert torch.equal(rollout["next", "memory"][..., 0], steps)
    assert torch.equal(rollout["memory"][..., 1:, 0], steps[..., :-1])
