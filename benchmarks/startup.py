"""Startup benchmark: how long ``rlpol`` takes to start, against ``python -c "import torch"``.

``rlpol --help`` must not import torch (nor onnx, the exporter or gymnasium), so it should
start in well under the time torch alone takes to import: the target is <= 0.5x. Each row
runs its command and ``python -c "import torch"`` as fresh subprocesses, interleaved, and
compares the medians measured in the same run:

1. ``python -m rlpol --help`` (the console script runs the same ``rlpol.cli:main``): <= 0.5x;
2. ``python -m rlpol inspect model.onnx`` (metadata via onnx + json only), reference;
3. ``python -c "import rlpol.runtime"`` (loads torch, onnxruntime, tensordict: a runtime
   user's import; never the exporter), reference.

Run from the repository root::

    python benchmarks/startup.py               # about 1-2 minutes
    python benchmarks/startup.py --repeats 11
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import Result, measure, q_value_policy, table

from rlpol import GymEnv, export_policy

ROOT = Path(__file__).resolve().parents[1]
# the subprocesses import this checkout's rlpol, whatever is installed
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
IMPORT_TORCH = [sys.executable, "-c", "import torch"]


def started(command: list[str]):
    """A run of ``n`` fresh processes of ``command``, returning the elapsed seconds."""

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=ENV, cwd=ROOT)
        return time.perf_counter() - start

    return run


def scenarios(directory: Path, repeats: int) -> list[Result]:
    env = GymEnv("CartPole-v1")
    _, policy = q_value_policy(env)
    model = export_policy(policy, directory / "model.onnx", env=env)
    env.close()
    rlpol = [sys.executable, "-m", "rlpol"]
    rows = [
        ("1. rlpol --help", [*rlpol, "--help"], 0.5, ""),
        ("rlpol inspect model.onnx", [*rlpol, "inspect", str(model)], None, "reference"),
        ('python -c "import rlpol.runtime"', [sys.executable, "-c", "import rlpol.runtime"],
         None, "reference: loads torch"),
    ]  # fmt: skip
    return [
        measure(name, started(IMPORT_TORCH), started(command), steps=1, repeats=repeats,
                target=target, note=note, warmup=1, scale=1e3)
        for name, command, target, note in rows
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed starts per side and row")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        results = scenarios(Path(directory), args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(table(results, title='startup: rlpol vs python -c "import torch" (medians)',
                unit="ms/start"))
    print(
        f"\nbaseline: a fresh `python -c \"import torch\"`; {args.repeats} interleaved starts "
        f"per side; Python {platform.python_version()}; {os.cpu_count()} cores, load average "
        f"{load:.1f}."
    )
    return 0 if all(r.passed is not False for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
