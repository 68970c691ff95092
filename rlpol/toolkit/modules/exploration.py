"""Exploration: the exploration type, and modules that perturb a deterministic action.

``ExplorationType`` / ``set_exploration_type`` / ``exploration_type`` are tensordict's
``InteractionType`` / ``set_interaction_type`` / ``interaction_type`` under TorchRL's names.

The modules follow rlpol's randomness protocol (:mod:`rlpol.toolkit.noise`): each declares
its draws in ``noise_specs``, takes them with :func:`~rlpol.toolkit.noise.draw_noise` and
reads its knobs (``eps``, ``sigma``) with :func:`~rlpol.toolkit.noise.exploration_parameters`,
in that order, then computes the action as a deterministic function of these. Every draw has
shape ``[*B, *shape]`` with ``B`` the input tensordict's batch size. The modules explore when
the exploration type is ``RANDOM`` or unset (``None``), as in TorchRL, and are the identity
otherwise (no draw is taken then).
"""

from __future__ import annotations

import math
import warnings

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    TensorDictModuleBase,
    set_interaction_type,
)

from rlpol._compat import interaction_type
from rlpol.errors import InputMismatchError, SpecError
from rlpol.toolkit.keys import ACTION, NestedKey
from rlpol.toolkit.modules._common import check_in_keys, discrete_kind, one_hot
from rlpol.toolkit.noise import (
    NoiseSpec,
    StochasticModule,
    draw_noise,
    exploration_parameters,
)

__all__ = [
    "AdditiveGaussianModule",
    "EGreedyModule",
    "ExplorationType",
    "OrnsteinUhlenbeckProcessModule",
    "exploration_type",
    "set_exploration_type",
]

ExplorationType = InteractionType
set_exploration_type = set_interaction_type
exploration_type = interaction_type

OU_NOISE_KEY = "_ou_prev_noise"
OU_STEPS_KEY = "_ou_steps"


def _leaf_spec(spec: object, action_key: NestedKey, owner: str) -> object:
    """The action's spec: ``spec`` itself, or its ``action_key`` entry for a Composite."""
    from rlpol.toolkit.specs import Composite

    if spec is None:
        raise SpecError(f"{owner} needs the action spec: pass spec=env.action_spec.")
    if isinstance(spec, Composite):
        return spec[action_key]
    return spec


def _continuous_bounds(spec: object, owner: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(low, high)`` of a float Bounded spec, None for a float Unbounded one."""
    from rlpol.toolkit.specs import Bounded, Unbounded

    if isinstance(spec, (Bounded, Unbounded)) and spec.dtype.is_floating_point:
        if isinstance(spec, Bounded):
            return spec.low.clone(), spec.high.clone()
        return None
    raise SpecError(
        f"{owner} adds noise to continuous actions: it supports Bounded and Unbounded float "
        f"specs, got {type(spec).__name__} of dtype {getattr(spec, 'dtype', None)}. For "
        "discrete actions use EGreedyModule."
    )


class _ExplorationModule(TensorDictModuleBase, StochasticModule):
    """What the exploration modules share: keys, annealing, the exploring switch."""

    def __init__(
        self,
        spec: object,
        value_name: str,
        init: float,
        end: float,
        annealing_num_steps: int,
        *,
        action_key: NestedKey,
        generator: torch.Generator | None,
    ) -> None:
        owner = type(self).__name__
        if end > init:
            raise ValueError(
                f"{owner}: {value_name} should decrease over time or stay constant, got "
                f"{value_name}_init={init} < {value_name}_end={end}."
            )
        if annealing_num_steps < 1:
            raise ValueError(
                f"{owner}: annealing_num_steps must be >= 1, got {annealing_num_steps}; for a "
                f"constant {value_name} pass {value_name}_end={value_name}_init."
            )
        super().__init__()
        self.spec = _leaf_spec(spec, action_key, owner)
        self.action_key = action_key
        self.annealing_num_steps = int(annealing_num_steps)
        self.generator = generator
        self._value_name = value_name
        self.register_buffer(f"{value_name}_init", torch.tensor(float(init)))
        self.register_buffer(f"{value_name}_end", torch.tensor(float(end)))
        self.register_buffer(value_name, torch.tensor(float(init)))
        self._row_shape: tuple[int, ...] | None = None

    def step(self, frames: int = 1) -> None:
        """Anneal the exploration value linearly: ``frames`` steps of
        ``(init - end) / annealing_num_steps``, never below ``end``.
        """
        init = getattr(self, f"{self._value_name}_init")
        end = getattr(self, f"{self._value_name}_end")
        value = getattr(self, self._value_name)
        delta = (init - end) * (frames / self.annealing_num_steps)
        with torch.no_grad():
            value.copy_(torch.maximum(end, value - delta))

    def exploration_parameters(self) -> dict[str, torch.Tensor]:
        return {self._value_name: getattr(self, self._value_name)}

    def is_exploring(self) -> bool:
        """True when the exploration type is ``RANDOM`` or unset, as in TorchRL."""
        return interaction_type() in (InteractionType.RANDOM, None)

    def _action_row(self) -> tuple[int, ...]:
        """The action's per-row shape: from the last call, else the spec's shape."""
        if self._row_shape is not None:
            return self._row_shape
        return tuple(self.spec.shape)

    def _read_action(self, tensordict: TensorDictBase, shapes: dict) -> torch.Tensor:
        check_in_keys(type(self).__name__, tensordict, self.in_keys, shapes)
        action = tensordict.get(self.action_key)
        if torch.jit.is_tracing():  # shapes are traced values: keep what we know
            return action
        row = tuple(action.shape[tensordict.batch_dims :])
        spec_shape = tuple(self.spec.shape)
        # The spec may carry batch dims (a batched env's spec): the row must end the spec,
        # and the spec must end the action's shape.
        row_ends_spec = spec_shape[len(spec_shape) - len(row) :] == row
        spec_ends_action = tuple(action.shape[action.ndim - len(spec_shape) :]) == spec_shape
        if len(row) > len(spec_shape) or not (row_ends_spec and spec_ends_action):
            raise InputMismatchError(
                f"{type(self).__name__}: {self.action_key!r} has shape {list(action.shape)} "
                f"(per row {list(row)}) for batch size {list(tensordict.batch_size)}, but the "
                f"spec's shape is {list(spec_shape)}; pass the spec of the action that the "
                "policy writes."
            )
        self._row_shape = row
        return action


class _NoisyActionModule(_ExplorationModule):
    """Exploration that adds noise to continuous actions, clamped to the bounds if ``safe``."""

    def _register_bounds(self, safe: bool) -> None:
        """Keep the float action bounds (if any) as buffers for :meth:`_clamp`."""
        bounds = _continuous_bounds(self.spec, type(self).__name__)
        self.safe = safe
        self._bounded = bounds is not None
        if bounds is not None:
            self.register_buffer("_low", bounds[0])
            self.register_buffer("_high", bounds[1])

    def _clamp(self, action: torch.Tensor) -> torch.Tensor:
        if self.safe and self._bounded:
            return torch.minimum(torch.maximum(action, self._low), self._high)
        return action


class EGreedyModule(_ExplorationModule):
    """Epsilon-greedy exploration: each row's action is replaced by a random one w.p. ``eps``.

    Draw order (per call, when exploring), with ``B`` the batch size:

    1. ``NoiseSpec("explore", "uniform", ())``: ``u_explore`` ``[*B]``;
    2. ``NoiseSpec("action", "uniform", shape)``: ``u`` ``[*B, *shape]``, where ``shape`` is
       the action's per-row shape without the one-hot dimension (``()`` for ``OneHot(n)``
       and ``Categorical(n)``, ``(d,)`` for ``Bounded`` of shape ``(d,)``);
    3. then ``eps = exploration_parameters(self)["eps"]``.

    A row explores iff ``u_explore < eps``; its random action is computed from ``u``:

    - ``OneHot`` / ``Categorical``: ``index = min(floor(u * n), n - 1)``; with an action
      mask, the ``k``-th allowed action (counting from 0) for
      ``k = min(floor(u * count_allowed), count_allowed - 1)``; written as ``one_hot(index)``
      or ``index`` in the action's dtype;
    - ``Bounded`` (float): ``low + u * (high - low)``; integer: ``low + floor(u * (high - low
      + 1))`` clamped to ``[low, high]``.

    Other specs (``MultiOneHot``, ``MultiCategorical``, ``Binary``, ``Unbounded``) raise
    :class:`~rlpol.errors.SpecError`. ``eps`` is a buffer annealed by :meth:`step` from
    ``eps_init`` to ``eps_end`` in ``annealing_num_steps`` steps.

    Args:
        spec: the action spec (``OneHot``, ``Categorical`` or ``Bounded``; a ``Composite``
            is indexed at ``action_key``).
        eps_init: the initial probability of a random action.
        eps_end: the final one.
        annealing_num_steps: the number of :meth:`step` calls from ``eps_init`` to ``eps_end``.

    Keyword Args:
        action_key: the action entry, read and overwritten.
        action_mask_key: a bool entry ``[*B, n]`` of allowed actions (discrete specs only).
        generator: the generator of the eager draws (default: torch's global one).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.specs import OneHot
        >>> from rlpol.toolkit.modules import EGreedyModule, ExplorationType, set_exploration_type
        >>> module = EGreedyModule(OneHot(4), eps_init=0.5, annealing_num_steps=10)
        >>> td = TensorDict(action=torch.tensor([[1, 0, 0, 0]] * 3), batch_size=[3])
        >>> with set_exploration_type(ExplorationType.MODE):  # no exploration
        ...     module(td.clone())["action"]
        tensor([[1, 0, 0, 0],
                [1, 0, 0, 0],
                [1, 0, 0, 0]])
        >>> module.step(5)
        >>> module.eps
        tensor(0.3000)
        >>> [spec.name for spec in module.noise_specs]
        ['explore', 'action']
    """

    def __init__(
        self,
        spec: object,
        eps_init: float = 1.0,
        eps_end: float = 0.1,
        annealing_num_steps: int = 1000,
        *,
        action_key: NestedKey = ACTION,
        action_mask_key: NestedKey | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            spec,
            "eps",
            eps_init,
            eps_end,
            annealing_num_steps,
            action_key=action_key,
            generator=generator,
        )
        from rlpol.toolkit.specs import Bounded

        self._kind = discrete_kind(self.spec)
        if self._kind is None and isinstance(self.spec, Bounded):
            self._kind = "bounded"
        if self._kind is None:
            raise SpecError(
                "EGreedyModule supports OneHot, Categorical and Bounded action specs, got "
                f"{type(self.spec).__name__}. For other spaces write the random action "
                "yourself, or use a supported spec."
            )
        if action_mask_key is not None and self._kind == "bounded":
            raise SpecError(
                "EGreedyModule: action_mask_key needs a OneHot or Categorical spec, got "
                "Bounded; drop action_mask_key for continuous actions."
            )
        if self._kind == "bounded":
            self.register_buffer("_low", self.spec.low.clone())
            self.register_buffer("_high", self.spec.high.clone())
        self.action_mask_key = action_mask_key
        self.in_keys = [action_key] + ([action_mask_key] if action_mask_key is not None else [])
        self.out_keys = [action_key]

    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        row = self._action_row()
        shape = row[:-1] if self._kind == "one_hot" else row
        return (NoiseSpec("explore", "uniform", ()), NoiseSpec("action", "uniform", shape))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Replace the action of the exploring rows by a random one (see class doc)."""
        shapes = {self.action_key: tuple(self.spec.shape)}
        if self.action_mask_key is not None:
            shapes[self.action_mask_key] = (self.spec.n,)
        action = self._read_action(tensordict, shapes)
        if not self.is_exploring():
            return tensordict
        batch = tensordict.batch_size
        u_explore, u_action = draw_noise(self, batch, action.device)
        eps = exploration_parameters(self)["eps"]
        explore = u_explore < eps
        explore = explore.reshape(explore.shape + (1,) * (action.ndim - explore.ndim))
        mask = None
        if self.action_mask_key is not None:
            mask = tensordict.get(self.action_mask_key).to(torch.bool)
        random_action = self._random_action(u_action, mask, action.dtype)
        tensordict.set(self.action_key, torch.where(explore, random_action, action))
        return tensordict

    def _random_action(
        self, u: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        if self._kind == "bounded":
            low, high = self._low.to(u.device), self._high.to(u.device)
            if dtype.is_floating_point:
                return (low + u * (high - low)).to(dtype)
            low, high = low.double(), high.double()
            value = low + torch.floor(u.double() * (high - low + 1))
            return torch.minimum(torch.maximum(value, low), high).to(dtype)
        index = _uniform_index(u, self.spec.n, mask)
        if self._kind == "one_hot":
            return one_hot(index, self.spec.n).to(dtype)
        return index.to(dtype)


def _uniform_index(u: torch.Tensor, n: int, mask: torch.Tensor | None) -> torch.Tensor:
    """int64 index ``[*R]`` of a uniform draw ``u`` ``[*R]``: ``floor(u * n)``, or the k-th
    allowed action of ``mask`` ``[*R, n]`` for ``k = floor(u * count_allowed)``."""
    if mask is None:
        return torch.floor(u * n).to(torch.int64).clamp(max=n - 1)
    count = mask.sum(-1)
    k = torch.floor(u * count).to(torch.int64)
    k = torch.minimum(k, (count - 1).clamp(min=0))
    index = (mask.cumsum(-1) <= k.unsqueeze(-1)).sum(-1)
    return index.clamp(max=n - 1)


class AdditiveGaussianModule(_NoisyActionModule):
    """Additive Gaussian exploration: ``action + sigma * (mean + std * z)``, clamped to the spec.

    Draw order (per call, when exploring):

    1. ``NoiseSpec("noise", "normal", shape)``: ``z`` ``[*B, *shape]`` with ``shape`` the
       action's per-row shape;
    2. then ``sigma = exploration_parameters(self)["sigma"]``.

    The action becomes ``action + (mean + std * z) * sigma``, clamped to ``[low, high]`` when
    ``safe`` and the spec is ``Bounded``. ``sigma`` is a buffer annealed by :meth:`step`.

    Args:
        spec: the action spec, ``Bounded`` or ``Unbounded`` (float).
        sigma_init: the initial noise scale.
        sigma_end: the final one.
        annealing_num_steps: the number of :meth:`step` calls from one to the other.
        mean: the mean of the unscaled noise.
        std: the standard deviation of the unscaled noise.

    Keyword Args:
        action_key: the action entry, read and overwritten.
        safe: clamp the result to the spec's bounds.
        generator: the generator of the eager draws (default: torch's global one).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.specs import Bounded
        >>> from rlpol.toolkit.modules import AdditiveGaussianModule
        >>> module = AdditiveGaussianModule(Bounded(-2.0, 2.0, (1,)), sigma_init=0.5)
        >>> _ = torch.manual_seed(0)
        >>> module(TensorDict(action=torch.zeros(3, 1), batch_size=[3]))["action"]
        tensor([[ 0.7705],
                [-0.1467],
                [-1.0894]])
    """

    def __init__(
        self,
        spec: object,
        sigma_init: float = 1.0,
        sigma_end: float = 0.1,
        annealing_num_steps: int = 1000,
        mean: float = 0.0,
        std: float = 1.0,
        *,
        action_key: NestedKey = ACTION,
        safe: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            spec,
            "sigma",
            sigma_init,
            sigma_end,
            annealing_num_steps,
            action_key=action_key,
            generator=generator,
        )
        self._register_bounds(safe)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.in_keys = [action_key]
        self.out_keys = [action_key]

    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        return (NoiseSpec("noise", "normal", self._action_row()),)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Add the scaled noise to the action (see class doc)."""
        action = self._read_action(tensordict, {self.action_key: tuple(self.spec.shape)})
        if not self.is_exploring():
            return tensordict
        (z,) = draw_noise(self, tensordict.batch_size, action.device)
        sigma = exploration_parameters(self)["sigma"]
        noisy = action + (self.mean + self.std * z) * sigma
        noisy = self._clamp(noisy)
        tensordict.set(self.action_key, noisy.to(action.dtype))
        return tensordict


class OrnsteinUhlenbeckProcessModule(_NoisyActionModule):
    r"""Ornstein-Uhlenbeck exploration: temporally correlated noise added to the action.

    Per call (when exploring), with ``x`` the previous noise plus ``x0`` and ``n`` the
    number of steps since the episode started:

    .. code-block:: text

        sigma_n = max(sigma_min, sigma + n * (sigma_min - sigma) / n_steps_annealing)
        noise   = x + theta * (mu - x) * dt + sigma_n * sqrt(dt) * z
        action  = action + eps * noise          (clamped to the bounds when safe)

    Draw order:

    1. ``NoiseSpec("noise", "normal", shape)``: ``z`` ``[*B, *shape]``, ``shape`` the
       action's per-row shape;
    2. then ``eps = exploration_parameters(self)["eps"]``.

    The process state lives in the tensordict, as in TorchRL: ``"_ou_prev_noise"`` (the
    action's shape, float) and ``"_ou_steps"`` (int64 ``[*B]``). It restarts (zero noise,
    zero steps) for the rows where ``tensordict[is_init_key]`` is True (written at reset by
    the ``InitTracker`` transform), and for every row when the state entries are absent.
    ``eps`` is a buffer annealed by :meth:`step`. Eager use only while exploring: export
    refuses it under ``RANDOM`` (see ``export_refusal``); under a deterministic exploration
    type it is the identity and exports as such.

    Args:
        spec: the action spec, ``Bounded`` or ``Unbounded`` (float).
        eps_init: the initial scale of the noise added to the action.
        eps_end: the final one.
        annealing_num_steps: the number of :meth:`step` calls from one to the other.

    Keyword Args:
        theta: the mean-reversion rate.
        mu: the mean of the process.
        sigma: the volatility at the start of an episode.
        dt: the time step.
        x0: the process's initial value (a float or a tensor of the action's shape).
        sigma_min: the volatility reached after ``n_steps_annealing`` steps of an episode;
            ``None`` keeps ``sigma`` constant.
        n_steps_annealing: see ``sigma_min``.
        action_key: the action entry, read and overwritten.
        is_init_key: the bool entry ``[*B, 1]`` that marks the first step of an episode.
        safe: clamp the result to the spec's bounds.
        generator: the generator of the eager draws (default: torch's global one).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.specs import Bounded
        >>> from rlpol.toolkit.modules import OrnsteinUhlenbeckProcessModule
        >>> ou = OrnsteinUhlenbeckProcessModule(Bounded(-1.0, 1.0, (4,)))
        >>> td = TensorDict(
        ...     action=torch.zeros(3, 4), is_init=torch.ones(3, 1, dtype=torch.bool), batch_size=[3]
        ... )
        >>> td = ou(td)
        >>> sorted(td.keys())
        ['_ou_prev_noise', '_ou_steps', 'action', 'is_init']
        >>> td["_ou_steps"]
        tensor([1, 1, 1])
    """

    export_refusal = (
        "its noise is a process with per-episode state ('_ou_prev_noise', '_ou_steps') that "
        "an exported graph does not carry; export with exploration='deterministic' and add "
        "the noise outside the graph, or explore with AdditiveGaussianModule"
    )

    def __init__(
        self,
        spec: object,
        eps_init: float = 1.0,
        eps_end: float = 0.1,
        annealing_num_steps: int = 1000,
        *,
        theta: float = 0.15,
        mu: float = 0.0,
        sigma: float = 0.2,
        dt: float = 1e-2,
        x0: float | torch.Tensor | None = None,
        sigma_min: float | None = None,
        n_steps_annealing: int = 1000,
        action_key: NestedKey = ACTION,
        is_init_key: NestedKey = "is_init",
        safe: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            spec,
            "eps",
            eps_init,
            eps_end,
            annealing_num_steps,
            action_key=action_key,
            generator=generator,
        )
        self._register_bounds(safe)
        self.theta, self.mu, self.sigma, self.dt = float(theta), float(mu), float(sigma), float(dt)
        self.sigma_min = float(sigma) if sigma_min is None else float(sigma_min)
        self._sigma_slope = (self.sigma_min - self.sigma) / float(n_steps_annealing)
        self.register_buffer("x0", torch.as_tensor(0.0 if x0 is None else x0, dtype=torch.float32))
        self.is_init_key = is_init_key
        self.noise_key = OU_NOISE_KEY
        self.steps_key = OU_STEPS_KEY
        self.in_keys = [action_key]
        self.out_keys = [action_key, OU_NOISE_KEY, OU_STEPS_KEY]
        self._warned_no_init = False

    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        return (NoiseSpec("noise", "normal", self._action_row()),)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Advance the process one step and add its noise to the action (see class doc)."""
        action = self._read_action(tensordict, {self.action_key: tuple(self.spec.shape)})
        if not self.is_exploring():
            return tensordict
        batch = tensordict.batch_size
        prev, steps = self._state(tensordict, action)
        (z,) = draw_noise(self, batch, action.device)
        eps = exploration_parameters(self)["eps"]
        row_dims = (1,) * (action.ndim - len(batch))
        sigma_n = (self.sigma + self._sigma_slope * steps).clamp_min(self.sigma_min)
        x = prev + self.x0
        noise = (
            x
            + self.theta * (self.mu - x) * self.dt
            + sigma_n.reshape(sigma_n.shape + row_dims) * math.sqrt(self.dt) * z
        )
        noisy = action + eps * noise
        noisy = self._clamp(noisy)
        tensordict.set(self.noise_key, noise - self.x0)
        tensordict.set(self.steps_key, steps + 1)
        tensordict.set(self.action_key, noisy.to(action.dtype))
        return tensordict

    def _state(
        self, tensordict: TensorDictBase, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The previous noise and step count, restarted where an episode begins."""
        batch = tensordict.batch_size
        prev = tensordict.get(self.noise_key, None)
        steps = tensordict.get(self.steps_key, None)
        if prev is None or steps is None:
            prev = torch.zeros(action.shape, dtype=torch.float32, device=action.device)
            steps = torch.zeros(batch, dtype=torch.int64, device=action.device)
        is_init = tensordict.get(self.is_init_key, None)
        if is_init is None:
            self._warn_no_init()
            return prev, steps
        if is_init.ndim == len(batch) + 1 and is_init.shape[-1] == 1:
            is_init = is_init.squeeze(-1)
        if tuple(is_init.shape) != tuple(batch):
            raise InputMismatchError(
                f"{type(self).__name__}: {self.is_init_key!r} has shape {list(is_init.shape)}; "
                f"expected [*B, 1] or [*B] for batch size {list(batch)} (InitTracker writes it)."
            )
        is_init = is_init.to(torch.bool)
        row_dims = (1,) * (prev.ndim - len(batch))
        prev = torch.where(is_init.reshape(is_init.shape + row_dims), torch.zeros_like(prev), prev)
        steps = torch.where(is_init, torch.zeros_like(steps), steps)
        return prev, steps

    def _warn_no_init(self) -> None:
        if self._warned_no_init:
            return
        self._warned_no_init = True
        warnings.warn(
            f"{type(self).__name__} found no {self.is_init_key!r} entry, so its noise only "
            "restarts when the tensordict lacks the '_ou_prev_noise' state. Append an "
            "InitTracker transform to the env: TransformedEnv(env, InitTracker()).",
            UserWarning,
            stacklevel=3,
        )
