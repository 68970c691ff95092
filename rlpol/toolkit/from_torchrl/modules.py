"""TorchRL policies as rlpol policies: each TorchRL module that draws, or that rlpol's tracer
cannot trace, replaced by the rlpol module of the same name and arguments.

rlpol exports a graph with no random op: its stochastic modules take their draws as inputs
(:mod:`rlpol.toolkit.noise`). TorchRL's draw inside (``torch.rand``, ``spec.rand()``,
``dist.sample()``), so :func:`rlpol_policy` swaps them, on a copy of the policy, for rlpol's
(:data:`SUBSTITUTES`):

- a ``ProbabilisticTensorDictSequential`` (TorchRL's ``ProbabilisticActor``, or tensordict's)
  becomes :class:`~rlpol.toolkit.modules.ProbabilisticActor`, its distribution mapped:
  ``torchrl.modules.TanhNormal`` to rlpol's :class:`~rlpol.toolkit.modules.TanhNormal` (same
  bounds; TorchRL's default ``[-1, 1]`` is kept), ``torchrl.modules.OneHotCategorical`` to
  tensordict's; ``torch.distributions`` classes stay;
- ``EGreedyModule``, ``AdditiveGaussianModule`` and ``OrnsteinUhlenbeckProcessModule`` become
  rlpol's, with the same current ``eps`` / ``sigma`` and annealing schedule;
- ``LSTMModule`` and ``GRUModule`` become rlpol's around the same ``nn.LSTM`` / ``nn.GRU``
  (rlpol's step mode is made of traceable torch ops).

Networks (``MLP``, ``ConvNet``), ``Actor``, ``QValueActor`` and ``QValueModule`` are kept:
they trace as they are. The copy computes the same deterministic outputs as the original
(:func:`rlpol_policy` proves it on the export example); under ``RANDOM`` it draws from
the same distributions, but through rlpol's draws, so a seeded run does not repeat TorchRL's
own random numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModuleBase,
    TensorDictSequential,
)
from tensordict.nn.distributions import OneHotCategorical
from torch import nn

from rlpol.errors import ExportError
from rlpol.toolkit import modules as ours
from rlpol.toolkit.from_torchrl.specs import rlpol_spec
from rlpol.toolkit.modules import ExplorationType, set_exploration_type
from rlpol.toolkit.noise import StochasticModule
from rlpol.toolkit.specs import Composite

__all__ = ["PARITY_ATOL", "SUBSTITUTES", "Substitute", "is_torchrl", "rlpol_policy"]

PARITY_ATOL = 1e-5  # float outputs of the copy vs the original; integer ones are exact
# TorchRL's TanhNormal scores an action through atanh of the (rounded) action, which loses
# digits as tanh saturates; rlpol's scores the pre-tanh value. Their log-probs agree to this
# relative tolerance on export examples (wrong bounds would change them by log 2).
TANH_LOG_PROB_RTOL = 1e-3


@dataclass(frozen=True)
class Substitute:
    """One module of the policy replaced: where, what it was and what replaced it."""

    path: str  # the qualified name in the policy ("" for the policy itself)
    original: str  # the original's class name
    replacement: str  # rlpol's class name
    draws: bool  # the replacement takes random draws (rlpol's, not TorchRL's) when exploring

    def describe(self) -> str:
        where = self.path or "the policy"
        return f"{where}: TorchRL's {self.original} -> rlpol's {self.replacement}"


def is_torchrl(obj: object) -> bool:
    """Whether ``obj``'s class (or a base) comes from TorchRL; never imports TorchRL."""
    return any(cls.__module__.split(".")[0] == "torchrl" for cls in type(obj).__mro__)


def rlpol_policy(
    policy: TensorDictModuleBase, example: TensorDictBase | None = None
) -> tuple[TensorDictModuleBase, tuple[Substitute, ...]]:
    """A copy of ``policy`` with the modules of :data:`SUBSTITUTES` swapped for rlpol's.

    Args:
        policy: any tensordict policy; one without such modules is returned as it is.
        example: observations (``[B, ...]``) the policy reads. When given, the copy must
            write what ``policy`` writes on them under ``DETERMINISTIC``: floats to
            :data:`PARITY_ATOL`, others exactly. Lazy layers not yet initialised are
            initialised on it first, so that the copy has the original's weights.

    Returns:
        ``(policy, substitutes)``: the policy to trace and what was replaced (empty when
        nothing was, and then the same object).

    Raises:
        ExportError: a module that cannot be replaced, or a copy that computes something
            else; the message names the modules and the fix.
    """
    if not _needs_substitutes(policy):
        return policy, ()
    expected = None
    if example is not None:
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            expected = policy(example.clone())  # also initialises lazy layers
    converted = copy.deepcopy(policy)
    done: list[Substitute] = []
    converted = _convert(converted, "", done)
    if expected is not None:
        _check_parity(converted, tuple(done), example, expected)
    return converted, tuple(done)


def _check_parity(
    converted: TensorDictModuleBase,
    substitutes: tuple[Substitute, ...],
    example: TensorDictBase,
    expected: TensorDictBase,
) -> None:
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        actual = converted(example.clone())
    given = set(example.keys(include_nested=True, leaves_only=True))
    tanh_scores = _tanh_log_prob_keys(converted)
    for key in expected.keys(include_nested=True, leaves_only=True):
        if key in given:
            continue
        want, got = expected.get(key), actual.get(key, None)
        rtol = TANH_LOG_PROB_RTOL if key in tanh_scores else 0.0
        if got is not None and got.shape == want.shape and _close(want, got, rtol):
            continue
        found = "nothing" if got is None else f"{list(got.shape)} {got.dtype}"
        raise ExportError(
            f"rlpol's replacement of the TorchRL modules ({_listed(substitutes)}) writes "
            f"{key!r} unlike the original (expected {list(want.shape)} {want.dtype}, found "
            f"{found}{_difference(want, got)}); please report it, and export the policy "
            "rebuilt from rlpol's modules meanwhile."
        )


def _close(want: torch.Tensor, got: torch.Tensor, rtol: float) -> bool:
    if want.dtype.is_floating_point:
        return bool(torch.allclose(want, got.to(want.dtype), atol=PARITY_ATOL, rtol=rtol))
    return bool(torch.equal(want, got.to(want.dtype)))


def _tanh_log_prob_keys(policy: nn.Module) -> set:
    """The log-probability entries of the policy's TanhNormal samplers."""
    return {
        m.log_prob_key for m in policy.modules()
        if isinstance(m, ours.ProbabilisticModule) and m.return_log_prob
        and isinstance(m.distribution_class, type) and issubclass(m.distribution_class, ours.TanhNormal)
    }  # fmt: skip


def _difference(want: torch.Tensor, got: torch.Tensor | None) -> str:
    if got is None or got.shape != want.shape:
        return ""
    return f", max |diff| {(want.double() - got.double()).abs().max().item():.3g}"


def _listed(substitutes: tuple[Substitute, ...]) -> str:
    return "; ".join(s.describe() for s in substitutes)


def _needs_substitutes(policy: nn.Module) -> bool:
    return any(_substitute_for(m) is not None for m in policy.modules())


def _convert(module: nn.Module, path: str, done: list[Substitute]) -> nn.Module:
    """``module`` with its children converted first, then itself if it has a substitute
    (a probabilistic sequence's sampler is rebuilt with it, not on its own)."""
    build = _substitute_for(module)
    children = list(module.named_children())
    if build is _probabilistic_actor:
        children = [(f"module.{i}", child) for i, child in enumerate(module.module[:-1])]
    for name, child in children:
        converted = _convert(child, f"{path}.{name}" if path else name, done)
        _set_child(module, name, converted)
    if build is None:
        return module
    replacement = build(module)
    draws = any(isinstance(m, StochasticModule) for m in replacement.modules())
    done.append(Substitute(path, type(module).__name__, type(replacement).__name__, draws))
    return replacement


def _set_child(module: nn.Module, name: str, child: nn.Module) -> None:
    """Set the (dotted) child ``name`` of ``module``: ``"module.0"`` is in a ModuleList."""
    parent, _, last = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, last, child)


def _substitute_for(module: nn.Module) -> Callable[[nn.Module], nn.Module] | None:
    if isinstance(module, (ours.ProbabilisticActor, ours.ProbabilisticModule)):
        return None
    if isinstance(module, ProbabilisticTensorDictSequential):
        return _probabilistic_actor
    if isinstance(module, ProbabilisticTensorDictModule):
        return _probabilistic_module
    if is_torchrl(module):
        return SUBSTITUTES.get(type(module).__name__)
    return None


# -- the probabilistic modules ------------------------------------------------------------
def _distribution(module: ProbabilisticTensorDictModule) -> tuple[type, dict]:
    """rlpol's distribution class and keyword arguments for ``module``'s."""
    cls, kwargs = module.distribution_class, dict(module.distribution_kwargs or {})
    origin = getattr(cls, "__module__", "")
    if not origin.startswith("torchrl."):
        return cls, kwargs
    if cls.__name__ == "TanhNormal":
        kwargs.pop("safe_tanh", None)
        kwargs.setdefault("low", -1.0)  # TorchRL's defaults, not the spec's bounds
        kwargs.setdefault("high", 1.0)
        return ours.TanhNormal, kwargs
    if cls.__name__ == "OneHotCategorical":
        return OneHotCategorical, kwargs
    if cls.__name__ == "Delta":
        return cls, kwargs  # no draw: rlpol's module keeps TorchRL's deterministic value
    raise ExportError(
        f"rlpol cannot export TorchRL's {cls.__name__} distribution; it maps TanhNormal, "
        "OneHotCategorical and torch.distributions' Normal / Categorical / OneHotCategorical. "
        "Use one of those in the ProbabilisticActor."
    )


def _leaf_spec(spec: object, key) -> object | None:
    """rlpol's spec of ``key`` from a module's spec (TorchRL wraps it in a Composite)."""
    if spec is None:
        return None
    spec = rlpol_spec(spec)
    if isinstance(spec, Composite):
        return spec[key] if key in spec.keys(True) else None
    return spec


def _sampler_arguments(module: ProbabilisticTensorDictModule, spec: object | None) -> dict:
    distribution_class, distribution_kwargs = _distribution(module)
    keys = list(module.dist_sample_keys) if hasattr(module, "dist_sample_keys") else None
    out_keys = keys or [k for k in module.out_keys if k != module.log_prob_key]
    in_keys = dict(zip(module.dist_keys, module.in_keys)) if module.dist_keys != module.in_keys \
        else list(module.in_keys)
    return {
        "in_keys": in_keys,
        "out_keys": out_keys[:1],
        "spec": _leaf_spec(spec, out_keys[0]),
        "distribution_class": distribution_class,
        "distribution_kwargs": distribution_kwargs,
        "return_log_prob": bool(module.return_log_prob),
        "default_interaction_type": module.default_interaction_type,
        "log_prob_key": module.log_prob_key,
    }


def _probabilistic_module(module: ProbabilisticTensorDictModule) -> nn.Module:
    arguments = _sampler_arguments(module, getattr(module, "spec", None))
    in_keys, out_keys = arguments.pop("in_keys"), arguments.pop("out_keys")
    return ours.ProbabilisticModule(in_keys, out_keys, **arguments)


def _probabilistic_actor(sequence: ProbabilisticTensorDictSequential) -> nn.Module:
    *parameters, sampler = list(sequence.module)
    spec = getattr(sequence, "spec", None) or getattr(sampler, "spec", None)
    arguments = _sampler_arguments(sampler, spec)
    network = parameters[0] if len(parameters) == 1 else TensorDictSequential(*parameters)
    return ours.ProbabilisticActor(network, arguments.pop("in_keys"), arguments.pop("out_keys"),
                                   **arguments)


# -- exploration --------------------------------------------------------------------------
def _action_spec(module) -> object:
    spec = _leaf_spec(module.spec, module.action_key if hasattr(module, "action_key")
                      else module.ou.key)
    if spec is None:
        raise ExportError(
            f"TorchRL's {type(module).__name__} has no action spec; pass spec=env.action_spec."
        )
    return spec


def _with_value(replacement: nn.Module, name: str, value: torch.Tensor) -> nn.Module:
    """``replacement`` with its annealed buffer ``name`` set to the original's current value."""
    with torch.no_grad():
        getattr(replacement, name).copy_(value.detach().to(torch.float32))
    return replacement


def _egreedy(module) -> nn.Module:
    replacement = ours.EGreedyModule(
        _action_spec(module), float(module.eps_init), float(module.eps_end),
        int(module.annealing_num_steps), action_key=module.action_key,
        action_mask_key=module.action_mask_key,
    )
    return _with_value(replacement, "eps", module.eps)


def _additive_gaussian(module) -> nn.Module:
    replacement = ours.AdditiveGaussianModule(
        _action_spec(module), float(module.sigma_init), float(module.sigma_end),
        int(module.annealing_num_steps), float(module.mean), float(module.std),
        action_key=module.action_key, safe=True,  # TorchRL always projects onto the spec
    )
    return _with_value(replacement, "sigma", module.sigma)


def _ornstein_uhlenbeck(module) -> nn.Module:
    process = module.ou
    steps = 1000 if process.m == 0 else round((process.sigma_min - process.c) / process.m)
    replacement = ours.OrnsteinUhlenbeckProcessModule(
        _action_spec(module), float(module.eps_init), float(module.eps_end),
        int(module.annealing_num_steps), theta=process.theta, mu=process.mu,
        sigma=process.sigma, dt=process.dt, x0=process.x0, sigma_min=process.sigma_min,
        n_steps_annealing=max(steps, 1), action_key=process.key,
        is_init_key=module.is_init_key, safe=bool(module.safe),
    )
    return _with_value(replacement, "eps", module.eps)


# -- recurrent ----------------------------------------------------------------------------
def _recurrent(rlpol_class: type, attribute: str) -> Callable[[nn.Module], nn.Module]:
    def build(module) -> nn.Module:
        return rlpol_class(
            **{attribute: getattr(module, attribute)}, in_keys=list(module.in_keys),
            out_keys=list(module.out_keys),
            default_recurrent_mode=bool(getattr(module, "_recurrent_mode", False)),
        )

    return build


# TorchRL module class name -> the function building its rlpol counterpart from it
SUBSTITUTES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "EGreedyModule": _egreedy,
    "AdditiveGaussianModule": _additive_gaussian,
    "OrnsteinUhlenbeckProcessModule": _ornstein_uhlenbeck,
    "LSTMModule": _recurrent(ours.LSTMModule, "lstm"),
    "GRUModule": _recurrent(ours.GRUModule, "gru"),
}
