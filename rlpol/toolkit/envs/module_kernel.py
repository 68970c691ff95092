"""An eager tensordict policy as an :class:`~.fast_rollout.ArrayKernel`, for fast rollouts.

The generic rollout spends most of each step outside the policy: ``env.step`` builds a
``"next"`` tensordict, ``step_mdp`` a new root, and the steps are stacked at the end. For an
eager policy (an ``Actor``, a ``QValueActor``, a ``TensorDictSequential`` with exploration)
:class:`ModuleKernel` keeps the policy call and drops the rest: each step the policy gets a
fresh root tensordict whose entries are views of the rollout's numpy buffers at that step,
plus what it wrote at the previous step (``step_mdp`` carries those entries over, the action
excepted), and its outputs are copied into the buffers.

Whether a policy qualifies is decided from its first call, which the rollout makes on the
real first root as the generic path does (:func:`module_kernel`): so no call is repeated,
and no random draw is taken twice, whichever path the rest of the rollout takes. A policy
that later writes other entries than at its first call (a new key, an entry of the env)
stops the rollout with an :class:`~rlpol.errors.InputMismatchError`.

Two things differ from the generic path by design: the tensordicts the policy returns do
not receive ``"next"`` (the step's results go to the buffers), and each step's outputs are
copied when written, so a policy that refills one output tensor in place every step records
each step's value (the generic path's final stack would show the last value at every step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol._compat import entries, new_tensordict, str_getter
from rlpol.errors import InputMismatchError
from rlpol.toolkit.envs._arrays import NUMPY_DTYPES
from rlpol.toolkit.keys import ACTION, DONE_KEYS, NEXT, NestedKey

__all__ = ["ModuleKernel", "module_kernel"]


def module_kernel(
    policy: object,
    acted: TensorDictBase,
    given: Mapping[str, object],
    env_keys: Sequence[str],
    *,
    action_key: NestedKey,
    batch_size: torch.Size,
) -> ModuleKernel | str:
    """A kernel for the rest of a rollout whose first root the policy turned into ``acted``.

    Refused (the rollout goes on generically) unless: ``policy`` is a tensordict module
    whose declared ``out_keys`` leave the env's entries alone; ``acted`` is a plain, unnamed
    TensorDict of ``batch_size`` that holds the env's entries (``env_keys``, checked by the
    caller) as the very tensors it was given, plus new root entries (string keys, the action
    among them), each a CPU tensor of a dtype numpy holds, of shape ``[*batch_size, ...]``,
    that requires no gradient.

    Args:
        policy: the policy of the rollout.
        acted: what ``policy(first_root)`` returned.
        given: the entries ``first_root`` held before the call, by key.
        env_keys: the entries of the env's root (observations and done flags), in order.
        action_key: the env's action key.
        batch_size: the env's batch size.

    Returns:
        the kernel, or one sentence saying why there is none.
    """
    if not isinstance(policy, TensorDictModuleBase):
        return f"{type(policy).__name__} is not a tensordict module"
    if type(acted) is not TensorDict:
        return f"the policy returned a {type(acted).__name__}, not a plain TensorDict"
    declared = getattr(policy, "out_keys", ())
    if any(key in declared or acted.get(key) is not given.get(key) for key in env_keys):
        return "the policy writes an entry of the env"
    if acted.batch_size != batch_size or acted.device != torch.device("cpu"):
        return f"the policy returned batch size {list(acted.batch_size)} on {acted.device}"
    if any(name is not None for name in acted.names):
        return "the policy returned a TensorDict with dim names"
    out_keys = [key for key in acted.keys() if key not in env_keys]
    if action_key not in out_keys or NEXT in out_keys:
        return f"the policy wrote {out_keys}: no {action_key!r}, or a \"next\" entry"
    dims = len(batch_size)
    for key in out_keys:
        value = acted.get(key)
        if (
            not isinstance(key, str)
            or type(value) is not torch.Tensor
            or value.device.type != "cpu"
            or value.dtype not in NUMPY_DTYPES
            or value.requires_grad
            or value.shape[:dims] != batch_size
        ):
            return (
                f"the policy wrote {key!r}, which is not a CPU tensor numpy holds of batch "
                f"shape {list(batch_size)} needing no gradient (torch.no_grad() helps)"
            )
    return ModuleKernel(policy, acted, env_keys, out_keys, batch_size)


@dataclass(frozen=True)
class OutputLayout:
    """How one output of the policy is checked and stored at each step.

    Attributes:
        key: the entry.
        carried: whether the next step's root sees it (``step_mdp`` drops the action).
        shape: its shape as the policy writes it, ``[*batch_size, ...]``.
        dtype: its numpy dtype.
        rows_shape: its shape in the buffers, ``[rows, ...]``.
    """

    key: str
    carried: bool
    shape: tuple[int, ...]
    dtype: np.dtype
    rows_shape: tuple[int, ...]


class ModuleKernel:
    """Calls an eager tensordict policy on views of the rollout's buffers (an ``ArrayKernel``).

    The first call returns the outputs of the policy's first call (made by the rollout);
    each later call builds the root tensordict the generic path would hand the policy (the
    entries of the previous step's tensordict in its order, the action excepted: the env's
    observations as views of that step's buffers, its done flags False, the policy's other
    outputs as it wrote them) and calls it.

    Attributes:
        in_keys: the env's root entries but the done flags (always False in a root).
        out_keys: the entries the policy writes, in the order it first wrote them.
        key_order: the root entries of the TED, in the order the generic path stacks them.
    """

    def __init__(
        self,
        policy: TensorDictModuleBase,
        acted: TensorDict,
        env_keys: Sequence[str],
        out_keys: Sequence[str],
        batch_size: torch.Size,
    ) -> None:
        self.policy = policy
        # A root's done flags are always False (an env that finished was reset), so one set
        # of False tensors serves every step; the other entries are read from the buffers.
        self.in_keys = [key for key in env_keys if key not in DONE_KEYS]
        self.out_keys = list(out_keys)
        self.key_order = list(acted.keys())
        self._env_keys = list(env_keys)
        self._entries = len(self.key_order)
        self._batch_size = batch_size
        self._cpu = torch.device("cpu")
        rows = int(np.prod(batch_size, dtype=np.int64))
        dims = len(batch_size)
        # the next root as step_mdp builds it: every entry but the action, in acted's order
        self._root_template = {
            key: torch.zeros_like(value) if key in DONE_KEYS else value
            for key, value in acted.items()
            if key != ACTION
        }
        self._in_shapes = [
            (*batch_size, *acted.get(key).shape[dims:]) for key in self.in_keys
        ]
        first = [acted.get(key).numpy() for key in self.out_keys]
        self._outputs = [
            OutputLayout(key, key != ACTION, array.shape, array.dtype, (rows, *array.shape[dims:]))
            for key, array in zip(self.out_keys, first)
        ]
        self._carried = {out.key: acted.get(out.key) for out in self._outputs if out.carried}
        self._first: list[np.ndarray] | None = [
            array.reshape(out.rows_shape) for array, out in zip(first, self._outputs)
        ]
        self._step = 0

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._step += 1
        if self._first is not None:
            outputs, self._first = self._first, None
            return outputs
        source = dict(self._root_template)
        for key, array, shape in zip(self.in_keys, inputs, self._in_shapes):
            source[key] = torch.from_numpy(array.reshape(shape))
        source.update(self._carried)
        root = new_tensordict(source, batch_size=self._batch_size, device=self._cpu)
        acted = self.policy(root)
        if type(acted) is not TensorDict or len(entries(acted)) != self._entries:
            raise self._entries_changed(acted)
        get = str_getter(acted)  # a plain TensorDict's lookup without parsing the key
        for key in self._env_keys:
            if get(key, None) is not source[key]:
                raise self._entries_changed(acted)
        outputs = []
        carried = {}
        for out in self._outputs:
            value = get(out.key, None)
            try:  # numpy() refuses tensors that require grad, live on a GPU or are bfloat16
                array = value.numpy() if type(value) is torch.Tensor else None
            except (RuntimeError, TypeError):
                array = None
            if array is None or array.shape != out.shape or array.dtype != out.dtype:
                raise self._changed(out, value)
            outputs.append(array.reshape(out.rows_shape))
            if out.carried:
                carried[out.key] = value
        self._carried = carried
        return outputs

    def _entries_changed(self, acted: object) -> InputMismatchError:
        if isinstance(acted, TensorDictBase):
            found = f"a {type(acted).__name__} with {sorted(map(str, acted.keys()))}"
        else:
            found = type(acted).__name__
        return InputMismatchError(
            f"the policy returned a TensorDict with {sorted(self.key_order)} at the first step "
            f"of the rollout but {found} at step {self._step}, or replaced an entry of the "
            f"env ({self._env_keys}); a rollout stacks the same entries at every step. "
            f"{_FIX}"
        )

    def _changed(self, out: OutputLayout, value: object) -> InputMismatchError:
        found = (
            f"{str(value.dtype).removeprefix('torch.')} of shape {list(value.shape)}"
            f"{' requiring grad' if value.requires_grad else ''} on {value.device}"
            if isinstance(value, torch.Tensor)
            else ("nothing" if value is None else type(value).__name__)
        )
        return InputMismatchError(
            f"the policy wrote {out.key!r} as {out.dtype} of shape {list(out.shape)} at the first step of "
            f"the rollout but {found} at step {self._step}; a rollout stacks the same "
            f"entries at every step. {_FIX}"
        )


_FIX = (
    "Write the same entries each call, or roll out on the generic path: "
    "`with rlpol.use_fast_rollout(False): env.rollout(...)`."
)
