"""Boxes: what a leaf spec's ``space`` holds (TorchRL's ``ContinuousBox``, ``CategoricalBox``)."""

from __future__ import annotations

from dataclasses import dataclass
from textwrap import indent

import torch

__all__ = ["BoxList", "CategoricalBox", "ContinuousBox"]


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
