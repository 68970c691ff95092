"""Every actor kind of the policy zoo in rollouts: its own env and a ParallelEnv of 3."""

from __future__ import annotations

import pytest
import torch

from rlpol import ExplorationType, ParallelEnv, set_exploration_type
from rlpol.testing import POLICY_CASES

EXPLORATIONS = [ExplorationType.DETERMINISTIC, ExplorationType.RANDOM]


def _assert_actions_fit(case, spec, actions, exploration):
    if case.name == "normal" and exploration is ExplorationType.RANDOM:
        # an unsquashed Gaussian sample may leave the bounds (gymnasium clips it)
        assert actions.shape[-1:] == spec.shape and actions.dtype == spec.dtype
    else:
        assert spec.is_in(actions)


@pytest.mark.parametrize("exploration", EXPLORATIONS)
@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda case: case.name)
def test_rollout_on_single_env(case, exploration):
    env = case.make_env()
    policy = case.make_policy(env)
    env.set_seed(0)
    with set_exploration_type(exploration), torch.no_grad():
        rollout = env.rollout(200, policy, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([200])
    _assert_actions_fit(case, env.action_spec, rollout["action"], exploration)
    for key in policy.out_keys:
        assert key in rollout.keys(include_nested=True), key
    if case.stochastic:
        env.set_seed(0)
        torch.manual_seed(1)
        with set_exploration_type(exploration), torch.no_grad():
            other = env.rollout(200, policy, break_when_any_done=False)
        same = torch.equal(rollout["action"], other["action"])
        assert same == (exploration is ExplorationType.DETERMINISTIC)


@pytest.fixture(scope="module")
def parallel_envs():
    envs = {}
    yield envs
    for env in envs.values():
        env.close()


@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda case: case.name)
def test_rollout_on_parallel_env_of_3(case, parallel_envs):
    key = (case.env_id, tuple(sorted(case.env_kwargs.items())))
    if key not in parallel_envs:
        parallel_envs[key] = ParallelEnv(3, case.make_env_fn())
    env = parallel_envs[key]
    policy = case.make_policy(case.make_env())
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        rollout = env.rollout(100, policy, break_when_any_done=False)
    assert rollout.batch_size == torch.Size([3, 100])
    _assert_actions_fit(case, env.action_spec[0], rollout["action"][0], ExplorationType.RANDOM)
    assert rollout["next", "done"].shape == (3, 100, 1)
