"""The quick check ``rlpol export`` runs after writing: eager vs exported on spec samples."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol.errors import ExportError, RlpolError
from rlpol.runtime import ExportedPolicy, load_policy
from rlpol.toolkit.modules import ExplorationType, set_exploration_type
from rlpol.verify.parity import ParityReport, compare_rollouts

__all__ = ["QUICK_CHECK_BATCHES", "QuickCheck", "compare_on_inputs", "quick_check"]

QUICK_CHECK_BATCHES = (1, 7)


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
    """Load the artifact at ``path`` and compare it with ``policy`` at batch 1 and 7.

    Inputs are sampled from the artifact's recorded observation spec (raw observations,
    before folded transforms), or taken from ``example``.

    Raises:
        ArtifactError: the artifact cannot be loaded.
        ExportError: the eager policy or the artifact raised on a sampled batch.
    """
    # trust_pt2: the file is the one this process just wrote
    exported = load_policy(path, device=_device_of(policy), trust_pt2=True)
    reports = {}
    for batch in QUICK_CHECK_BATCHES:
        inputs = exported.sample_inputs(batch) if example is None else _rows(example, batch)
        eager_inputs = _fold(inputs.clone(), exported, env)
        try:
            reports[batch] = compare_on_inputs(
                policy, exported, inputs, eager_inputs=eager_inputs, atol=atol
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


def _fold(inputs: TensorDictBase, exported: ExportedPolicy, env) -> TensorDictBase:
    """Apply the folded transforms so the eager policy sees what the env would give it."""
    if not exported.metadata.transforms or env is None:
        return inputs
    from rlpol.toolkit.envs import ObservationTransform

    for transform in getattr(env, "transforms", []):
        if isinstance(transform, ObservationTransform):
            inputs = transform._map(inputs)
    return inputs


def _rows(example: TensorDictBase, batch: int) -> TensorDictBase:
    example = example if example.batch_dims else example.unsqueeze(0)
    return example[:1].expand(batch).clone()


def _device_of(policy: torch.nn.Module) -> torch.device:
    parameter = next(iter(policy.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
