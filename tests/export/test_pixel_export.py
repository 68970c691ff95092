"""Pixel policies end to end: TorchRL's export tutorial (ALE Pong) with rlpol.

``models/pong_dqn.py`` is the tutorial's pipeline (``ToTensorImage``, ``Resize(84)``,
``GrayScale``, ``CatFrames(4)``, ``StepCounter``; the Nature DQN). Exported, the artifact folds
the four image transforms and takes the raw screen; its frame stack is a state pair. These
tests check the artifacts against the eager policy (``check_artifact``), replay raw
``ale_py.ALEInterface`` screens in a process where torch cannot be imported, and run the
artifact from the shell with no ``--env`` and no import.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tensordict import TensorDict

from rlpol import (
    CatFrames,
    Compose,
    GrayScale,
    GymEnv,
    QValueActor,
    Resize,
    ToTensorImage,
    TransformedEnv,
    export_policy,
    load_policy,
    load_policy_file,
)
from rlpol.cli import main
from rlpol.toolkit.modules import TensorDictSequential
from rlpol.verify import check_artifact

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "pong_dqn.py"
STACK = "cat_frames_pixels"
SCREEN = (210, 160, 3)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pong():
    return load_policy_file(MODEL)


@pytest.fixture(scope="module")
def pong_onnx(tmp_path_factory) -> Path:
    """``rlpol export models/pong_dqn.py``, its quick check included (a stateful sequence)."""
    path = tmp_path_factory.mktemp("pong") / "pong.onnx"
    result = CliRunner().invoke(main, ["export", str(MODEL), "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert "check eager vs exported: batch 1: ok" in result.output
    return path


def test_the_pipeline_rolls_out_stacks_of_four_84x84_frames(pong):
    pong.env.set_seed(0)
    with torch.no_grad():
        rollout = pong.env.rollout(30, pong.policy)
    assert rollout["pixels"].shape == (30, 4, 84, 84)
    assert rollout["pixels"].dtype == torch.float32
    # each stack is the previous one shifted by a frame: the first reset repeats the frame
    assert torch.equal(rollout["pixels"][0], rollout["pixels"][0, :1].expand(4, 84, 84))
    assert torch.equal(rollout["next", "pixels"][:, :3], rollout["pixels"][:, 1:])
    assert torch.equal(rollout["pixels"][1:], rollout["next", "pixels"][:-1])
    assert rollout["step_count"].squeeze(-1).tolist() == list(range(30))


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_the_folded_artifact_takes_the_raw_screen_and_passes_check(pong, suffix, tmp_path):
    path = export_policy(pong.policy, tmp_path / f"pong{suffix}", env=pong.env)
    exported = load_policy(path, trust_code=True)
    meta = exported.metadata
    inputs = {info.key: (info.dtype, info.shape) for info in meta.inputs}
    assert inputs == {
        "pixels": ("uint8", SCREEN), STACK: ("float32", (4, 84, 84)), "is_init": ("bool", (1,)),
    }
    [state] = meta.states
    assert (state.input, state.output, state.reset_input) == (STACK, f"next.{STACK}", "is_init")
    assert [t["type"] for t in meta.transforms] == [
        "ToTensorImage", "Resize", "GrayScale", "CatFrames",
    ]
    assert (meta.env_id, meta.env_imports) == ("ALE/Pong-v5", ("ale_py",))

    report = check_artifact(pong.env, pong.policy, exported, steps=160, seed=0)
    assert report.ok, (report.rows(), report.replay.rows())
    fields = {field.key: field for field in report.fields}
    # the closed loop compared the stacks the eager env made with the artifact's
    assert fields["pixels"].shape == (160, 4, 84, 84) and fields["pixels"].ok
    assert fields["next", "pixels"].ok and fields["action"].ok
    assert STACK not in fields and "is_init" not in fields  # the artifact's own state


def test_a_chain_writing_new_keys_folds_too(pong, tmp_path):
    """ToTensorImage to a new key, the other transforms on it, CatFrames to another one."""
    env = TransformedEnv(GymEnv("ALE/Pong-v5", categorical_action_encoding=True), Compose(
        ToTensorImage(out_keys=["image"]), Resize(84, in_keys=["image"]),
        GrayScale(in_keys=["image"]), CatFrames(4, dim=-3, in_keys=["image"], out_keys=["stack"]),
    ))  # fmt: skip
    policy = QValueActor(pong.policy[0].module, in_keys=["stack"], spec=env.action_spec)
    exported = load_policy(export_policy(policy, tmp_path / "keys.onnx", env=env), trust_code=True)
    inputs = {info.key: info.shape for info in exported.metadata.inputs}
    assert inputs == {"pixels": SCREEN, "cat_frames_stack": (4, 84, 84), "is_init": (1,)}
    report = check_artifact(env, policy, exported, steps=40, seed=1)
    assert report.ok, report.rows()
    compared = {field.key for field in report.fields}
    assert {"pixels", "image", "stack", ("next", "image"), ("next", "stack")} <= compared


REPLAY = r"""
import json, sys
sys.modules["torch"] = None  # importing torch now raises ImportError
import ale_py, numpy as np, onnxruntime as ort
from rlpol.artifact import read_metadata

path, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
_, meta = read_metadata(path)
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
names = [output.name for output in session.get_outputs()]
[screen_input] = [i.name for i in meta.inputs
                  if i.name not in {s.input for s in meta.states} | {s.reset_input for s in meta.states}]
ale = ale_py.ALEInterface()
ale.setInt("random_seed", 0)
ale.loadROM(ale_py.roms.get_rom_path("pong"))
legal = ale.getMinimalActionSet()
state = {s.input: np.full((1, *s.shape), s.initial, np.float32) for s in meta.states}
screens, values, actions = [], [], []
for t in range(steps):
    screen = ale.getScreenRGB()
    feed = {screen_input: screen[None], meta.states[0].reset_input: np.array([[t == 0]]), **state}
    result = dict(zip(names, session.run(None, feed)))
    state = {s.input: result[s.output] for s in meta.states}
    action = int(result["action"][0])
    for _ in range(4):  # the frame skip of ALE/Pong-v5
        ale.act(legal[action])
    screens.append(screen)
    values.append(result["action_value"][0])
    actions.append(action)
np.savez(out, screens=np.stack(screens), values=np.stack(values), actions=np.array(actions))
print(json.dumps({"torch_imported": sys.modules["torch"] is not None}))
"""


def test_the_onnx_artifact_replays_raw_ale_screens_without_torch(pong, pong_onnx, tmp_path):
    out = tmp_path / "replay.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", REPLAY, str(pong_onnx), str(out), "120"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"torch_imported": False}
    replay = np.load(out)
    assert replay["screens"].shape == (120, *SCREEN)
    assert len(np.unique(replay["screens"].reshape(120, -1), axis=0)) > 10  # the game moved

    # the eager policy behind the env's own transforms, on the same screens
    eager = TensorDictSequential(pong.env.transform[:-1], pong.policy)
    stack, values, actions = None, [], []
    with torch.no_grad():
        for t, screen in enumerate(replay["screens"]):
            td = TensorDict({"pixels": torch.from_numpy(screen), "is_init": torch.tensor([t == 0])})
            if stack is not None:
                td[STACK] = stack
            td = eager(td)
            stack = td["next", STACK]
            values.append(td["action_value"])
            actions.append(int(td["action"]))
    assert actions == replay["actions"].tolist()
    np.testing.assert_allclose(torch.stack(values).numpy(), replay["values"], rtol=1e-4, atol=1e-5)


def test_rlpol_run_plays_a_pong_episode_with_no_env_and_no_import(pong_onnx):
    # a fresh process: nothing imports ale_py but what the artifact's metadata asks for
    result = subprocess.run(
        [sys.executable, "-m", "rlpol", "run", str(pong_onnx), "--episodes", "1", "--seed", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    # one episode row: the untrained policy loses every point, over hundreds of steps
    row = re.search(r"^\|\s*0\s*\|\s*(-?[\d.]+)\s*\|\s*(\d+)\s*\|$", result.stdout, re.M)
    assert row is not None, result.stdout
    assert float(row[1]) == -21.0 and int(row[2]) > 500
