"""The transforms of a ``TransformedEnv`` (see :mod:`.transformed`): step counting, reward sums, observation maps.

A transform is a tensordict module (``TensorDictModuleBase``, so an ``nn.Module``: its
tensors are buffers that ``.to(device)`` moves) with two faces, as in TorchRL:

* inside an env, it sees every reset and every step of the env it is appended to:

  * :meth:`Transform.transform_observation_spec` rewrites the observation spec once;
  * :meth:`Transform.on_reset` edits a freshly reset root tensordict (a batched env merges
    the rows that were reset into the running root afterwards);
  * :meth:`Transform.on_step` edits ``"next"`` after a step, reading the root at time ``t``;

* outside an env, ``transform(tensordict)`` (:meth:`Transform.forward`) is what it does to
  one tensordict, reading ``in_keys`` and writing ``out_keys``, so that
  ``TensorDictSequential(env.transform, policy)`` maps a raw observation to an action.

:class:`ObservationTransform` subclasses are *pure tensor functions* of their in_keys
(:meth:`ObservationTransform.apply`), so an exporter can fold them into a graph and the
deployed artifact can take raw env observations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol.errors import SpecError
from rlpol.toolkit.keys import (
    DONE,
    EPISODE_REWARD,
    IS_INIT,
    OBSERVATION,
    REWARD,
    STEP_COUNT,
    TRUNCATED,
    NestedKey,
)
from rlpol.toolkit.specs import Bounded, Categorical, Composite, TensorSpec, Unbounded

__all__ = [
    "Compose",
    "DoubleToFloat",
    "IndexSelect",
    "InitTracker",
    "ObservationNorm",
    "ObservationTransform",
    "RewardSum",
    "StepCounter",
    "Transform",
]


class Transform(TensorDictModuleBase):
    """Base class: every env hook is the identity, and so is :meth:`forward`.

    The transforms that only mean something in an env's step loop (:class:`StepCounter`,
    :class:`RewardSum`, :class:`InitTracker`, :class:`~.primer.TensorDictPrimer`) keep this
    ``forward``: outside an env they read and write nothing (``in_keys = out_keys = []``) and
    return the tensordict as given. (TorchRL's ``StepCounter`` and ``InitTracker`` raise
    there and its ``RewardSum`` sums over a ``"time"`` dim; rlpol lets them pass, so that a
    whole ``env.transform`` can run before a policy on one observation.)

    Args:
        in_keys: the entries :meth:`forward` reads.
        out_keys: the entries :meth:`forward` writes.
    """

    def __init__(
        self, in_keys: Sequence[NestedKey] = (), out_keys: Sequence[NestedKey] = ()
    ) -> None:
        super().__init__()
        self.in_keys = list(in_keys)
        self.out_keys = list(out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """What the transform does to ``tensordict`` outside an env (here: nothing)."""
        return tensordict

    def transform_observation_spec(self, spec: Composite) -> Composite:
        """Return the observation spec seen after this transform."""
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        """Edit ``root``, a freshly reset root tensordict."""
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        """Edit ``next_td`` (time ``t + 1``) given ``root`` (time ``t``) after a step."""
        return next_td

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Compose(Transform):
    """Apply several transforms in order.

    Holds them in an ``nn.ModuleList``: ``len(compose)``, iteration, ``compose[i]`` (the
    transform) and ``compose[a:b]`` (a new ``Compose`` of the same transform objects, not
    copies as TorchRL's) work as on a list. Its ``in_keys`` and ``out_keys`` are those a
    ``TensorDictSequential`` of its members reports: the keys read before any member writes
    them, and every key written. So ``TensorDictSequential(env.transform[:-1], policy)`` is
    a policy on raw observations (``[:-1]`` leaving out, say, a final ``StepCounter``).

    Args:
        *transforms: the transforms, in the order they are applied.

    Raises:
        TypeError: a member is not a :class:`Transform`.

    Examples:
        >>> from rlpol import Compose, StepCounter, RewardSum
        >>> compose = Compose(StepCounter(max_steps=10), RewardSum())
        >>> compose
        Compose(StepCounter(max_steps=10), RewardSum())
        >>> len(compose), compose[0], compose[1:]
        (2, StepCounter(max_steps=10), Compose(RewardSum()))
    """

    def __init__(self, *transforms: Transform) -> None:
        TensorDictModuleBase.__init__(self)  # no key lists of its own: see in_keys, out_keys
        for transform in transforms:
            _check_transform(transform)
        self.transforms = torch.nn.ModuleList(transforms)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The keys the members read before one of them writes them, in order."""
        return _chain_keys(self.transforms)[0]

    @property
    def out_keys(self) -> list[NestedKey]:
        """Every key the members write (each once, at its last writer's position)."""
        return _chain_keys(self.transforms)[1]

    def append(self, transform: Transform) -> Compose:
        """Add ``transform`` after the others; returns self."""
        _check_transform(transform)
        self.transforms.append(transform)
        return self

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        for transform in self.transforms:
            tensordict = transform(tensordict)
        return tensordict

    def transform_observation_spec(self, spec: Composite) -> Composite:
        for transform in self.transforms:
            spec = transform.transform_observation_spec(spec)
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        for transform in self.transforms:
            root = transform.on_reset(root)
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        for transform in self.transforms:
            next_td = transform.on_step(root, next_td)
        return next_td

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms)

    def __getitem__(self, index: int | slice) -> Transform:
        if isinstance(index, slice):
            return Compose(*self.transforms[index])
        return self.transforms[index]

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"


def _check_transform(transform: object) -> None:
    if not isinstance(transform, Transform):
        raise TypeError(
            f"Compose takes Transform instances, got {type(transform).__name__}; write the "
            "function as a Transform subclass (its forward, on_reset and on_step)."
        )


def _chain_keys(
    modules: Sequence[TensorDictModuleBase],
) -> tuple[list[NestedKey], list[NestedKey]]:
    """The in_keys and out_keys of running ``modules`` in order, as TensorDictSequential's."""
    in_keys: list[NestedKey] = []
    written: list[NestedKey] = []
    for module in modules:
        for key in module.in_keys:
            if key not in in_keys and key not in written:
                in_keys.append(key)
        written += module.out_keys
    out_keys = [key for i, key in enumerate(written) if key not in written[i + 1 :]]
    return in_keys, out_keys


class StepCounter(Transform):
    """Count steps since the last reset and truncate at ``max_steps``.

    Writes ``step_count`` (int64, [*B, 1]): 0 at reset, then ``t + 1`` under ``"next"``.
    When ``max_steps`` is given, the step that reaches it sets ``truncated`` and ``done``.

    Args:
        max_steps: truncate episodes after this many steps (None: never).
        step_count_key: the key to write.

    Examples:
        >>> from rlpol import GymEnv, StepCounter, TransformedEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), StepCounter(max_steps=10))
        >>> rollout = env.rollout(max_steps=100)
        >>> rollout["next", "truncated"].squeeze(-1).tolist()[-2:], rollout.shape
        ([False, True], torch.Size([10]))
    """

    def __init__(self, max_steps: int | None = None, *, step_count_key: str = STEP_COUNT):
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"StepCounter(max_steps=...) must be >= 1 or None, got {max_steps}")
        super().__init__()
        self.max_steps = max_steps
        self.step_count_key = step_count_key

    def transform_observation_spec(self, spec: Composite) -> Composite:
        high = self.max_steps if self.max_steps is not None else torch.iinfo(torch.int64).max
        spec[self.step_count_key] = Bounded(
            0, high, shape=(*spec.shape, 1), dtype=torch.int64, device=spec.device
        )
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        root.set(
            self.step_count_key,
            torch.zeros((*root.batch_size, 1), dtype=torch.int64, device=root.device),
        )
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        count = root.get(self.step_count_key) + 1
        next_td.set(self.step_count_key, count)
        if self.max_steps is not None:
            reached = count >= self.max_steps
            next_td.set(TRUNCATED, next_td.get(TRUNCATED) | reached)
            next_td.set(DONE, next_td.get(DONE) | reached)
        return next_td

    def __repr__(self) -> str:
        return f"StepCounter(max_steps={self.max_steps})"


class RewardSum(Transform):
    """Accumulate the reward of the running episode in ``episode_reward`` (float32, [*B, 1]).

    Examples:
        >>> from rlpol import GymEnv, RewardSum, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), RewardSum())
        >>> rollout = env.rollout(3)
        >>> rollout["next", "episode_reward"].squeeze(-1).tolist()
        [1.0, 2.0, 3.0]
    """

    def __init__(self, *, in_key: str = REWARD, out_key: str = EPISODE_REWARD) -> None:
        super().__init__()
        self.in_key = in_key
        self.out_key = out_key

    def transform_observation_spec(self, spec: Composite) -> Composite:
        spec[self.out_key] = Unbounded(shape=(*spec.shape, 1), device=spec.device)
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        root.set(
            self.out_key,
            torch.zeros((*root.batch_size, 1), dtype=torch.float32, device=root.device),
        )
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        next_td.set(self.out_key, root.get(self.out_key) + next_td.get(self.in_key))
        return next_td

    def __repr__(self) -> str:
        return "RewardSum()"


class InitTracker(Transform):
    """Write ``is_init`` (bool, [*B, 1]): True on the root of a freshly reset row, else False.

    Modules with per-episode state (e.g. ``OrnsteinUhlenbeckProcessModule``) read it to know
    when an episode starts.

    Examples:
        >>> from rlpol import GymEnv, InitTracker, TransformedEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), InitTracker())
        >>> env.rollout(3)["is_init"].squeeze(-1).tolist()
        [True, False, False]
    """

    def __init__(self, *, init_key: str = IS_INIT) -> None:
        super().__init__()
        self.init_key = init_key

    def transform_observation_spec(self, spec: Composite) -> Composite:
        spec[self.init_key] = Categorical(
            2, shape=(*spec.shape, 1), dtype=torch.bool, device=spec.device
        )
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        root.set(
            self.init_key,
            torch.ones((*root.batch_size, 1), dtype=torch.bool, device=root.device),
        )
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        next_td.set(
            self.init_key,
            torch.zeros((*next_td.batch_size, 1), dtype=torch.bool, device=next_td.device),
        )
        return next_td


class ObservationTransform(Transform):
    """A transform that maps observation entries through a pure tensor function.

    Subclasses implement :meth:`_apply_transform` (tensor -> tensor, no state, traceable:
    no Python branch on tensor values) and :meth:`apply_spec`. Each in_key is replaced by
    its image under the same key, or written to the matching out_key (the in_key is then
    left as it was). In an env this happens on every reset root and every ``"next"``;
    outside one, :meth:`forward` does it to the tensordict it is given.

    Args:
        in_keys: observation keys to transform (default ``DEFAULT_IN_KEYS``:
            ``["observation"]`` here, ``["pixels"]`` for the image transforms).
        out_keys: where to write the results (default: the in_keys).

    Raises:
        ValueError: ``out_keys`` and ``in_keys`` differ in length.
    """

    DEFAULT_IN_KEYS: tuple[NestedKey, ...] = (OBSERVATION,)

    def __init__(
        self,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        in_keys = list(in_keys) if in_keys is not None else list(self.DEFAULT_IN_KEYS)
        out_keys = list(out_keys) if out_keys is not None else list(in_keys)
        if len(out_keys) != len(in_keys):
            raise ValueError(
                f"{type(self).__name__} needs as many out_keys as in_keys, got "
                f"{in_keys} -> {out_keys}"
            )
        super().__init__(in_keys, out_keys)

    def apply(self, observation: torch.Tensor) -> torch.Tensor:
        """The pure function applied to each in_key.

        Called with a function instead of a tensor it is ``nn.Module.apply`` (the function
        applied to every submodule), so ``policy.apply(init_weights)`` still works on a
        chain that holds this transform.
        """
        if callable(observation):
            return super().apply(observation)
        return self._apply_transform(observation)

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        """The pure function of a subclass (TorchRL's hook name)."""
        raise NotImplementedError

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        """The spec of ``apply``'s output given the spec of its input."""
        return spec

    def to_dict(self) -> dict:
        """A JSON-serialisable description (for artifact metadata)."""
        return {"type": type(self).__name__, "in_keys": self.in_keys, "out_keys": self.out_keys}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write ``apply(tensordict[in_key])`` at each out_key (absent in_keys are skipped)."""
        return self._map(tensordict)

    def _map(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict.get(in_key, None)
            if value is not None:
                tensordict.set(out_key, self._apply_transform(value))
        return tensordict

    def transform_observation_spec(self, spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            spec[out_key] = self.apply_spec(spec[in_key])
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        return self._map(root)

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        return self._map(next_td)


class DoubleToFloat(ObservationTransform):
    """Cast float64 observation entries to float32 (MuJoCo-style envs emit float64).

    Examples:
        >>> import torch
        >>> from rlpol import DoubleToFloat
        >>> DoubleToFloat().apply(torch.zeros(2, dtype=torch.float64)).dtype
        torch.float32
    """

    def __init__(self, in_keys: Sequence[NestedKey] | None = None) -> None:
        super().__init__(in_keys)

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        return observation.to(torch.float32)

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        if spec.dtype != torch.float64:
            return spec
        if isinstance(spec, Bounded):
            return Bounded(
                spec.low.float(), spec.high.float(), shape=spec.shape, device=spec.device
            )
        return Unbounded(shape=spec.shape, device=spec.device, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"DoubleToFloat(in_keys={self.in_keys})"


class ObservationNorm(ObservationTransform):
    """Affine map of observations, as TorchRL: ``obs * scale + loc``.

    With ``standard_normal=True`` the map is ``(obs - loc) / scale`` instead, which is what
    normalising with running statistics (``loc`` = mean, ``scale`` = std) needs.

    ``loc`` and ``scale`` are buffers: ``state_dict`` holds them and ``.to(device)`` moves
    them.

    Args:
        loc: float tensor broadcastable to the observation shape.
        scale: float tensor broadcastable to the observation shape (non-zero).
        in_keys: observation keys to normalise (default ``["observation"]``).
        standard_normal: which of the two maps above to apply.

    Examples:
        >>> import torch
        >>> from rlpol import ObservationNorm
        >>> ObservationNorm(loc=torch.ones(3), scale=2 * torch.ones(3)).apply(torch.zeros(3))
        tensor([1., 1., 1.])
    """

    def __init__(
        self,
        loc: torch.Tensor | float,
        scale: torch.Tensor | float,
        in_keys: Sequence[NestedKey] | None = None,
        *,
        standard_normal: bool = False,
    ) -> None:
        super().__init__(in_keys)
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.float32).clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())
        if (self.scale == 0).any():
            raise ValueError("ObservationNorm(scale=...) must be non-zero everywhere")
        self.standard_normal = standard_normal

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        loc = self.loc.to(observation.device)
        scale = self.scale.to(observation.device)
        if self.standard_normal:
            return (observation - loc) / scale
        return observation * scale + loc

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        return Unbounded(shape=spec.shape, device=spec.device, dtype=spec.dtype)

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
            "standard_normal": self.standard_normal,
        }

    def __repr__(self) -> str:
        return f"ObservationNorm(in_keys={self.in_keys}, standard_normal={self.standard_normal})"


class IndexSelect(ObservationTransform):
    """Keep some features of an observation: ``torch.index_select(obs, -1, indices)``.

    Masks part of the state to make an env partially observable, e.g. CartPole without its
    velocities (``indices=[0, 2]``: cart position and pole angle). TorchRL has no such
    transform (its ``SelectTransform`` selects tensordict *keys*); the name follows
    ``torch.index_select``. The last dimension of each in_key shrinks from ``F`` to
    ``len(indices)``; a :class:`~rlpol.toolkit.specs.Bounded` spec keeps the selected
    bounds.

    Args:
        indices: the features to keep, in the order given (ints in ``0 .. F - 1``).
        in_keys: observation keys to index (default ``["observation"]``).
        out_keys: where to write the results (default: the in_keys, replaced in place).

    Raises:
        ValueError: ``indices`` is empty or holds something else than ints ``>= 0``.
        SpecError: an index is out of range of the observation spec, or the spec is
            neither ``Bounded`` nor ``Unbounded``.

    Examples:
        >>> from rlpol import GymEnv, IndexSelect, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), IndexSelect([0, 2]))
        >>> print(env.reset())
        TensorDict(batch_size=[], device=cpu, fields={
            done: bool[1],
            observation: f32[2],
            terminated: bool[1],
            truncated: bool[1]})
        >>> env.observation_spec["observation"].high
        tensor([4.8000, 0.4189])
        >>> IndexSelect([0, 2]).to_dict()
        {'type': 'IndexSelect', 'in_keys': ['observation'], 'out_keys': ['observation'], 'indices': [0, 2]}
    """

    def __init__(
        self,
        indices: Sequence[int],
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        indices = list(indices)
        if not indices or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices
        ):
            raise ValueError(
                f"IndexSelect(indices=...) takes a non-empty list of ints >= 0 (the features "
                f"to keep), got {indices!r}."
            )
        self.indices = indices
        self.register_buffer("_index", torch.tensor(indices, dtype=torch.int64), persistent=False)

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        return torch.index_select(observation, -1, self._index.to(observation.device))

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        features = spec.shape[-1] if spec.shape else 0
        if max(self.indices) >= features:
            raise SpecError(
                f"IndexSelect(indices={self.indices}) indexes the last dimension, of size "
                f"{features} in the observation spec {list(spec.shape)}; pick indices below "
                f"{features}."
            )
        shape = (*spec.shape[:-1], len(self.indices))
        if isinstance(spec, Bounded):
            return Bounded(
                spec.low[..., self.indices], spec.high[..., self.indices], shape=shape,
                device=spec.device, dtype=spec.dtype,
            )  # fmt: skip
        if isinstance(spec, Unbounded):
            return Unbounded(shape=shape, device=spec.device, dtype=spec.dtype)
        raise SpecError(
            f"IndexSelect selects features of Bounded or Unbounded observations, got a "
            f"{type(spec).__name__} spec; apply it to a continuous observation key."
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "indices": list(self.indices)}

    def __repr__(self) -> str:
        return f"IndexSelect(indices={self.indices}, in_keys={self.in_keys})"
