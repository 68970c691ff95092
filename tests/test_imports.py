"""What importing rlpol costs: lazy top-level names, forwarding aliases, torch-free CLI paths.

The import-graph checks run in a fresh interpreter (this one has imported everything) and
assert on its ``sys.modules``; they never assert timings (``benchmarks/startup.py`` measures
those).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rlpol
import rlpol.export
import rlpol.runtime
import rlpol.verify

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "onnxscript", "onnxruntime", "tensordict", "gymnasium", "click")

# run a snippet, then print which of the watched modules it imported
_REPORT = """
import json, sys
watched = {"rlpol.export": [m for m in sys.modules if m == "rlpol.export"
                            or m.startswith("rlpol.export.")],
           "rlpol.verify": [m for m in sys.modules if m.startswith("rlpol.verify")]}
watched.update({name: [name] if name in sys.modules else [] for name in %r})
print("\\n" + json.dumps({"exit": EXIT, "modules": watched}))
"""


def imported_by(snippet: str) -> tuple[int, dict[str, list[str]]]:
    """Run ``snippet`` (which sets ``EXIT``) in a fresh interpreter: its exit code, modules."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", snippet + _REPORT % (HEAVY,)], capture_output=True, text=True,
        env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    return report["exit"], {name: found for name, found in report["modules"].items() if found}


def cli(*args: str) -> str:
    """A snippet running ``rlpol ARGS`` as the console script does."""
    return (
        "from rlpol.cli import main\n"
        f"try:\n    main({list(args)!r}, prog_name='rlpol')\n"
        "except SystemExit as stop:\n    EXIT = stop.code\n"
    )


def test_import_rlpol_runtime_loads_neither_the_exporter_onnxscript_nor_click():
    _, modules = imported_by("import rlpol.runtime\nEXIT = 0")
    for name in ("rlpol.export", "rlpol.verify", "onnxscript", "click"):
        assert name not in modules, f"import rlpol.runtime imported {modules[name]}"


def test_import_rlpol_loads_no_layer():
    _, modules = imported_by("import rlpol\nEXIT = 0")
    assert not modules, f"import rlpol imported {sorted(modules)}"


def test_rlpol_help_imports_no_torch():
    code, modules = imported_by(cli("--help"))
    assert code == 0
    assert set(modules) <= {"click"}, f"rlpol --help imported {sorted(modules)}"


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_rlpol_inspect_imports_no_torch(artifacts, suffix):
    _, _, path = artifacts.get("qvalue_onehot", suffix, "deterministic")
    code, modules = imported_by(cli("inspect", str(path)))
    assert code == 0
    assert "torch" not in modules and "tensordict" not in modules, sorted(modules)
    if suffix == ".pt":  # a torch archive's metadata is read with zipfile + json alone
        assert "onnx" not in modules, sorted(modules)


def test_rlpol_triton_repo_imports_no_torch(artifacts, tmp_path):
    pytest.importorskip("grpc")  # tritonclient.grpc raises RuntimeError without grpcio
    _, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    code, modules = imported_by(cli("triton-repo", str(path), "-o", str(tmp_path / "repo")))
    assert code == 0
    assert "torch" not in modules and "tensordict" not in modules, sorted(modules)


# --- every public name stays importable where users import it ---------------------------------


def test_every_name_in_rlpol_all_resolves_and_is_listed_by_dir():
    assert set(rlpol.__all__) == {*rlpol._PUBLIC, "__version__"}
    assert len(rlpol.__all__) == len(set(rlpol.__all__))
    for name in rlpol.__all__:
        assert getattr(rlpol, name) is not None
    assert set(rlpol.__all__) <= set(dir(rlpol))


@pytest.mark.parametrize("name", sorted(rlpol._PUBLIC))
def test_rlpol_names_are_the_defining_modules_objects(name):
    module = sys.modules[rlpol._PUBLIC[name]]
    assert getattr(rlpol, name) is getattr(module, name)


FORWARDED = [
    (rlpol.runtime, name)
    for name in ["CheckReport", "FieldParity", "ParityReport", "check_artifact",
                 "compare_rollouts", "seeded_rollout"]
] + [(rlpol.export, name) for name in ["QuickCheck", "compare_on_inputs", "quick_check"]]


@pytest.mark.parametrize(
    ("package", "name"), FORWARDED, ids=[f"{p.__name__}.{n}" for p, n in FORWARDED]
)
def test_verification_names_are_forwarded_from_their_old_packages(package, name):
    assert getattr(package, name) is getattr(rlpol.verify, name)
    assert name in package.__all__ and name in dir(package)


@pytest.mark.parametrize("package", [rlpol, rlpol.runtime, rlpol.export])
def test_an_unknown_name_is_an_attribute_error(package):
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_rlpol_verify_imports_no_exporter(bundles):
    _, path = bundles.get(ROOT / "models" / "pendulum_normal.py", "deterministic")
    code, modules = imported_by(cli("verify", str(path)))
    assert code == 0
    assert "rlpol.export" not in modules and "onnxscript" not in modules, sorted(modules)
