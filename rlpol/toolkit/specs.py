"""Tensor specs: the shape, dtype, device and domain of every tensor an env or policy exchanges.

A reimplementation of TorchRL 0.14's spec classes (same names, constructors and ``repr``) on
:mod:`tensordict`, without depending on TorchRL, plus what rlpol needs on top:

* gymnasium conversion: :func:`spec_from_gym_space`, and on every spec ``from_numpy`` (gym
  value to tensor) and ``to_numpy`` (tensor to gym value), which run at every env step;
* validation that explains itself: ``check(value, key)`` raises :class:`~rlpol.errors.SpecError`
  naming the key, the expected and received shape/dtype and, for bounds, the offending values;
* a JSON description for exported artifacts: :func:`spec_to_dict` and its exact inverse
  :func:`spec_from_dict`, which validates untrusted input.

Where rlpol departs from TorchRL 0.14, on purpose:

* ``expand(*batch_shape)`` *prepends* ``batch_shape`` (``spec.expand(4)`` on a ``[3]`` spec
  gives ``[4, 3]``); TorchRL's ``expand`` takes the whole new shape.
* ``OneHot``/``MultiOneHot`` default to ``torch.int64`` (TorchRL: ``torch.bool``) and
  ``Unbounded`` to ``shape=()`` (TorchRL: ``(1,)``); ``device`` and ``dtype`` are keyword-only.
* ``Binary``, ``MultiCategorical`` and ``MultiOneHot`` are not subclasses of ``Categorical`` or
  ``OneHot``: an ``isinstance(spec, OneHot)`` test means a single one-hot vector.
* No masks, no indexing/reshape/stack of specs, and a ``Composite`` always has a device.

Random draws use torch's global generator unless a ``generator`` is given; a ``Composite``
draws its children in insertion order, depth first.
"""

from __future__ import annotations

import abc
import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from textwrap import indent
from typing import Any, ClassVar

import numpy as np
import torch
from tensordict import TensorDict

from rlpol.errors import SpecError
from rlpol.toolkit.keys import NestedKey

__all__ = [
    "Binary",
    "Bounded",
    "BoxList",
    "Categorical",
    "CategoricalBox",
    "Composite",
    "ContinuousBox",
    "MultiCategorical",
    "MultiOneHot",
    "OneHot",
    "TensorSpec",
    "Unbounded",
    "spec_from_dict",
    "spec_from_gym_space",
    "spec_to_dict",
]

ShapeLike = int | Sequence[int] | torch.Size
DeviceLike = str | int | torch.device | None

_CPU = torch.device("cpu")
# the numpy dtype of each torch dtype numpy represents (from_numpy's copy-and-cast fast path)
_NUMPY_DTYPES = {
    dtype: torch.empty((), dtype=dtype).numpy().dtype
    for dtype in (
        torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
        torch.float16, torch.float32, torch.float64,
    )
}  # fmt: skip
_NO_BATCH = torch.Size()
_MAX_DEPTH = 64  # nesting limit for untrusted descriptions (Composite depth, bound lists)
_DTYPE_NAMES = "float16 bfloat16 float32 float64 uint8 int8 int16 int32 int64 bool"
_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in _DTYPE_NAMES.split()}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_size(shape: ShapeLike, what: str = "shape") -> torch.Size:
    dims = (shape,) if isinstance(shape, int) else shape
    try:
        size = torch.Size([operator.index(d) for d in dims])
    except TypeError:
        raise SpecError(
            f"{what} must be an int or a sequence of ints, received {shape!r}; "
            "pass e.g. (3,) or torch.Size([3])."
        ) from None
    if any(d < 0 for d in size):
        raise SpecError(f"{what} must not hold negative sizes, received {list(size)}.")
    return size


def _batch_shape(args: tuple) -> torch.Size:
    if len(args) == 1 and not isinstance(args[0], int):
        return _as_size(args[0], "batch_shape")
    return _as_size(args, "batch_shape")


def _as_device(device: DeviceLike) -> torch.device:
    if device is None:
        return _CPU
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise SpecError(
            f"device {device!r} is not a torch device; pass e.g. 'cpu' or 'cuda:0'."
        ) from None


def _as_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype):
        raise SpecError(
            f"dtype must be a torch.dtype, received {dtype!r}; pass e.g. torch.float32."
        )
    return dtype


def _positive_int(value: Any, what: str) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise SpecError(f"{what} must be a positive int, received {value!r}.")
    return number


def _as_nvec(nvec: Any) -> tuple[int, ...]:
    if isinstance(nvec, (np.ndarray, torch.Tensor)):
        if nvec.ndim != 1:
            raise SpecError(f"nvec must be one-dimensional, received shape {list(nvec.shape)}.")
        nvec = nvec.tolist()
    if not isinstance(nvec, Sequence) or isinstance(nvec, str) or not nvec:
        raise SpecError(f"nvec must be a non-empty sequence of positive ints, received {nvec!r}.")
    return tuple(_positive_int(n, "each entry of nvec") for n in nvec)


def _shape_str(shape: torch.Size) -> str:
    return "[" + ", ".join(["*B", *map(str, shape)]) + "]"


def _item_strs(values: torch.Tensor, limit: int) -> list[str]:
    """The first ``limit`` values as strings, each in its dtype's shortest precision."""
    flat = values.detach().reshape(-1)[:limit].cpu()
    return [str(v) for v in (flat.float() if flat.dtype == torch.bfloat16 else flat).numpy()]


def _values_str(values: torch.Tensor, limit: int = 6) -> str:
    """``[-2.0, inf, ...]``: the first ``limit`` values."""
    return "[" + ", ".join(_item_strs(values, limit) + ["..."] * (values.numel() > limit)) + "]"


def _key_path(key: NestedKey) -> tuple[str, ...]:
    path = (key,) if isinstance(key, str) else key
    if not (isinstance(path, tuple) and path and all(isinstance(p, str) for p in path)):
        raise SpecError(
            f"a spec key is a string or a non-empty tuple of strings, received {key!r}."
        )
    return path


def _key_str(path: tuple[str, ...]) -> str:
    return path[0] if len(path) == 1 else repr(path)


def _bad_values(value: torch.Tensor, bad: torch.Tensor, allowed: str) -> str | None:
    if not bool(bad.any()):
        return None
    count = int(bad.sum())
    return f"{count} of {bad.numel()} values are not {allowed} (e.g. {_values_str(value[bad], 3)})"


# --------------------------------------------------------------------------------------------
# Boxes (what ``spec.space`` holds)
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ContinuousBox:
    """The values between ``low`` and ``high`` (tensors of the spec's shape, dtype, device)."""

    low: torch.Tensor
    high: torch.Tensor

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ContinuousBox)
            and torch.equal(self.low, other.low)
            and torch.equal(self.high, other.high)
        )

    def __repr__(self) -> str:
        def describe(name: str, t: torch.Tensor) -> str:
            return (
                f"\n{name}=Tensor(shape={t.shape}, device={t.device}, dtype={t.dtype}, "
                f"contiguous={t.is_contiguous()})"
            )

        low, high = (
            indent(describe(n, t), " " * 4) for n, t in (("low", self.low), ("high", self.high))
        )
        return f"ContinuousBox({low},{high})"


@dataclass(frozen=True)
class CategoricalBox:
    """The integers ``0 .. n - 1``."""

    n: int


@dataclass(frozen=True)
class BoxList:
    """One :class:`CategoricalBox` per entry of a multi-categorical spec's ``nvec``."""

    boxes: list[CategoricalBox]


# --------------------------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------------------------


class TensorSpec(abc.ABC):
    """What a tensor (leaf specs) or a tensordict (:class:`Composite`) must look like.

    Attributes:
        shape: the full shape of one value, batch dimensions included (``torch.Size``).
        device: where :meth:`rand`, :meth:`zero` and :meth:`from_numpy` put their tensors.
        domain: ``"continuous"``, ``"discrete"`` or ``"composite"``.
    """

    shape: torch.Size
    device: torch.device
    domain: str

    @property
    def ndim(self) -> int:
        """``len(self.shape)``."""
        return len(self.shape)

    @abc.abstractmethod
    def rand(
        self, shape: ShapeLike = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor | TensorDict:
        """A random value of shape ``[*shape, *self.shape]`` that :meth:`is_in` accepts."""

    @abc.abstractmethod
    def zero(self, shape: ShapeLike = ()) -> torch.Tensor | TensorDict:
        """Zeros of shape ``[*shape, *self.shape]``: a buffer, not always a valid value."""

    @abc.abstractmethod
    def is_in(self, value: Any) -> bool:
        """Whether ``value`` fits the spec: trailing shape, dtype and domain (bounds, classes)."""

    @abc.abstractmethod
    def check(self, value: Any, key: NestedKey) -> None:
        """Raises :class:`SpecError` naming ``key`` and what is wrong unless ``is_in(value)``."""

    @abc.abstractmethod
    def from_numpy(self, value: Any) -> torch.Tensor | TensorDict:
        """A gymnasium/numpy value as a new tensor (or tensordict) of this spec."""

    @abc.abstractmethod
    def to_numpy(self, value: Any) -> Any:
        """A tensor (or tensordict) of this spec as the value gymnasium expects."""

    @abc.abstractmethod
    def to(self, device: DeviceLike) -> TensorSpec:
        """A new spec, equal but for its device."""

    @abc.abstractmethod
    def expand(self, *batch_shape: int | ShapeLike) -> TensorSpec:
        """A new spec of shape ``[*batch_shape, *self.shape]`` (leading batch dimensions)."""

    @abc.abstractmethod
    def clone(self) -> TensorSpec:
        """A deep copy."""

    @abc.abstractmethod
    def _expected(self) -> str:
        """The spec in words, for error messages: ``shape [*B, 1] dtype torch.float32 ...``."""

    @abc.abstractmethod
    def _problem(self, value: Any, path: tuple[str, ...]) -> str | None:
        """The complete error message for ``value`` under key ``path``, or None when it fits."""


class _LeafSpec(TensorSpec):
    """Shared machinery of the tensor specs; subclasses add their parameters and domain."""

    _PARAMS: ClassVar[tuple[str, ...]] = ()  # constructor arguments besides shape/device/dtype
    _EVENT_DIMS: ClassVar[int] = 0  # trailing dimensions that make one value (1 for one-hot)
    space: Any

    def __init__(self, shape: ShapeLike, *, device: DeviceLike, dtype: torch.dtype) -> None:
        self.shape = _as_size(shape)
        self.device = _as_device(device)
        self.dtype = _as_dtype(dtype)

    # -- hooks ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        """A random value of the full ``shape`` (already ``[*batch, *self.shape]``)."""

    def _describe(self) -> str:
        """What the values may be, appended to :meth:`_expected` (e.g. `` within [0, 1]``)."""
        return ""

    def _value_problem(self, value: torch.Tensor) -> str | None:
        """What is wrong with the values of a tensor of the right shape and dtype, or None."""
        return None

    # -- public API ----------------------------------------------------------------------------
    def rand(
        self, shape: ShapeLike = (), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self._sample(torch.Size([*_as_size(shape), *self.shape]), generator)

    def zero(self, shape: ShapeLike = ()) -> torch.Tensor:
        return torch.zeros((*_as_size(shape), *self.shape), dtype=self.dtype, device=self.device)

    def is_in(self, value: Any) -> bool:
        return self._problem(value, ("value",)) is None

    def check(self, value: Any, key: NestedKey = "value") -> None:
        """Raises :class:`SpecError` unless :meth:`is_in` accepts ``value``.

        Args:
            value: the tensor to check; leading batch dimensions are allowed.
            key: the name the message gives the value (e.g. ``"action"``).

        Raises:
            SpecError: naming ``key``, the expected and received shape and dtype, what is wrong
                (e.g. the values outside the bounds) and how to fix it.

        Examples:
            >>> Bounded(-2.0, 2.0, (1,)).check(torch.zeros(3), key="action")
            Traceback (most recent call last):
            ...
            rlpol.errors.SpecError: action: expected shape [*B, 1] dtype torch.float32 within [-2.0, 2.0], received shape [3] dtype torch.float32: the trailing shape must be [1]; reshape the value to [*B, 1] (leading dimensions are batch dimensions).
        """
        problem = self._problem(value, _key_path(key))
        if problem is not None:
            raise SpecError(problem)

    def from_numpy(self, value: Any) -> torch.Tensor:
        """A gymnasium/numpy value as a new tensor of this spec's dtype, on its device.

        The result never shares memory with ``value`` (envs may reuse their buffers). A value
        whose trailing shape is not the spec's but holds as many elements is reshaped (a gym
        scalar becomes a ``[1]`` tensor for a ``[1]`` spec). Values are not checked against
        the bounds: call :meth:`check` for that.

        Args:
            value: a numpy array or scalar, a python number or a tensor.

        Returns:
            A tensor of shape ``[*B, *self.shape]``.

        Raises:
            SpecError: when ``value`` is not numeric or its shape cannot fit the spec.
        """
        return self._fit(self._tensor(value, self.dtype), self.shape)

    def to_numpy(self, value: torch.Tensor) -> Any:
        """``value`` as a numpy array of the spec's dtype (float32 for a float32 gym Box).

        The array may share memory with ``value`` when it already is a CPU tensor of that
        dtype; gymnasium reads it at once.
        """
        return value.detach().to(_CPU, self.dtype).numpy()

    def to(self, device: DeviceLike) -> _LeafSpec:
        return self._rebuild(device=_as_device(device))

    def expand(self, *batch_shape: int | ShapeLike) -> _LeafSpec:
        return self._rebuild(shape=(*_batch_shape(batch_shape), *self.shape))

    def clone(self) -> _LeafSpec:
        return self._rebuild()

    def __getitem__(self, index: int) -> _LeafSpec:
        """The spec of ``value[index]``: the first dimension indexed away (as TorchRL's).

        Only an int is taken, and only on a batch dimension: the last dimension of a
        ``OneHot``, ``Binary`` or multi spec is part of one value.

        Examples:
            >>> Bounded(-1.0, 1.0, (3,)).expand(4)[0] == Bounded(-1.0, 1.0, (3,))
            True
        """
        batch_dims = self.ndim - self._EVENT_DIMS
        if (
            not isinstance(index, int)
            or batch_dims < 1
            or not -self.shape[0] <= index < self.shape[0]
        ):
            raise SpecError(
                f"{type(self).__name__} of shape {list(self.shape)} can be indexed by an int in "
                f"[-{self.shape[0] if batch_dims else 0}, {self.shape[0] if batch_dims else 0}) "
                f"on its {batch_dims} batch dimension(s), received {index!r}."
            )
        return self._index(index)

    def _index(self, index: int) -> _LeafSpec:
        return self._rebuild(shape=self.shape[1:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _LeafSpec) or type(other) is not type(self):
            return False
        return (
            self.shape == other.shape
            and self.dtype == other.dtype
            and self.device == other.device
            and all(
                torch.equal(mine, theirs) if isinstance(mine, torch.Tensor) else mine == theirs
                for mine, theirs in zip(self._params().values(), other._params().values())
            )
        )

    def __repr__(self) -> str:
        fields = (
            f"shape={self.shape}",
            f"space={self.space}",
            f"device={self.device}",
            f"dtype={self.dtype}",
            f"domain={self.domain}",
        )
        body = ",\n".join(indent(f, " " * 4) for f in fields)
        return f"{self._repr_name()}(\n{body})"

    # -- internals -----------------------------------------------------------------------------
    def _repr_name(self) -> str:
        return type(self).__name__

    def _params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    def _rebuild(self, **changes: Any) -> _LeafSpec:
        kwargs = {"shape": self.shape, "device": self.device, "dtype": self.dtype}
        return type(self)(**{**self._params(), **kwargs, **changes})

    def _expected(self) -> str:
        return f"shape {_shape_str(self.shape)} dtype {self.dtype}{self._describe()}"

    def _problem(self, value: Any, path: tuple[str, ...]) -> str | None:
        name = _key_str(path)
        if not isinstance(value, torch.Tensor):
            return (
                f"{name}: expected a torch.Tensor of {self._expected()}, received a "
                f"{type(value).__name__}; convert gymnasium/numpy values with spec.from_numpy()."
            )
        lead = value.ndim - self.ndim
        if lead < 0 or value.shape[lead:] != self.shape:
            why = (
                f"the trailing shape must be {list(self.shape)}; reshape the value to "
                f"{_shape_str(self.shape)} (leading dimensions are batch dimensions)"
            )
        elif value.dtype != self.dtype:
            why = f"the dtype must be {self.dtype}; cast the value with .to({self.dtype})"
        else:
            why = self._value_problem(value)
            if why is None:
                return None
        return (
            f"{name}: expected {self._expected()}, received shape {list(value.shape)} "
            f"dtype {value.dtype}: {why}."
        )

    def _tensor(self, value: Any, dtype: torch.dtype) -> torch.Tensor:
        """``value`` copied into a new tensor of ``dtype`` on the spec's device."""
        if type(value) is np.ndarray and self.device.type == "cpu":
            # numpy copies (and casts) where numpy and torch agree bit for bit: same dtype,
            # float to float, or a safe cast; ~3x faster than torch.tensor for small arrays
            target = _NUMPY_DTYPES.get(dtype)
            source = value.dtype
            if target is not None and (
                source == target
                or (
                    source.isnative  # what torch.tensor reads: native order, at most 64 bits
                    and source.itemsize <= 8
                    and source.kind in "biuf"
                    and (target.kind == source.kind == "f" or np.can_cast(source, target, "safe"))
                )
            ):
                tensor = torch.empty(value.shape, dtype=dtype)
                tensor.numpy()[...] = value
                return tensor
        if isinstance(value, torch.Tensor):
            return value.detach().to(self.device, dtype, copy=True)
        if isinstance(value, np.ndarray) and any(s < 0 for s in value.strides):
            value = value.copy()  # torch cannot read negative strides
        try:
            return torch.tensor(value, dtype=dtype, device=self.device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise SpecError(
                f"{type(self).__name__}.from_numpy cannot convert a {type(value).__name__} to "
                f"a {dtype} tensor ({err}); pass a numpy array, a number or a tensor."
            ) from None

    def _fit(self, tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        lead = tensor.ndim - len(shape)
        if lead >= 0 and tensor.shape[lead:] == shape:
            return tensor
        if tensor.numel() == shape.numel():
            return tensor.reshape(shape)
        raise SpecError(
            f"{type(self).__name__}.from_numpy received a value of shape {list(tensor.shape)}, "
            f"expected {_shape_str(shape)}; pass one value of shape {list(shape)} or a batch "
            "of them."
        )


# --------------------------------------------------------------------------------------------
# Continuous (or integer-valued) boxes
# --------------------------------------------------------------------------------------------


def _float_domain(dtype: torch.dtype) -> str:
    return "continuous" if dtype.is_floating_point else "discrete"


class Unbounded(_LeafSpec):
    """Any value of a shape and dtype (prints as ``UnboundedContinuous``/``UnboundedDiscrete``).

    :meth:`rand` draws a standard normal for floating dtypes and uniform integers otherwise.
    ``space`` holds the dtype's extreme values, as in TorchRL, and is built on access.

    Args:
        shape: shape of a value. Defaults to ``()``.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.float32``.

    Examples:
        >>> spec = Unbounded((3,))
        >>> spec.rand().shape, spec.rand((2,)).dtype
        (torch.Size([3]), torch.float32)
        >>> spec.is_in(torch.zeros(5, 3)), spec.is_in(torch.zeros(5, 2))
        (True, False)
    """

    def __init__(
        self,
        shape: ShapeLike = (),
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(shape, device=device, dtype=dtype)
        self.domain = _float_domain(self.dtype)

    @property
    def space(self) -> ContinuousBox:
        """``ContinuousBox`` from the dtype's lowest to its highest value."""
        if self.dtype == torch.bool:
            lowest, highest = False, True
        else:
            info = (
                torch.finfo(self.dtype) if self.dtype.is_floating_point else torch.iinfo(self.dtype)
            )
            lowest, highest = info.min, info.max
        full = {"size": self.shape, "dtype": self.dtype, "device": self.device}
        return ContinuousBox(
            torch.full(fill_value=lowest, **full), torch.full(fill_value=highest, **full)
        )

    def _repr_name(self) -> str:
        return "UnboundedContinuous" if self.domain == "continuous" else "UnboundedDiscrete"

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        options = {"generator": generator, "dtype": self.dtype, "device": self.device}
        if self.dtype.is_floating_point:
            return torch.randn(shape, **options)
        if self.dtype == torch.bool:
            return torch.randint(0, 2, shape, **options)
        return torch.empty(shape, dtype=self.dtype, device=self.device).random_(generator=generator)


class Bounded(_LeafSpec):
    """Values within ``[low, high]``, elementwise (prints as ``BoundedContinuous``/``BoundedDiscrete``).

    Sampling (:meth:`rand`): uniform in ``[low, high]`` where both bounds are finite (integers
    in ``low .. high`` inclusive for integer dtypes); where a bound is infinite, a standard
    normal draw (both infinite), ``low + |normal|`` or ``high - |normal|`` (one infinite). It
    takes one ``torch.rand`` draw, then one ``torch.randn`` draw only if some bound is infinite.

    Args:
        low: lower bounds: a number, array or tensor broadcastable to ``shape``.
        high: upper bounds, likewise; ``low <= high`` everywhere, no NaN.
        shape: shape of a value; inferred from the bounds' broadcast shape when None.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.float32``; integer dtypes need finite bounds.

    Raises:
        SpecError: on bounds that do not broadcast to ``shape``, NaN, ``low > high``,
            infinite integer bounds, or ``dtype=torch.bool`` (use :class:`Binary`).

    Examples:
        >>> spec = Bounded(-2.0, 2.0, (1,))
        >>> spec.low, spec.high
        (tensor([-2.]), tensor([2.]))
        >>> spec.is_in(torch.tensor([[1.5], [-2.0]])), spec.is_in(torch.tensor([2.5]))
        (True, False)
        >>> spec.to_numpy(torch.tensor([0.5]))
        array([0.5], dtype=float32)
    """

    _PARAMS = ("low", "high")

    def __init__(
        self,
        low: float | np.ndarray | torch.Tensor,
        high: float | np.ndarray | torch.Tensor,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        dtype, device = _as_dtype(dtype), _as_device(device)
        if dtype == torch.bool:
            raise SpecError("Bounded does not take dtype torch.bool; use Binary for 0/1 values.")
        low_t = _bound_tensor(low, "low", dtype, device)
        high_t = _bound_tensor(high, "high", dtype, device)
        size = _bounds_shape(low_t, high_t) if shape is None else _as_size(shape)
        try:
            low_t, high_t = low_t.expand(size).clone(), high_t.expand(size).clone()
        except RuntimeError:
            raise SpecError(
                f"Bounded: low of shape {list(low_t.shape)} and high of shape "
                f"{list(high_t.shape)} do not broadcast to shape {list(size)}; pass scalars or "
                "bounds of the spec's shape."
            ) from None
        if not bool((low_t <= high_t).all()):
            raise SpecError(
                f"Bounded: low must not exceed high and neither may be NaN, received "
                f"low={_values_str(low_t)}, high={_values_str(high_t)}."
            )
        super().__init__(size, device=device, dtype=dtype)
        self.domain = _float_domain(dtype)
        self.space = ContinuousBox(low_t, high_t)
        self._low_finite = torch.isfinite(low_t)
        self._high_finite = torch.isfinite(high_t)
        self._all_finite = bool(self._low_finite.all() and self._high_finite.all())

    @property
    def low(self) -> torch.Tensor:
        """Lower bounds, of the spec's shape, dtype and device (do not modify in place)."""
        return self.space.low

    @property
    def high(self) -> torch.Tensor:
        """Upper bounds, of the spec's shape, dtype and device (do not modify in place)."""
        return self.space.high

    def _index(self, index: int) -> Bounded:
        return Bounded(
            self.low[index], self.high[index], self.shape[1:], device=self.device, dtype=self.dtype
        )

    def _repr_name(self) -> str:
        return "BoundedContinuous" if self.domain == "continuous" else "BoundedDiscrete"

    def _describe(self) -> str:
        low, high = self.low.reshape(-1), self.high.reshape(-1)
        if low.numel() and bool((low == low[0]).all() and (high == high[0]).all()):
            return f" within [{_item_strs(low, 1)[0]}, {_item_strs(high, 1)[0]}]"
        return f" within low={_values_str(self.low)}, high={_values_str(self.high)}"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        low, high = self.low.to(value.device), self.high.to(value.device)
        problem = _bad_values(value, ~((value >= low) & (value <= high)), "within the bounds")
        if problem is None:
            return None
        return f"{problem}; clamp the value into the bounds or fix what produced it"

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        if not self.dtype.is_floating_point:
            return self._sample_integers(shape, generator)
        u = torch.rand(shape, generator=generator, dtype=self.dtype, device=self.device)
        # A convex combination: no overflow even when high - low exceeds the dtype's range.
        uniform = (self.low * (1 - u) + self.high * u).clamp(self.low, self.high)
        if self._all_finite:
            return uniform
        normal = torch.randn(shape, generator=generator, dtype=self.dtype, device=self.device)
        half = normal.abs()
        tails = torch.where(
            self._low_finite,
            self.low + half,
            torch.where(self._high_finite, self.high - half, normal),
        )
        return torch.where(self._low_finite & self._high_finite, uniform, tails)

    def _sample_integers(
        self, shape: torch.Size, generator: torch.Generator | None
    ) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, dtype=torch.float64, device=self.device)
        low, high = self.low.double(), self.high.double()
        drawn = low + torch.floor(u * (high - low + 1))
        # float64 may round an int64 bound past the dtype's range, where casting to int gives
        # garbage: draws at or beyond a bound take the bound itself.
        inside = torch.where(drawn <= low, self.low, drawn.to(self.dtype))
        return torch.where(drawn >= high, self.high, inside)


def _bounds_shape(low: torch.Tensor, high: torch.Tensor) -> torch.Size:
    try:
        return torch.broadcast_shapes(low.shape, high.shape)
    except RuntimeError:
        raise SpecError(
            f"Bounded: low of shape {list(low.shape)} and high of shape {list(high.shape)} do "
            "not broadcast together; pass bounds of one shape, or scalars and a shape."
        ) from None


def _bound_tensor(bound: Any, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(bound, np.ndarray):
        bound = np.ascontiguousarray(bound)
    try:
        tensor = torch.as_tensor(bound)
    except (TypeError, ValueError, RuntimeError):
        raise SpecError(
            f"Bounded: {name} must be a number, array or tensor, received {type(bound).__name__}."
        ) from None
    if (
        not dtype.is_floating_point
        and tensor.is_floating_point()
        and not bool(tensor.isfinite().all())
    ):
        raise SpecError(
            f"Bounded: {name} holds non-finite values but dtype {dtype} is an integer dtype; "
            "pass finite bounds or a floating dtype."
        )
    return tensor.to(device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Discrete specs
# --------------------------------------------------------------------------------------------


class Categorical(_LeafSpec):
    """Integers in ``0 .. n - 1`` (class indices), one per element of ``shape``.

    Args:
        n: number of categories.
        shape: shape of a value. Defaults to ``()``: one index.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.int64``.

    Examples:
        >>> spec = Categorical(3)
        >>> spec.from_numpy(2)
        tensor(2)
        >>> spec.to_numpy(torch.tensor(2))
        2
        >>> spec.is_in(torch.tensor([0, 2])), spec.is_in(torch.tensor(3))
        (True, False)
    """

    _PARAMS = ("n",)

    def __init__(
        self,
        n: int,
        shape: ShapeLike = (),
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        super().__init__(shape, device=device, dtype=dtype)
        self.domain = "discrete"
        self.space = CategoricalBox(_positive_int(n, "n"))

    @property
    def n(self) -> int:
        """Number of categories."""
        return self.space.n

    def _describe(self) -> str:
        return f" with values in [0, {self.n - 1}]"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        return _bad_values(value, (value < 0) | (value >= self.n), f"in [0, {self.n - 1}]")

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randint(
            0, self.n, shape, generator=generator, dtype=self.dtype, device=self.device
        )

    def to_numpy(self, value: torch.Tensor) -> int | np.ndarray:
        """A python ``int`` for a single index, else a numpy array of the spec's dtype."""
        array = value.detach().to(_CPU, self.dtype).numpy()
        return int(array) if array.ndim == 0 else array


class OneHot(_LeafSpec):
    """One-hot vectors over ``n`` categories: the last dimension holds a single 1.

    Args:
        n: number of categories.
        shape: shape of a value; its last entry must be ``n``. Defaults to ``[n]``.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.int64``.

    Examples:
        >>> spec = OneHot(2)
        >>> spec
        OneHot(
            shape=torch.Size([2]),
            space=CategoricalBox(n=2),
            device=cpu,
            dtype=torch.int64,
            domain=discrete)
        >>> spec.from_numpy(1)
        tensor([0, 1])
        >>> spec.to_numpy(torch.tensor([[0, 1], [1, 0]]))
        array([1, 0])
    """

    _EVENT_DIMS = 1

    _PARAMS = ("n",)

    def __init__(
        self,
        n: int,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        n = _positive_int(n, "n")
        super().__init__((n,) if shape is None else shape, device=device, dtype=dtype)
        if not self.shape or self.shape[-1] != n:
            raise SpecError(
                f"OneHot: the last entry of shape must be n={n}, received shape "
                f"{list(self.shape)}; pass shape=(..., {n})."
            )
        self.domain = "discrete"
        self.space = CategoricalBox(n)

    @property
    def n(self) -> int:
        """Number of categories."""
        return self.space.n

    def _describe(self) -> str:
        return f" one-hot over {self.n} categories"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        return _one_hot_problem(value, self.n)

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        index = torch.randint(0, self.n, shape[:-1], generator=generator, device=self.device)
        return torch.nn.functional.one_hot(index, self.n).to(self.dtype)

    def from_numpy(self, value: Any) -> torch.Tensor:
        """A class index (gym ``Discrete`` value, or an array of them) as one-hot vectors.

        Returns:
            A tensor of shape ``[*B, *self.shape]`` for indices of shape ``[*B, *self.shape[:-1]]``.

        Raises:
            SpecError: for an index outside ``0 .. n - 1`` or a value of the wrong shape.
        """
        index = self._fit(self._tensor(value, torch.int64), self.shape[:-1])
        try:
            return torch.nn.functional.one_hot(index, self.n).to(self.dtype)
        except RuntimeError:
            raise SpecError(
                f"OneHot.from_numpy received indices {_values_str(index)}, expected integers "
                f"in [0, {self.n - 1}]."
            ) from None

    def to_numpy(self, value: torch.Tensor) -> np.int64 | np.ndarray:
        """The index of the 1: a ``numpy.int64`` scalar, or an int64 array for a batch."""
        # ``[()]`` turns a 0-d array into a numpy scalar and leaves other arrays as they are.
        value = value.detach()
        if value.device.type == "cpu" and value.dtype in _NUMPY_DTYPES and not value.is_neg():
            return value.numpy().argmax(-1)[()]  # numpy's argmax: also the first maximum
        return _argmax(value).cpu().numpy()[()]


class Binary(_LeafSpec):
    """Vectors of 0/1 values (gym ``MultiBinary``), any number of them set.

    Args:
        n: length of the vector; ``shape[-1]`` when None.
        shape: shape of a value; its last entry must be ``n``. Defaults to ``[n]``.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.int8``.

    Examples:
        >>> spec = Binary(3)
        >>> spec.from_numpy(np.array([1, 0, 1], dtype=np.int8))
        tensor([1, 0, 1], dtype=torch.int8)
        >>> spec.is_in(torch.tensor([1, 2, 0], dtype=torch.int8))
        False
    """

    _EVENT_DIMS = 1

    def __init__(
        self,
        n: int | None = None,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int8,
    ) -> None:
        if n is None and shape is None:
            raise SpecError("Binary needs n or shape; pass e.g. Binary(4) or Binary(shape=(2, 4)).")
        super().__init__(
            (_positive_int(n, "n"),) if shape is None else shape, device=device, dtype=dtype
        )
        if not self.shape or (n is not None and self.shape[-1] != n):
            raise SpecError(
                f"Binary: the last entry of shape must be n={n}, received shape {list(self.shape)}."
            )
        self.domain = "discrete"
        self.space = CategoricalBox(2)

    def _describe(self) -> str:
        return " with values in {0, 1}"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        return _bad_values(value, (value != 0) & (value != 1), "0 or 1")

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator, dtype=self.dtype, device=self.device)


class MultiCategorical(_LeafSpec):
    """Several class indices side by side (gym ``MultiDiscrete``): entry ``i`` in ``0 .. nvec[i] - 1``.

    Args:
        nvec: number of categories of each entry (one-dimensional).
        shape: shape of a value; its last entry must be ``len(nvec)``. Defaults to ``[len(nvec)]``.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.int64``.

    Examples:
        >>> spec = MultiCategorical([3, 2])
        >>> spec.nvec
        (3, 2)
        >>> spec.is_in(torch.tensor([2, 1])), spec.is_in(torch.tensor([2, 2]))
        (True, False)
    """

    _EVENT_DIMS = 1

    _PARAMS = ("nvec",)

    def __init__(
        self,
        nvec: Sequence[int] | np.ndarray | torch.Tensor,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        self.nvec = _as_nvec(nvec)
        super().__init__((len(self.nvec),) if shape is None else shape, device=device, dtype=dtype)
        _check_last_dim(self, len(self.nvec), "len(nvec)")
        self.domain = "discrete"
        self.space = BoxList([CategoricalBox(n) for n in self.nvec])
        self._nvec_t = torch.tensor(self.nvec, device=self.device)

    def _describe(self) -> str:
        return f" with values in [0, nvec) for nvec={list(self.nvec)}"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        nvec = self._nvec_t.to(value.device)
        return _bad_values(value, (value < 0) | (value >= nvec), "in [0, nvec)")

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return _rand_indices(self._nvec_t, shape, generator).to(self.dtype)


class MultiOneHot(_LeafSpec):
    """Several one-hot vectors concatenated along the last dimension, of sizes ``nvec``.

    Args:
        nvec: size of each one-hot block (one-dimensional).
        shape: shape of a value; its last entry must be ``sum(nvec)``. Defaults to ``[sum(nvec)]``.

    Keyword Args:
        device: defaults to the CPU.
        dtype: defaults to ``torch.int64``.

    Examples:
        >>> spec = MultiOneHot([3, 2])
        >>> spec.from_numpy(np.array([2, 0]))
        tensor([0, 0, 1, 1, 0])
        >>> spec.to_numpy(torch.tensor([0, 0, 1, 1, 0]))
        array([2, 0])
    """

    _EVENT_DIMS = 1

    _PARAMS = ("nvec",)

    def __init__(
        self,
        nvec: Sequence[int] | np.ndarray | torch.Tensor,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        self.nvec = _as_nvec(nvec)
        super().__init__((sum(self.nvec),) if shape is None else shape, device=device, dtype=dtype)
        _check_last_dim(self, sum(self.nvec), "sum(nvec)")
        self.domain = "discrete"
        self.space = BoxList([CategoricalBox(n) for n in self.nvec])
        self._nvec_t = torch.tensor(self.nvec, device=self.device)
        self._offsets = torch.cumsum(self._nvec_t, 0) - self._nvec_t

    def _describe(self) -> str:
        return f" one-hot blocks of sizes {list(self.nvec)}"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        for block, n in zip(value.split(self.nvec, -1), self.nvec):
            problem = _one_hot_problem(block, n)
            if problem is not None:
                return f"in the block of size {n}, {problem}"
        return None

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        index = _rand_indices(self._nvec_t, (*shape[:-1], len(self.nvec)), generator)
        return self._scatter(index)

    def from_numpy(self, value: Any) -> torch.Tensor:
        """Class indices (gym ``MultiDiscrete`` value) of shape ``[*B, len(nvec)]`` as one-hot blocks.

        Raises:
            SpecError: for an index outside ``0 .. nvec[i] - 1`` or a value of the wrong shape.
        """
        index_shape = torch.Size((*self.shape[:-1], len(self.nvec)))
        index = self._fit(self._tensor(value, torch.int64), index_shape)
        if bool(((index < 0) | (index >= self._nvec_t)).any()):
            raise SpecError(
                f"MultiOneHot.from_numpy received indices {_values_str(index)}, expected entry "
                f"i in [0, nvec[i]) for nvec={list(self.nvec)}."
            )
        return self._scatter(index)

    def to_numpy(self, value: torch.Tensor) -> np.ndarray:
        """The index of the 1 in each block: an int64 array of shape ``[*B, len(nvec)]``."""
        blocks = _argmax_blocks(value.detach(), self.nvec)
        return blocks.cpu().numpy()

    def _scatter(self, index: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((*index.shape[:-1], self.shape[-1]), dtype=self.dtype, device=self.device)
        return out.scatter_(-1, index + self._offsets, 1)


def _check_last_dim(spec: _LeafSpec, size: int, what: str) -> None:
    if not spec.shape or spec.shape[-1] != size:
        raise SpecError(
            f"{type(spec).__name__}: the last entry of shape must be {what}={size}, received "
            f"shape {list(spec.shape)}."
        )


def _one_hot_problem(value: torch.Tensor, n: int) -> str | None:
    valid = ((value == 0) | (value == 1)).all(-1) & (value.sum(-1) == 1)
    if bool(valid.all()):
        return None
    count = int((~valid).sum())
    return (
        f"{count} of {valid.numel()} vectors along the last dimension are not one-hot over {n} "
        "categories (a single 1, zeros elsewhere); encode indices with spec.from_numpy()"
    )


def _argmax(value: torch.Tensor) -> torch.Tensor:
    return (value.view(torch.uint8) if value.dtype == torch.bool else value).argmax(-1)


def _argmax_blocks(value: torch.Tensor, nvec: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([_argmax(block) for block in value.split(nvec, -1)], -1)


def _rand_indices(
    nvec: torch.Tensor, shape: Sequence[int], generator: torch.Generator | None
) -> torch.Tensor:
    """int64 indices of ``shape`` (last dim ``len(nvec)``), entry ``i`` uniform in ``0 .. nvec[i] - 1``."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=nvec.device)
    return torch.minimum((u * nvec).long(), nvec - 1)


# --------------------------------------------------------------------------------------------
# Composite
# --------------------------------------------------------------------------------------------


class Composite(TensorSpec):
    """A nested, dict-like spec of a tensordict: keys to child specs (leaves or Composites).

    Every child's shape starts with the composite's ``shape`` (the tensordict's batch size)
    and lives on its device. Nested keys are tuples: ``spec["next", "reward"]``; setting one
    creates the missing intermediate Composites.

    Args:
        source: children by key (a string or tuple of strings); a dict value becomes a
            nested Composite.
        **kwargs: more children by (string) key.

    Keyword Args:
        shape: the batch shape every child starts with. Defaults to ``()``.
        device: defaults to the CPU.

    Raises:
        SpecError: for a child that is not a spec, whose shape does not start with ``shape``
            or that lives on another device.

    Examples:
        >>> spec = Composite(observation=Unbounded((3,)))
        >>> spec["next", "reward"] = Unbounded((1,))
        >>> spec.keys(include_nested=True)
        ['observation', 'next', ('next', 'reward')]
        >>> td = spec.rand((2,))
        >>> td["next", "reward"].shape, td.batch_size
        (torch.Size([2, 1]), torch.Size([2]))
        >>> spec.is_in(td)
        True
    """

    domain = "composite"

    def __init__(
        self,
        source: Mapping[NestedKey, TensorSpec | Mapping] | None = None,
        *,
        shape: ShapeLike = (),
        device: DeviceLike = None,
        **kwargs: TensorSpec | Mapping,
    ) -> None:
        if source is not None and not isinstance(source, Mapping):
            raise SpecError(
                f"Composite takes a dict of specs, received a {type(source).__name__}; pass "
                "e.g. Composite({'observation': Unbounded((3,))})."
            )
        self.shape = _as_size(shape)
        self.device = _as_device(device)
        self._specs: dict[str, TensorSpec] = {}
        for key, spec in [*(source or {}).items(), *kwargs.items()]:
            self[key] = spec

    # -- mapping -------------------------------------------------------------------------------
    def __getitem__(self, key: NestedKey | int) -> TensorSpec:
        """A child, or the spec of ``td[index]``.

        Args:
            key: a string or tuple of strings (a nested key); or an int, which indexes the
                first batch dimension away from every child (as TorchRL's spec indexing).

        Raises:
            KeyError: for a key that is not in the Composite.
            SpecError: for a malformed key, or an int on a Composite of shape ``()``.
        """
        if isinstance(key, int):
            return self._index(key)
        node: TensorSpec = self
        for part in _key_path(key):
            if not isinstance(node, Composite) or part not in node._specs:
                raise KeyError(
                    f"{key!r} is not in this Composite, whose keys are "
                    f"{self.keys(include_nested=True)}"
                )
            node = node._specs[part]
        return node

    def __setitem__(self, key: NestedKey, value: TensorSpec | Mapping) -> None:
        *parents, name = _key_path(key)
        node = self
        for part in parents:
            child = node._specs.get(part)
            if child is None:
                child = node._specs[part] = Composite(shape=node.shape, device=node.device)
            elif not isinstance(child, Composite):
                raise SpecError(
                    f"cannot set {key!r}: {part!r} holds a {type(child).__name__}, not a Composite."
                )
            node = child
        node._set(name, value)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, tuple)):
            return False
        try:
            self[key]
        except (KeyError, SpecError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def items(
        self, include_nested: bool = False, leaves_only: bool = False
    ) -> list[tuple[NestedKey, TensorSpec]]:
        """``(key, spec)`` pairs, depth first in insertion order; nested keys are tuples.

        Args:
            include_nested: also list the children of nested Composites.
            leaves_only: leave the Composites themselves out.
        """
        pairs: list[tuple[NestedKey, TensorSpec]] = []
        for name, spec in self._specs.items():
            is_composite = isinstance(spec, Composite)
            if not (leaves_only and is_composite):
                pairs.append((name, spec))
            if include_nested and isinstance(spec, Composite):
                pairs.extend(
                    ((name, *_key_path(key)), child)
                    for key, child in spec.items(include_nested, leaves_only)
                )
        return pairs

    def keys(self, include_nested: bool = False, leaves_only: bool = False) -> list[NestedKey]:
        """The keys of :meth:`items`."""
        return [key for key, _ in self.items(include_nested, leaves_only)]

    def values(self, include_nested: bool = False, leaves_only: bool = False) -> list[TensorSpec]:
        """The specs of :meth:`items`."""
        return [spec for _, spec in self.items(include_nested, leaves_only)]

    # -- values --------------------------------------------------------------------------------
    def rand(
        self, shape: ShapeLike = (), *, generator: torch.Generator | None = None
    ) -> TensorDict:
        """A random tensordict of batch size ``[*shape, *self.shape]`` on the spec's device."""
        batch = _as_size(shape)
        return self._tensordict(
            {k: v.rand(batch, generator=generator) for k, v in self._specs.items()}, batch
        )

    def zero(self, shape: ShapeLike = ()) -> TensorDict:
        """A tensordict of zeros of batch size ``[*shape, *self.shape]``."""
        batch = _as_size(shape)
        return self._tensordict({k: v.zero(batch) for k, v in self._specs.items()}, batch)

    def is_in(self, value: Any) -> bool:
        return self._problem(value, ()) is None

    def check(self, value: Any, key: NestedKey | tuple[()] = ()) -> None:
        """Raises :class:`SpecError` for the first child of ``value`` that is missing or does not fit.

        Args:
            value: a tensordict (or dict) holding every key of the spec; extra keys are ignored.
            key: a prefix for the keys the message names (``()``: none).

        Examples:
            >>> spec = Composite(observation=Unbounded((3,)))
            >>> spec.check(TensorDict(observation=torch.zeros(2)))
            Traceback (most recent call last):
            ...
            rlpol.errors.SpecError: observation: expected shape [*B, 3] dtype torch.float32, received shape [2] dtype torch.float32: the trailing shape must be [3]; reshape the value to [*B, 3] (leading dimensions are batch dimensions).
        """
        problem = self._problem(value, () if key == () else _key_path(key))
        if problem is not None:
            raise SpecError(problem)

    def from_numpy(self, value: Mapping[str, Any]) -> TensorDict:
        """A gym ``Dict`` value (a dict of numpy values, nested for nested Dicts) as a tensordict.

        Raises:
            SpecError: when ``value`` lacks a key of the spec or holds one it does not have.
        """
        if not isinstance(value, Mapping) or value.keys() != self._specs.keys():
            received = list(value) if isinstance(value, Mapping) else type(value).__name__
            raise SpecError(
                f"Composite.from_numpy expected a dict with keys {list(self._specs)}, received "
                f"{received}."
            )
        return self._tensordict({k: v.from_numpy(value[k]) for k, v in self._specs.items()})

    def to_numpy(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A tensordict as a dict (nested for nested Composites) of the children's ``to_numpy``."""
        return {key: spec.to_numpy(value[key]) for key, spec in self._specs.items()}

    # -- new specs -----------------------------------------------------------------------------
    def to(self, device: DeviceLike) -> Composite:
        return Composite(
            {k: v.to(device) for k, v in self._specs.items()}, shape=self.shape, device=device
        )

    def expand(self, *batch_shape: int | ShapeLike) -> Composite:
        batch = _batch_shape(batch_shape)
        return Composite(
            {k: v.expand(batch) for k, v in self._specs.items()},
            shape=(*batch, *self.shape),
            device=self.device,
        )

    def clone(self) -> Composite:
        return Composite(
            {k: v.clone() for k, v in self._specs.items()}, shape=self.shape, device=self.device
        )

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Composite
            and self.shape == other.shape
            and self.device == other.device
            and self._specs.keys() == other._specs.keys()
            and all(spec == other._specs[key] for key, spec in self._specs.items())
        )

    def __repr__(self) -> str:
        children = [indent(f"{key}: {spec!r}", " " * 4) for key, spec in self._specs.items()]
        lines = [*children, f"    device={self.device}", f"    shape={self.shape}"]
        return "Composite(\n" + ",\n".join(lines) + ")"

    # -- internals -----------------------------------------------------------------------------
    def _set(self, name: str, value: TensorSpec | Mapping) -> None:
        if isinstance(value, Mapping):
            value = Composite(value, shape=self.shape, device=self.device)
        if not isinstance(value, TensorSpec):
            raise SpecError(
                f"Composite[{name!r}] must be a TensorSpec or a dict of them, received a "
                f"{type(value).__name__}."
            )
        if value.shape[: self.ndim] != self.shape:
            raise SpecError(
                f"Composite[{name!r}] has shape {list(value.shape)}, which does not start with "
                f"the Composite's shape {list(self.shape)}; pass spec.expand(*{list(self.shape)})."
            )
        if value.device != self.device:
            raise SpecError(
                f"Composite[{name!r}] is on {value.device}, the Composite on {self.device}; "
                f"pass spec.to({str(self.device)!r})."
            )
        self._specs[name] = value

    def _index(self, index: int) -> Composite:
        if not self.shape or not -self.shape[0] <= index < self.shape[0]:
            raise SpecError(
                f"a Composite of shape {list(self.shape)} can be indexed by an int on its batch "
                f"dimensions only, received {index}; index a key with a string instead."
            )
        children = {key: spec[index] for key, spec in self._specs.items()}
        return Composite(children, shape=self.shape[1:], device=self.device)

    def _tensordict(self, children: dict[str, Any], batch: torch.Size = _NO_BATCH) -> TensorDict:
        return TensorDict(children, batch_size=(*batch, *self.shape), device=self.device)

    def _expected(self) -> str:
        return f"a tensordict with keys {self.keys(include_nested=True, leaves_only=True)}"

    def _problem(self, value: Any, path: tuple[str, ...]) -> str | None:
        if not isinstance(value, Mapping):
            return (
                f"{_key_str(path) if path else 'value'}: expected {self._expected()}, received a "
                f"{type(value).__name__}."
            )
        for name, spec in self._specs.items():
            child_path = (*path, name)
            if name not in value:
                return (
                    f"{_key_str(child_path)}: missing; expected {spec._expected()} (the "
                    f"tensordict holds {list(value.keys())})."
                )
            problem = spec._problem(value[name], child_path)
            if problem is not None:
                return problem
        return None


# --------------------------------------------------------------------------------------------
# gymnasium
# --------------------------------------------------------------------------------------------

_SUPPORTED_SPACES = (
    "Box, Discrete (start=0), MultiDiscrete (one-dimensional nvec, start=0), MultiBinary and "
    "Dict of those"
)


def spec_from_gym_space(
    space: Any, *, categorical_action_encoding: bool = False, device: DeviceLike = None
) -> TensorSpec:
    """The spec of a gymnasium space, as TorchRL 0.14's ``_gym_to_torchrl_spec_transform``.

    ===============================  ===============================================
    gymnasium space                  spec
    ===============================  ===============================================
    ``Box``, all bounds infinite     ``Unbounded(shape, dtype=Box dtype)``; bounds at
    or at the dtype's extremes       the extremes count as infinite, so a uint8 image
                                     Box ``[0, 255]`` gives ``UnboundedDiscrete``
    other ``Box``                    ``Bounded(low, high, shape, dtype=Box dtype)``
    ``Discrete(n)``                  ``OneHot(n)``, or ``Categorical(n)``
    ``MultiDiscrete(nvec)``          ``MultiOneHot(nvec)``, or ``MultiCategorical(nvec)``
    ``MultiBinary(n)``               ``Binary(shape=space.shape)``
    ``Dict``                         ``Composite`` (nested for nested Dicts)
    ===============================  ===============================================

    Args:
        space: a ``gymnasium.spaces.Space``.

    Keyword Args:
        categorical_action_encoding: index (``Categorical``) rather than one-hot encoding of
            ``Discrete``/``MultiDiscrete`` spaces.
        device: the specs' device; defaults to the CPU.

    Returns:
        The spec; its ``from_numpy``/``to_numpy`` convert the space's values. Unlike TorchRL,
        a scalar ``Box`` keeps its shape ``()`` (TorchRL makes it ``[1]``), so ``to_numpy``
        values stay in the space.

    Raises:
        SpecError: for any other space (``Tuple``, ``Text``, ``Discrete`` with ``start != 0``,
            a multi-dimensional ``MultiDiscrete``, ...).

    Examples:
        >>> import gymnasium as gym
        >>> spec_from_gym_space(gym.spaces.Discrete(2))
        OneHot(
            shape=torch.Size([2]),
            space=CategoricalBox(n=2),
            device=cpu,
            dtype=torch.int64,
            domain=discrete)
        >>> spec_from_gym_space(gym.spaces.Box(-2.0, 2.0, (1,))).high
        tensor([2.])
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return _spec_from_box(space, device)
    if isinstance(space, spaces.Discrete):
        _require_zero_start(space, space.start)
        cls = Categorical if categorical_action_encoding else OneHot
        return cls(int(space.n), device=device)
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise SpecError(
                f"cannot convert {space!r}: only one-dimensional nvec is supported, received "
                f"nvec of shape {list(space.nvec.shape)}; flatten the space first."
            )
        _require_zero_start(space, space.start)
        multi = MultiCategorical if categorical_action_encoding else MultiOneHot
        return multi(space.nvec.tolist(), device=device)
    if isinstance(space, spaces.MultiBinary):
        return Binary(shape=space.shape, device=device)
    if isinstance(space, spaces.Dict):
        children = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str):
                raise SpecError(f"cannot convert {space!r}: its key {key!r} is not a string.")
            children[key] = spec_from_gym_space(
                sub, categorical_action_encoding=categorical_action_encoding, device=device
            )
        return Composite(children, device=device)
    raise SpecError(
        f"cannot convert {space!r} ({type(space).__name__}) to a spec; supported gymnasium "
        f"spaces are {_SUPPORTED_SPACES}."
    )


def _require_zero_start(space: Any, start: Any) -> None:
    if np.any(np.asarray(start) != 0):
        raise SpecError(
            f"cannot convert {space!r}: start={start} is not supported, only start=0; shift the "
            "space's values with a gymnasium wrapper."
        )


def _spec_from_box(space: Any, device: DeviceLike) -> TensorSpec:
    dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
    if np.issubdtype(space.dtype, np.floating):
        info: Any = np.finfo(space.dtype)
    elif np.issubdtype(space.dtype, np.integer):
        info = np.iinfo(space.dtype)
    else:
        return Bounded(space.low, space.high, space.shape, device=device, dtype=dtype)
    low_open = np.all((space.low == -np.inf) | (space.low == info.min))
    high_open = np.all((space.high == np.inf) | (space.high == info.max))
    if low_open and high_open:
        return Unbounded(space.shape, device=device, dtype=dtype)
    return Bounded(space.low, space.high, space.shape, device=device, dtype=dtype)


# --------------------------------------------------------------------------------------------
# JSON description
# --------------------------------------------------------------------------------------------

_LEAF_CLASSES: dict[str, type[_LeafSpec]] = {
    cls.__name__: cls
    for cls in (Unbounded, Bounded, Categorical, OneHot, Binary, MultiCategorical, MultiOneHot)
}


def spec_to_dict(spec: TensorSpec) -> dict[str, Any]:
    """A JSON-serialisable description of ``spec``, the inverse of :func:`spec_from_dict`.

    Every spec records ``"class"`` (``"Bounded"``, ``"OneHot"``, ...), ``"shape"`` (list of
    ints) and ``"device"`` (``"cpu"``); leaves add ``"dtype"`` (``"float32"``, ``"int64"``,
    ...) and their parameters: ``"low"``/``"high"`` as nested lists of the spec's shape (with
    ``"inf"``/``"-inf"`` strings for infinite bounds, so ``json.dumps(..., allow_nan=False)``
    works), ``"n"`` or ``"nvec"``. A Composite adds ``"children"``: key to description.

    Raises:
        SpecError: for a dtype outside float16/bfloat16/float32/float64/uint8/int8/int16/
            int32/int64/bool.

    Examples:
        >>> spec_to_dict(Bounded(-1.0, float("inf"), (2,)))
        {'class': 'Bounded', 'shape': [2], 'device': 'cpu', 'dtype': 'float32', 'low': [-1.0, -1.0], 'high': ['inf', 'inf']}
        >>> spec_to_dict(Composite(action=Categorical(3)))["children"]["action"]
        {'class': 'Categorical', 'shape': [], 'device': 'cpu', 'dtype': 'int64', 'n': 3}
    """
    described: dict[str, Any] = {
        "class": "Composite" if isinstance(spec, Composite) else type(spec).__name__,
        "shape": list(spec.shape),
        "device": str(spec.device),
    }
    if isinstance(spec, Composite):
        described["children"] = {key: spec_to_dict(child) for key, child in spec.items()}
        return described
    if not isinstance(spec, _LeafSpec):
        raise SpecError(f"spec_to_dict takes a TensorSpec, received a {type(spec).__name__}.")
    name = str(spec.dtype).removeprefix("torch.")
    if _DTYPES.get(name) != spec.dtype:
        raise SpecError(
            f"spec_to_dict cannot describe dtype {spec.dtype}; use one of {list(_DTYPES)}."
        )
    described["dtype"] = name
    for param, value in spec._params().items():
        if isinstance(value, torch.Tensor):
            described[param] = _inf_to_str(value.tolist())
        else:
            described[param] = list(value) if isinstance(value, tuple) else value
    return described


def _inf_to_str(value: Any) -> Any:
    if isinstance(value, list):
        return [_inf_to_str(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def spec_from_dict(description: Mapping[str, Any], *, device: DeviceLike = None) -> TensorSpec:
    """The spec :func:`spec_to_dict` described, validating untrusted input.

    Args:
        description: a dict as :func:`spec_to_dict` returns (e.g. from ``json.loads``).

    Keyword Args:
        device: put every spec on this device instead of the recorded one.

    Returns:
        A spec equal to the one described.

    Raises:
        SpecError: for anything malformed (unknown class, unknown or missing field, bad dtype,
            device, shape, bounds, ``n`` or ``nvec``), naming where in ``description`` it is.

    Examples:
        >>> spec = Composite(observation=Bounded(-1.0, 1.0, (3,)), action=OneHot(2))
        >>> spec_from_dict(spec_to_dict(spec)) == spec
        True
        >>> spec_from_dict({"class": "Tensor"})
        Traceback (most recent call last):
        ...
        rlpol.errors.SpecError: spec: unknown class 'Tensor'; expected one of ['Composite', 'Unbounded', 'Bounded', 'Categorical', 'OneHot', 'Binary', 'MultiCategorical', 'MultiOneHot'].
    """
    return _from_dict(description, "spec", None if device is None else _as_device(device), 0)


def _from_dict(data: Any, where: str, device: torch.device | None, depth: int) -> TensorSpec:
    if depth > _MAX_DEPTH:
        raise SpecError(f"{where}: specs nest deeper than {_MAX_DEPTH} levels.")
    if not isinstance(data, Mapping):
        hint = "; parse JSON text with json.loads first" if isinstance(data, str) else ""
        raise SpecError(
            f"{where}: expected a dict describing a spec, received a {type(data).__name__}{hint}."
        )
    cls_name = data.get("class")
    if cls_name == "Composite":
        fields = {"class", "shape", "device", "children"}
    elif isinstance(cls_name, str) and cls_name in _LEAF_CLASSES:
        fields = {"class", "shape", "device", "dtype", *_LEAF_CLASSES[cls_name]._PARAMS}
    else:
        raise SpecError(
            f"{where}: unknown class {cls_name!r}; expected one of {['Composite', *_LEAF_CLASSES]}."
        )
    unknown, missing = sorted(set(data) - fields, key=str), sorted(fields - set(data))
    if unknown or missing:
        raise SpecError(
            f"{where}: a {cls_name} description has exactly the fields {sorted(fields)}; "
            f"unknown: {unknown}, missing: {missing}."
        )
    shape = _json_shape(data["shape"], where)
    spec_device = device or _json_device(data["device"], where)
    if cls_name == "Composite":
        children = _json_children(data["children"], where, device, depth)
        return _build(Composite, where, children, shape=shape, device=spec_device)
    cls = _LEAF_CLASSES[cls_name]
    dtype = _json_dtype(data["dtype"], where)
    params = {p: _json_param(data[p], f"{where}[{p!r}]", dtype, shape) for p in cls._PARAMS}
    return _build(cls, where, **params, shape=shape, device=spec_device, dtype=dtype)


def _build(cls: type[TensorSpec], where: str, *args: Any, **kwargs: Any) -> TensorSpec:
    try:
        return cls(*args, **kwargs)
    except SpecError as err:
        raise SpecError(f"{where}: {err}") from None


def _json_children(
    children: Any, where: str, device: torch.device | None, depth: int
) -> dict[str, TensorSpec]:
    if not isinstance(children, Mapping) or not all(isinstance(k, str) for k in children):
        raise SpecError(f"{where}['children']: expected a dict from string keys to specs.")
    return {
        key: _from_dict(child, f"{where}['children'][{key!r}]", device, depth + 1)
        for key, child in children.items()
    }


def _json_shape(shape: Any, where: str) -> torch.Size:
    if not (
        isinstance(shape, list)
        and len(shape) <= _MAX_DEPTH
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise SpecError(
            f"{where}['shape']: expected a list of non-negative ints, received {shape!r}."
        )
    return torch.Size(shape)


def _json_device(device: Any, where: str) -> torch.device:
    if not isinstance(device, str):
        raise SpecError(f"{where}['device']: expected a string such as 'cpu', received {device!r}.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise SpecError(f"{where}['device']: {device!r} is not a torch device.") from None


def _json_dtype(dtype: Any, where: str) -> torch.dtype:
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise SpecError(f"{where}['dtype']: expected one of {list(_DTYPES)}, received {dtype!r}.")
    return _DTYPES[dtype]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_param(value: Any, where: str, dtype: torch.dtype, shape: torch.Size) -> Any:
    """``n`` (an int), ``nvec`` (a list of ints) or a bound (nested lists of ``shape``)."""
    if where.endswith("['n']"):
        if not _is_int(value):
            raise SpecError(f"{where}: expected an int, received {value!r}.")
        return value
    if where.endswith("['nvec']"):
        if not isinstance(value, list) or not all(_is_int(v) for v in value):
            raise SpecError(f"{where}: expected a list of ints, received {value!r}.")
        return value
    floating = dtype.is_floating_point
    numbers = _json_numbers(value, where, floating, 0)
    try:  # float64 holds every float16/bfloat16/float32 value exactly, int64 every integer
        bound = torch.tensor(numbers, dtype=torch.float64 if floating else torch.int64)
    except (TypeError, ValueError, RuntimeError):
        raise SpecError(
            f"{where}: expected nested lists of one shape, received ragged lists."
        ) from None
    if bound.numel() == 0 == shape.numel():
        bound = bound.reshape(shape)  # JSON writes every empty shape as []
    if bound.shape != shape:
        raise SpecError(
            f"{where}: expected nested lists of the spec's shape {list(shape)}, received shape "
            f"{list(bound.shape)}."
        )
    return bound


def _json_numbers(value: Any, where: str, floating: bool, depth: int) -> Any:
    if isinstance(value, list) and depth < _MAX_DEPTH:
        return [_json_numbers(v, where, floating, depth + 1) for v in value]
    if _is_int(value) or (floating and isinstance(value, float)):
        return value
    if floating and value in ("inf", "-inf"):
        return float(value)
    expected = "numbers ('inf'/'-inf' for infinities)" if floating else "ints (integer dtype)"
    raise SpecError(f"{where}: expected nested lists of {expected}, found {value!r}.")
