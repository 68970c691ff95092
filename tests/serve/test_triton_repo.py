"""``rlpol triton-repo``: a validated onnxruntime-backend repository, written all or nothing."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from rlpol.artifact import read_metadata
from rlpol.cli import main
from rlpol.errors import ServeError
from rlpol.serve.repository import ModelRepository, resolve_sources
from rlpol.serve.triton_repo import write_triton_repo
from rlpol.testing import POLICY_CASES
from tests.serve.conftest import assert_outputs_close, in_process, torch_noise

pytest.importorskip("grpc")  # tritonclient.grpc raises RuntimeError without grpcio

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

CASES = [case.name for case in POLICY_CASES]
TYPES = {"float32": model_config_pb2.TYPE_FP32, "int64": model_config_pb2.TYPE_INT64,
         "bool": model_config_pb2.TYPE_BOOL}  # fmt: skip


@pytest.fixture(scope="module")
def repo(zoo, tmp_path_factory):
    path = tmp_path_factory.mktemp("triton") / "repo"
    assert write_triton_repo([f"{name}={p}" for name, p in zoo.items()], path, max_batch=32) == list(zoo)
    return path


def _config(repo, name: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _signature(entries) -> list[tuple]:
    return [(e.name, e.data_type, list(e.dims), e.HasField("reshape")) for e in entries]


def _expected(infos) -> list[tuple]:
    return [(i.name, TYPES[i.dtype], list(i.shape) or [1], not i.shape) for i in infos]


@pytest.mark.parametrize("name", [*CASES, "lstm"])
def test_config_has_the_artifact_names_dims_datatypes_and_batcher(repo, zoo, name):
    _, meta = read_metadata(zoo[name])
    config = _config(repo, name)
    assert (config.name, config.platform, config.backend) == (name, "onnxruntime_onnx", "onnxruntime")
    assert config.max_batch_size == 32
    assert (repo / name / "1" / "model.onnx").is_file()
    held = {s.input for s in meta.states} | {s.reset_input for s in meta.states}
    noise = [(n.name, model_config_pb2.TYPE_FP32, list(n.shape) or [1], not n.shape) for n in meta.noise]
    assert _signature(config.input) == _expected([i for i in meta.inputs if i.name not in held]) + noise
    assert not any(entry.optional for entry in config.input)  # the client draws the noise
    state_outputs = {s.output for s in meta.states}
    assert _signature(config.output) == _expected([o for o in meta.outputs if o.name not in state_outputs])
    if not meta.states:
        assert config.HasField("dynamic_batching") and not config.HasField("sequence_batching")
        assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
        return
    assert config.HasField("sequence_batching") and not config.HasField("dynamic_batching")
    sequences = config.sequence_batching
    assert [(s.input_name, s.output_name, list(s.dims)) for s in sequences.state] == [
        (s.input, s.output, list(s.shape)) for s in meta.states]
    assert all(s.initial_state[0].zero_data for s in sequences.state)
    (control,) = sequences.control_input
    assert control.name == "is_init"
    assert control.control[0].kind == model_config_pb2.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
    assert list(control.control[0].bool_false_true) == [False, True]


@pytest.mark.parametrize("name", ["qvalue_categorical_egreedy", "normal"])
def test_the_model_runs_on_what_the_config_feeds(repo, zoo_policies, name):
    """The native backend feeds only the config's inputs: the parameters have defaults."""
    import onnxruntime

    policy = zoo_policies[name]
    rng = np.random.default_rng(0)
    inputs = {i.name: rng.standard_normal((3, *i.shape)).astype(np.float32) for i in policy.metadata.inputs}
    noise = torch_noise(policy.metadata, 3, seed=1)
    session = onnxruntime.InferenceSession(str(repo / name / "1" / "model.onnx"))
    fed = {entry.name for entry in _config(repo, name).input}
    assert {i.name for i in session.get_inputs()} == fed
    names = [o.name for o in session.get_outputs()]
    served = dict(zip(names, session.run(names, {**inputs, **noise})))
    assert_outputs_close(served, in_process(policy, inputs, seed=1))


def test_the_repository_is_still_one_rlpol_serve_takes(repo, zoo, zoo_policies):
    """Its model.onnx files stay rlpol artifacts: the parameters' values are the graph's."""
    repository = ModelRepository(resolve_sources([str(repo)]))
    assert sorted(repository.models) == sorted(zoo)
    model = repository.get("qvalue_categorical_egreedy")
    assert model.metadata.parameters == ()
    policy = zoo_policies["qvalue_categorical_egreedy"]
    inputs = {"observation": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)}
    noise = torch_noise(policy.metadata, 3, seed=2)
    (outputs,) = model.run([{**inputs, **noise}])
    served = {slot.name: array for slot, array in zip(model.outputs, outputs)}
    assert_outputs_close(served, in_process(policy, inputs, seed=2))


def test_a_non_zero_initial_state_is_written_as_its_data_file(zoo, tmp_path):
    """Exports write initial 0; the metadata format allows any value, and Triton reads it raw."""
    import dataclasses

    import onnx

    proto = onnx.load(str(zoo["lstm"]))
    _, meta = read_metadata(zoo["lstm"])
    first = dataclasses.replace(meta.states[0], initial=0.5)
    (entry,) = (p for p in proto.metadata_props if p.key == "rlpol")
    entry.value = dataclasses.replace(meta, states=(first, *meta.states[1:])).to_json()
    onnx.save(proto, str(tmp_path / "warm.onnx"))
    write_triton_repo([str(tmp_path / "warm.onnx")], tmp_path / "repo")
    h, c = _config(tmp_path / "repo", "warm").sequence_batching.state
    assert h.initial_state[0].data_file == "recurrent_state_h.bin" and c.initial_state[0].zero_data
    data = (tmp_path / "repo" / "warm" / "initial_state" / "recurrent_state_h.bin").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(data, np.float32), np.full(8, 0.5, np.float32))


def test_torchscript_is_refused_and_an_existing_repo_is_left_as_it_was(artifacts, zoo, tmp_path):
    _, _, script = artifacts.get("actor", ".pt", "deterministic")
    out = tmp_path / "repo"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ServeError, match=r"is a torchscript artifact; .* runs ONNX only: export it"):
        write_triton_repo([str(zoo["actor"]), f"scripted={script}"], out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temp directory left
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_output_that_is_a_file_is_refused_untouched(zoo, tmp_path):
    out = tmp_path / "repo"
    out.write_text("a file")
    with pytest.raises(ServeError, match="cannot write the Triton repository"):
        write_triton_repo([str(zoo["actor"])], out, force=True)
    assert out.read_text() == "a file" and [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_cli_exit_codes(zoo, tmp_path):
    runner = CliRunner()
    out = tmp_path / "repo"
    result = runner.invoke(main, ["triton-repo", str(zoo["actor"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "actor-deterministic/config.pbtxt, actor-deterministic/1/model.onnx" in result.output
    again = runner.invoke(main, ["triton-repo", str(zoo["actor"]), "-o", str(out)])
    assert again.exit_code == 1 and "is not empty; pass --force" in again.output
    forced = runner.invoke(main, ["triton-repo", f"pi={zoo['actor']}", "-o", str(out), "--force"])
    assert forced.exit_code == 0 and [p.name for p in out.iterdir()] == ["pi"]
    assert runner.invoke(main, ["triton-repo", str(zoo["actor"])]).exit_code == 2  # no -o
