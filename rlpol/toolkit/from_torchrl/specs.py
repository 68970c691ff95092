"""TorchRL specs as rlpol specs: same class names, shapes, dtypes and bounds.

TorchRL's spec classes are the model of rlpol's (:mod:`rlpol.toolkit.specs`), so the mapping
is one to one: ``Bounded`` (TorchRL's ``BoundedContinuous`` / ``BoundedDiscrete``),
``Unbounded``, ``Categorical``, ``OneHot``, ``Binary``, ``MultiCategorical``, ``MultiOneHot``
and ``Composite``. One difference is spelled out: a TorchRL ``OneHot`` defaults to
``torch.bool`` and keeps its dtype here. Masks are not carried over.
"""

from __future__ import annotations

from rlpol.errors import SpecError
from rlpol.toolkit import specs as ours

__all__ = ["rlpol_spec"]


def rlpol_spec(spec: object) -> ours.TensorSpec:
    """The rlpol spec equal to TorchRL ``spec`` (shape, dtype, device, bounds, sizes).

    Args:
        spec: a ``torchrl.data.TensorSpec``, or an rlpol spec (returned as it is).

    Returns:
        an :class:`rlpol.toolkit.specs.TensorSpec` of the same class name.

    Raises:
        SpecError: a TorchRL spec class rlpol has no counterpart for (``NonTensor``,
            ``Stacked``, ...).

    Examples:
        >>> import torch
        >>> from torchrl.data import Bounded
        >>> spec = rlpol_spec(Bounded(-2.0, 2.0, (1,)))
        >>> type(spec).__module__, spec.low, spec.high
        ('rlpol.toolkit.specs.continuous', tensor([-2.]), tensor([2.]))
    """
    if isinstance(spec, ours.TensorSpec):
        return spec
    import torchrl.data as theirs

    common = {"device": spec.device, "dtype": spec.dtype}
    # subclasses first: TorchRL's Binary and MultiCategorical are Categoricals, MultiOneHot a OneHot
    if isinstance(spec, theirs.Composite):
        children = {key: rlpol_spec(child) for key, child in spec.items() if child is not None}
        return ours.Composite(children, shape=spec.shape, device=spec.device or "cpu")
    if isinstance(spec, theirs.Bounded):
        return ours.Bounded(spec.space.low, spec.space.high, spec.shape, **common)
    if isinstance(spec, theirs.Unbounded):
        return ours.Unbounded(spec.shape, **common)
    if isinstance(spec, theirs.Binary):
        return ours.Binary(shape=spec.shape, **common)
    if isinstance(spec, theirs.MultiCategorical):
        return ours.MultiCategorical(spec.nvec, spec.shape, **common)
    if isinstance(spec, theirs.Categorical):
        return ours.Categorical(spec.space.n, spec.shape, **common)
    if isinstance(spec, theirs.MultiOneHot):
        return ours.MultiOneHot(list(spec.nvec), spec.shape, **common)
    if isinstance(spec, theirs.OneHot):
        return ours.OneHot(spec.space.n, spec.shape, **common)
    raise SpecError(
        f"rlpol cannot describe TorchRL's {type(spec).__name__} spec; supported: Bounded, "
        "Unbounded, Categorical, OneHot, Binary, MultiCategorical, MultiOneHot and Composite. "
        "Give the env one of those specs (for example with a TorchRL transform before export)."
    )
