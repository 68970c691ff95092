"""Continuous (or integer-valued) boxes: :class:`Unbounded` and :class:`Bounded`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlpol.errors import SpecError
from rlpol.toolkit.specs._base import _LeafSpec
from rlpol.toolkit.specs._helpers import (
    DeviceLike,
    ShapeLike,
    _as_device,
    _as_dtype,
    _as_size,
    _bad_values,
    _item_strs,
    _values_str,
)
from rlpol.toolkit.specs.boxes import ContinuousBox

__all__ = ["Bounded", "Unbounded"]


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
