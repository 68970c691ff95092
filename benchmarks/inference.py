"""Inference benchmark (issue 7, target 5): ``ExportedPolicy`` against a bare ``session.run``.

A 64x64 tanh MLP Q-value policy for CartPole-v1 is exported to ONNX (and TorchScript); at batch
1, 64, 1024 and 16384, ``policy(td)`` on a prebuilt TensorDict is timed against
``session.run(None, {"observation": x})`` on the same numpy array (one onnxruntime thread
in both), interleaved in this process, and the ratio of the medians is checked against the
target (<= 1.3x). For reference: the policy's array kernel (what ``env.rollout`` calls: numpy
in, outputs in reused buffers) against the same bare call, and TorchScript rows (``policy(td)``
against ``module(x)`` under ``torch.inference_mode()``). Run from the repository root::

    python benchmarks/inference.py            # about 30 seconds
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from _harness import Result, measure, q_value_policy, report, timed
from rollout import onnx_session
from tensordict import TensorDict

from rlpol import GymEnv, export_policy, load_policy

BATCHES = (1, 64, 1024, 16384)


def calls(function, count: int):
    """A timed run of ``count`` calls (the harness's "steps" are calls here)."""

    def run(steps: int) -> float:
        def loop() -> None:
            for _ in range(steps):
                function()

        return timed(loop)

    return run


def scenarios(directory: Path, repeats: int, budget: float) -> list[Result]:
    env = GymEnv("CartPole-v1")
    _, actor = q_value_policy(env)
    onnx_path = export_policy(actor, directory / "cartpole.onnx", env=env)
    ts_path = export_policy(actor, directory / "cartpole.pt", env=env)
    session = onnx_session(onnx_path)
    policy = load_policy(onnx_path)
    ts_policy = load_policy(ts_path, trust_code=True)  # exported just above
    module = torch.jit.load(str(ts_path))
    module.eval()
    results = []
    generator = np.random.default_rng(0)
    for batch in BATCHES:
        x = generator.standard_normal((batch, 4), dtype=np.float32)
        td = TensorDict({"observation": torch.from_numpy(x)}, batch_size=[batch])
        count = max(10, int(budget / (2e-6 + batch * 2e-7)))  # about `budget` s per run

        def bare(x: np.ndarray = x) -> None:
            session.run(None, {"observation": x})

        results.append(measure(
            f"5. onnx ExportedPolicy, batch {batch}", calls(bare, count),
            calls(lambda td=td: policy(td), count), steps=count, repeats=repeats, target=1.3,
        ))  # fmt: skip
        kernel = policy.array_kernel(td)
        results.append(measure(
            f"onnx ExportedPolicy array kernel, batch {batch}", calls(bare, count),
            calls(lambda x=x, kernel=kernel: kernel([x]), count), steps=count, repeats=repeats, target=None,
            note="reference: numpy in, reused numpy out, as rollouts call it",
        ))  # fmt: skip
    for batch in (1, 1024):
        x = torch.from_numpy(generator.standard_normal((batch, 4), dtype=np.float32))
        td = TensorDict({"observation": x}, batch_size=[batch])
        count = max(10, int(budget / (2e-5 + batch * 2e-7)))

        def bare_ts(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                module(x)

        results.append(measure(
            f"torchscript ExportedPolicy, batch {batch}", calls(bare_ts, count),
            calls(lambda td=td: ts_policy(td), count), steps=count, repeats=repeats, target=None,
            note="reference, vs module(x) in inference_mode",
        ))  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per side")
    parser.add_argument("--budget", type=float, default=0.02, help="seconds per timed run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        results = scenarios(Path(directory), args.repeats, args.budget)
    return report(
        results,
        title="inference: ExportedPolicy vs bare calls (medians)",
        repeats=args.repeats,
        unit="us/call",
    )


if __name__ == "__main__":
    raise SystemExit(main())
