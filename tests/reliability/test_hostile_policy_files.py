"""Broken policy files and bad output paths given to ``rlpol export``: one sentence, nothing lost.

Each case runs ``rlpol export`` over an existing artifact and checks the exit code, the message
(``Error: <sentence>``, no traceback) and that the old artifact is byte-identical with no
temp file left beside it: an artifact is replaced only by a complete, checked export.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlpol.cli import main
from rlpol.runtime import load_policy

OLD = b"the previous artifact, which a failed export must leave alone\n"

HEADER = """
import torch
from tensordict.nn import TensorDictModule
from rlpol import GymEnv
"""


def policy_source(make_env: str, make_policy: str, extra: str = "") -> str:
    body = f"""
        def make_env():
            {make_env}


        def make_policy(env):
            {make_policy}
        """
    return HEADER + textwrap.dedent(extra) + textwrap.dedent(body)


CARTPOLE = "return GymEnv('CartPole-v1')"
PENDULUM = "return GymEnv('Pendulum-v1')"
LINEAR = "TensorDictModule(torch.nn.Linear({}, {}), in_keys=['observation'], out_keys=[{!r}])"

# Counts its calls in Python: the traced graph bakes one count in, the eager policy moves on.
DRIFTING = """
class Drifting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, observation):
        self.calls += 1
        return observation[..., :1] * 0 + float(self.calls)
"""

BROKEN: list[tuple[str, str | None, str]] = [
    (
        "missing",
        None,
        r"policy file '.*policy\.py' does not exist; pass the path of a \.py file that "
        r"defines make_env\(\) and make_policy\(env\)",
    ),
    (
        "syntax-error",
        "def make_env(:\n    pass\n",
        r"policy file '.*policy\.py' has a syntax error at line 1: .*; fix the file and retry",
    ),
    (
        "import-error",
        "import not_a_module_xyz\n",
        r"importing policy file '.*policy\.py' raised ModuleNotFoundError: No module named "
        r"'not_a_module_xyz' \(line 1\); install the missing module or fix the import",
    ),
    (
        "defines-nothing",
        "x = 1\n",
        r"policy file '.*policy\.py' defines neither an environment nor a policy: rlpol looks "
        r"for a `make_env\(\)` function .* but the file defines only x",
    ),
    (
        "make-env-raises",
        policy_source("raise OSError('no display')", "return None"),
        r"make_env\(\) in policy file '.*policy\.py' raised OSError: no display \(line \d+\); "
        r"fix make_env",
    ),
    (
        "make-policy-raises",
        policy_source(CARTPOLE, "raise RuntimeError('weights missing')"),
        r"make_policy\(env\) in policy file '.*policy\.py' raised RuntimeError: weights missing "
        r"\(line \d+\); fix make_policy",
    ),
    (
        "returns-plain-module",
        policy_source(CARTPOLE, "return torch.nn.Linear(4, 2)"),
        r"make_policy\(env\) in policy file '.*policy\.py' returned a plain torch\.nn\.Module "
        r"\(Linear\) that does not read and write TensorDicts; expected a "
        r"tensordict\.nn\.TensorDictModuleBase: wrap it as `TensorDictModule\(module, ",
    ),
    (
        "returns-none",
        policy_source(CARTPOLE, "pass"),
        r"make_policy\(env\) in policy file '.*policy\.py' returned None; expected a "
        r"tensordict\.nn\.TensorDictModuleBase \(is a `return` missing\?\)",
    ),
    (
        "action-does-not-fit-spec",
        policy_source(CARTPOLE, "return " + LINEAR.format(4, 3, "action")),
        r"the policy writes 'action' as float32 of shape \[\*B, 3\] but CartPole-v1's action "
        r"spec \(OneHot\) expects int64 of shape \[\*B, 2\]; change the policy's output to fit "
        r"the action spec",
    ),
    (
        "action-not-written",
        policy_source(CARTPOLE, "return " + LINEAR.format(4, 2, "logits")),
        r"the policy does not write 'action', where CartPole-v1's step\(\) reads the action; it "
        r"writes \['logits'\]: make its last module write out_keys=\['action'\] \(int64 of "
        r"shape \[\*B, 2\]\)",
    ),
    (
        "policy-raises-on-observations",
        policy_source(PENDULUM, "return " + LINEAR.format(3, 1, "action") + ".double()"),
        r"the policy raised RuntimeError: mat1 and mat2 must have the same dtype.* when run on "
        r"example observations \('observation' float32 \[3, 3\], from the env's observation "
        r"spec\); fix the policy so that it accepts them",
    ),
    (
        "quick-check-mismatch",
        policy_source(
            PENDULUM,
            "return TensorDictModule(Drifting(), in_keys=['observation'], out_keys=['action'])",
            DRIFTING,
        ),
        r"the exported artifact does not match the eager policy \(check eager vs exported: "
        r"batch 1: .*MISMATCH.*\), so '.*policy\.onnx' was left as it was; make the policy's "
        r"forward a pure function of its inputs .* or pass --no-check to write the artifact "
        r"anyway",
    ),
]


def run_export(*args: str):
    result = CliRunner().invoke(main, ["export", *args])
    assert isinstance(result.exception, (SystemExit, type(None))), "the CLI raised"
    assert "Traceback" not in result.output
    return result


def listing(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


@pytest.mark.parametrize(("name", "source", "message"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_policy_file_keeps_the_old_artifact(tmp_path, name, source, message):
    policy = tmp_path / "policy.py"
    if source is not None:
        policy.write_text(source)
    output = tmp_path / "policy.onnx"
    output.write_bytes(OLD)
    before = listing(tmp_path)

    result = run_export(str(policy), "-o", str(output))

    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.endswith(errors[0] + "\n"), result.output
    assert re.search(message, errors[0]), errors[0]
    assert listing(tmp_path) == before  # old artifact byte-identical, no temp file left


GOOD_POLICY = policy_source(
    CARTPOLE,
    "return CASE.make_policy(env)",
    """
from rlpol.testing import policy_case

CASE = policy_case("qvalue_onehot")
""",
)


def _chmod_read_only(directory: Path) -> Path:
    directory.chmod(0o555)
    if os.access(directory, os.W_OK):
        directory.chmod(0o755)
        pytest.skip("running as a user (root) that writes anywhere")
    return directory / "policy.onnx"


UNWRITABLE = [
    (
        "directory-missing",
        lambda tmp_path: tmp_path / "no-such-dir" / "policy.onnx",
        r"cannot write the artifact to '.*no-such-dir/policy\.onnx': No such file or directory; "
        r"choose a writable output path \(-o\)",
    ),
    (
        "parent-is-a-file",
        lambda tmp_path: tmp_path / "policy.py" / "policy.onnx",
        r"cannot write the artifact to '.*policy\.py/policy\.onnx': Not a directory; choose a "
        r"writable output path \(-o\)",
    ),
    (
        "output-is-a-directory",
        lambda tmp_path: (tmp_path / "taken.onnx").mkdir() or tmp_path / "taken.onnx",
        r"cannot write the artifact to '.*taken\.onnx': Is a directory; choose a writable output "
        r"path \(-o\)",
    ),
    (
        "directory-read-only",
        lambda tmp_path: _chmod_read_only(tmp_path / "locked"),
        r"cannot write the artifact to '.*locked/policy\.onnx': Permission denied; choose a "
        r"writable output path \(-o\)",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), UNWRITABLE, ids=[c[0] for c in UNWRITABLE])
def test_unwritable_output(tmp_path, name, make, message):
    (tmp_path / "policy.py").write_text(GOOD_POLICY)
    (tmp_path / "locked").mkdir()
    output = make(tmp_path)
    before = {str(path) for path in tmp_path.rglob("*")}
    try:
        result = run_export(str(tmp_path / "policy.py"), "-o", str(output), "--no-check")
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert result.exit_code == 1, result.output
    assert re.fullmatch(f"Error: {message}\n", result.output), result.output
    assert {str(path) for path in tmp_path.rglob("*")} == before  # no temp file left


def test_a_successful_export_replaces_the_old_artifact(tmp_path):
    policy = tmp_path / "policy.py"
    policy.write_text(GOOD_POLICY)
    output = tmp_path / "policy.onnx"
    output.write_bytes(OLD)
    result = run_export(str(policy), "-o", str(output))
    assert result.exit_code == 0, result.output
    assert "check eager vs exported: batch 1: ok" in result.output
    assert load_policy(output, trust_code=True).metadata.env_id == "CartPole-v1"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["policy.onnx", "policy.py"]
    assert output.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0o600


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
