""":class:`Composite`: the nested, dict-like spec of a tensordict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from textwrap import indent
from typing import Any

import torch
from tensordict import TensorDict

from rlpol.errors import SpecError
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.specs._base import TensorSpec
from rlpol.toolkit.specs._helpers import (
    DeviceLike,
    ShapeLike,
    _as_device,
    _as_size,
    _batch_shape,
    _key_path,
    _key_str,
)

__all__ = ["Composite"]

_NO_BATCH = torch.Size()


class Composite(TensorSpec):
    """A nested, dict-like spec of a tensordict: keys to child specs (leaves or Composites).

    Every child's shape starts with the composite's ``shape`` (the tensordict's batch size)
    and lives on its device. Nested keys are tuples: ``spec["next", "reward"]``; setting one
    creates the missing intermediate Composites.

    Args:
        source: children by key (a string or tuple of strings); a dict value becomes a
            nested Composite.
        **kwargs: more children by (string) key.

    Keyword Args:
        shape: the batch shape every child starts with. Defaults to ``()``.
        device: defaults to the CPU.

    Raises:
        SpecError: for a child that is not a spec, whose shape does not start with ``shape``
            or that lives on another device.

    Examples:
        >>> from rlpol.toolkit.specs import Unbounded
        >>> spec = Composite(observation=Unbounded((3,)))
        >>> spec["next", "reward"] = Unbounded((1,))
        >>> spec.keys(include_nested=True)
        ['observation', 'next', ('next', 'reward')]
        >>> td = spec.rand((2,))
        >>> td["next", "reward"].shape, td.batch_size
        (torch.Size([2, 1]), torch.Size([2]))
        >>> spec.is_in(td)
        True
    """

    domain = "composite"

    def __init__(
        self,
        source: Mapping[NestedKey, TensorSpec | Mapping] | None = None,
        *,
        shape: ShapeLike = (),
        device: DeviceLike = None,
        **kwargs: TensorSpec | Mapping,
    ) -> None:
        if source is not None and not isinstance(source, Mapping):
            raise SpecError(
                f"Composite takes a dict of specs, received a {type(source).__name__}; pass "
                "e.g. Composite({'observation': Unbounded((3,))})."
            )
        self.shape = _as_size(shape)
        self.device = _as_device(device)
        self._specs: dict[str, TensorSpec] = {}
        for key, spec in [*(source or {}).items(), *kwargs.items()]:
            self[key] = spec

    # -- mapping -------------------------------------------------------------------------------
    def __getitem__(self, key: NestedKey | int) -> TensorSpec:
        """A child, or the spec of ``td[index]``.

        Args:
            key: a string or tuple of strings (a nested key); or an int, which indexes the
                first batch dimension away from every child (as TorchRL's spec indexing).

        Raises:
            KeyError: for a key that is not in the Composite.
            SpecError: for a malformed key, or an int on a Composite of shape ``()``.
        """
        if isinstance(key, int):
            return self._index(key)
        node: TensorSpec = self
        for part in _key_path(key):
            if not isinstance(node, Composite) or part not in node._specs:
                raise KeyError(
                    f"{key!r} is not in this Composite, whose keys are "
                    f"{self.keys(include_nested=True)}"
                )
            node = node._specs[part]
        return node

    def __setitem__(self, key: NestedKey, value: TensorSpec | Mapping) -> None:
        *parents, name = _key_path(key)
        node = self
        for part in parents:
            child = node._specs.get(part)
            if child is None:
                child = node._specs[part] = Composite(shape=node.shape, device=node.device)
            elif not isinstance(child, Composite):
                raise SpecError(
                    f"cannot set {key!r}: {part!r} holds a {type(child).__name__}, not a Composite."
                )
            node = child
        node._set(name, value)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, tuple)):
            return False
        try:
            self[key]
        except (KeyError, SpecError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def items(
        self, include_nested: bool = False, leaves_only: bool = False
    ) -> list[tuple[NestedKey, TensorSpec]]:
        """``(key, spec)`` pairs, depth first in insertion order; nested keys are tuples.

        Args:
            include_nested: also list the children of nested Composites.
            leaves_only: leave the Composites themselves out.
        """
        pairs: list[tuple[NestedKey, TensorSpec]] = []
        for name, spec in self._specs.items():
            is_composite = isinstance(spec, Composite)
            if not (leaves_only and is_composite):
                pairs.append((name, spec))
            if include_nested and isinstance(spec, Composite):
                pairs.extend(
                    ((name, *_key_path(key)), child)
                    for key, child in spec.items(include_nested, leaves_only)
                )
        return pairs

    def keys(self, include_nested: bool = False, leaves_only: bool = False) -> list[NestedKey]:
        """The keys of :meth:`items`."""
        return [key for key, _ in self.items(include_nested, leaves_only)]

    def values(self, include_nested: bool = False, leaves_only: bool = False) -> list[TensorSpec]:
        """The specs of :meth:`items`."""
        return [spec for _, spec in self.items(include_nested, leaves_only)]

    # -- values --------------------------------------------------------------------------------
    def rand(
        self, shape: ShapeLike = (), *, generator: torch.Generator | None = None
    ) -> TensorDict:
        """A random tensordict of batch size ``[*shape, *self.shape]`` on the spec's device."""
        batch = _as_size(shape)
        return self._tensordict(
            {k: v.rand(batch, generator=generator) for k, v in self._specs.items()}, batch
        )

    def zero(self, shape: ShapeLike = ()) -> TensorDict:
        """A tensordict of zeros of batch size ``[*shape, *self.shape]``."""
        batch = _as_size(shape)
        return self._tensordict({k: v.zero(batch) for k, v in self._specs.items()}, batch)

    def is_in(self, value: Any) -> bool:
        return self._problem(value, ()) is None

    def check(self, value: Any, key: NestedKey | tuple[()] = ()) -> None:
        """Raises :class:`SpecError` for the first child of ``value`` that is missing or does not fit.

        Args:
            value: a tensordict (or dict) holding every key of the spec; extra keys are ignored.
            key: a prefix for the keys the message names (``()``: none).

        Examples:
            >>> from rlpol.toolkit.specs import Unbounded
            >>> spec = Composite(observation=Unbounded((3,)))
            >>> spec.check(TensorDict(observation=torch.zeros(2)))
            Traceback (most recent call last):
            ...
            rlpol.errors.SpecError: observation: expected shape [*B, 3] dtype torch.float32, received shape [2] dtype torch.float32: the trailing shape must be [3]; reshape the value to [*B, 3] (leading dimensions are batch dimensions).
        """
        problem = self._problem(value, () if key == () else _key_path(key))
        if problem is not None:
            raise SpecError(problem)

    def from_numpy(self, value: Mapping[str, Any]) -> TensorDict:
        """A gym ``Dict`` value (a dict of numpy values, nested for nested Dicts) as a tensordict.

        Raises:
            SpecError: when ``value`` lacks a key of the spec or holds one it does not have.
        """
        if not isinstance(value, Mapping) or value.keys() != self._specs.keys():
            received = list(value) if isinstance(value, Mapping) else type(value).__name__
            raise SpecError(
                f"Composite.from_numpy expected a dict with keys {list(self._specs)}, received "
                f"{received}."
            )
        return self._tensordict({k: v.from_numpy(value[k]) for k, v in self._specs.items()})

    def to_numpy(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A tensordict as a dict (nested for nested Composites) of the children's ``to_numpy``."""
        return {key: spec.to_numpy(value[key]) for key, spec in self._specs.items()}

    # -- new specs -----------------------------------------------------------------------------
    def to(self, device: DeviceLike) -> Composite:
        return Composite(
            {k: v.to(device) for k, v in self._specs.items()}, shape=self.shape, device=device
        )

    def expand(self, *batch_shape: int | ShapeLike) -> Composite:
        batch = _batch_shape(batch_shape)
        return Composite(
            {k: v.expand(batch) for k, v in self._specs.items()},
            shape=(*batch, *self.shape),
            device=self.device,
        )

    def clone(self) -> Composite:
        return Composite(
            {k: v.clone() for k, v in self._specs.items()}, shape=self.shape, device=self.device
        )

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Composite
            and self.shape == other.shape
            and self.device == other.device
            and self._specs.keys() == other._specs.keys()
            and all(spec == other._specs[key] for key, spec in self._specs.items())
        )

    def __repr__(self) -> str:
        children = [indent(f"{key}: {spec!r}", " " * 4) for key, spec in self._specs.items()]
        lines = [*children, f"    device={self.device}", f"    shape={self.shape}"]
        return "Composite(\n" + ",\n".join(lines) + ")"

    # -- internals -----------------------------------------------------------------------------
    def _set(self, name: str, value: TensorSpec | Mapping) -> None:
        if isinstance(value, Mapping):
            value = Composite(value, shape=self.shape, device=self.device)
        if not isinstance(value, TensorSpec):
            raise SpecError(
                f"Composite[{name!r}] must be a TensorSpec or a dict of them, received a "
                f"{type(value).__name__}."
            )
        if value.shape[: self.ndim] != self.shape:
            raise SpecError(
                f"Composite[{name!r}] has shape {list(value.shape)}, which does not start with "
                f"the Composite's shape {list(self.shape)}; pass spec.expand(*{list(self.shape)})."
            )
        if value.device != self.device:
            raise SpecError(
                f"Composite[{name!r}] is on {value.device}, the Composite on {self.device}; "
                f"pass spec.to({str(self.device)!r})."
            )
        self._specs[name] = value

    def _index(self, index: int) -> Composite:
        if not self.shape or not -self.shape[0] <= index < self.shape[0]:
            raise SpecError(
                f"a Composite of shape {list(self.shape)} can be indexed by an int on its batch "
                f"dimensions only, received {index}; index a key with a string instead."
            )
        children = {key: spec[index] for key, spec in self._specs.items()}
        return Composite(children, shape=self.shape[1:], device=self.device)

    def _tensordict(self, children: dict[str, Any], batch: torch.Size = _NO_BATCH) -> TensorDict:
        return TensorDict(children, batch_size=(*batch, *self.shape), device=self.device)

    def _expected(self) -> str:
        return f"a tensordict with keys {self.keys(include_nested=True, leaves_only=True)}"

    def _problem(self, value: Any, path: tuple[str, ...]) -> str | None:
        if not isinstance(value, Mapping):
            return (
                f"{_key_str(path) if path else 'value'}: expected {self._expected()}, received a "
                f"{type(value).__name__}."
            )
        for name, spec in self._specs.items():
            child_path = (*path, name)
            if name not in value:
                return (
                    f"{_key_str(child_path)}: missing; expected {spec._expected()} (the "
                    f"tensordict holds {list(value.keys())})."
                )
            problem = spec._problem(value[name], child_path)
            if problem is not None:
                return problem
        return None
