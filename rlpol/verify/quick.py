"""The quick check ``rlpol export`` runs after writing: eager vs exported on spec samples.

A stateless artifact is compared on one batch of samples. A stateful one (recurrent: its
metadata declares state pairs) is compared over a short sequence instead: each side threads
its own next state into its next step, every row starts at step 0 and the even rows start
again mid-sequence, so a wrong state wiring or reset shows, not only a wrong single step.

The larger batch is extreme: row ``i``'s floating-point inputs are the sample scaled by
``EXTREME_SCALES[i]``, observations far outside the training range, so that saturated outputs
(a ``tanh`` squashed action at its bound, and the log-probability scored from it) are
compared too: that is where a graph recomputing a value from a rounded output goes wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol.errors import ExportError, RlpolError
from rlpol.runtime import ExportedPolicy, load_policy
from rlpol.toolkit.modules import ExplorationType, set_exploration_type
from rlpol.verify.parity import ParityReport, compare_rollouts

__all__ = [
    "EXTREME_SCALES",
    "QUICK_CHECK_BATCHES",
    "SEQUENCE_RESET_STEP",
    "SEQUENCE_STEPS",
    "QuickCheck",
    "compare_on_inputs",
    "compare_sequence",
    "quick_check",
]

# the factors of the larger batch's rows (its size), see the module docstring
EXTREME_SCALES = (1.0, -1.0, 3.0, 10.0, -10.0, 100.0, -100.0)
QUICK_CHECK_BATCHES = (1, len(EXTREME_SCALES))
# a stateful artifact's sequence: its length, and the step at which the even rows reset
SEQUENCE_STEPS = 6
SEQUENCE_RESET_STEP = 3


@dataclass(frozen=True)
class QuickCheck:
    """The outcome of :func:`quick_check`: one parity report per batch size."""

    reports: dict[int, ParityReport]

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports.values())

    def summary(self) -> str:
        parts = []
        for batch, report in self.reports.items():
            worst = max((f.max_abs_diff for f in report.fields), default=0.0)
            status = "ok" if report.ok else "MISMATCH"
            parts.append(f"batch {batch}: {status} (max |diff| {worst:.2g})")
        return "check eager vs exported: " + "; ".join(parts)


def compare_on_inputs(
    policy: TensorDictModuleBase,
    exported: ExportedPolicy,
    inputs: TensorDictBase,
    *,
    eager_inputs: TensorDictBase | None = None,
    atol: float = 1e-5,
    seed: int = 0,
) -> ParityReport:
    """Run both policies on copies of ``inputs`` from the same torch seed; compare outputs.

    Args:
        policy: the eager policy.
        exported: the loaded artifact.
        inputs: what the artifact reads (raw observations), any batch shape.
        eager_inputs: what the eager policy reads, when it differs (folded transforms).
        atol: tolerance for floating-point outputs.
        seed: torch seed set before each run (stochastic artifacts draw the same noise).
    """
    exploration = ExplorationType(exported.exploration)
    eager_inputs = inputs if eager_inputs is None else eager_inputs
    results = []
    for module, td in ((policy, eager_inputs), (exported, inputs)):
        torch.manual_seed(seed)
        with torch.no_grad(), set_exploration_type(exploration):
            results.append(module(td.clone()))
    keys = [info.key for info in exported.metadata.outputs]
    return compare_rollouts(results[0], results[1], atol=atol, keys=keys)


def quick_check(
    policy: TensorDictModuleBase,
    path: str | os.PathLike[str],
    *,
    env=None,
    example: TensorDictBase | None = None,
    atol: float = 1e-5,
) -> QuickCheck:
    """Load the artifact at ``path`` and compare it with ``policy`` at batch 1 and 7 (extreme).

    Inputs are sampled from the artifact's recorded observation spec (raw observations,
    before folded transforms), or taken from ``example``. A stateful artifact is compared
    over a sequence of :data:`SEQUENCE_STEPS` steps (:func:`compare_sequence`).

    A TorchRL policy (and env) is compared as exported: through rlpol's replacement of its
    sampling and exploring modules (:func:`~rlpol.toolkit.from_torchrl.rlpol_policy`, which
    the export proved equal on ordinary observations). On the extreme rows the two differ on
    purpose: TorchRL's ``TanhNormal`` scores a saturated action through ``atanh`` of the
    rounded action, rlpol's from the pre-tanh value.

    Raises:
        ArtifactError: the artifact cannot be loaded.
        ExportError: the eager policy or the artifact raised on a sampled batch.
    """
    from rlpol.toolkit.from_torchrl import rlpol_env, rlpol_policy

    policy, _ = rlpol_policy(policy)
    env = rlpol_env(env)
    # trust_code: the file is the one this process just wrote
    exported = load_policy(path, device=_device_of(policy), trust_code=True)
    reports = {}
    for batch in QUICK_CHECK_BATCHES:
        def sample(batch=batch):
            inputs = exported.sample_inputs(batch) if example is None else _rows(example, batch)
            return _extreme(inputs) if batch == len(EXTREME_SCALES) else inputs

        try:
            if exported.metadata.states:
                reports[batch] = compare_sequence(policy, exported, sample, env=env, atol=atol)
            else:
                inputs = sample()
                reports[batch] = compare_on_inputs(
                    policy, exported, inputs, eager_inputs=_fold(inputs.clone(), exported, env),
                    atol=atol,
                )
        except RlpolError:
            raise
        except Exception as error:  # the policy (or the graph) can raise anything
            message = str(error).strip().splitlines()
            raise ExportError(
                f"the quick check raised {type(error).__name__}"
                f"{': ' + message[0][:300] if message else ''} at batch {batch}; fix the policy "
                "so that it runs on any batch size, or pass --no-check to skip the check"
            ) from error
    return QuickCheck(reports)


def compare_sequence(
    policy: TensorDictModuleBase,
    exported: ExportedPolicy,
    sample: Callable[[], TensorDictBase],
    *,
    env=None,
    atol: float = 1e-5,
    seed: int = 0,
) -> ParityReport:
    """Step both policies through a sequence, each threading its own state; compare all steps.

    Step ``t`` reads fresh inputs from ``sample()`` ``[B]``, the state each side wrote at
    ``t - 1`` (the sampled state at ``t = 0``) and a reset input (``is_init``) True for
    every row at ``t = 0`` and for the even rows at :data:`SEQUENCE_RESET_STEP`.

    Returns:
        the parity of every output over the ``[B, SEQUENCE_STEPS]`` steps.
    """
    meta = exported.metadata
    keys = {info.name: info.key for info in (*meta.inputs, *meta.outputs)}
    resets = {state.reset_input for state in meta.states} - {None}
    exploration = ExplorationType(exported.exploration)
    steps: tuple[list[TensorDictBase], list[TensorDictBase]] = ([], [])
    for t in range(SEQUENCE_STEPS):
        inputs = sample()
        batch = inputs.batch_size[0]
        starting = torch.zeros(batch, 1, dtype=torch.bool)
        if t == 0:
            starting[:] = True
        elif t == SEQUENCE_RESET_STEP:
            starting[0::2] = True
        for name in resets:
            inputs.set(keys[name], starting)
        for module, side, fold in ((policy, steps[0], True), (exported, steps[1], False)):
            td = inputs.clone()
            if side:  # the state this side wrote at the step before
                for state in meta.states:
                    td.set(keys[state.input], side[-1].get(keys[state.output]))
            td = _fold(td, exported, env) if fold else td
            torch.manual_seed(seed + t)
            with torch.no_grad(), set_exploration_type(exploration):
                side.append(module(td))
    expected, actual = (torch.stack(side, dim=-1) for side in steps)
    return compare_rollouts(expected, actual, atol=atol, keys=[info.key for info in meta.outputs])


def _fold(inputs: TensorDictBase, exported: ExportedPolicy, env) -> TensorDictBase:
    """Run the folded transforms (modules) so the eager policy sees what the env gives it."""
    if not exported.metadata.transforms or env is None:
        return inputs
    from rlpol.toolkit.envs.folding import folded_transforms

    for transform in folded_transforms(env):
        inputs = transform(inputs)
    return inputs


def _extreme(inputs: TensorDictBase) -> TensorDictBase:
    """``inputs`` ``[len(EXTREME_SCALES)]`` with row ``i``'s float entries times scale ``i``."""
    scales = torch.tensor(EXTREME_SCALES)
    for key, value in inputs.items(include_nested=True, leaves_only=True):
        if value.is_floating_point():
            factor = scales.to(value.device, value.dtype).reshape(-1, *([1] * (value.dim() - 1)))
            inputs.set(key, value * factor)
    return inputs


def _rows(example: TensorDictBase, batch: int) -> TensorDictBase:
    example = example if example.batch_dims else example.unsqueeze(0)
    return example[:1].expand(batch).clone()


def _device_of(policy: torch.nn.Module) -> torch.device:
    parameter = next(iter(policy.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
