"""gymnasium spaces to specs: :func:`spec_from_gym_space`.

The values themselves convert with each spec's ``from_numpy`` (gym value to tensor) and
``to_numpy`` (tensor to gym value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlpol.errors import SpecError
from rlpol.toolkit.specs._base import TensorSpec
from rlpol.toolkit.specs._helpers import DeviceLike
from rlpol.toolkit.specs.composite import Composite
from rlpol.toolkit.specs.continuous import Bounded, Unbounded
from rlpol.toolkit.specs.discrete import (
    Binary,
    Categorical,
    MultiCategorical,
    MultiOneHot,
    OneHot,
)

__all__ = ["spec_from_gym_space"]


_SUPPORTED_SPACES = (
    "Box, Discrete (start=0), MultiDiscrete (one-dimensional nvec, start=0), MultiBinary and "
    "Dict of those"
)


def spec_from_gym_space(
    space: Any, *, categorical_action_encoding: bool = False, device: DeviceLike = None
) -> TensorSpec:
    """The spec of a gymnasium space, as TorchRL 0.14's ``_gym_to_torchrl_spec_transform``.

    ===============================  ===============================================
    gymnasium space                  spec
    ===============================  ===============================================
    ``Box``, all bounds infinite     ``Unbounded(shape, dtype=Box dtype)``; bounds at
    or at the dtype's extremes       the extremes count as infinite, so a uint8 image
                                     Box ``[0, 255]`` gives ``UnboundedDiscrete``
    other ``Box``                    ``Bounded(low, high, shape, dtype=Box dtype)``
    ``Discrete(n)``                  ``OneHot(n)``, or ``Categorical(n)``
    ``MultiDiscrete(nvec)``          ``MultiOneHot(nvec)``, or ``MultiCategorical(nvec)``
    ``MultiBinary(n)``               ``Binary(shape=space.shape)``
    ``Dict``                         ``Composite`` (nested for nested Dicts)
    ===============================  ===============================================

    Args:
        space: a ``gymnasium.spaces.Space``.

    Keyword Args:
        categorical_action_encoding: index (``Categorical``) rather than one-hot encoding of
            ``Discrete``/``MultiDiscrete`` spaces.
        device: the specs' device; defaults to the CPU.

    Returns:
        The spec; its ``from_numpy``/``to_numpy`` convert the space's values. Unlike TorchRL,
        a scalar ``Box`` keeps its shape ``()`` (TorchRL makes it ``[1]``), so ``to_numpy``
        values stay in the space.

    Raises:
        SpecError: for any other space (``Tuple``, ``Text``, ``Discrete`` with ``start != 0``,
            a multi-dimensional ``MultiDiscrete``, ...).

    Examples:
        >>> import gymnasium as gym
        >>> spec_from_gym_space(gym.spaces.Discrete(2))
        OneHot(
            shape=torch.Size([2]),
            space=CategoricalBox(n=2),
            device=cpu,
            dtype=torch.int64,
            domain=discrete)
        >>> spec_from_gym_space(gym.spaces.Box(-2.0, 2.0, (1,))).high
        tensor([2.])
    """
    from gymnasium import spaces

    if isinstance(space, spaces.Box):
        return _spec_from_box(space, device)
    if isinstance(space, spaces.Discrete):
        _require_zero_start(space, space.start)
        cls = Categorical if categorical_action_encoding else OneHot
        return cls(int(space.n), device=device)
    if isinstance(space, spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise SpecError(
                f"cannot convert {space!r}: only one-dimensional nvec is supported, received "
                f"nvec of shape {list(space.nvec.shape)}; flatten the space first."
            )
        _require_zero_start(space, space.start)
        multi = MultiCategorical if categorical_action_encoding else MultiOneHot
        return multi(space.nvec.tolist(), device=device)
    if isinstance(space, spaces.MultiBinary):
        return Binary(shape=space.shape, device=device)
    if isinstance(space, spaces.Dict):
        children = {}
        for key, sub in space.spaces.items():
            if not isinstance(key, str):
                raise SpecError(f"cannot convert {space!r}: its key {key!r} is not a string.")
            children[key] = spec_from_gym_space(
                sub, categorical_action_encoding=categorical_action_encoding, device=device
            )
        return Composite(children, device=device)
    raise SpecError(
        f"cannot convert {space!r} ({type(space).__name__}) to a spec; supported gymnasium "
        f"spaces are {_SUPPORTED_SPACES}."
    )


def _require_zero_start(space: Any, start: Any) -> None:
    if np.any(np.asarray(start) != 0):
        raise SpecError(
            f"cannot convert {space!r}: start={start} is not supported, only start=0; shift the "
            "space's values with a gymnasium wrapper."
        )


def _spec_from_box(space: Any, device: DeviceLike) -> TensorSpec:
    dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
    if np.issubdtype(space.dtype, np.floating):
        info: Any = np.finfo(space.dtype)
    elif np.issubdtype(space.dtype, np.integer):
        info = np.iinfo(space.dtype)
    else:
        return Bounded(space.low, space.high, space.shape, device=device, dtype=dtype)
    low_open = np.all((space.low == -np.inf) | (space.low == info.min))
    high_open = np.all((space.high == np.inf) | (space.high == info.max))
    if low_open and high_open:
        return Unbounded(space.shape, device=device, dtype=dtype)
    return Bounded(space.low, space.high, space.shape, device=device, dtype=dtype)
