"""Every reference model exports to ONNX and TorchScript, and the artifact solves its task."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlpol import export_policy, load_policy, load_policy_file
from rlpol.runtime import make_artifact_env, run_episodes, summarize
from rlpol.verify import check_artifact

MODELS = sorted((Path(__file__).parents[2] / "models").glob("[!_]*.py"))


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("model", MODELS, ids=lambda path: path.stem)
def test_exported_model_reaches_threshold(model, suffix, tmp_path):
    loaded = load_policy_file(model)
    if loaded.module.RETURN_THRESHOLD is None:
        pytest.skip("an untrained model; tests/export/test_pixel_export.py checks its artifacts")
    path = export_policy(loaded.policy, tmp_path / f"{model.stem}{suffix}", env=loaded.env,
                         policy_file=model)
    exported = load_policy(path, trust_code=True)
    assert exported.metadata.policy_sha256 == loaded.sha256
    env = make_artifact_env(exported.metadata)
    results = list(run_episodes(env, exported, episodes=5, seed=0))
    mean, _ = summarize(results)
    assert mean >= loaded.module.RETURN_THRESHOLD, [r.episode_return for r in results]
    report = check_artifact(loaded.env, loaded.policy, exported, steps=1000, seed=0)
    assert report.ok, (report.rows(), report.replay.rows())
