"""The array loops: a rollout stepped in gymnasium with the TED filled in place.

Each loop reproduces the generic path of one env class (see :mod:`.plan`): the same
gymnasium calls in the same order, the same conversions, and the same
:class:`~.gym_like.GymLikeEnv` hooks (``read_action``, ``read_obs``, ``read_reward``,
``read_done``) where a subclass overrides them (:class:`StepHooks`). Per step it builds no
tensordict: the policy's kernel reads its inputs from the rollout's ``[T, rows, ...]``
buffers (:class:`~._arrays.Storage`) and its outputs are copied into more buffers.

Where the policy's state goes: a root entry at ``t + 1`` that the generic path's
``step_mdp`` fills from step ``t`` lives in ``Storage.root`` and is written by the loop at
``t + 1`` (observations here; a policy's carried outputs in :mod:`.module_kernel`). State a
policy writes to ``("next", key)`` is the same flow: in a ``TransformedEnv`` with
``InitTracker`` and a ``TensorDictPrimer``, ``Storage.carry`` fills root ``t + 1`` of each
state from the step's ``("next", key)`` field (the primer's default on rows just reset) and
``is_init`` from the done flags; the loops call it once a step, when there are transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from rlpol.toolkit.envs._arrays import (
    ArrayTransforms,
    ObservationWriter,
    Storage,
    action_to_gym,
    action_validator,
    as_flag,
)
from rlpol.toolkit.envs.fast_rollout import ArrayKernel
from rlpol.toolkit.specs import TensorSpec

__all__ = ["ArrayRun", "StepHooks", "rollout_gym", "rollout_sub_envs", "rollout_vector"]


@dataclass(frozen=True)
class StepHooks:
    """The hooks of a :class:`~.gym_like.GymLikeEnv` that its class overrides, bound to the
    env; None where the class keeps the default (the loops then inline what it does).

    Attributes:
        read_action: ``(action tensor) -> gymnasium action``.
        read_obs: ``(gymnasium observation) -> {key: value}``.
        read_reward: ``(gymnasium reward) -> reward``.
        read_done: ``(terminated=, truncated=) -> (terminated, truncated, done, do_break)``.
    """

    read_action: Callable[[torch.Tensor], Any] | None = None
    read_obs: Callable[[Any], Mapping[str, Any]] | None = None
    read_reward: Callable[[Any], Any] | None = None
    read_done: Callable[..., tuple] | None = None


@dataclass(frozen=True)
class ArrayRun:
    """One array rollout, as the engine hands it to an env's ``_rollout_on_arrays``.

    Attributes:
        kernel: the policy's kernel (:func:`~.fast_rollout.array_kernel_for`).
        root: the first root (the env's entries only).
        max_steps: the rollout length, the buffers' capacity.
        break_when_any_done: stop after the first step where any sub-env is done.
        transforms: what a :class:`~.transformed.TransformedEnv`'s transforms write at
            each step (set by the TransformedEnv), or None.
    """

    kernel: ArrayKernel
    root: TensorDictBase
    max_steps: int
    break_when_any_done: bool
    transforms: ArrayTransforms | None = None


class _Loop:
    """What every loop shares: storage, kernel inputs and outputs, action conversion."""

    def __init__(
        self,
        env: Any,
        run: ArrayRun,
        observation_leaves: Sequence[tuple[str, TensorSpec]],
        hooks: StepHooks,
    ) -> None:
        self.env = env
        self.kernel = kernel = run.kernel
        self.storage = Storage(
            run.root, observation_leaves, capacity=run.max_steps, batch_size=env.batch_size,
            transforms=run.transforms,
        )  # fmt: skip
        # the transforms' entries after each step (None: no TransformedEnv, nothing to do)
        self.carry = self.storage.carry if run.transforms is not None else None
        self.inputs = [self.storage.root[key].array for key in kernel.in_keys]
        self.root_observation = [self.storage.root[key] for key, _ in observation_leaves]
        whole_key = env.whole_observation_key if hooks.read_obs is None else None
        self.writer = ObservationWriter(observation_leaves, whole_key=whole_key)
        self.action_key = env.action_key
        self.check_spec = env._action_check_spec
        if hooks.read_action is None:
            self.to_gym = action_to_gym(env.action_spec, self._check)
        else:
            self.to_gym = self._read_action(hooks.read_action)

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``reward``, ``terminated``, ``truncated``, ``done`` as ``[capacity, rows]`` views."""
        storage = self.storage
        fields = (storage.reward, storage.terminated, storage.truncated, storage.done)
        return tuple(field.array[..., 0] for field in fields)

    def result(self, steps: int) -> TensorDictBase:
        """The TED of the first ``steps`` steps, root entries in the kernel's ``key_order``
        (an optional attribute: the order the generic path would stack them in)."""
        key_order = getattr(self.kernel, "key_order", None)
        return self.storage.tensordict(steps, self.env.device, key_order)

    def _check(self, action: np.ndarray) -> None:
        self.check_spec.check(torch.from_numpy(np.asarray(action)), key=str(self.action_key))

    def _read_action(self, read_action: Callable[[torch.Tensor], Any]) -> Callable:
        """``env.read_action`` on the action as a tensor, after the check ``env.step`` makes."""
        valid, spec, key = action_validator(self.check_spec), self.check_spec, str(self.action_key)

        def to_gym(action: np.ndarray) -> Any:
            tensor = torch.from_numpy(action)
            if not valid(tensor):
                spec.check(tensor, key=key)
            return read_action(tensor)

        return to_gym

    def act(self, t: int) -> Any:
        """Run the policy on root ``t``, store its outputs, and return the gymnasium action."""
        outputs = self.kernel([array[t] for array in self.inputs])
        if t == 0:
            self._start(outputs)
        for field, array in zip(self.storage.outputs, outputs):
            field.array[t] = array
        return self.to_gym(self.action_view[t, ...])

    def _start(self, outputs: Sequence[np.ndarray]) -> None:
        """Allocate the output fields from the first call and check the first action fully."""
        keys = list(self.kernel.out_keys)
        for key, array in zip(keys, outputs):
            if array.ndim < 1 or array.shape[0] != self.storage.rows:
                raise RuntimeError(
                    f"the policy's array kernel returned {key!r} of shape {list(array.shape)}; "
                    f"expected [{self.storage.rows}, ...] (one row per batch element)"
                )
        self.storage.add_outputs(keys, outputs)
        action = self.storage.outputs[keys.index(self.action_key)]
        action.array[0] = outputs[keys.index(self.action_key)]
        batch_size = self.env.batch_size
        self.check_spec.check(
            action.tensor[0].reshape((*batch_size, *action.shape)), key=str(self.action_key)
        )
        # view[t, ...] is the action of step t in the env's batch shape (an array even if 0-d)
        self.action_view = action.array.reshape(
            (self.storage.capacity, *batch_size, *action.shape)
        )


def rollout_gym(
    env: Any,
    run: ArrayRun,
    *,
    observation_leaves: Sequence[tuple[str, TensorSpec]],
    step: Callable[[Any], tuple],
    reset: Callable[[], Any],
    hooks: StepHooks,
) -> TensorDictBase:
    """The array rollout of a single gymnasium env (batch size ``[]``).

    Args:
        env: the :class:`GymEnv` (for its specs, keys and device).
        run: the kernel, first root, length and transforms.
        observation_leaves: the observation keys and specs, in the env's order.
        step: gymnasium's ``env.step``.
        reset: resets the env as :meth:`GymEnv.reset` does and returns the raw observation.
        hooks: the env's overridden hooks.
    """
    loop = _Loop(env, run, observation_leaves, hooks)
    max_steps, break_when_any_done = run.max_steps, run.break_when_any_done
    storage, writer = loop.storage, loop.writer
    read_obs, read_reward, read_done = hooks.read_obs, hooks.read_reward, hooks.read_done
    next_observation, root_observation = storage.next_observation, loop.root_observation
    # the common case, inlined: one whole observation array that only needs a cast
    single = writer.single_plain
    obs_shape = tuple(writer.leaves[0].shape)
    obs_dtype = next_observation[0].array.dtype
    next_obs = next_observation[0].array.reshape(max_steps, *obs_shape)
    root_obs = root_observation[0].array.reshape(max_steps, *obs_shape)
    # one row: [capacity] views, a scalar per step
    reward, terminated_flags, truncated_flags, done_flags = (
        column.reshape(-1) for column in loop.columns()
    )
    carry = loop.carry
    last = max_steps - 1
    t = 0
    for t in range(max_steps):
        observation, rew, terminated, truncated, _ = step(loop.act(t))
        if read_done is None:
            done = terminated or truncated
        else:
            flags = read_done(terminated=terminated, truncated=truncated)
            terminated, truncated, done = (as_flag(flag) for flag in flags[:3])
        if read_obs is not None:
            observation = read_obs(observation)
        if (
            single
            and type(observation) is np.ndarray
            and observation.dtype == obs_dtype
            and observation.shape == obs_shape
        ):
            next_obs[t] = observation
        else:
            writer.write(observation, next_observation, t)
        reward[t] = rew if read_reward is None else read_reward(rew)
        terminated_flags[t] = terminated
        truncated_flags[t] = truncated
        done_flags[t] = done
        if carry is not None:
            carry(t, done)
        if done:
            observation = reset()
            if read_obs is not None:
                observation = read_obs(observation)
            if break_when_any_done:
                break
        if t < last:
            if (
                single
                and type(observation) is np.ndarray
                and observation.dtype == obs_dtype
                and observation.shape == obs_shape
            ):
                root_obs[t + 1] = observation
            else:
                writer.write(observation, root_observation, t + 1)
    return loop.result(t + 1)


def rollout_vector(
    env: Any,
    run: ArrayRun,
    *,
    observation_leaves: Sequence[tuple[str, TensorSpec]],
    step: Callable[[Any], tuple],
    final_observation: Callable[[Any, dict, np.ndarray], Any],
    hooks: StepHooks,
) -> TensorDictBase:
    """The array rollout of a ``gymnasium.vector`` env in ``SAME_STEP`` autoreset mode.

    Args:
        env: the batched env (for its specs, keys and device).
        run: the kernel, first root, length and transforms.
        observation_leaves: the (batched) observation keys and specs, in the env's order.
        step: the vector env's ``step``.
        final_observation: ``(observation, info, done) -> observation`` with the rows that
            finished replaced by their final observation.
        hooks: the env's overridden hooks (``read_done`` is not one: a batched env that
            overrides it takes the generic path).
    """
    loop = _Loop(env, run, observation_leaves, hooks)
    max_steps, break_when_any_done = run.max_steps, run.break_when_any_done
    storage, writer = loop.storage, loop.writer
    read_obs, read_reward = hooks.read_obs, hooks.read_reward
    next_observation, root_observation = storage.next_observation, loop.root_observation
    reward, terminated_flags, truncated_flags, done_flags = loop.columns()
    carry = loop.carry
    last = max_steps - 1
    t = 0
    for t in range(max_steps):
        observation, rew, terminated, truncated, info = step(loop.act(t))
        done = np.logical_or(terminated, truncated)
        any_done = done.any()
        final = final_observation(observation, info, done) if any_done else observation
        writer.write(final if read_obs is None else read_obs(final), next_observation, t)
        reward[t] = rew if read_reward is None else read_reward(rew)
        terminated_flags[t] = terminated
        truncated_flags[t] = truncated
        done_flags[t] = done
        if carry is not None:
            carry(t, done)
        if any_done and break_when_any_done:
            break
        if t < last:
            if read_obs is not None:
                observation = read_obs(observation)
            writer.write(observation, root_observation, t + 1)
    return loop.result(t + 1)


def rollout_sub_envs(
    env: Any,
    run: ArrayRun,
    *,
    observation_leaves: Sequence[tuple[str, TensorSpec]],
    sub_envs: Sequence[Any],
) -> TensorDictBase:
    """The array rollout of a ``SyncVectorEnv`` (``SAME_STEP``), stepping its envs directly.

    Makes the calls ``SyncVectorEnv.step`` makes (``envs[i].step(actions[i])``, then
    ``envs[i].reset()`` for a finished env), in the same order, and writes each result into
    its row instead of collecting infos and concatenating observations. Only for an env that
    overrides no hook and whose observation is one whole array (``"observation"``,
    ``"pixels"``) that only needs a cast (the env's ``_array_loop`` checks).
    """
    loop = _Loop(env, run, observation_leaves, StepHooks())
    max_steps, break_when_any_done = run.max_steps, run.break_when_any_done
    writer, storage = loop.writer, loop.storage
    row_shape = tuple(writer.leaves[0].shape[1:])
    row_dtype = storage.next_observation[0].array.dtype
    count = len(sub_envs)
    next_obs = storage.next_observation[0].array.reshape(max_steps, count, *row_shape)
    root_obs = loop.root_observation[0].array.reshape(max_steps, count, *row_shape)
    reward, terminated_flags, truncated_flags, done_flags = loop.columns()
    last = max_steps - 1
    indexed = list(enumerate(sub_envs))
    carry = loop.carry
    t = 0
    for t in range(max_steps):
        actions = loop.act(t)
        next_row, rewards = next_obs[t], reward[t]
        terminated_row, truncated_row, done_row = (
            terminated_flags[t], truncated_flags[t], done_flags[t]
        )
        root_row = root_obs[t + 1] if t < last else None
        any_done = False
        for i, sub_env in indexed:
            observation, rewards[i], terminated, truncated, _ = sub_env.step(actions[i])
            if (
                type(observation) is np.ndarray
                and observation.dtype == row_dtype
                and observation.shape == row_shape
            ):
                next_row[i] = observation
            else:
                _stack_into(next_row, i, observation)
            terminated_row[i] = terminated
            truncated_row[i] = truncated
            if terminated or truncated:
                done_row[i] = any_done = True
                observation, _ = sub_env.reset()
            else:
                done_row[i] = False
            if root_row is not None:
                if (
                    type(observation) is np.ndarray
                    and observation.dtype == row_dtype
                    and observation.shape == row_shape
                ):
                    root_row[i] = observation
                else:
                    _stack_into(root_row, i, observation)
        if carry is not None:
            carry(t, done_row)
        if any_done and break_when_any_done:
            break
    return loop.result(t + 1)


def _stack_into(rows: np.ndarray, index: int, observation: Any) -> None:
    """``rows[index] = observation`` as ``SyncVectorEnv`` stacks observations
    (``np.stack(..., out=...)``: the same shape, a ``same_kind`` cast)."""
    value = np.asarray(observation)
    if value.shape != rows.shape[1:]:
        raise ValueError(
            f"sub-environment {index} returned an observation of shape {list(value.shape)}, "
            f"expected {list(rows.shape[1:])} (its observation space's shape)"
        )
    np.copyto(rows[index], value, casting="same_kind")
