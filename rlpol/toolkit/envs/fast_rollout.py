"""Fast rollouts: a policy that runs on numpy arrays, stepped in gymnasium, TED filled in place.

:meth:`EnvBase.rollout` takes this path when the env is a plain :class:`GymEnv`,
:class:`SerialEnv` or :class:`ParallelEnv` on the CPU and the policy either implements
:class:`ArrayPolicy` (``rlpol.runtime.ExportedPolicy`` does) or is an eager tensordict
module whose first call writes plain CPU tensors that need no gradient (see
:mod:`.module_kernel`). Per step it builds no ``"next"`` tensordict and stacks nothing:
observations, rewards and done flags go from gymnasium into preallocated
``[T, *batch, ...]`` buffers, the policy reads its inputs from those buffers and its outputs
are copied into more buffers, and one TensorDict is built at the end. The result equals what
the generic path (policy called on a tensordict, :meth:`EnvBase.step_and_maybe_reset`,
``torch.stack``) returns, key by key, shape, dtype and value, auto-resets included.

The toolkit defines the protocol and never imports the runtime; anything else (a transformed
env, a CUDA env, nested keys, a policy whose outputs require grad) takes the generic path.
A policy is expected not to modify its input tensors in place.

Use :func:`use_fast_rollout` to turn the fast path off, e.g. to compare both paths.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from rlpol.toolkit.envs._arrays import (
    NUMPY_DTYPES,
    ObservationWriter,
    Storage,
    action_to_gym,
    action_validator,
    whole_plain_observation,
)
from rlpol.toolkit.envs.module_kernel import module_kernel
from rlpol.toolkit.keys import DONE_KEYS, NEXT, NestedKey
from rlpol.toolkit.specs import TensorSpec

__all__ = [
    "ArrayKernel",
    "ArrayPolicy",
    "action_validator",
    "fast_rollout_enabled",
    "rollout_gym",
    "rollout_sub_envs",
    "rollout_vector",
    "use_fast_rollout",
]

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("rlpol_fast_rollout", default=True)


@contextlib.contextmanager
def use_fast_rollout(enabled: bool) -> Iterator[None]:
    """Within the block, ``env.rollout`` takes the fast path when it can (``True``, the default)
    or always the generic, tensordict-per-step path (``False``).

    Examples:
        >>> from rlpol import GymEnv
        >>> from rlpol.toolkit.envs.fast_rollout import use_fast_rollout
        >>> with use_fast_rollout(False):
        ...     GymEnv("CartPole-v1").rollout(3).shape
        torch.Size([3])
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def fast_rollout_enabled() -> bool:
    """Whether :func:`use_fast_rollout` allows the fast path here."""
    return _ENABLED.get()


class ArrayKernel(Protocol):
    """One policy call on numpy arrays, for the batch shape it was made for.

    Attributes:
        in_keys: the root entries it reads, in the order of ``__call__``'s inputs.
        out_keys: the entries it writes, in the order of its outputs.
        key_order: optional; the TED's root entries in the order the generic path stacks
            them (default: the first root's, then ``out_keys``).
    """

    in_keys: Sequence[NestedKey]
    out_keys: Sequence[NestedKey]

    def __call__(self, inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """Map the in_keys' values to the out_keys' values.

        Args:
            inputs: one C-contiguous array per in_key, of shape ``[rows, *shape]`` where
                ``rows`` is the number of elements of the batch shape.

        Returns:
            one array per out_key, of shape ``[rows, *shape]``. The arrays may be reused by
            the next call: copy them before calling again.
        """
        ...


@runtime_checkable
class ArrayPolicy(Protocol):
    """A tensordict policy that can also run on numpy arrays (see :class:`ArrayKernel`)."""

    def array_kernel(self, root: TensorDictBase) -> ArrayKernel | None:
        """A kernel equivalent to calling the policy on tensordicts like ``root``, or None.

        Checks ``root`` as a call would, raising the same errors, so that a rollout may
        check its inputs once instead of at every step. A stochastic policy's kernel takes
        the same random draws per call as the policy, in the same order and shapes.
        """
        ...


# -- when the fast path applies ---------------------------------------------------------------


def array_kernel_for(
    env: Any,
    policy: Any,
    root: TensorDictBase,
    observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
    *,
    given: Mapping[str, Any] | None = None,
) -> tuple[ArrayKernel, TensorDictBase] | None:
    """A kernel with which a fast rollout of ``policy`` from ``root`` equals the generic one.

    Asked twice per rollout. Before the policy's first call (``given`` None), for a policy
    implementing :class:`ArrayPolicy`: requires ``root`` a plain TensorDict holding exactly
    the observation and done entries of the env's specs (no extra keys, no gradients), and
    a kernel that reads root entries only and writes the action and new keys only; raises
    what the policy's first call would raise for bad inputs. After the first call, for an
    eager tensordict module: ``root`` is what the policy returned, ``given`` the entries
    of the root it was given; see :func:`~rlpol.toolkit.envs.module_kernel.module_kernel`.

    Both need the fast path enabled, a CPU env and no nested keys (a Dict space holding a
    Dict, a policy writing ``("agent", "x")``: those take the generic path).

    Returns:
        ``(kernel, first_root)``, where ``first_root`` holds the env's entries of ``root``
        only (the fast loop stores the policy's outputs itself), or None.
    """
    acted = given is not None
    if not fast_rollout_enabled() or isinstance(policy, ArrayPolicy) == acted:
        return None
    if any(not isinstance(key, str) for key, _ in observation_leaves):
        return None
    if env.device.type != "cpu":
        return None
    env_keys = _env_keys(env, root, observation_leaves, extra=acted)
    if env_keys is None:
        return None
    if acted:
        kernel = module_kernel(
            policy, root, given, env_keys, action_key=env.action_key,
            batch_size=env.batch_size,
        )  # fmt: skip
        if kernel is None:
            return None
        source = {key: root.get(key) for key in env_keys}
        return kernel, TensorDict._new_unsafe(source, batch_size=root.batch_size, device=root.device)
    kernel = policy.array_kernel(root)
    if kernel is None:
        return None
    root_keys = set(root.keys())
    out_keys = list(kernel.out_keys)
    if (
        not set(kernel.in_keys) <= root_keys
        or env.action_key not in out_keys
        or len(set(out_keys)) != len(out_keys)
        or any(not isinstance(key, str) or key in root_keys or key == NEXT for key in out_keys)
    ):
        return None
    return kernel, root


def _env_keys(
    env: Any,
    root: TensorDictBase,
    observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
    *,
    extra: bool,
) -> list[str] | None:
    """The root's observation and done keys, in its order, when each fits its spec as a
    CPU tensor of a dtype numpy holds, requiring no grad; None when one does not, or when
    ``root`` holds other entries and ``extra`` is False."""
    if type(root) is not TensorDict or root.batch_size != env.batch_size:
        return None
    if root.device != env.device:
        return None
    expected: dict = {key: spec for key, spec in observation_leaves}
    for key in DONE_KEYS:
        expected[key] = env.done_spec[key]
    keys = [key for key in root.keys() if key in expected]
    if len(keys) != len(expected) or (not extra and len(root.keys()) != len(keys)):
        return None
    for key in keys:
        value, spec = root.get(key), expected[key]
        if (
            type(value) is not torch.Tensor
            or value.shape != spec.shape
            or value.dtype != spec.dtype
            or value.dtype not in NUMPY_DTYPES
            or value.requires_grad
        ):
            return None
    return keys


class _Loop:
    """What both loops share: storage, kernel inputs and outputs, action conversion."""

    def __init__(
        self,
        env: Any,
        kernel: ArrayKernel,
        root: TensorDictBase,
        observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
        capacity: int,
    ) -> None:
        self.env = env
        self.kernel = kernel
        self.storage = Storage(
            root, observation_leaves, capacity=capacity, batch_size=env.batch_size
        )
        self.inputs = [self.storage.root[key].array for key in kernel.in_keys]
        self.root_observation = [self.storage.root[key] for key, _ in observation_leaves]
        self.writer = ObservationWriter(observation_leaves)
        self.action_key = env.action_key
        self.check_spec = env._action_check_spec
        self.to_gym = action_to_gym(env.action_spec, self._check)

    def result(self, steps: int) -> TensorDictBase:
        """The TED of the first ``steps`` steps, root entries in the kernel's ``key_order``
        (an optional attribute: the order the generic path would stack them in)."""
        key_order = getattr(self.kernel, "key_order", None)
        return self.storage.tensordict(steps, self.env.device, key_order)

    def _check(self, action: np.ndarray) -> None:
        self.check_spec.check(torch.from_numpy(np.asarray(action)), key=str(self.action_key))

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
    kernel: ArrayKernel,
    root: TensorDictBase,
    *,
    observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
    step: Callable[[Any], tuple],
    reset: Callable[[], Any],
    max_steps: int,
    break_when_any_done: bool,
) -> TensorDictBase:
    """The fast rollout of a single gymnasium env (batch size ``[]``).

    Args:
        env: the :class:`GymEnv` (for its specs, keys and device).
        kernel: from :func:`array_kernel_for`.
        root: the first root.
        observation_leaves: the observation keys and specs, in the env's order.
        step: gymnasium's ``env.step``.
        reset: resets the env as :meth:`GymEnv.reset` does and returns the observation.
        max_steps: the rollout length.
        break_when_any_done: stop after the first done step.
    """
    loop = _Loop(env, kernel, root, observation_leaves, max_steps)
    storage, writer = loop.storage, loop.writer
    next_observation, root_observation = storage.next_observation, loop.root_observation
    # the common case, inlined: one "observation" array that only needs a cast
    single = writer.whole and writer.leaves[0][3]
    obs_shape = tuple(writer.leaves[0][2])
    obs_dtype = next_observation[0].array.dtype
    next_obs = next_observation[0].array.reshape(max_steps, *obs_shape)
    root_obs = root_observation[0].array.reshape(max_steps, *obs_shape)
    reward = storage.reward.array.reshape(-1)
    terminated_flags = storage.terminated.array.reshape(-1)
    truncated_flags = storage.truncated.array.reshape(-1)
    done_flags = storage.done.array.reshape(-1)
    last = max_steps - 1
    t = 0
    for t in range(max_steps):
        observation, rew, terminated, truncated, _ = step(loop.act(t))
        done = terminated or truncated
        if (
            single
            and type(observation) is np.ndarray
            and observation.dtype == obs_dtype
            and observation.shape == obs_shape
        ):
            next_obs[t] = observation
        else:
            writer.write(observation, next_observation, t)
        reward[t] = rew
        terminated_flags[t] = terminated
        truncated_flags[t] = truncated
        done_flags[t] = done
        if done:
            observation = reset()
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
    kernel: ArrayKernel,
    root: TensorDictBase,
    *,
    observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
    step: Callable[[Any], tuple],
    final_observation: Callable[[Any, dict, np.ndarray], Any],
    max_steps: int,
    break_when_any_done: bool,
) -> TensorDictBase:
    """The fast rollout of a ``gymnasium.vector`` env in ``SAME_STEP`` autoreset mode.

    Args:
        env: the batched env (for its specs, keys and device).
        kernel: from :func:`array_kernel_for`.
        root: the first root.
        observation_leaves: the (batched) observation keys and specs, in the env's order.
        step: the vector env's ``step``.
        final_observation: ``(observation, info, done) -> observation`` with the rows that
            finished replaced by their final observation.
        max_steps: the rollout length.
        break_when_any_done: stop after the first step where any sub-env is done.
    """
    loop = _Loop(env, kernel, root, observation_leaves, max_steps)
    storage, writer = loop.storage, loop.writer
    next_observation, root_observation = storage.next_observation, loop.root_observation
    reward = storage.reward.array[..., 0]
    terminated_flags = storage.terminated.array[..., 0]
    truncated_flags = storage.truncated.array[..., 0]
    done_flags = storage.done.array[..., 0]
    last = max_steps - 1
    t = 0
    for t in range(max_steps):
        observation, rew, terminated, truncated, info = step(loop.act(t))
        done = np.logical_or(terminated, truncated)
        any_done = done.any()
        final = final_observation(observation, info, done) if any_done else observation
        writer.write(final, next_observation, t)
        reward[t] = rew
        terminated_flags[t] = terminated
        truncated_flags[t] = truncated
        done_flags[t] = done
        if any_done and break_when_any_done:
            break
        if t < last:
            writer.write(observation, root_observation, t + 1)
    return loop.result(t + 1)


def rollout_sub_envs(
    env: Any,
    kernel: ArrayKernel,
    root: TensorDictBase,
    *,
    observation_leaves: Sequence[tuple[NestedKey, TensorSpec]],
    sub_envs: Sequence[Any],
    max_steps: int,
    break_when_any_done: bool,
) -> TensorDictBase | None:
    """The fast rollout of a ``SyncVectorEnv`` (``SAME_STEP``), stepping its envs directly.

    Makes the calls ``SyncVectorEnv.step`` makes (``envs[i].step(actions[i])``, then
    ``envs[i].reset()`` for a finished env), in the same order, and writes each result into
    its row instead of collecting infos and concatenating observations. Returns None (use
    :func:`rollout_vector`) unless the observation is one ``"observation"`` array that only
    needs a cast.
    """
    if not whole_plain_observation(observation_leaves):
        return None
    loop = _Loop(env, kernel, root, observation_leaves, max_steps)
    writer, storage = loop.writer, loop.storage
    row_shape = tuple(writer.leaves[0][2][1:])
    row_dtype = storage.next_observation[0].array.dtype
    count = len(sub_envs)
    next_obs = storage.next_observation[0].array.reshape(max_steps, count, *row_shape)
    root_obs = loop.root_observation[0].array.reshape(max_steps, count, *row_shape)
    reward = storage.reward.array[..., 0]
    terminated_flags = storage.terminated.array[..., 0]
    truncated_flags = storage.truncated.array[..., 0]
    done_flags = storage.done.array[..., 0]
    last = max_steps - 1
    indexed = list(enumerate(sub_envs))
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
