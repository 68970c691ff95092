"""The array paths' protocols: a policy that runs on numpy arrays, and how a rollout finds one.

:meth:`EnvBase.rollout` asks :func:`~.plan.rollout_plan` which path to take; on an array
path it builds no ``"next"`` tensordict per step and stacks nothing: observations, rewards
and done flags go from gymnasium into preallocated ``[T, *batch, ...]`` buffers, the policy
reads its inputs from those buffers and its outputs are copied into more buffers, and one
TensorDict is built at the end (the loops are in :mod:`.array_loops`). The result equals
what the generic path (policy called on a tensordict, :meth:`EnvBase.step_and_maybe_reset`,
``torch.stack``) returns, key by key, shape, dtype and value, auto-resets included.

This module holds the policy side: :class:`ArrayKernel` and :class:`ArrayPolicy` (which
``rlpol.runtime.ExportedPolicy`` implements; the toolkit never imports the runtime), the
:func:`use_fast_rollout` switch, and :func:`array_kernel_for`, which says why when it
finds no kernel. A policy is expected not to modify its input tensors in place.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from rlpol._compat import new_tensordict
from rlpol.toolkit.envs._arrays import NUMPY_DTYPES, action_validator
from rlpol.toolkit.envs.module_kernel import module_kernel
from rlpol.toolkit.keys import DONE_KEYS, NEXT, NestedKey
from rlpol.toolkit.specs import TensorSpec

__all__ = [
    "ArrayKernel",
    "ArrayPolicy",
    "action_validator",
    "array_kernel_for",
    "fast_rollout_enabled",
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
        out_keys: the entries it writes, in the order of its outputs: root entries, or
            ``("next", key)`` for the next value of a state the env carries (a recurrent
            state a ``TensorDictPrimer`` declares), which becomes root ``key`` at ``t + 1``.
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
    observation_leaves: Sequence[tuple[str, TensorSpec]],
    *,
    given: Mapping[str, Any] | None = None,
) -> tuple[ArrayKernel, TensorDictBase] | str:
    """A kernel with which an array rollout of ``policy`` from ``root`` equals the generic one.

    Asked once per rollout that :func:`~.plan.rollout_plan` sent down an array path. For an
    :class:`ArrayPolicy`, before its first call (``given`` None): requires ``root`` a plain
    TensorDict holding exactly the observation and done entries of the env's specs (no
    extra keys, no gradients), and a kernel that reads root entries only and writes the
    action and new keys only, or ``("next", key)`` for a state ``key`` the env carries
    (``env._array_state_keys()``: a primer's entry, which the root holds); raises what the policy's first call would raise for bad
    inputs. For an eager tensordict module, after its first call: ``root`` is what the
    policy returned, ``given`` the entries of the root it was given; see
    :func:`~rlpol.toolkit.envs.module_kernel.module_kernel`.

    Returns:
        ``(kernel, first_root)``, where ``first_root`` holds the env's entries of ``root``
        only (the array loop stores the policy's outputs itself); or, when there is no such
        kernel, one sentence saying why (the rollout then takes the generic path).
    """
    acted = given is not None
    env_keys = _env_keys(env, root, observation_leaves, extra=acted)
    if isinstance(env_keys, str):
        return env_keys
    if acted:
        kernel = module_kernel(
            policy, root, given, env_keys, action_key=env.action_key,
            batch_size=env.batch_size,
        )  # fmt: skip
        if isinstance(kernel, str):
            return kernel
        source = {key: root.get(key) for key in env_keys}
        return kernel, new_tensordict(source, batch_size=root.batch_size, device=root.device)
    kernel = policy.array_kernel(root)
    if kernel is None:
        return f"{type(policy).__name__}.array_kernel offers no kernel for this root"
    root_keys = set(root.keys())
    out_keys = list(kernel.out_keys)
    if not set(kernel.in_keys) <= root_keys:
        return f"the kernel reads {sorted(set(kernel.in_keys) - root_keys)}, not in the root"
    if env.action_key not in out_keys or len(set(out_keys)) != len(out_keys):
        return f"the kernel writes {out_keys}: not the action {env.action_key!r} once"
    states = env._array_state_keys() & root_keys
    for key in out_keys:
        if isinstance(key, str) and key not in root_keys and key != NEXT:
            continue
        if not isinstance(key, str) and len(key) == 2 and key[0] == NEXT and key[1] in states:
            continue  # the next value of a state the env carries (a primer's entry)
        return (
            f"the kernel writes {key!r}: an entry of the env, or a nested key other than "
            f"(\"next\", state) for a state the env's primer provides ({sorted(states)})"
        )
    return kernel, root


def _env_keys(
    env: Any,
    root: TensorDictBase,
    observation_leaves: Sequence[tuple[str, TensorSpec]],
    *,
    extra: bool,
) -> list[str] | str:
    """The root's observation and done keys, in its order, when each fits its spec as a
    CPU tensor of a dtype numpy holds, requiring no grad; else why not (also when ``root``
    holds other entries and ``extra`` is False)."""
    if type(root) is not TensorDict or root.batch_size != env.batch_size:
        return f"the root is a {type(root).__name__} of batch size {list(root.batch_size)}"
    if root.device != env.device:
        return f"the root is on {root.device}, the env on {env.device}"
    expected: dict = {key: spec for key, spec in observation_leaves}
    for key in DONE_KEYS:
        expected[key] = env.done_spec[key]
    keys = [key for key in root.keys() if key in expected]
    if len(keys) != len(expected) or (not extra and len(root.keys()) != len(keys)):
        return (
            f"the root holds {sorted(map(str, root.keys()))}; the array path needs exactly the "
            f"env's entries {sorted(expected)}"
        )
    for key in keys:
        value, spec = root.get(key), expected[key]
        if (
            type(value) is not torch.Tensor
            or value.shape != spec.shape
            or value.dtype != spec.dtype
            or value.dtype not in NUMPY_DTYPES
            or value.requires_grad
        ):
            return f"the root's {key!r} does not fit its spec as a plain CPU tensor"
    return keys
