"""Numpy buffers and conversions behind the fast rollout (:mod:`.fast_rollout`).

Each TED entry of a rollout lives in one ``[T, rows, *shape]`` tensor that numpy writes into
(:class:`Field`); gymnasium observations and actions are converted with numpy exactly as
``spec.from_numpy`` / ``spec.to_numpy`` / ``spec.check`` convert and check them on tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from rlpol._compat import new_tensordict
from rlpol.dtypes import NUMPY_DTYPE_NAMES, torch_dtype
from rlpol.errors import SpecError
from rlpol.toolkit.keys import (
    DONE,
    DONE_KEYS,
    NEXT,
    REWARD,
    TERMINATED,
    TRUNCATED,
    NestedKey,
)
from rlpol.toolkit.specs import Categorical, OneHot, TensorSpec, _LeafSpec

__all__ = [
    "NUMPY_DTYPES",
    "ArrayTransforms",
    "Field",
    "ObservationLeaf",
    "ObservationWriter",
    "Storage",
    "action_to_gym",
    "action_validator",
    "any_flag",
    "as_flag",
    "lookup_observation",
    "plain_cast",
    "same_cast",
]

Leaves = Sequence[tuple[str, TensorSpec]]

# the torch dtypes numpy holds: their CPU tensors convert with .numpy()
NUMPY_DTYPES = frozenset(torch_dtype(name) for name in NUMPY_DTYPE_NAMES)


class Field:
    """One TED entry: a ``[capacity, rows, *shape]`` tensor and its numpy view."""

    __slots__ = ("array", "key", "shape", "tensor")

    def __init__(
        self,
        key: str,
        capacity: int,
        rows: int,
        shape: Sequence[int],
        dtype: torch.dtype,
        *,
        zero: bool = False,
    ) -> None:
        make = torch.zeros if zero else torch.empty
        self.key = key
        self.shape = tuple(shape)
        self.tensor = make((capacity, rows, *self.shape), dtype=dtype)
        self.array = self.tensor.numpy()

    def stacked(self, steps: int, batch_size: torch.Size) -> torch.Tensor:
        """The first ``steps`` entries as the generic path stacks them: ``[*B, steps, *shape]``."""
        tensor = self.tensor[:steps].reshape(steps, *batch_size, *self.shape)
        if batch_size:  # time after the batch dims, in a new contiguous tensor as torch.stack
            return tensor.movedim(0, len(batch_size)).clone(memory_format=torch.contiguous_format)
        if steps < self.tensor.shape[0]:
            tensor = tensor.clone()  # do not keep the unused capacity alive
        return tensor


@dataclass(frozen=True)
class ArrayTransforms:
    """What a :class:`~.transformed.TransformedEnv`'s transforms do at each step, on buffers.

    Only transforms whose step the array loops reproduce appear here (the env refuses the
    array paths for any other): ``InitTracker`` and ``TensorDictPrimer``.

    Attributes:
        init_keys: the ``InitTracker`` keys: root True on a row just reset, else False;
            ``("next", key)`` always False.
        primers: ``(key, default_value)`` of each primer entry, a *carried state*: the root
            at ``t + 1`` holds ``("next", key)`` of step ``t``, or ``default_value`` on a row
            just reset; ``("next", key)`` is what the policy wrote there, else the root's.
        next_order: the ``"next"`` entries the transforms add, in the order they add them
            (entries the policy writes itself come before them, where it wrote them).
    """

    init_keys: tuple[str, ...] = ()
    primers: tuple[tuple[str, float], ...] = ()
    next_order: tuple[str, ...] = ()


@dataclass(frozen=True)
class CarriedState:
    """One carried state's buffers (see :attr:`ArrayTransforms.primers`).

    Attributes:
        root: the root entry, ``[capacity, rows, *shape]``.
        next: the ``("next", key)`` entry, same shape.
        default: the value of a row just reset.
        echo: whether ``next`` copies ``root`` (the policy does not write ``("next", key)``).
    """

    root: np.ndarray
    next: np.ndarray
    default: float
    echo: bool


class Storage:
    """The TED buffers of one rollout and the TensorDict built from them.

    With :class:`ArrayTransforms`, the root also holds the transforms' entries: reset flags
    (``InitTracker``) and carried states (``TensorDictPrimer``), filled by :meth:`carry`
    after each step, and the policy may write ``("next", key)`` outputs for those states.
    """

    def __init__(
        self,
        root: TensorDictBase,
        observation_leaves: Leaves,
        *,
        capacity: int,
        batch_size: torch.Size,
        transforms: ArrayTransforms | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.rows = int(np.prod(batch_size, dtype=np.int64))
        self.capacity = capacity
        dims = len(batch_size)
        done_keys = set(DONE_KEYS)
        self.root: dict[str, Field] = {}
        for key in root.keys():
            value = root.get(key)
            field = Field(
                key, capacity, self.rows, value.shape[dims:], value.dtype, zero=key in done_keys
            )
            field.array[0] = value.reshape(self.rows, *field.shape).numpy()
            self.root[key] = field
        self.next_observation = [
            Field(key, capacity, self.rows, spec.shape[dims:], spec.dtype)
            for key, spec in observation_leaves
        ]
        self.reward = Field(REWARD, capacity, self.rows, (1,), torch.float32)
        self.terminated = Field(TERMINATED, capacity, self.rows, (1,), torch.bool)
        self.truncated = Field(TRUNCATED, capacity, self.rows, (1,), torch.bool)
        self.done = Field(DONE, capacity, self.rows, (1,), torch.bool)
        self.outputs: list[Field] = []
        self.out_keys: list[NestedKey] = []
        self.transforms = transforms
        self.transform_next: dict[str, Field] = {}  # ("next", key) the transforms write
        self.carried: list[CarriedState] = []
        self._init_roots: list[np.ndarray] = []
        if transforms is not None:
            for key in transforms.init_keys:
                self.transform_next[key] = Field(key, capacity, self.rows, (1,), torch.bool,
                                                 zero=True)  # fmt: skip
                self._init_roots.append(self.root[key].array[..., 0])

    def add_outputs(self, keys: Sequence[NestedKey], arrays: Sequence[np.ndarray]) -> None:
        """Allocate the policy's output entries from its first outputs (``("next", key)``
        ones feed the carried state ``key``), then bind the carried states."""
        for key, array in zip(keys, arrays):
            dtype = torch.from_numpy(np.empty(0, dtype=array.dtype)).dtype
            name = key if isinstance(key, str) else key[-1]
            self.outputs.append(Field(name, self.capacity, self.rows, array.shape[1:], dtype))
            self.out_keys.append(key)
        if self.transforms is not None:
            self._bind_carried()

    def _bind_carried(self) -> None:
        pairs = zip(self.out_keys, self.outputs)
        written = {key[-1]: out for key, out in pairs if not isinstance(key, str)}
        for key, default in self.transforms.primers:
            root = self.root[key]
            nxt = written.get(key)
            if nxt is None:
                nxt = self.transform_next[key] = Field(
                    key, self.capacity, self.rows, root.shape, root.tensor.dtype
                )
            elif nxt.shape != root.shape or nxt.tensor.dtype != root.tensor.dtype:
                raise RuntimeError(
                    f"the policy's array kernel wrote ('next', {key!r}) as {nxt.tensor.dtype} of "
                    f"shape {list(nxt.shape)}; its primer declares {root.tensor.dtype} of shape "
                    f"{list(root.shape)} (make the primer's spec match the state)"
                )
            echo = nxt is not written.get(key)
            self.carried.append(CarriedState(root.array, nxt.array, default, echo))

    def carry(self, t: int, reset: bool | np.ndarray) -> None:
        """Fill the transforms' entries after step ``t``: ``("next", key)`` of the states the
        policy does not write, and root ``t + 1`` (the last step's is not stored).

        Args:
            t: the step.
            reset: the rows reset after the step: a bool for all rows, or a ``[rows]`` bool
                array.
        """
        after = t + 1
        stored = after < self.capacity
        for state in self.carried:
            if state.echo:
                state.next[t] = state.root[t]
            if stored:
                state.root[after] = state.next[t]
        if not stored:
            return
        for init in self._init_roots:
            init[after] = reset
        if type(reset) is np.ndarray:
            if reset.any():
                for state in self.carried:
                    state.root[after][reset] = state.default
        elif reset:
            for state in self.carried:
                state.root[after] = state.default

    def tensordict(
        self, steps: int, device: torch.device, key_order: Sequence[str] | None = None
    ) -> TensorDictBase:
        """The stacked TED tensordict of the first ``steps`` steps.

        Root entries come in ``key_order`` when given, ``"next"`` last; else the root's,
        then the outputs', ``"next"`` where the policy wrote its first ``("next", key)``
        (as setting it in a tensordict places it), or last. ``"next"`` holds the env's
        entries, then the policy's, then the transforms' (:class:`ArrayTransforms`).
        """
        batch_size = torch.Size((*self.batch_size, steps))
        fields = [*self.next_observation, self.reward, self.terminated, self.truncated, self.done]
        root_fields = list(self.root.values())
        for key, out in zip(self.out_keys, self.outputs):
            (root_fields if isinstance(key, str) else fields).append(out)
        if self.transforms is not None:
            present = {out.key for out in fields}
            order = [key for key in self.transforms.next_order if key not in present]
            fields += [self.transform_next[key] for key in order]
        nxt = {field.key: field.stacked(steps, self.batch_size) for field in fields}
        root = {field.key: field.stacked(steps, self.batch_size) for field in root_fields}
        if key_order is None:
            key_order = [*self.root, *(k if isinstance(k, str) else NEXT for k in self.out_keys)]
        source = {}
        for key in (*key_order, NEXT):
            if key not in source:
                source[key] = None if key == NEXT else root[key]
        source[NEXT] = new_tensordict(nxt, batch_size=batch_size, device=device)
        return new_tensordict(source, batch_size=batch_size, device=device)


def plain_cast(spec: TensorSpec) -> bool:
    """Whether ``spec.from_numpy`` is a cast (no encoding, e.g. not OneHot)."""
    return type(spec).from_numpy is _LeafSpec.from_numpy and spec.dtype in NUMPY_DTYPES


@dataclass(frozen=True)
class ObservationLeaf:
    """One observation entry as the array loops write it.

    Attributes:
        key: the entry (a string: nested observations take the generic path).
        spec: its spec (batched for a batched env).
        shape: ``spec.shape``.
        plain: whether ``spec.from_numpy`` only casts (see :func:`plain_cast`).
    """

    key: str
    spec: TensorSpec
    shape: torch.Size
    plain: bool


class ObservationWriter:
    """Writes gymnasium observations into fields, converting as ``spec.from_numpy`` does.

    Mirrors ``GymLikeEnv._observation_source``: a lone leaf named ``whole_key`` (the env's
    ``whole_observation_key``: ``"observation"``, ``"pixels"``) takes the whole gymnasium
    observation; with ``whole_key`` None (a ``Dict`` space, or an overridden ``read_obs``,
    which returns a mapping) every leaf is looked up in a mapping.

    Attributes:
        leaves: the :class:`ObservationLeaf` of each entry, in the env's order.
        whole: whether the one leaf takes the whole observation.
    """

    def __init__(self, leaves: Leaves, *, whole_key: str | None) -> None:
        self.leaves = [
            ObservationLeaf(key, spec, spec.shape, plain_cast(spec)) for key, spec in leaves
        ]
        self.whole = len(self.leaves) == 1 and self.leaves[0].key == whole_key

    @property
    def single_plain(self) -> bool:
        """Whether the observation is one whole array that only needs a cast."""
        return self.whole and self.leaves[0].plain

    def write(self, observation: Any, fields: Sequence[Field], t: int) -> None:
        """``fields[i][t] = leaf i of observation`` for every leaf."""
        for leaf, field in zip(self.leaves, fields):
            value = observation if self.whole else lookup_observation(observation, leaf.key)
            write_value(field.array[t], value, leaf.spec, leaf.shape, leaf.plain)


def any_flag(flags: torch.Tensor) -> bool:
    """``bool(flags.any())``; in numpy for a CPU tensor (a third of torch's call overhead)."""
    if flags.device.type == "cpu":
        return bool(flags.numpy().any())
    return bool(flags.any())


def as_flag(value: Any) -> bool:
    """One done flag as a TED stores it, from a bool or a one-element array or list."""
    return bool(np.asarray(value).item())


def lookup_observation(observation: Any, key: str) -> Any:
    """``observation[key]``, or a SpecError naming the key and what the observation holds."""
    try:
        return observation[key]
    except (KeyError, TypeError, IndexError):
        found = sorted(observation) if isinstance(observation, dict) else type(observation)
        raise SpecError(
            f"the observation has no entry {key!r} (found {found}); read_obs must return a "
            "dict with one entry per key of the observation spec"
        ) from None


def write_value(
    destination: np.ndarray, value: Any, spec: TensorSpec, shape: torch.Size, plain: bool
) -> None:
    """``destination[...] = spec.from_numpy(value)`` (``destination`` is ``[rows, *trailing]``).

    numpy copies the value itself when that is what ``from_numpy`` computes: an array of the
    spec's shape whose dtype casts to the spec's exactly (see :func:`same_cast`).
    """
    if (
        plain
        and type(value) is np.ndarray
        and value.shape == shape
        and same_cast(value.dtype, destination.dtype)
    ):
        destination[...] = value.reshape(destination.shape)
    else:
        destination[...] = spec.from_numpy(value).reshape(destination.shape).numpy()


_SAME_CAST: dict[tuple[np.dtype, np.dtype], bool] = {}


def same_cast(source: np.dtype, target: np.dtype) -> bool:
    """Whether numpy casts ``source`` to ``target`` as torch does: the same dtype, float to
    float, or a safe cast (the cases ``spec.from_numpy`` hands to numpy)."""
    if source == target:
        return True
    key = (source, target)
    if key not in _SAME_CAST:
        _SAME_CAST[key] = (
            source.isnative
            and source.itemsize <= 8
            and source.kind in "biuf"
            and (target.kind == source.kind == "f" or np.can_cast(source, target, "safe"))
        )
    return _SAME_CAST[key]


def action_validator(spec: TensorSpec) -> Callable[[Any], bool]:
    """A quick predicate on actions: True only where ``spec.check`` passes (False: unsure).

    Shape and dtype are compared, and the values of ``OneHot``/``Categorical`` actions on the
    CPU checked with numpy (``spec.check`` takes several torch ops). The caller runs
    ``spec.check`` when it returns False, for the exact error.
    """
    shape, dtype, ndim = spec.shape, spec.dtype, len(spec.shape)
    if type(spec) is OneHot:

        def values(array: np.ndarray) -> bool:
            if array.ndim == 1:  # one nonzero entry, and it is a 1
                return np.count_nonzero(array) == 1 and array[array.argmax()] == 1
            return bool(
                (np.count_nonzero(array, -1) == 1).all() and (array.sum(-1) == 1).all()
            )
    elif type(spec) is Categorical:
        n = spec.n

        def values(array: np.ndarray) -> bool:
            return array.size == 0 or bool(array.min() >= 0 and array.max() < n)
    elif type(spec)._value_problem is _LeafSpec._value_problem:
        values = None  # shape and dtype only (Unbounded)
    else:
        return lambda value: False

    def valid(value: Any) -> bool:
        if (
            not isinstance(value, torch.Tensor)
            or value.dtype != dtype
            or value.ndim < ndim
            or value.shape[value.ndim - ndim :] != shape
        ):
            return False
        if values is None:
            return True
        if value.device.type != "cpu" or value.dtype not in NUMPY_DTYPES or value.is_neg():
            return False
        return values(value.detach().numpy())

    return valid


def action_to_gym(spec: TensorSpec, check: Callable[[np.ndarray], None]) -> Callable[[np.ndarray], Any]:
    """``spec.to_numpy`` on a numpy action of shape ``spec.shape``, after the per-step value check.

    The action's shape and dtype were checked once; the returned function checks the values
    the way ``spec.check`` does (calling ``check`` to raise its error when they do not fit)
    and returns what the generic path hands gymnasium.
    """
    if type(spec) is OneHot:
        if len(spec.shape) == 1:

            def one_hot_index(action: np.ndarray) -> Any:
                index = action.argmax()
                if np.count_nonzero(action) != 1 or action[index] != 1:
                    check(action)
                return index

            return one_hot_index

        def one_hot_indices(action: np.ndarray) -> Any:
            if not (
                (np.count_nonzero(action, -1) == 1).all() and (action.sum(-1) == 1).all()
            ):
                check(action)
            return action.argmax(-1)[()]

        return one_hot_indices
    if type(spec) is Categorical:
        n = spec.n
        if not spec.shape:

            def index(action: np.ndarray) -> int:
                value = int(action)
                if not 0 <= value < n:
                    check(action)
                return value

            return index

        def indices(action: np.ndarray) -> np.ndarray:
            if action.size and not (action.min() >= 0 and action.max() < n):
                check(action)
            return action

        return indices
    if spec.domain == "continuous" and type(spec).to_numpy is _LeafSpec.to_numpy:
        # only shape and dtype are checked (see EnvBase._action_check_spec): done once.
        return lambda action: action

    def any_spec(action: np.ndarray) -> Any:
        check(action)
        return spec.to_numpy(torch.from_numpy(action))

    return any_spec


