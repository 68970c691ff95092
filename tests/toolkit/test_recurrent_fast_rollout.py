"""Recurrent policies on the array paths: TransformedEnv(InitTracker + primer) equals generic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlpol
from rlpol import (
    Compose,
    GymEnv,
    InitTracker,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    TransformedEnv,
    load_policy,
)
from rlpol.testing import assert_same_tensordict, policy_case, recurrent_qvalue
from rlpol.toolkit.envs.plan import RolloutPath
from rlpol.toolkit.envs.primer import TensorDictPrimer
from rlpol.toolkit.specs import Unbounded

STEPS = 300
ENV_ID = "CartPole-v1"
# (module kind, format, exploration, batch: None for one GymEnv, ("serial"|"parallel", n))
CASES = [
    *[(kind, ".onnx", exploration, batch) for kind in ("lstm", "gru")
      for exploration in ("deterministic", "random") for batch in (None, ("serial", 3))],
    ("gru", ".pt", "random", ("serial", 3)),
    ("lstm", ".onnx", "random", ("parallel", 2)),
]  # fmt: skip


def _base(batch):
    if batch is None:
        return GymEnv(ENV_ID)
    kind, count = batch
    return (SerialEnv if kind == "serial" else ParallelEnv)(count, lambda: GymEnv(ENV_ID))


def _env(policy, batch, *more):
    """The recurrent policy's env: InitTracker, its primer, and ``more`` transforms."""
    transform = Compose(InitTracker(), policy[0].make_tensordict_primer(), *more)
    return TransformedEnv(_base(batch), transform)


def _rollouts(env, policy, *, break_when_any_done):
    """``(array, generic, plans)``: the same seeded rollout on each path."""
    with torch.no_grad():
        env.set_seed(0)
        torch.manual_seed(0)
        with rlpol.record_rollout_plans() as plans:
            fast = env.rollout(STEPS, policy, break_when_any_done=break_when_any_done)
        env.set_seed(0)
        torch.manual_seed(0)
        with rlpol.use_fast_rollout(False):
            generic = env.rollout(STEPS, policy, break_when_any_done=break_when_any_done)
    return fast, generic, plans


@pytest.mark.parametrize("break_when_any_done", [False, True])
@pytest.mark.parametrize(("kind", "suffix", "exploration", "batch"), CASES)
def test_the_array_path_equals_the_generic_one(
    recurrent_artifacts, kind, suffix, exploration, batch, break_when_any_done
):
    eager, path = recurrent_artifacts.get(kind, 1, suffix, exploration)
    env = _env(eager, batch)
    try:
        fast, generic, plans = _rollouts(
            env, load_policy(path, trust_code=True), break_when_any_done=break_when_any_done
        )
    finally:
        env.close()
    assert [plan.path for plan in plans] == [RolloutPath.ARRAY_POLICY]
    assert plans[0].loop is env.base_env._array_loop()
    assert_same_tensordict(fast, generic)
    if not break_when_any_done:  # several episodes: the state restarts from the primer's zeros
        assert generic["is_init"][..., 1:, :].any()
        assert fast["next", "is_init"].sum() == 0


@pytest.mark.parametrize("transform", [StepCounter(), RewardSum()], ids=repr)
def test_another_transform_takes_the_generic_path(recurrent_artifacts, transform):
    eager, path = recurrent_artifacts.get("lstm", 1, ".onnx", "deterministic")
    env = _env(eager, None, transform)
    plan = rlpol.rollout_plan(env, load_policy(path, trust_code=True))
    name = type(transform).__name__
    assert plan.path is RolloutPath.GENERIC and f"the transform {name} has no array step" in plan.reason
    fast, generic, plans = _rollouts(env, load_policy(path, trust_code=True), break_when_any_done=False)
    assert plans[0].path is RolloutPath.GENERIC and name in plans[0].reason
    assert_same_tensordict(fast, generic)


def test_a_base_env_that_takes_no_array_path_is_named(recurrent_artifacts):
    class Scaled(GymEnv):
        def _step(self, tensordict):
            return super()._step(tensordict)

    eager, path = recurrent_artifacts.get("lstm", 1, ".onnx", "deterministic")
    env = TransformedEnv(Scaled(ENV_ID), Compose(InitTracker(), eager[0].make_tensordict_primer()))
    plan = rlpol.rollout_plan(env, load_policy(path, trust_code=True))
    assert plan.path is RolloutPath.GENERIC
    assert plan.reason.startswith("the base env Scaled takes no array path: Scaled overrides")


class _StateKernel:
    in_keys = ["observation"]
    out_keys = ["action", ("next", "memory")]

    def __call__(self, inputs):
        rows = inputs[0].shape[0]
        return [np.tile(np.array([1, 0]), (rows, 1)), np.zeros((rows, 1, 3), np.float32)]


class _StateWriter:
    """An ArrayPolicy whose kernel writes ("next", "memory"): allowed only with its primer."""

    def array_kernel(self, root):
        return _StateKernel()

    def __call__(self, tensordict):
        tensordict.set("action", torch.tensor([1, 0]))
        tensordict.set(("next", "memory"), torch.zeros(1, 3))
        return tensordict


@pytest.mark.parametrize(("primed", "path"), [(True, "array_policy"), (False, "generic")])
def test_a_next_state_needs_the_primer_of_its_root_entry(primed, path):
    transforms = [InitTracker()]
    if primed:
        transforms.append(TensorDictPrimer(memory=Unbounded((1, 3))))
    env = TransformedEnv(GymEnv(ENV_ID), Compose(*transforms))
    with rlpol.record_rollout_plans() as plans:
        env.rollout(1, _StateWriter())  # (without the primer, step 1 would stack "memory")
    assert plans[0].path.value == path
    if not primed:
        assert "the kernel writes ('next', 'memory')" in plans[0].reason


def test_an_eager_recurrent_module_stays_generic():
    eager = recurrent_qvalue("lstm", 1)
    fast, generic, plans = _rollouts(_env(eager, None), eager, break_when_any_done=False)
    assert plans[0].path is RolloutPath.GENERIC and '"next" entry' in plans[0].reason
    assert_same_tensordict(fast, generic)


@pytest.mark.parametrize("batch", [None, ("serial", 2)])
def test_a_primer_the_policy_does_not_write_is_carried(batch):
    """An eager policy reading neither entry: is_init and a primer default of 2 on buffers."""
    case = policy_case("qvalue_onehot")
    policy = case.make_policy(case.make_env())
    primer = TensorDictPrimer(memory=Unbounded((1, 3)), default_value=2.0)
    env = TransformedEnv(_base(batch), Compose(primer, InitTracker()))
    fast, generic, plans = _rollouts(env, policy, break_when_any_done=False)
    assert plans[0].path is RolloutPath.EAGER_MODULE
    assert_same_tensordict(fast, generic)
    assert list(fast["next"].keys())[-2:] == ["memory", "is_init"]
    assert (fast["next", "memory"] == 2.0).all()
