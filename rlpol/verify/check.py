"""Seeded rollouts and the eager-vs-artifact parity check behind ``rlpol check``.

The check runs two comparisons:

* **closed loop**: the eager policy and the artifact each drive the same seeded env for
  ``steps`` auto-resetting steps; every TED field is compared;
* **replay**: the eager policy is fed the policy inputs the artifact saw in its own rollout,
  step by step and from the same torch seed, and its outputs are compared with the
  artifact's. This isolates the artifact from the env.

onnxruntime's kernels round differently from torch's by about one float32 ulp. In a closed
loop, a sensitive policy or a chaotic env can amplify that into a difference beyond the
tolerance. The check calls such a run a *drift* and accepts it only when the artifact's
outputs match on identical inputs (replay) and every field diverged no earlier than the first
step at which the policy's inputs already differed: an output that diverges while its inputs
are bit-identical is always a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase

from rlpol.errors import InputMismatchError
from rlpol.runtime.envs import state_transforms
from rlpol.runtime.policy import ExportedPolicy
from rlpol.toolkit.envs import CatFrames, Compose, EnvBase, Transform, TransformedEnv
from rlpol.toolkit.envs.folding import folded_transforms, without_folded
from rlpol.toolkit.from_torchrl import Substitute, rlpol_env, rlpol_policy
from rlpol.toolkit.keys import ACTION, IS_INIT, NEXT, NestedKey
from rlpol.toolkit.modules import ExplorationType, set_exploration_type
from rlpol.verify.exploration import ExplorationReport, compare_exploration
from rlpol.verify.parity import ParityReport, compare_rollouts

__all__ = ["CheckReport", "check_artifact", "seeded_rollout"]

Policy = Callable[[TensorDictBase], TensorDictBase]


@dataclass(frozen=True)
class CheckReport:
    """The outcome of :func:`check_artifact`.

    Attributes:
        closed_loop: every TED field of the two closed-loop rollouts.
        replay: the policy outputs on identical inputs.
        first_input_difference: the first step where the policy inputs of the two
            closed-loop rollouts differ at all (None: never).
        substitutes: the TorchRL modules of the eager policy that the export replaced by
            rlpol's (see :mod:`rlpol.toolkit.from_torchrl`).
        exploration: when the artifact explores through such a replacement and does not
            repeat the TorchRL policy's own draws (TorchRL draws with other ops, in another
            order, except where they coincide: ``torch.normal``), the exploration statistics of the TorchRL policy and
            the artifact on the artifact's inputs (the closed loop and the replay then
            compare the artifact with the rlpol replacement); None otherwise.
        artifact_rollout: the artifact's closed-loop rollout, ``[steps]``.
    """

    closed_loop: ParityReport
    replay: ParityReport
    first_input_difference: int | None
    substitutes: tuple[Substitute, ...] = ()
    exploration: ExplorationReport | None = None
    artifact_rollout: TensorDictBase | None = dataclasses.field(default=None, repr=False)

    @property
    def replaced_draws(self) -> tuple[Substitute, ...]:
        """The TorchRL modules whose random draws the comparisons could not replay."""
        return tuple(s for s in self.substitutes if s.draws) if self.exploration else ()

    @property
    def drifted(self) -> bool:
        """The closed loop diverged only through inputs that had already drifted."""
        if self.closed_loop.ok or not self.replay.ok or self.first_input_difference is None:
            return False
        first = min(f.first_divergence for f in self.closed_loop.fields if not f.ok)
        failing_notes = [f.note for f in self.closed_loop.fields if not f.ok and f.note]
        return not failing_notes and first >= self.first_input_difference

    @property
    def ok(self) -> bool:
        explores_alike = self.exploration is None or self.exploration.ok
        return self.replay.ok and (self.closed_loop.ok or self.drifted) and explores_alike

    # the closed-loop fields, so a report reads like a ParityReport
    @property
    def fields(self):
        return self.closed_loop.fields

    def rows(self):
        return self.closed_loop.rows()


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
) -> CheckReport:
    """Compare the artifact with the eager policy in closed loop and on replayed inputs.

    When the artifact folded the env's transforms, it runs in the env without them (it
    takes raw observations; a folded ``CatFrames``'s stack is threaded as a state pair, by
    ``InitTracker`` and a primer added to that env), and its rollout is mapped through the
    same transforms, as tensordict modules, before the closed-loop comparison; the replay
    runs the transforms and the eager policy on the artifact's raw inputs.

    A TorchRL env is rebuilt as rlpol's (:func:`~rlpol.toolkit.from_torchrl.rlpol_env`).
    Under ``RANDOM``, a TorchRL policy whose exploring modules the export replaced by rlpol's
    is first compared as it is (its draws coincide with rlpol's where both use
    ``torch.normal``); if that fails, the comparison is rerun against rlpol's replacement,
    and ``report.exploration`` compares the exploration statistics of the TorchRL policy
    and the artifact (:mod:`rlpol.verify.exploration`).

    Args:
        env: the env the eager policy was written for (rlpol's or TorchRL's).
        eager_policy: the tensordict policy.
        exported: the loaded artifact.
        steps: rollout length (episodes auto-reset).
        seed: seeds the env and torch's generator before each rollout.
        atol: absolute tolerance for floating-point fields.
        rtol: relative tolerance for floating-point fields (see :mod:`rlpol.verify.parity`).
        exploration: the exploration type for both rollouts (default: the artifact's).

    Returns:
        a :class:`CheckReport`; ``report.ok`` is the verdict, ``report.closed_loop`` the
        field-by-field table.

    Raises:
        InputMismatchError: a stateful (recurrent) artifact, and ``env`` does not provide
            its state or reset entries (it lacks the primer or ``InitTracker``).
    """
    env = rlpol_env(env)
    exploration = ExplorationType(exploration if exploration is not None else exported.exploration)
    options = {"steps": steps, "seed": seed, "atol": atol, "rtol": rtol, "exploration": exploration}
    report = _compare(env, eager_policy, exported, **options)
    converted, substitutes = rlpol_policy(eager_policy)
    replaced_draws = exploration is ExplorationType.RANDOM and any(s.draws for s in substitutes)
    if report.ok or not replaced_draws:
        return dataclasses.replace(report, substitutes=substitutes)
    # TorchRL's own draws were not replayed: compare with rlpol's modules, and the statistics
    report = _compare(env, converted, exported, **options)
    actual = report.artifact_rollout
    action_key = getattr(env, "action_key", ACTION)
    statistics = compare_exploration(
        _behind(_folded(env, exported), eager_policy), actual.select(*exported.in_keys),
        actual.get(action_key), action_key=action_key, seed=seed,
    )
    return dataclasses.replace(report, substitutes=substitutes, exploration=statistics)


def _compare(
    env: EnvBase,
    eager_policy: Policy,
    exported: ExportedPolicy,
    *,
    steps: int,
    seed: int,
    atol: float,
    rtol: float,
    exploration: ExplorationType,
) -> CheckReport:
    """The closed loop and the replay of :func:`check_artifact` for one eager policy."""
    folded = _folded(env, exported)
    threaded = _folded_state_keys(folded)
    _check_env_carries_state(env, exported, exempt=threaded)
    expected = seeded_rollout(env, eager_policy, steps=steps, seed=seed, exploration=exploration)
    raw_env = _unfolded(env, exported, threaded) if folded else env
    actual = seeded_rollout(raw_env, exported, steps=steps, seed=seed, exploration=exploration)
    mapped = _through(folded, actual, expected, threaded) if folded else actual
    closed_loop = compare_rollouts(expected, mapped, atol=atol, rtol=rtol)
    replayed = _replay(_behind(folded, eager_policy), actual.select(*exported.in_keys), seed=seed,
                       exploration=exploration)  # fmt: skip
    replay = compare_rollouts(replayed, actual, atol=atol, rtol=rtol, keys=exported.out_keys)
    in_keys = getattr(eager_policy, "in_keys", exported.in_keys)
    first_input = _first_difference(expected, mapped, in_keys)
    return CheckReport(closed_loop, replay, first_input, artifact_rollout=actual)


def _behind(folded: Sequence[Transform], policy: Policy) -> Policy:
    """``policy`` reading raw observations: the folded transforms run first."""

    def run(td: TensorDictBase) -> TensorDictBase:
        for transform in folded:
            td = transform(td)
        return policy(td)

    return run


def _check_env_carries_state(
    env: EnvBase, exported: ExportedPolicy, *, exempt: frozenset[NestedKey]
) -> None:
    """A recurrent artifact's state and reset inputs must come from the env's transforms;
    the ``exempt`` keys (a folded ``CatFrames``'s) come from those :func:`_unfolded` adds."""
    meta = exported.metadata
    keys = {info.name: info.key for info in meta.inputs}
    provided = set(env.observation_spec.keys(include_nested=True, leaves_only=True)) | exempt
    for state in meta.states:
        for name, transform in ((state.input, "its primer (module.make_tensordict_primer())"),
                                (state.reset_input, "InitTracker()")):  # fmt: skip
            if name is not None and keys[name] not in provided:
                raise InputMismatchError(
                    f"the artifact is recurrent: it reads {keys[name]!r}, which the env does "
                    f"not provide; the env lacks {transform}. Make the env "
                    "TransformedEnv(env, Compose(InitTracker(), module.make_tensordict_primer()))"
                    " with the policy's recurrent module (in the policy file's make_env)"
                )


def _replay(
    policy: Policy, inputs: TensorDictBase, *, seed: int, exploration: ExplorationType
) -> TensorDictBase:
    """The policy's outputs on ``inputs`` ([*B, T]), one step at a time from ``seed``.

    Calling once per step (not once on all T) keeps the random draws' shapes, hence the
    generator's stream, as they were in the rollout.
    """
    time_dim = inputs.batch_dims - 1
    outputs = []
    torch.manual_seed(seed)
    with torch.no_grad(), set_exploration_type(exploration):
        for t in range(inputs.batch_size[time_dim]):
            outputs.append(policy(inputs[(slice(None),) * time_dim + (t,)].clone()))
    return torch.stack(outputs, dim=time_dim)


def _first_difference(
    expected: TensorDictBase, actual: TensorDictBase, keys: list[NestedKey]
) -> int | None:
    time_dim = expected.batch_dims - 1
    steps = []
    for key in keys:
        want, got = expected.get(key, None), actual.get(key, None)
        if want is None or got is None or want.shape != got.shape:
            return 0
        differs = (want != got).movedim(time_dim, 0).reshape(want.shape[time_dim], -1).any(1)
        if differs.any():
            steps.append(int(differs.nonzero()[0]))
    return min(steps) if steps else None


def _folded(env: EnvBase, exported: ExportedPolicy) -> tuple[Transform, ...]:
    """The env's transforms the artifact folded into its graph (none if it folded none)."""
    return folded_transforms(env) if exported.metadata.transforms else ()


def _folded_state_keys(folded: Sequence[Transform]) -> frozenset[NestedKey]:
    """The entries the folded ``CatFrames`` read besides observations: stacks, ``is_init``."""
    stacks = {t.state_key for t in folded if isinstance(t, CatFrames)}
    return frozenset(stacks | {IS_INIT}) if stacks else frozenset()


def _unfolded(env: EnvBase, exported: ExportedPolicy, threaded: frozenset[NestedKey]) -> EnvBase:
    """The env the artifact runs in: ``env`` without the folded transforms, plus the
    transforms that thread the ``threaded`` state entries (``InitTracker``, a primer)
    where it lacks them."""
    raw = without_folded(env)
    provided = set(raw.observation_spec.keys(include_nested=True, leaves_only=True))
    needed = threaded - provided
    if not needed:
        return raw
    return TransformedEnv(raw, Compose(*state_transforms(exported.metadata, keys=needed)))


def _through(
    folded: Sequence[Transform],
    actual: TensorDictBase,
    expected: TensorDictBase,
    threaded: frozenset[NestedKey],
) -> TensorDictBase:
    """The artifact's rollout with its raw observations mapped through the folded transforms
    (at ``t`` and under ``"next"``), as the eager env's rollout holds them; the ``threaded``
    entries, which only the artifact's env has, are left out unless the eager env has them."""
    root, following = actual.exclude(NEXT).clone(), actual.get(NEXT).clone()
    for transform in folded:
        root, following = transform(root), transform(following)
    mapped = root.exclude(NEXT)
    mapped.set(NEXT, following.exclude(NEXT))
    own = set(expected.keys(include_nested=True, leaves_only=True))
    only_artifact = [key for key in threaded if key not in own]
    return mapped.exclude(*only_artifact, *((NEXT, key) for key in only_artifact))
