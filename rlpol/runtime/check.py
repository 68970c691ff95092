"""Seeded rollouts and the eager-vs-artifact parity check behind ``rlpol check``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase

from rlpol.runtime.parity import ParityReport, compare_rollouts
from rlpol.runtime.policy import ExportedPolicy
from rlpol.toolkit.envs import Compose, EnvBase, ObservationTransform, TransformedEnv
from rlpol.toolkit.modules import ExplorationType, set_exploration_type

__all__ = ["check_artifact", "seeded_rollout"]

Policy = Callable[[TensorDictBase], TensorDictBase]


def seeded_rollout(
    env: EnvBase,
    policy: Policy,
    *,
    steps: int,
    seed: int,
    exploration: ExplorationType | str,
) -> TensorDictBase:
    """``steps`` auto-resetting steps of ``policy`` in ``env`` after seeding env and torch."""
    env.set_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(ExplorationType(exploration)):
        return env.rollout(steps, policy, break_when_any_done=False)


def check_artifact(
    env: EnvBase,
    eager_policy: Policy,
    exported: ExportedPolicy,
    *,
    steps: int = 1000,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    exploration: ExplorationType | str | None = None,
) -> ParityReport:
    """Run the eager policy and the artifact in the same seeded env and compare every field.

    When the artifact folded the env's observation transforms, it runs in the env without
    them (it takes raw observations) and its rollout's observations are mapped through the
    same transforms before the comparison.

    Args:
        env: the env the eager policy was written for.
        eager_policy: the tensordict policy.
        exported: the loaded artifact.
        steps: rollout length (episodes auto-reset).
        seed: seeds the env and torch's generator before each rollout.
        atol: absolute tolerance for floating-point fields.
        rtol: relative tolerance for floating-point fields (see :mod:`rlpol.runtime.parity`).
        exploration: the exploration type for both rollouts (default: the artifact's).

    Returns:
        the :class:`ParityReport` over every TED field.
    """
    exploration = exploration if exploration is not None else exported.exploration
    expected = seeded_rollout(env, eager_policy, steps=steps, seed=seed, exploration=exploration)
    raw_env, folded = _unfolded(env, exported)
    actual = seeded_rollout(raw_env, exported, steps=steps, seed=seed, exploration=exploration)
    for transform in folded:
        transform._map(actual)
        transform._map(actual.get("next"))
    return compare_rollouts(expected, actual, atol=atol, rtol=rtol)


def _unfolded(
    env: EnvBase, exported: ExportedPolicy
) -> tuple[EnvBase, list[ObservationTransform]]:
    """The env the artifact runs in, and the transforms it folded."""
    if not exported.metadata.transforms or not isinstance(env, TransformedEnv):
        return env, []
    folded = [t for t in env.transforms if isinstance(t, ObservationTransform)]
    kept = [t for t in env.transforms if not isinstance(t, ObservationTransform)]
    return TransformedEnv(env.base_env, Compose(*kept)), folded
