"""Shared pieces of the benchmarks: the policies, the timing loop and the markdown table.

Timings on a shared machine are noisy, so every scenario interleaves its baseline and its
rlpol run, repeats the pair, and compares medians measured in the same process.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from rlpol import MLP, Actor, EnvBase, QValueActor


def q_value_policy(env: EnvBase, *, seed: int = 0) -> tuple[torch.nn.Module, QValueActor]:
    """A 64x64 tanh MLP Q-value actor for a discrete-action env: ``(mlp, actor)``."""
    torch.manual_seed(seed)
    spec = env.single_action_spec
    features = env.single_observation_spec["observation"].shape[-1]
    mlp = MLP(features, spec.shape[-1], num_cells=[64, 64], activation_class=torch.nn.Tanh)
    return mlp, QValueActor(mlp, spec=spec).eval()


def deterministic_actor(env: EnvBase, *, seed: int = 0) -> tuple[torch.nn.Module, Actor]:
    """A 64x64 tanh MLP deterministic actor for a continuous-action env: ``(mlp, actor)``."""
    torch.manual_seed(seed)
    features = env.single_observation_spec["observation"].shape[-1]
    mlp = MLP(
        features, env.single_action_spec.shape[-1], num_cells=[64, 64],
        activation_class=torch.nn.Tanh,
    )  # fmt: skip
    return mlp, Actor(mlp).eval()


Run = Callable[[int], float]  # run n steps, return the elapsed seconds


@dataclass
class Result:
    """Medians of one scenario, in microseconds per step."""

    name: str
    target: float | None
    baseline: list[float] = field(default_factory=list)
    rlpol: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.rlpol) / statistics.median(self.baseline)

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


def measure(
    name: str,
    baseline: Run,
    rlpol: Run,
    *,
    steps: int,
    repeats: int,
    target: float | None,
    per: int = 1,
    note: str = "",
    warmup: int | None = None,
    scale: float = 1e6,
) -> Result:
    """Time ``baseline`` and ``rlpol`` (``steps`` steps each), interleaved, ``repeats`` times.

    ``per`` divides the times (e.g. 16 for the env-steps of one step of 16 envs); ``warmup``
    steps run first on each side (default ``max(steps // 10, 10)``); ``scale`` turns seconds
    into the table's unit (1e6: microseconds; 1e3: milliseconds).
    """
    result = Result(name, target, note=note)
    warm = max(steps // 10, 10) if warmup is None else warmup
    if warm:
        baseline(warm)
        rlpol(warm)
    for repeat in range(repeats):
        pair = [(result.baseline, baseline), (result.rlpol, rlpol)]
        if repeat % 2:
            pair.reverse()
        for times, run in pair:
            times.append(run(steps) / steps / per * scale)
    return result


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def table(results: list[Result], *, title: str, unit: str = "us/step") -> str:
    """The results as a markdown table."""
    lines = [
        f"### {title}",
        "",
        f"| scenario | baseline ({unit}) | rlpol ({unit}) | ratio | target | pass |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        target = f"<= {r.target:g}" if r.target is not None else "-"
        verdict = {True: "pass", False: "FAIL", None: "-"}[r.passed]
        name = f"{r.name} ({r.note})" if r.note else r.name
        lines.append(
            f"| {name} | {statistics.median(r.baseline):.1f} | {statistics.median(r.rlpol):.1f} "
            f"| {r.ratio:.2f} | {target} | {verdict} |"
        )
    return "\n".join(lines)


def report(results: list[Result], *, title: str, repeats: int, unit: str = "us/step") -> int:
    """Print the table and the machine footer; the exit code: 1 if a target was missed."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(table(results, title=title, unit=unit))
    print(
        f"\n{repeats} interleaved repeats per side; torch threads 1, onnxruntime "
        f"intra-op threads 1; {os.cpu_count()} cores, load average {load:.1f}."
    )
    return 0 if all(r.passed is not False for r in results) else 1
