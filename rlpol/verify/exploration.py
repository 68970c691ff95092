"""Exploration statistics: does the artifact explore like the policy it came from?

Where a seeded replay cannot repeat the original policy's random numbers (a TorchRL module
draws with its own ops, in its own order), the check compares distributions instead, on the
same inputs: the artifact's own rollout inputs, fed to the original policy once
deterministically and once exploring. With ``D`` the deterministic action, ``A`` an explored
one, and ``n`` the number of values:

- discrete actions (integer or bool): the *exploration rate*, the fraction of steps where
  ``A != D`` (for epsilon-greedy ``eps * (1 - 1/n_actions)``);
- continuous actions: the mean and the standard deviation of ``A - D`` over every element.

Each statistic of the two samples must agree within :data:`SIGMAS` standard errors of their
difference (binomial for the rate, ``sqrt((var_a + var_b) / n)`` for the mean,
``sqrt((std_a**2 + std_b**2) / (2 n))`` for the standard deviation), plus half a step of the
rate's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.modules import ExplorationType, set_exploration_type

__all__ = ["SIGMAS", "ExplorationReport", "ExplorationStatistic", "compare_exploration"]

SIGMAS = 4.0  # how many standard errors two samples of one distribution may differ by

Policy = Callable[[TensorDictBase], TensorDictBase]


@dataclass(frozen=True)
class ExplorationStatistic:
    """One statistic of the explored actions, for the original policy and for the artifact."""

    name: str
    original: float
    artifact: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.original - self.artifact) <= self.tolerance


@dataclass(frozen=True)
class ExplorationReport:
    """The statistics of :func:`compare_exploration` over ``steps`` steps."""

    statistics: tuple[ExplorationStatistic, ...]
    steps: int

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.statistics)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """``(statistic, original, artifact, tolerance, status)`` strings, one per statistic."""
        return [(s.name, f"{s.original:.4f}", f"{s.artifact:.4f}", f"{s.tolerance:.4f}",
                 "ok" if s.ok else "MISMATCH") for s in self.statistics]  # fmt: skip


def compare_exploration(
    original: Policy,
    inputs: TensorDictBase,
    explored: torch.Tensor,
    *,
    action_key: NestedKey,
    seed: int,
) -> ExplorationReport:
    """Compare the artifact's explored actions with the original policy's, on its inputs.

    Args:
        original: the policy the artifact was exported from (it explores under ``RANDOM``).
        inputs: the artifact's rollout inputs, ``[*B, T]`` (every key the policy reads).
        explored: the actions the artifact wrote on them, ``[*B, T, *action_shape]``.
        action_key: the action entry.
        seed: seeds torch before the original's explored pass.

    Returns:
        an :class:`ExplorationReport` (see the module docstring for the statistics).
    """
    deterministic = _actions(original, inputs, ExplorationType.DETERMINISTIC, action_key, seed)
    theirs = _actions(original, inputs, ExplorationType.RANDOM, action_key, seed)
    steps = inputs.numel()
    if explored.dtype.is_floating_point:
        statistics = _continuous(theirs - deterministic, explored - deterministic)
    else:
        statistics = (_rate(theirs, explored, deterministic, inputs.batch_dims),)
    return ExplorationReport(statistics, steps)


def _actions(
    policy: Policy, inputs: TensorDictBase, exploration: ExplorationType, key: NestedKey,
    seed: int,
) -> torch.Tensor:
    """The policy's actions on ``inputs``, one step at a time (as in a rollout)."""
    time_dim = inputs.batch_dims - 1
    torch.manual_seed(seed)
    actions = []
    with torch.no_grad(), set_exploration_type(exploration):
        for t in range(inputs.batch_size[time_dim]):
            step = inputs[(slice(None),) * time_dim + (t,)].clone()
            actions.append(policy(step).get(key))
    return torch.stack(actions, dim=time_dim)


def _rate(
    theirs: torch.Tensor, explored: torch.Tensor, deterministic: torch.Tensor, batch_dims: int
) -> ExplorationStatistic:
    def rate(actions: torch.Tensor) -> tuple[float, int]:
        differs = (actions != deterministic).reshape(*actions.shape[:batch_dims], -1).any(-1)
        return differs.double().mean().item(), differs.numel()

    (a, n), (b, _) = rate(theirs), rate(explored)
    p = (a + b) / 2
    tolerance = SIGMAS * math.sqrt(max(p * (1 - p), 1 / n) * 2 / n) + 0.5 / n
    return ExplorationStatistic("exploration rate (action != deterministic)", a, b, tolerance)


def _continuous(
    theirs: torch.Tensor, explored: torch.Tensor
) -> tuple[ExplorationStatistic, ExplorationStatistic]:
    a, b = theirs.double().flatten(), explored.double().flatten()
    n = a.numel()
    mean_tolerance = SIGMAS * math.sqrt((a.var().item() + b.var().item()) / n)
    std_tolerance = SIGMAS * math.sqrt((a.var().item() + b.var().item()) / (2 * n))
    return (
        ExplorationStatistic("mean of (action - deterministic)", a.mean().item(),
                             b.mean().item(), mean_tolerance),
        ExplorationStatistic("std of (action - deterministic)", a.std().item(),
                             b.std().item(), std_tolerance),
    )
