"""Small helpers the spec classes share: argument checks, key paths and message fragments.

Each ``_as_*`` helper turns a user's argument into its canonical torch form or raises a
:class:`~rlpol.errors.SpecError` that says what was received and what to pass instead.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlpol.dtypes import NUMPY_DTYPE_NAMES, numpy_dtype, torch_dtype
from rlpol.errors import SpecError
from rlpol.toolkit.keys import NestedKey

ShapeLike = int | Sequence[int] | torch.Size
DeviceLike = str | int | torch.device | None

_CPU = torch.device("cpu")
# the numpy dtype of each torch dtype numpy represents, from rlpol.dtypes' table, built once
# for the hot paths: from_numpy's copy-and-cast and OneHot.to_numpy's argmax in numpy
_NUMPY_DTYPES: dict[torch.dtype, np.dtype] = {
    dtype: numpy_dtype(dtype) for dtype in map(torch_dtype, sorted(NUMPY_DTYPE_NAMES))
}


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
