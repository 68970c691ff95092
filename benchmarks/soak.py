"""Soak test (issue 8): a long rollout with an exported policy, watching memory.

Runs ``--steps`` CartPole-v1 steps (default 1,000,000) as rollouts of ``--chunk`` steps
(auto-resetting, ``break_when_any_done=False``) with an exported 64x64 tanh MLP Q-value
policy, dropping each rollout, and reports the resident set size (RSS, from
``/proc/self/status``) after the first chunk and every tenth of the run. A leak of a few bytes
per step shows up as steady growth. Run from the repository root::

    python benchmarks/soak.py                        # about 1 minute on the fast path
    python benchmarks/soak.py --steps 200000 --format pt --env serial
    python benchmarks/soak.py --generic --steps 100000  # the tensordict-per-step path
    python benchmarks/soak.py --format eager --steps 300000  # the eager QValueActor

Exit status: 0, or 1 when RSS grew by more than ``--max-growth-mb`` after the first chunk.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from _harness import q_value_policy

from rlpol import GymEnv, SerialEnv, export_policy, load_policy
from rlpol.toolkit.envs.fast_rollout import use_fast_rollout


def rss_mb() -> float:
    """The current resident set size in MiB (peak RSS where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="env-steps in total")
    parser.add_argument("--chunk", type=int, default=1000, help="steps per rollout")
    parser.add_argument("--format", choices=["onnx", "pt", "eager"], default="onnx",
                        help="the artifact format, or the eager QValueActor (under no_grad)")
    parser.add_argument("--env", choices=["gym", "serial"], default="gym",
                        help="GymEnv, or SerialEnv of 16 (steps count env-steps)")
    parser.add_argument("--generic", action="store_true",
                        help="turn the fast rollout path off")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.env == "gym":
        env, width = GymEnv("CartPole-v1"), 1
    else:
        env, width = SerialEnv(16, lambda: GymEnv("CartPole-v1")), 16
    _, actor = q_value_policy(env)
    policy = actor
    if args.format != "eager":
        with tempfile.TemporaryDirectory() as directory:
            path = export_policy(actor, Path(directory) / f"cartpole.{args.format}", env=env)
            policy = load_policy(path, trust_code=True)  # exported just above
    chunk = max(1, args.chunk)
    rollouts = max(1, args.steps // (chunk * width))
    mode = contextlib.ExitStack()
    mode.enter_context(torch.no_grad())
    if args.generic:
        mode.enter_context(use_fast_rollout(False))
    print(f"soak: {rollouts} rollouts x {chunk} steps x {width} env(s), {args.format}, "
          f"{'generic' if args.generic else 'fast'} path")
    print("| rollouts | env-steps | RSS (MiB) | env-steps/s |")
    print("|---:|---:|---:|---:|")
    with mode:
        env.set_seed(0)
        env.rollout(chunk, policy, break_when_any_done=False)
        start_rss = rss_mb()
        start = time.perf_counter()
        report_every = max(1, rollouts // 10)
        for index in range(1, rollouts + 1):
            env.rollout(chunk, policy, break_when_any_done=False)
            if index % report_every == 0 or index == rollouts:
                done = index * chunk * width
                rate = done / (time.perf_counter() - start)
                print(f"| {index} | {done} | {rss_mb():.1f} | {rate:,.0f} |")
    env.close()
    growth = rss_mb() - start_rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nRSS after the first rollout {start_rss:.1f} MiB, growth since {growth:+.1f} MiB "
          f"(limit {args.max_growth_mb:g}); peak RSS {peak:.1f} MiB.")
    return 0 if growth <= args.max_growth_mb else 1


if __name__ == "__main__":
    raise SystemExit(main())
