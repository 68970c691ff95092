"""The JSON description of a spec, as exported artifacts record it.

:func:`spec_to_dict` writes it and :func:`spec_from_dict`, its exact inverse, reads it back,
validating untrusted input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from rlpol.dtypes import DTYPE_NAMES, dtype_name, torch_dtype
from rlpol.errors import SpecError
from rlpol.toolkit.specs._base import TensorSpec, _LeafSpec
from rlpol.toolkit.specs._helpers import DeviceLike, _as_device
from rlpol.toolkit.specs.composite import Composite
from rlpol.toolkit.specs.continuous import Bounded, Unbounded
from rlpol.toolkit.specs.discrete import (
    Binary,
    Categorical,
    MultiCategorical,
    MultiOneHot,
    OneHot,
)

__all__ = ["spec_from_dict", "spec_to_dict"]

_MAX_DEPTH = 64  # nesting limit for untrusted descriptions (Composite depth, bound lists)


_LEAF_CLASSES: dict[str, type[_LeafSpec]] = {
    cls.__name__: cls
    for cls in (Unbounded, Bounded, Categorical, OneHot, Binary, MultiCategorical, MultiOneHot)
}


def spec_to_dict(spec: TensorSpec) -> dict[str, Any]:
    """A JSON-serialisable description of ``spec``, the inverse of :func:`spec_from_dict`.

    Every spec records ``"class"`` (``"Bounded"``, ``"OneHot"``, ...), ``"shape"`` (list of
    ints) and ``"device"`` (``"cpu"``); leaves add ``"dtype"`` (``"float32"``, ``"int64"``,
    ...) and their parameters: ``"low"``/``"high"`` as nested lists of the spec's shape, or
    as one number when every element is the same (a ``[210, 160, 3]`` screen's bounds are
    ``0`` and ``255``, not 100,800 numbers each), with ``"inf"``/``"-inf"`` strings for
    infinite bounds, so ``json.dumps(..., allow_nan=False)`` works; ``"n"`` or ``"nvec"``.
    A Composite adds ``"children"``: key to description.

    Raises:
        SpecError: for a dtype outside :data:`rlpol.dtypes.DTYPE_NAMES` (complex, quantized,
            ...).

    Examples:
        >>> spec_to_dict(Bounded(torch.tensor([-1.0, 0.0]), float("inf"), (2,)))
        {'class': 'Bounded', 'shape': [2], 'device': 'cpu', 'dtype': 'float32', 'low': [-1.0, 0.0], 'high': 'inf'}
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
    try:
        name = dtype_name(spec.dtype)
    except SpecError:
        raise SpecError(
            f"spec_to_dict cannot describe dtype {spec.dtype}; use one of {list(DTYPE_NAMES)}."
        ) from None
    described["dtype"] = name
    for param, value in spec._params().items():
        if isinstance(value, torch.Tensor):
            uniform = value.numel() > 0 and bool((value == value.flatten()[0]).all())
            described[param] = _inf_to_str(value.flatten()[0].item() if uniform else value.tolist())
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
    if not isinstance(dtype, str) or dtype not in DTYPE_NAMES:
        raise SpecError(
            f"{where}['dtype']: expected one of {list(DTYPE_NAMES)}, received {dtype!r}."
        )
    return torch_dtype(dtype)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_param(value: Any, where: str, dtype: torch.dtype, shape: torch.Size) -> Any:
    """``n`` (an int), ``nvec`` (a list of ints) or a bound (nested lists of ``shape``, or one
    number for every element)."""
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
    if bound.ndim == 0:
        bound = bound.expand(shape).clone()  # one number: every element
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
