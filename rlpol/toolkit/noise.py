"""The randomness protocol shared by stochastic modules, exporters and runtimes.

A stochastic rlpol module never calls ``torch.rand*`` on its own. It declares the draws it
takes per call as a tuple of :class:`NoiseSpec` and obtains them from :func:`draw_noise`,
then computes its output as a *deterministic* function of its inputs and those draws. This
is what lets an exported graph take the draws as named inputs (so it holds no random op)
and lets a runtime replay an eager rollout exactly.

Draw order (the contract every party follows):

1. Modules draw in the order they run: for a ``TensorDictSequential`` the order of its
   modules, depth first.
2. Within a module, in the order of its :attr:`StochasticModule.noise_specs`.
3. Each draw is one call on the generator (torch's global one unless a module or runtime
   was given its own), of shape ``batch_shape + spec.shape`` and dtype float32:
   ``torch.randn`` for ``"normal"``, ``torch.rand`` for ``"uniform"``.

Outside the eager default, :func:`noise_source` installs another provider for the duration
of a ``with`` block: the exporter uses it to feed graph inputs in place of draws.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

__all__ = [
    "NoiseSource",
    "NoiseSpec",
    "StochasticModule",
    "draw",
    "draw_noise",
    "exploration_parameters",
    "noise_source",
    "stochastic_modules",
]

Distribution = Literal["normal", "uniform"]


@dataclass(frozen=True)
class NoiseSpec:
    """One random draw a module takes per call.

    Attributes:
        name: the draw's name within its module (``"action"``, ``"explore"``, ...).
        distribution: ``"normal"`` (standard normal) or ``"uniform"`` (on ``[0, 1)``).
        shape: trailing shape; the caller's batch shape is prepended.
    """

    name: str
    distribution: Distribution
    shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.distribution not in ("normal", "uniform"):
            raise ValueError(
                f"NoiseSpec.distribution must be 'normal' or 'uniform', got {self.distribution!r}"
            )


def draw(
    spec: NoiseSpec,
    batch_shape: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one float32 tensor of shape ``[*batch_shape, *spec.shape]`` for ``spec``."""
    shape = (*batch_shape, *spec.shape)
    sampler = torch.randn if spec.distribution == "normal" else torch.rand
    return sampler(shape, generator=generator, device=device, dtype=torch.float32)


class NoiseSource(Protocol):
    """Provides the draws and exploration parameters of one module call (see :func:`noise_source`)."""

    def draws(
        self, module: StochasticModule, batch_shape: torch.Size, device: torch.device
    ) -> list[torch.Tensor]:
        """One tensor per spec in ``module.noise_specs``, of shape ``[*batch_shape, *spec.shape]``."""
        ...

    def parameters(self, module: StochasticModule) -> dict[str, torch.Tensor]:
        """The values to use for ``module.exploration_parameters()``, same names."""
        ...


_local = threading.local()


@contextlib.contextmanager
def noise_source(source: NoiseSource) -> Iterator[None]:
    """Within the block, stochastic modules take their draws and parameters from ``source``.

    The setting is per thread, so a runtime serving several threads is unaffected.
    """
    previous = getattr(_local, "source", None)
    _local.source = source
    try:
        yield
    finally:
        _local.source = previous


def draw_noise(
    module: StochasticModule, batch_shape: torch.Size, device: torch.device
) -> list[torch.Tensor]:
    """The draws of one call of ``module``, from the installed source or its generator."""
    source = getattr(_local, "source", None)
    if source is not None:
        return source.draws(module, batch_shape, device)
    generator = module.generator
    return [
        draw(spec, batch_shape, device=device, generator=generator) for spec in module.noise_specs
    ]


def exploration_parameters(module: StochasticModule) -> dict[str, torch.Tensor]:
    """The exploration parameters ``module`` must use now: the installed source's, or its own."""
    source = getattr(_local, "source", None)
    if source is not None:
        return source.parameters(module)
    return module.exploration_parameters()


class StochasticModule:
    """Mixin for modules whose output depends on random draws.

    Subclasses define :attr:`noise_specs` (the draws of one call, in order) and
    :meth:`exploration_parameters` (scalar knobs such as ``eps`` that an exported graph takes
    as inputs so a runtime can change them). When they explore, their ``forward`` obtains the
    draws with :func:`draw_noise` and the knobs with the module-level
    :func:`exploration_parameters` (never from ``self`` directly), in that order. ``generator`` (default ``None``: torch's global generator) is the
    generator the eager module draws from.
    """

    generator: torch.Generator | None = None
    # why an exported graph cannot hold the module while it explores (None: it can)
    export_refusal: str | None = None

    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        raise NotImplementedError

    def exploration_parameters(self) -> dict[str, torch.Tensor]:
        """Scalar tensors the module reads when exploring, by name (empty by default)."""
        return {}

    def is_exploring(self) -> bool:
        """Whether this call under the current exploration type takes random draws."""
        raise NotImplementedError


def stochastic_modules(module: torch.nn.Module) -> list[tuple[str, StochasticModule]]:
    """The stochastic submodules of ``module`` with their qualified names, in call order.

    ``nn.Module.named_modules`` visits children in registration order, depth first, which is
    the order a ``TensorDictSequential`` calls them.
    """
    return [(name, m) for name, m in module.named_modules() if isinstance(m, StochasticModule)]
