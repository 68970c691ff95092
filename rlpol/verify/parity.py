"""Field-by-field comparison of two TED rollouts (eager vs exported).

Floating-point fields match when ``|actual - expected| <= atol + rtol * |expected|``
everywhere (``torch.allclose``'s rule; NaNs match NaNs); integer and bool fields must be
equal. The relative term matters for closed-loop rollouts: onnxruntime's kernels round
differently from torch's by about one float32 ulp, and an env such as Pendulum carries that
difference into observations and rewards of magnitude ~10, where one ulp is ~1e-6. For each field the report gives the largest
absolute difference and the first time step where the two diverge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from rlpol.toolkit.keys import NestedKey

__all__ = ["FieldParity", "ParityReport", "compare_rollouts"]


@dataclass(frozen=True)
class FieldParity:
    """How one TED field compares.

    Attributes:
        key: the tensordict key.
        dtype: the expected dtype, as a string.
        shape: the expected shape.
        max_abs_diff: the largest absolute difference (inf when shapes or dtypes differ or
            the field is missing on one side).
        first_divergence: the first time step (index along the time axis) that differs, or
            None when the field matches.
        note: why the field failed without a difference (missing, shape, dtype), else "".
    """

    key: NestedKey
    dtype: str
    shape: tuple[int, ...]
    max_abs_diff: float
    first_divergence: int | None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.first_divergence is None and not self.note


@dataclass(frozen=True)
class ParityReport:
    """The comparison of every field of two rollouts."""

    fields: tuple[FieldParity, ...]
    atol: float
    rtol: float

    @property
    def ok(self) -> bool:
        return all(field.ok for field in self.fields)

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """Table rows: key, dtype, shape, max |diff|, first diverging step, ok."""
        return [
            (
                _key_text(field.key),
                field.dtype,
                str(list(field.shape)),
                f"{field.max_abs_diff:.3g}" if field.max_abs_diff != 0 else "0",
                field.note or ("-" if field.first_divergence is None else str(field.first_divergence)),
                "ok" if field.ok else "MISMATCH",
            )
            for field in self.fields
        ]


def _key_text(key: NestedKey) -> str:
    return key if isinstance(key, str) else ".".join(key)


def compare_rollouts(
    expected: TensorDictBase,
    actual: TensorDictBase,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    keys: Iterable[NestedKey] | None = None,
) -> ParityReport:
    """Compare two rollouts of batch size ``[*B, T]`` (time last) field by field.

    Args:
        expected: the reference rollout (eager policy).
        actual: the rollout to check (exported policy).
        atol: absolute tolerance for floating-point fields.
        rtol: relative tolerance for floating-point fields.
        keys: the fields to compare (default: every leaf of either rollout).

    Returns:
        a :class:`ParityReport`; ``report.ok`` is True when every field matches.
    """
    if keys is None:
        keys = dict.fromkeys(
            [*expected.keys(True, True), *actual.keys(True, True)]
        )
    time_dim = expected.batch_dims - 1
    fields = [_compare_field(key, expected, actual, atol, rtol, time_dim) for key in keys]
    return ParityReport(tuple(fields), atol, rtol)


def _compare_field(
    key: NestedKey,
    expected: TensorDictBase,
    actual: TensorDictBase,
    atol: float,
    rtol: float,
    time_dim: int,
) -> FieldParity:
    want = expected.get(key, None)
    got = actual.get(key, None)
    reference = want if want is not None else got
    dtype = str(reference.dtype).removeprefix("torch.")
    shape = tuple(reference.shape)
    if want is None or got is None:
        side = "eager" if want is None else "exported"
        return FieldParity(key, dtype, shape, float("inf"), 0, note=f"missing in {side}")
    if want.shape != got.shape:
        return FieldParity(key, dtype, shape, float("inf"), 0, note=f"shape {list(got.shape)}")
    if want.dtype != got.dtype:
        note = f"dtype {str(got.dtype).removeprefix('torch.')}"
        return FieldParity(key, dtype, shape, float("inf"), 0, note=note)
    got = got.to(want.device)
    if want.is_floating_point():
        diff = (want.double() - got.double()).abs()
        diff = torch.where(want.isnan() & got.isnan(), torch.zeros_like(diff), diff)
        diff = torch.nan_to_num(diff, nan=float("inf"))
        bad = diff > atol + rtol * want.double().abs()
        max_diff = float(diff.max()) if diff.numel() else 0.0
    else:
        bad = want != got
        max_diff = float((want.long() - got.long()).abs().max()) if want.numel() else 0.0
    first = _first_bad_step(bad, time_dim)
    return FieldParity(key, dtype, shape, max_diff, first)


def _first_bad_step(bad: torch.Tensor, time_dim: int) -> int | None:
    if not bad.any():
        return None
    per_step = bad.movedim(time_dim, 0).reshape(bad.shape[time_dim], -1).any(dim=1)
    return int(per_step.nonzero()[0])
