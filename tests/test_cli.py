"""The CLI through click's CliRunner: export, inspect, check, run, bench, and their errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from rlpol._atomic import _umask
from rlpol.cli import main

POLICY_FILE = """
from rlpol.testing import policy_case

CASE = policy_case({case!r})


def make_env():
    return CASE.make_env()


def make_policy(env):
    return CASE.make_policy(env, seed={seed})
"""


def _policy_file(tmp_path, case="qvalue_onehot_egreedy", seed=0, name="policy.py"):
    path = tmp_path / name
    path.write_text(POLICY_FILE.format(case=case, seed=seed))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A CartPole Q-value policy file and its ONNX export in random mode."""
    tmp_path = tmp_path_factory.mktemp("cli")
    policy = _policy_file(tmp_path)
    artifact = tmp_path / "policy.onnx"
    result = CliRunner().invoke(
        main, ["export", str(policy), "-o", str(artifact), "--exploration", "random"]
    )
    assert result.exit_code == 0, result.output
    return policy, artifact, result.output


def test_export_prints_io_table_and_quick_check(exported):
    _, artifact, output = exported
    assert artifact.exists()
    assert "| input  | observation" in output
    assert "| output | action " in output
    assert "noise.module.1.explore" in output or "noise." in output
    assert "check eager vs exported: batch 1: ok" in output
    assert "batch 7: ok" in output


def test_export_to_torchscript_default_name(tmp_path):
    policy = _policy_file(tmp_path, case="tanh_normal")
    result = CliRunner().invoke(main, ["export", str(policy), "-o", str(tmp_path / "p.pt")])
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.output
    result = CliRunner().invoke(main, ["export", str(policy), "--no-check"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "policy.onnx").exists()
    assert "check eager" not in result.output


def test_inspect_json_parses(exported):
    _, artifact, _ = exported
    result = CliRunner().invoke(main, ["inspect", str(artifact), "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    assert meta["exploration"] == "random" and meta["env_id"] == "CartPole-v1"
    assert meta["policy_sha256"] and len(meta["policy_sha256"]) == 64


def test_inspect_table(exported):
    _, artifact, _ = exported
    result = CliRunner().invoke(main, ["inspect", str(artifact)])
    assert result.exit_code == 0, result.output
    assert "exploration  random" in result.output
    assert "env          CartPole-v1" in result.output
    assert "| param  |" in result.output


def test_inspect_lists_the_state_pairs(recurrent_artifacts):
    _, artifact = recurrent_artifacts.get("gru", 1, ".onnx", "deterministic")
    result = CliRunner().invoke(main, ["inspect", str(artifact)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("| state ")]
    assert [cell.strip() for cell in row.strip("|").split("|")][:3] == [
        "state", "next.recurrent_state -> recurrent_state", "recurrent_state",
    ]
    assert "initial 0, reset by is_init" in result.output


def test_check_passes_on_the_right_artifact(exported):
    policy, artifact, _ = exported
    result = CliRunner().invoke(main, ["check", str(policy), str(artifact), "--steps", "300"])
    assert result.exit_code == 0, result.output
    assert "parity ok" in result.output
    assert "| next.observation" in result.output


def test_check_rejects_a_wrong_artifact(exported, tmp_path):
    _, artifact, _ = exported
    other_weights = _policy_file(tmp_path, seed=1)
    result = CliRunner().invoke(main, ["check", str(other_weights), str(artifact),
                                       "--steps", "100"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output
    assert "parity FAILED" in result.output


def test_run_prints_returns_table(exported):
    _, artifact, _ = exported
    result = CliRunner().invoke(main, ["run", str(artifact), "--episodes", "3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "| episode | return" in result.output
    assert "mean return" in result.output and "over 3 episodes" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("| 2 ")]
    assert lines, result.output


def test_run_output_has_no_progress_when_not_a_terminal(exported):
    """CliRunner's stdout is no terminal: the returns table comes first, no env repr, no bar."""
    _, artifact, _ = exported
    result = CliRunner().invoke(main, ["run", str(artifact), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("| episode | return | length |"), result.output
    assert "GymEnv" not in result.output and "episodes  [" not in result.output


def test_run_records_a_gif(exported, tmp_path):
    """One frame per reset and step, written with the artifact's permissions (not 0600)."""
    pytest.importorskip("pygame")
    Image = pytest.importorskip("PIL.Image")
    from rlpol.runtime.recording import FrameRecorder

    _, artifact, _ = exported
    gif = tmp_path / "run.gif"
    result = CliRunner().invoke(main, ["run", str(artifact), "--episodes", "1",
                                       "--record", str(gif)])
    assert result.exit_code == 0, result.output
    assert f"recorded {gif}" in result.output
    length = int(result.output.splitlines()[2].split("|")[3])
    assert gif.read_bytes()[:6] == b"GIF89a"
    with Image.open(gif) as image:
        assert image.size == (600, 400)
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    # Pillow merges a frame equal to the previous one into it, adding up their durations
    assert len(durations) <= length + 1
    assert sum(durations) == (length + 1) * FrameRecorder(gif).frame_duration_ms
    assert stat.S_IMODE(gif.stat().st_mode) == stat.S_IMODE(artifact.stat().st_mode)
    assert stat.S_IMODE(gif.stat().st_mode) == 0o666 & ~_umask()


def test_run_record_is_quiet_on_a_headless_machine(exported, tmp_path):
    """A real process, with no SDL driver chosen: stderr stays empty, stdout has no bar."""
    pytest.importorskip("pygame")
    _, artifact, _ = exported
    gif = tmp_path / "run.gif"
    env = {name: value for name, value in os.environ.items() if not name.startswith("SDL_")}
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "rlpol", "run", str(artifact), "--episodes", "1",
         "--record", str(gif)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("| episode | return | length |"), done.stdout
    assert gif.exists()


def test_offscreen_sdl_keeps_the_users_drivers(monkeypatch):
    from rlpol.runtime.recording import use_offscreen_sdl

    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    monkeypatch.delenv("SDL_AUDIODRIVER", raising=False)
    use_offscreen_sdl()
    assert os.environ["SDL_VIDEODRIVER"] == "x11"
    assert os.environ["SDL_AUDIODRIVER"] == "dummy"


@pytest.mark.parametrize(
    "command, option, help_text",
    [
        ("bench", "--batch", "Batch size to time"),
        ("check", "--steps", "env steps to compare"),
        ("check", "--seed", "Seed of the env and of torch"),
    ],
)
def test_options_have_help_and_defaults(command, option, help_text):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.split(f"  {option} ", 1)[1].split("\n  -", 1)[0]
    assert help_text in " ".join(lines.split())
    assert "[default: " in lines


def test_bench_prints_a_table(exported):
    _, artifact, _ = exported
    result = CliRunner().invoke(main, ["bench", str(artifact), "--batch", "1", "--batch", "64",
                                       "--repeats", "5"])
    assert result.exit_code == 0, result.output
    assert "| 64 " in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist|not found|No such file"),
        ("def make_env(:\n", "syntax error|SyntaxError"),
        ("import not_a_module_xyz\n", "not_a_module_xyz"),
        ("x = 1\n", "make_env"),
        (textwrap.dedent("""
            from rlpol import GymEnv
            def make_env():
                return GymEnv("CartPole-v1")
            def make_policy(env):
                raise RuntimeError("weights missing")
            """), "weights missing"),
    ],
)
def test_export_errors_are_one_sentence(tmp_path, content, message):
    path = tmp_path / "bad.py"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["export", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    assert pytest.importorskip("re").search(message, result.output), result.output
    assert not (tmp_path / "bad.onnx").exists()
