"""The rollout engine: one function runs every ``env.rollout``, on the path its plan chose.

:func:`run_rollout` asks :func:`~.plan.rollout_plan` for the path, finds the policy's
array kernel for an array path (:func:`~.fast_rollout.array_kernel_for`), hands it to the
env's array loop, and otherwise runs the generic loop: the policy called on a tensordict,
:meth:`EnvBase.step_and_maybe_reset`, the steps stacked at the end. It records the plan it
took, with the reason, as ``env.last_rollout_plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict, TensorDictBase

from rlpol._compat import entries, has_names, new_tensordict
from rlpol.toolkit.envs._arrays import any_flag
from rlpol.toolkit.envs.array_loops import ArrayRun
from rlpol.toolkit.envs.fast_rollout import array_kernel_for
from rlpol.toolkit.envs.plan import RolloutPath, RolloutPlan, rollout_plan, taken
from rlpol.toolkit.keys import DONE, NEXT

if TYPE_CHECKING:
    from rlpol.toolkit.envs.common import EnvBase

__all__ = ["run_rollout"]

Policy = Callable[[TensorDictBase], TensorDictBase]


def run_rollout(
    env: EnvBase,
    max_steps: int,
    policy: Policy | None,
    *,
    break_when_any_done: bool,
    auto_reset: bool,
    tensordict: TensorDictBase | None,
) -> TensorDictBase:
    """What :meth:`EnvBase.rollout` returns (its docstring has the arguments)."""
    if max_steps < 1:
        raise ValueError(f"rollout needs max_steps >= 1, got {max_steps}")
    if auto_reset:
        root = env.reset()
    elif tensordict is None:
        raise ValueError("rollout(auto_reset=False) needs the first root as `tensordict`")
    else:
        env._check_open()
        root = tensordict
    plan = rollout_plan(env, policy)
    acted = False
    result = None
    if plan.path is not RolloutPath.GENERIC:
        given = None
        if plan.path is RolloutPath.EAGER_MODULE:
            # an eager module goes on with arrays once its first call shows what it writes
            given = dict(root.items())
            root, acted = policy(root), True
        found = array_kernel_for(env, policy, root, env._observation_leaves, given=given)
        if isinstance(found, str):
            plan = RolloutPlan.generic(found)
        else:
            kernel, first = found
            result = env._rollout_on_arrays(
                ArrayRun(kernel, first, max_steps, break_when_any_done)
            )
    taken(env, plan)
    if result is not None:
        if not auto_reset:  # leave in the first root what the generic loop leaves
            _write_first_step(root, result)
        return result
    return _generic_loop(
        env, root, env.rand_action if policy is None else policy,
        acted=acted, max_steps=max_steps, break_when_any_done=break_when_any_done,
    )  # fmt: skip


def _generic_loop(
    env: EnvBase,
    root: TensorDictBase,
    act: Policy,
    *,
    acted: bool,
    max_steps: int,
    break_when_any_done: bool,
) -> TensorDictBase:
    """The rollout with a tensordict per step; ``acted``: the policy already acted on
    ``root``."""
    if not acted:
        root = act(root)
    steps = []
    while True:
        stepped, root = env.step_and_maybe_reset(root)
        steps.append(stepped)
        if len(steps) == max_steps or (
            break_when_any_done and any_flag(stepped.get((NEXT, DONE)))
        ):
            return _stack_steps(steps, dim=len(env.batch_size))
        root = act(root)


def _stack_steps(steps: list[TensorDictBase], dim: int) -> TensorDictBase:
    """``torch.stack(steps, dim)``, leaf by leaf when every step is a plain TensorDict with the
    same keys (the rollout's case), else through tensordict's ``torch.stack``."""
    if not all(type(td) is TensorDict for td in steps):
        return torch.stack(steps, dim)
    stacked = _stack_plain(steps, dim)
    return stacked if stacked is not None else torch.stack(steps, dim)


def _stack_plain(tensordicts: list[TensorDict], dim: int) -> TensorDict | None:
    """Plain TensorDicts of one batch size, device and key set, stacked entry by entry; None
    when anything differs (names, keys, leaf types or shapes)."""
    first = tensordicts[0]
    batch_size, device = first.batch_size, first.device
    if has_names(first) or any(
        td.batch_size != batch_size or td.device != device for td in tensordicts
    ):
        return None
    dicts = [entries(td) for td in tensordicts]
    keys = dicts[0].keys()
    if any(d.keys() != keys for d in dicts):
        return None
    result: dict = {}
    for key in keys:
        values = [d[key] for d in dicts]
        kind = type(values[0])
        if kind is torch.Tensor and all(type(value) is torch.Tensor for value in values):
            try:
                result[key] = torch.stack(values, dim)
            except RuntimeError:
                return None  # shapes differ: tensordict's stack decides what that means
        elif kind is TensorDict and all(type(value) is TensorDict for value in values):
            result[key] = _stack_plain(values, dim)
            if result[key] is None:
                return None
        else:
            return None
    batch = torch.Size((*batch_size[:dim], len(tensordicts), *batch_size[dim:]))
    return new_tensordict(result, batch_size=batch, device=device)


def _write_first_step(root: TensorDictBase, result: TensorDictBase) -> None:
    """Leave in ``root`` what the generic loop writes into the first root: the policy's
    outputs and ``"next"`` of the first step."""
    first = result[(slice(None),) * root.batch_dims + (0,)]
    present = set(root.keys())
    for key in first.keys():
        if key not in present:
            root.set(key, first.get(key).clone())
