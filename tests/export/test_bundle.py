"""``rlpol bundle``: every shipped model x exploration type bundles, and plain runtimes reproduce it.

The replay tests use onnxruntime and ``torch.jit.load`` directly, not rlpol's runtime, so a
bug shared by rlpol's writer and its verifier cannot hide.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

from rlpol.artifact.constants import EXPLORATION_TYPES
from rlpol.cli import main
from rlpol.export.bundle import write_bundle
from rlpol.export.vectors import BATCH, EXTREME_ROWS, SEQUENCE_BATCH, SEQUENCE_STEPS
from rlpol.toolkit.modules import ExplorationType, set_exploration_type

MODELS = sorted((Path(__file__).parents[2] / "models").glob("[!_]*.py"))
CASES = [(model, exploration) for model in MODELS for exploration in EXPLORATION_TYPES]
IDS = [f"{model.stem}-{exploration}" for model, exploration in CASES]
PENDULUM = next(model for model in MODELS if model.stem == "pendulum_normal")


def data_sets(bundle: Path) -> list[tuple[list[onnx.TensorProto], list[onnx.TensorProto]]]:
    """Each ``test_data_set_<N>`` as (input protos, output protos), read with plain onnx."""
    found = []
    for index in range(len(list(bundle.glob("test_data_set_*")))):
        directory = bundle / f"test_data_set_{index}"
        found.append(tuple(
            [onnx.load_tensor(str(directory / f"{role}_{i}.pb"))
             for i in range(len(list(directory.glob(f"{role}_*.pb"))))]
            for role in ("input", "output")
        ))  # fmt: skip
    return found


def assert_reproduces(actual: np.ndarray, expected: onnx.TensorProto) -> None:
    expected = numpy_helper.to_array(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-5)
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(("model", "exploration"), CASES, ids=IDS)
def test_bundle_layout_holds_graph_ordered_named_vectors(bundles, model, exploration):
    _, bundle = bundles.get(model, exploration)
    metadata = onnx.load(str(bundle / "model.onnx"))
    graph_inputs = [value.name for value in metadata.graph.input]
    graph_outputs = [value.name for value in metadata.graph.output]
    assert {path.name for path in bundle.iterdir() if path.is_file()} == {
        "model.onnx", "model.pt", "rlpol.json"
    }
    sets = data_sets(bundle)
    stateful = bool(json.loads((bundle / "rlpol.json").read_text())["states"])
    assert len(sets) == 2 + (SEQUENCE_STEPS if stateful else 0)
    for inputs, outputs in sets:
        assert [proto.name for proto in inputs] == graph_inputs
        assert [proto.name for proto in outputs] == graph_outputs
    batches = [numpy_helper.to_array(inputs[0]).shape[0] for inputs, _ in sets]
    assert batches == [1, BATCH] + [SEQUENCE_BATCH] * (len(sets) - 2)


@pytest.mark.parametrize(("model", "exploration"), CASES, ids=IDS)
def test_plain_onnxruntime_reproduces_every_vector(bundles, model, exploration):
    _, bundle = bundles.get(model, exploration)
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    for inputs, outputs in data_sets(bundle):
        feed = {proto.name: numpy_helper.to_array(proto) for proto in inputs}
        for actual, expected in zip(session.run(None, feed), outputs):
            assert_reproduces(actual, expected)


@pytest.mark.parametrize(("model", "exploration"), CASES, ids=IDS)
def test_torch_jit_load_reproduces_every_vector(bundles, model, exploration):
    _, bundle = bundles.get(model, exploration)
    module = torch.jit.load(str(bundle / "model.pt"))
    for inputs, outputs in data_sets(bundle):
        args = [torch.from_numpy(numpy_helper.to_array(proto).copy()) for proto in inputs]
        with torch.no_grad():
            results = module(*args)
        for actual, expected in zip(results, outputs):
            assert_reproduces(actual.numpy(), expected)


def test_outputs_are_the_eager_policys_and_extreme_rows_reach_the_bounds(bundles):
    loaded, bundle = bundles.get(PENDULUM, "deterministic")
    (inputs, outputs) = data_sets(bundle)[1]
    observation = numpy_helper.to_array(inputs[0])
    low = loaded.env.observation_spec["observation"].space.low.numpy()
    high = loaded.env.observation_spec["observation"].space.high.numpy()
    np.testing.assert_array_equal(observation[-EXTREME_ROWS], low)
    np.testing.assert_array_equal(observation[-EXTREME_ROWS + 1], high)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        td = loaded.policy(loaded.env.observation_spec.zero((BATCH,)).update(
            {"observation": torch.from_numpy(observation.copy())}
        ))  # fmt: skip
    names = [proto.name for proto in outputs]
    np.testing.assert_array_equal(
        td["action"].numpy(), numpy_helper.to_array(outputs[names.index("action")])
    )
    # saturated: 2 * tanh(loc) within float32 rounding of the bound
    assert np.abs(numpy_helper.to_array(outputs[names.index("action")])).max() > 1.9999


@pytest.mark.parametrize("model", [m for m in MODELS if m.stem in ("cartpole_masked_lstm", "pong_dqn")],
                         ids=lambda path: path.stem)
def test_stateful_sequence_threads_each_state_and_resets(bundles, model):
    _, bundle = bundles.get(model, "deterministic")
    sets = data_sets(bundle)[2:]
    names = [proto.name for proto in sets[0][0]]
    outputs = [proto.name for proto in sets[0][1]]
    states = [name for name in names if f"next.{name}" in outputs]
    assert states
    for (_, before_out), (after_in, _) in itertools.pairwise(sets):
        for state in states:
            np.testing.assert_array_equal(
                numpy_helper.to_array(after_in[names.index(state)]),
                numpy_helper.to_array(before_out[outputs.index(f"next.{state}")]),
            )
    is_init = [numpy_helper.to_array(inputs[names.index("is_init")]).ravel() for inputs, _ in sets]
    assert is_init[0].all() and not is_init[1].any() and is_init[3].tolist() == [1, 0, 1, 0]


def test_a_failed_check_leaves_the_previous_bundle_and_no_staging(bundles, tmp_path):
    loaded, _ = bundles.get(PENDULUM, "deterministic")
    target = tmp_path / "bundle"
    write_bundle(loaded.policy, target, env=loaded.env)
    before = {path.name: path.stat().st_mtime_ns for path in target.rglob("*")}

    def refuse(staging: Path) -> None:
        assert (staging / "model.onnx").is_file()
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        write_bundle(loaded.policy, target, env=loaded.env, check=refuse)
    assert {path.name: path.stat().st_mtime_ns for path in target.rglob("*")} == before
    assert [path.name for path in tmp_path.iterdir()] == ["bundle"]


def test_a_new_bundle_replaces_an_earlier_one(bundles, tmp_path):
    loaded, _ = bundles.get(PENDULUM, "deterministic")
    target = tmp_path / "bundle"
    write_bundle(loaded.policy, target, env=loaded.env, seed=1)
    first = (target / "test_data_set_1" / "input_0.pb").read_bytes()
    write_bundle(loaded.policy, target, env=loaded.env, seed=2)
    assert (target / "test_data_set_1" / "input_0.pb").read_bytes() != first
    assert [path.name for path in tmp_path.iterdir()] == ["bundle"]


@pytest.mark.parametrize(
    ("make_target", "match"),
    [
        (lambda d: d.write_text("x"), "is a file"),
        (lambda d: (d.mkdir(), (d / "notes.txt").write_text("x")), "not a bundle"),
    ],
    ids=["file", "foreign-directory"],
)
def test_bundle_refuses_a_target_it_would_clobber(bundles, tmp_path, make_target, match):
    loaded, _ = bundles.get(PENDULUM, "deterministic")
    target = tmp_path / "bundle"
    make_target(target)
    with pytest.raises(Exception, match=match):
        write_bundle(loaded.policy, target, env=loaded.env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py"], "does not exist"),
        (["{tmp}/bad.py"], "syntax error"),
    ],
    ids=["missing", "syntax-error"],
)
def test_cli_bundle_errors_are_one_sentence_and_write_nothing(tmp_path, args, message):
    (tmp_path / "bad.py").write_text("def make_env(:\n")
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, ["bundle", args[0], str(tmp_path / "out"), *args[1:]])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.py"]


def test_cli_bundle_writes_and_verifies(tmp_path):
    result = CliRunner().invoke(
        main, ["bundle", str(PENDULUM), str(tmp_path / "out"), "--exploration", "random"]
    )
    assert result.exit_code == 0, result.output
    assert "model.onnx, model.pt, rlpol.json and 2 test data sets" in result.output
    assert result.output.count("| ok ") == 8  # 4 outputs x 2 models, replayed before writing
