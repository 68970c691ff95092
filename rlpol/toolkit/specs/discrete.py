"""Discrete specs: class indices, one-hot vectors and 0/1 vectors.

Class indices are :class:`Categorical` (gym ``Discrete``) and :class:`MultiCategorical` (gym
``MultiDiscrete``); their one-hot encodings :class:`OneHot` and :class:`MultiOneHot`; 0/1
vectors :class:`Binary` (gym ``MultiBinary``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch

from rlpol.errors import SpecError
from rlpol.toolkit.specs._base import _LeafSpec
from rlpol.toolkit.specs._helpers import (
    _CPU,
    _NUMPY_DTYPES,
    DeviceLike,
    ShapeLike,
    _as_nvec,
    _bad_values,
    _positive_int,
    _values_str,
)
from rlpol.toolkit.specs.boxes import BoxList, CategoricalBox

__all__ = ["Binary", "Categorical", "MultiCategorical", "MultiOneHot", "OneHot"]


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


class _NvecSpec(_LeafSpec):
    """The machinery :class:`MultiCategorical` and :class:`MultiOneHot` share.

    Both hold one class index per entry of ``nvec`` (entry ``i`` in ``0 .. nvec[i] - 1``),
    however they encode it. A subclass names the size of its last dimension in ``_LAST_DIM``:
    its expression in error messages and the function of ``nvec`` that computes it.
    """

    _EVENT_DIMS = 1
    _PARAMS = ("nvec",)
    _LAST_DIM: ClassVar[tuple[str, Callable[[tuple[int, ...]], int]]]

    def __init__(
        self,
        nvec: Sequence[int] | np.ndarray | torch.Tensor,
        shape: ShapeLike | None = None,
        *,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        self.nvec = _as_nvec(nvec)
        what, size_of = self._LAST_DIM
        size = size_of(self.nvec)
        super().__init__((size,) if shape is None else shape, device=device, dtype=dtype)
        _check_last_dim(self, size, what)
        self.domain = "discrete"
        self.space = BoxList([CategoricalBox(n) for n in self.nvec])
        self._nvec_t = torch.tensor(self.nvec, device=self.device)


class MultiCategorical(_NvecSpec):
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

    _LAST_DIM = ("len(nvec)", len)

    def _describe(self) -> str:
        return f" with values in [0, nvec) for nvec={list(self.nvec)}"

    def _value_problem(self, value: torch.Tensor) -> str | None:
        nvec = self._nvec_t.to(value.device)
        return _bad_values(value, (value < 0) | (value >= nvec), "in [0, nvec)")

    def _sample(self, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
        return _rand_indices(self._nvec_t, shape, generator).to(self.dtype)


class MultiOneHot(_NvecSpec):
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

    _LAST_DIM = ("sum(nvec)", sum)

    @cached_property
    def _offsets(self) -> torch.Tensor:
        """Where each block starts along the last dimension."""
        return torch.cumsum(self._nvec_t, 0) - self._nvec_t

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
