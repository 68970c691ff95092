"""The main job: export every reference model, check it, replay it in onnxruntime.

``python -m rlpol.demo [--models models] [--out artifacts]`` (what ``make demo`` runs):

1. ``rlpol export`` each ``models/*.py`` policy file to ONNX and TorchScript;
2. ``rlpol check`` each artifact against its eager policy (1,000 seeded steps, auto-reset);
3. ``rlpol run`` each ONNX artifact for 5 episodes in onnxruntime (deterministic);
4. print one summary table: model, format, parity, mean return, threshold.

Exits 1 if any parity check fails or any model misses its return threshold.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlpol.export import export_policy, load_policy_file
from rlpol.runtime import load_policy, make_artifact_env, run_episodes, summarize
from rlpol.verify import check_artifact

__all__ = ["DemoRow", "main", "run_demo"]

FORMATS = (".onnx", ".pt")
CHECK_STEPS = 1000
EPISODES = 5


@dataclass(frozen=True)
class DemoRow:
    """One line of the summary table."""

    model: str
    artifact_format: str
    parity_ok: bool
    drift_step: int | None
    mean_return: float | None
    threshold: float | None

    @property
    def parity(self) -> str:
        """``ok``, ``ok (drift from step N)`` (see :mod:`rlpol.verify.check`) or ``FAIL``."""
        if not self.parity_ok:
            return "FAIL"
        return "ok" if self.drift_step is None else f"ok (drift from step {self.drift_step})"

    @property
    def passed(self) -> bool:
        reached = self.mean_return is None or self.threshold is None or (
            self.mean_return >= self.threshold
        )
        return self.parity_ok and reached


def run_demo(models_dir: Path, out_dir: Path, *, log=print) -> list[DemoRow]:
    """Export, check and replay every policy file in ``models_dir``; return the summary rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    files = sorted(p for p in models_dir.glob("*.py") if not p.name.startswith("_"))
    for policy_file in files:
        loaded = load_policy_file(policy_file)
        threshold = getattr(loaded.module, "RETURN_THRESHOLD", None)
        for suffix in FORMATS:
            start = time.perf_counter()
            path = export_policy(
                loaded.policy, out_dir / f"{policy_file.stem}{suffix}", env=loaded.env,
                policy_file=policy_file,
            )
            exported = load_policy(path, trust_code=True)  # exported just above
            report = check_artifact(loaded.env, loaded.policy, exported, steps=CHECK_STEPS)
            mean = None
            if suffix == ".onnx":
                env = make_artifact_env(exported.metadata)
                results = list(run_episodes(env, exported, episodes=EPISODES, seed=0))
                env.close()
                mean, _ = summarize(results)
            drift = report.first_input_difference if report.drifted else None
            row = DemoRow(policy_file.stem, exported.metadata.artifact_format, report.ok, drift,
                          mean, threshold)
            rows.append(row)
            log(f"{row.model:<18} {row.artifact_format:<12} parity {row.parity:<24} "
                f"({time.perf_counter() - start:.1f} s)")
        loaded.env.close()
    return rows


def summary_table(rows: list[DemoRow]) -> str:
    """The markdown summary table the demo ends with."""
    lines = [
        "| model | format | parity (1000 steps) | mean return (5 episodes) | threshold | status |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mean = "-" if row.mean_return is None else f"{row.mean_return:.1f}"
        threshold = "-" if row.threshold is None else f"{row.threshold:g}"
        lines.append(
            f"| {row.model} | {row.artifact_format} | {row.parity} | {mean} | "
            f"{threshold} | {'pass' if row.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small-batch inference: one thread is fastest
    start = time.perf_counter()
    rows = run_demo(args.models, args.out)
    print()
    print(summary_table(rows))
    print(f"\n{len(rows)} artifacts in {args.out}/, {time.perf_counter() - start:.0f} s")
    return 0 if rows and all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
