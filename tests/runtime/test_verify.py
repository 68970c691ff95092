"""``rlpol verify`` / ``verify_bundle``: a good bundle passes, a tampered or broken one does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from rlpol.cli import main
from rlpol.errors import ArtifactError
from rlpol.runtime.bundle import verify_bundle

MODELS = Path(__file__).parents[2] / "models"
PENDULUM = MODELS / "pendulum_normal.py"
LSTM = MODELS / "cartpole_masked_lstm.py"


@pytest.fixture
def bundle(bundles, tmp_path) -> Path:
    """A private copy of the stochastic pendulum bundle (noise inputs), free to tamper with."""
    _, path = bundles.get(PENDULUM, "random")
    return Path(shutil.copytree(path, tmp_path / "bundle"))


def rewrite(path: Path, change) -> None:
    """Rewrite the TensorProto at ``path`` as ``change(array)`` (its name kept)."""
    proto = onnx.load_tensor(str(path))
    onnx.save_tensor(numpy_helper.from_array(change(numpy_helper.to_array(proto).copy()),
                                             proto.name), str(path))


def bump(array: np.ndarray) -> np.ndarray:
    array.flat[0] += 1
    return array


def verify(path: Path, *args: str):
    """``rlpol verify PATH --trust-code ARGS``: these bundles are the suite's own files."""
    return CliRunner().invoke(main, ["verify", str(path), "--trust-code", *args])


def test_verify_passes_a_good_bundle_with_every_model_and_output(bundles):
    _, path = bundles.get(LSTM, "deterministic")
    result = verify(path)
    assert result.exit_code == 0, result.output
    report = verify_bundle(path, trust_code=True)
    assert report.ok and report.data_sets == 8
    assert {(c.model, c.backend) for c in report.checks} == {
        ("model.onnx", "onnxruntime"), ("model.pt", "torchscript")
    }
    assert len(report.checks) == 2 * 6  # every output of both models
    assert "bundle ok: 12 outputs of 2 models over 8 data sets" in result.output


def test_verify_runs_only_the_onnx_model_without_trust_code(bundles):
    _, path = bundles.get(LSTM, "deterministic")
    report = verify_bundle(path)
    assert report.ok
    assert {c.model for c in report.checks} == {"model.onnx"}
    assert [name for name, _ in report.skipped] == ["model.pt"]
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "--trust-code" in result.output


@pytest.mark.parametrize(
    ("data_set", "output", "change", "max_diff"),
    [
        ("test_data_set_1", 0, bump, "1"),  # loc, float
        ("test_data_set_0", 2, lambda a: a + 2e-4, None),  # action: just past atol
        ("test_data_set_0", 3, lambda a: a.astype(np.float64), "inf"),  # dtype
        ("test_data_set_1", 1, lambda a: a[:1], "inf"),  # shape
    ],
    ids=["value", "past-atol", "dtype", "shape"],
)
def test_verify_exits_1_on_a_tampered_vector(bundle, data_set, output, change, max_diff):
    rewrite(bundle / data_set / f"output_{output}.pb", change)
    result = verify(bundle)
    assert result.exit_code == 1, result.output
    rows = [line for line in result.output.splitlines() if "MISMATCH" in line]
    assert len(rows) == 2  # that output, in both models
    assert all(data_set in row for row in rows), rows
    if max_diff is not None:
        assert all(f"| {max_diff} " in row for row in rows), rows


def test_verify_exits_1_on_a_tampered_noise_input(bundle):
    # the stored draws are inputs: changing one changes what both models compute
    names = [onnx.load_tensor(str(p)).name for p in sorted(bundle.glob("test_data_set_1/input_*"))]
    noise = next(i for i, name in enumerate(names) if name.startswith("noise."))
    rewrite(bundle / "test_data_set_1" / f"input_{noise}.pb", lambda a: a + 1)
    assert verify(bundle).exit_code == 1


def test_verify_exits_1_on_an_integer_output_off_by_one(bundles, tmp_path):
    _, path = bundles.get(LSTM, "deterministic")
    copy = Path(shutil.copytree(path, tmp_path / "lstm"))
    rewrite(copy / "test_data_set_0" / "output_5.pb", bump)  # "action", int64
    report = verify_bundle(copy, trust_code=True)
    bad = [(c.model, c.output, c.max_abs_diff) for c in report.checks if not c.ok]
    assert bad == [("model.onnx", "action", 1.0), ("model.pt", "action", 1.0)]


def test_tolerance_options_are_applied(bundle):
    rewrite(bundle / "test_data_set_0" / "output_2.pb", lambda a: a + 2e-4)
    assert verify(bundle).exit_code == 1
    assert verify(bundle, "--atol", "1e-3").exit_code == 0


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: (b / "rlpol.json").unlink(), "cannot read"),
        (lambda b: (b / "rlpol.json").write_text("{"), "invalid rlpol metadata"),
        (lambda b: (b / "test_data_set_0" / "input_0.pb").write_bytes(b"\xff\xff"),
         "not a serialized onnx.TensorProto"),
        (lambda b: (b / "test_data_set_1" / "output_1.pb").unlink(), "none missing"),
        (lambda b: [shutil.rmtree(p) for p in b.glob("test_data_set_*")], "no test_data_set_"),
        (lambda b: [(b / name).unlink() for name in ("model.onnx", "model.pt")], "holds none of"),
        (lambda b: rewrite_name(b / "test_data_set_0" / "input_0.pb", "obs"), "belong to another"),
    ],
    ids=["no-metadata", "bad-metadata", "bad-proto", "missing-output", "no-data-sets",
         "no-models", "renamed-input"],
)
def test_verify_errors_are_one_sentence(bundle, damage, message):
    damage(bundle)
    result = verify(bundle)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output, result.output
    with pytest.raises(ArtifactError, match=message):
        verify_bundle(bundle)


def rewrite_name(path: Path, name: str) -> None:
    proto = onnx.load_tensor(str(path))
    proto.name = name
    onnx.save_tensor(proto, str(path))
