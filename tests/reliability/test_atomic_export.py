"""Exports killed or failing midway never harm the previous artifact.

A child process runs ``rlpol export`` over an existing artifact and is stopped with SIGKILL at
a chosen point: while the policy file runs, with the temp file half written, and with the temp
file complete but not yet renamed. The policy file itself arranges the stop, so the kill is
deterministic: it announces the point with a "ready" file and sleeps. Afterwards the target
must be byte-identical; the only thing a kill may leave is a hidden ``.<name>.<random>.tmp<suffix>``
file beside it, which never shadows the target, and the next export must still succeed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlpol import export_policy
from rlpol.cli import main
from rlpol.errors import ExportError
from rlpol.runtime import load_policy
from rlpol.testing import policy_case

OLD = b"the previous artifact, which a killed export must leave alone\n"

# The policy file stops the export at RLPOL_TEST_STOP_AT (announcing it by creating
# RLPOL_TEST_READY): "make_policy" while the file runs; "half-written" after writing half of
# the artifact into the temp file; "before-rename" after the temp file is complete and fsynced.
POLICY_FILE = """
import os
import time
from pathlib import Path

from rlpol.testing import policy_case

CASE = policy_case("qvalue_onehot")
STOP_AT = os.environ["RLPOL_TEST_STOP_AT"]
READY = Path(os.environ["RLPOL_TEST_READY"])
TARGET = os.environ["RLPOL_TEST_TARGET_NAME"]


def stop_here():
    READY.touch()
    time.sleep(60)  # the test kills us long before


def is_temp_of_target(fd):
    return os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{TARGET}.")


class HalfWriter:
    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        os.fsync(self.handle.fileno())
        stop_here()

    def __getattr__(self, name):
        return getattr(self.handle, name)


def install_stop():
    if STOP_AT == "half-written":
        fdopen = os.fdopen
        os.fdopen = lambda fd, *a, **k: (
            HalfWriter(fdopen(fd, *a, **k)) if is_temp_of_target(fd) else fdopen(fd, *a, **k)
        )
    elif STOP_AT == "before-rename":
        fsync = os.fsync

        def fsync_then_stop(fd):
            fsync(fd)
            if is_temp_of_target(fd):
                stop_here()

        os.fsync = fsync_then_stop


def make_env():
    return CASE.make_env()


def make_policy(env):
    if STOP_AT == "make_policy":
        stop_here()
    install_stop()
    return CASE.make_policy(env)
"""

STOP_POINTS = ["make_policy", "half-written", "before-rename"]
TEMP_NAME = re.compile(r"^\.policy\.onnx\.[A-Za-z0-9_]+\.tmp\.onnx$")


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


@dataclass
class Killed:
    """One export killed at a stop point: its directory, and what was there at the stop."""

    directory: Path
    temps_at_stop: list[tuple[str, int]]
    returncode: int | None = None

    @property
    def target(self) -> Path:
        return self.directory / "policy.onnx"


def _export_in_child(directory: Path, stop_at: str) -> None:
    """The child: ``rlpol export policy.py -o policy.onnx``, as the shell would run it."""
    os.chdir(directory)
    os.environ.update(
        RLPOL_TEST_STOP_AT=stop_at, RLPOL_TEST_READY=str(directory / "ready"),
        RLPOL_TEST_TARGET_NAME="policy.onnx",
    )  # fmt: skip
    main(["export", "policy.py", "-o", "policy.onnx"], prog_name="rlpol")


def _start(directory: Path, stop_at: str) -> multiprocessing.Process:
    """A forked child (torch already imported: no 3 s interpreter start) running the export."""
    directory.mkdir()
    (directory / "policy.py").write_text(POLICY_FILE)
    (directory / "policy.onnx").write_bytes(OLD)
    process = multiprocessing.get_context("fork").Process(
        target=_export_in_child, args=(directory, stop_at), daemon=True
    )
    process.start()
    return process


def _wait_for_stop(directory: Path, process: multiprocessing.Process, deadline: float) -> None:
    while not (directory / "ready").exists():
        if not process.is_alive():
            raise AssertionError(f"the export ended before the stop (exit {process.exitcode})")
        if time.monotonic() > deadline:
            raise AssertionError("the export never reached the stop")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict[str, Killed]:
    """The three exports, each in a child process killed with SIGKILL at its stop."""
    if not Path("/proc/self/fd").is_dir() or "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the stops need Linux (fork, /proc/self/fd)")
    root = tmp_path_factory.mktemp("killed")
    processes = {stop: _start(root / stop, stop) for stop in STOP_POINTS}
    results = {}
    try:
        deadline = time.monotonic() + 60
        for stop, process in processes.items():
            directory = root / stop
            _wait_for_stop(directory, process, deadline)
            temps = [(p.name, p.stat().st_size) for p in directory.glob(".*")]
            os.kill(process.pid, signal.SIGKILL)
            results[stop] = Killed(directory, temps)
    finally:
        for stop, process in processes.items():
            process.kill()
            process.join()
            if stop in results:
                results[stop].returncode = process.exitcode
    return results


@pytest.mark.parametrize("stop_at", STOP_POINTS)
def test_sigkill_leaves_the_previous_artifact(killed, stop_at):
    run = killed[stop_at]
    assert run.returncode == -signal.SIGKILL
    if stop_at == "make_policy":
        assert run.temps_at_stop == []
    else:  # the stop was real: a temp file with content sat beside the intact target
        ((name, size),) = run.temps_at_stop
        assert TEMP_NAME.match(name) and size > 0

    assert run.target.read_bytes() == OLD
    left = sorted(set(files(run.directory)) - {"policy.py", "policy.onnx", "ready"})
    assert all(TEMP_NAME.match(name) for name in left), left  # hidden temp files at most


def test_the_next_export_is_not_bothered_by_a_leftover(killed):
    run = killed["before-rename"]
    (leftover,) = [name for name in files(run.directory) if TEMP_NAME.match(name)]
    case = policy_case("qvalue_onehot")
    env = case.make_env()
    export_policy(case.make_policy(env), run.target, env=env)
    assert load_policy(run.target, trust_code=True).metadata.env_id == "CartPole-v1"
    assert (run.directory / leftover).exists()  # untouched; removing it is always safe


class Interrupted(KeyboardInterrupt):
    pass


FAILURES = [
    (ExportError("the quick check failed"), ExportError),
    (Interrupted(), Interrupted),
    (RuntimeError("a check with a bug"), RuntimeError),
]


@pytest.mark.parametrize(("error", "raised"), FAILURES, ids=["error", "interrupt", "bug"])
def test_a_failed_check_removes_the_temp_file(tmp_path, error, raised):
    target = tmp_path / "policy.onnx"
    target.write_bytes(OLD)
    staged_paths = []

    def check(staged: Path) -> None:
        staged_paths.append(staged)
        assert staged.parent == tmp_path and TEMP_NAME.match(staged.name), staged
        assert load_policy(staged, trust_code=True).metadata.env_id == "CartPole-v1"  # complete: it loads
        raise error

    case = policy_case("qvalue_onehot")
    env = case.make_env()
    with pytest.raises(raised):
        export_policy(case.make_policy(env), target, env=env, check=check)
    assert len(staged_paths) == 1
    assert files(tmp_path) == {"policy.onnx": OLD}
