"""The one dtype table: every tensor dtype an rlpol artifact may hold, under each of its names.

An artifact's contract names dtypes as strings (``"float32"``); torch, numpy, ONNX and the
KServe v2 inference protocol each have their own spelling of the same thing. This module is
the single place where they are paired. It imports neither torch nor onnx, so that reading
an artifact's metadata (``rlpol inspect``) stays light; :func:`torch_dtype` and
:func:`dtype_name` accept or return torch dtypes and import torch only when called.

Examples:
    >>> from rlpol.dtypes import DTYPES, by_name
    >>> by_name("float32")
    DType(name='float32', numpy='float32', onnx=1, v2='FP32')
    >>> by_name("bfloat16").numpy is None  # numpy has no bfloat16
    True
    >>> len(DTYPES)
    10
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlpol.errors import SpecError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DTYPES",
    "DTYPE_NAMES",
    "NUMPY_DTYPE_NAMES",
    "DType",
    "by_name",
    "by_onnx",
    "dtype_name",
    "numpy_dtype",
    "torch_dtype",
]


@dataclass(frozen=True)
class DType:
    """One dtype under each of its names.

    Attributes:
        name: rlpol's (and torch's) name, as written in artifact metadata: ``"float32"``.
        numpy: numpy's name for the same layout, or None where numpy has none (bfloat16).
        onnx: the ``onnx.TensorProto.DataType`` code (``TensorProto.FLOAT`` is 1).
        v2: the KServe v2 / Open Inference Protocol datatype (``"FP32"``).
    """

    name: str
    numpy: str | None
    onnx: int
    v2: str


DTYPES: tuple[DType, ...] = (
    DType("bool", "bool", 9, "BOOL"),
    DType("uint8", "uint8", 2, "UINT8"),
    DType("int8", "int8", 3, "INT8"),
    DType("int16", "int16", 5, "INT16"),
    DType("int32", "int32", 6, "INT32"),
    DType("int64", "int64", 7, "INT64"),
    DType("float16", "float16", 10, "FP16"),
    DType("bfloat16", None, 16, "BF16"),
    DType("float32", "float32", 1, "FP32"),
    DType("float64", "float64", 11, "FP64"),
)
DTYPE_NAMES: tuple[str, ...] = tuple(sorted(dtype.name for dtype in DTYPES))
# the dtypes numpy represents exactly: a CPU tensor of these converts with .numpy()
NUMPY_DTYPE_NAMES: frozenset[str] = frozenset(d.name for d in DTYPES if d.numpy is not None)

_BY_NAME = {dtype.name: dtype for dtype in DTYPES}
_BY_ONNX = {dtype.onnx: dtype for dtype in DTYPES}


def by_name(name: str) -> DType:
    """The :class:`DType` called ``name`` in artifact metadata.

    Raises:
        SpecError: ``name`` is not one of :data:`DTYPE_NAMES`.
    """
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise SpecError(f"unknown dtype {name!r}; expected one of {list(DTYPE_NAMES)}.")
    return found


def by_onnx(code: int) -> DType | None:
    """The :class:`DType` of an ``onnx.TensorProto`` element type, or None for others."""
    return _BY_ONNX.get(code)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` (``"float32"`` -> ``torch.float32``).

    Raises:
        SpecError: ``name`` is not one of :data:`DTYPE_NAMES`.
    """
    import torch

    return getattr(torch, by_name(name).name)


def dtype_name(dtype: torch.dtype) -> str:
    """rlpol's name of a torch dtype (``torch.float32`` -> ``"float32"``).

    Raises:
        SpecError: the dtype is none of :data:`DTYPE_NAMES` (complex, quantized, ...).
    """
    name = str(dtype).removeprefix("torch.")
    if name not in _BY_NAME:
        raise SpecError(
            f"rlpol artifacts cannot hold dtype {dtype}; use one of {list(DTYPE_NAMES)}."
        )
    return name


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The numpy dtype that ``Tensor.numpy()`` gives a CPU tensor of torch ``dtype``.

    Raises:
        SpecError: numpy has no such dtype (bfloat16) or rlpol does not know it.
    """
    import numpy as np

    numpy_name = _BY_NAME[dtype_name(dtype)].numpy
    if numpy_name is None:
        raise SpecError(f"numpy cannot hold {dtype}; convert the tensor to float32 first.")
    return np.dtype(numpy_name)
