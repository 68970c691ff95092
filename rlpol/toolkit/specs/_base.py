"""The spec interface, :class:`TensorSpec`, and :class:`_LeafSpec`, what every tensor spec shares.

A leaf spec subclass sets its parameters, domain and ``space`` and implements ``_sample``;
checking, conversion to and from numpy, ``expand``/``to``/``clone``, indexing, equality and
``repr`` come from :class:`_LeafSpec`.
"""

from __future__ import annotations

import abc
from textwrap import indent
from typing import Any, ClassVar

import numpy as np
import torch
from tensordict import TensorDict

from rlpol.errors import SpecError
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.specs._helpers import (
    _CPU,
    _NUMPY_DTYPES,
    DeviceLike,
    ShapeLike,
    _as_device,
    _as_dtype,
    _as_size,
    _batch_shape,
    _key_path,
    _key_str,
    _shape_str,
)

__all__ = ["TensorSpec"]


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
            >>> from rlpol.toolkit.specs import Bounded
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
            >>> from rlpol.toolkit.specs import Bounded
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
