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

One module per concept; import the names from this package, which re-exports them:

* :mod:`~rlpol.toolkit.specs.continuous`: ``Unbounded``, ``Bounded``;
* :mod:`~rlpol.toolkit.specs.discrete`: ``Categorical``, ``OneHot``, ``Binary``,
  ``MultiCategorical``, ``MultiOneHot``;
* :mod:`~rlpol.toolkit.specs.composite`: ``Composite``;
* :mod:`~rlpol.toolkit.specs.boxes`: what a leaf's ``space`` holds;
* :mod:`~rlpol.toolkit.specs.gym`: ``spec_from_gym_space``;
* :mod:`~rlpol.toolkit.specs.serialize`: ``spec_to_dict``, ``spec_from_dict``;
* ``_base`` (``TensorSpec`` and the leaves' shared machinery) and ``_helpers``.
"""

from rlpol.toolkit.specs._base import TensorSpec
from rlpol.toolkit.specs._base import _LeafSpec as _LeafSpec  # private: rlpol.toolkit.envs._arrays
from rlpol.toolkit.specs.boxes import BoxList, CategoricalBox, ContinuousBox
from rlpol.toolkit.specs.composite import Composite
from rlpol.toolkit.specs.continuous import Bounded, Unbounded
from rlpol.toolkit.specs.discrete import (
    Binary,
    Categorical,
    MultiCategorical,
    MultiOneHot,
    OneHot,
)
from rlpol.toolkit.specs.gym import spec_from_gym_space
from rlpol.toolkit.specs.serialize import spec_from_dict, spec_to_dict

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
