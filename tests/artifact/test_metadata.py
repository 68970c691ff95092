"""The artifact metadata schema: round trips, validation of untrusted documents, real files."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import zipfile

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rlpol.artifact.constants import (
    EXTRA_FILE_NAME,
    FORMAT,
    FORMAT_VERSION,
    MAX_METADATA_BYTES,
    METADATA_KEY,
)
from rlpol.artifact.metadata import (
    ArtifactMetadata,
    NoiseInfo,
    ParameterInfo,
    StateInfo,
    TensorInfo,
    parse_metadata,
)
from rlpol.artifact.reader import detect_format, read_metadata
from rlpol.errors import ArtifactError


def cartpole_metadata(artifact_format: str = "onnx") -> ArtifactMetadata:
    """A CartPole Q-value policy exported in random mode, every field filled."""
    return ArtifactMetadata(
        format_version=FORMAT_VERSION,
        rlpol_version="0.1.0",
        artifact_format=artifact_format,
        exploration="random",
        inputs=(TensorInfo("observation", "observation", "float32", (4,)),),
        noise=(
            NoiseInfo("noise.1.explore", "1", "explore", "uniform", ()),
            NoiseInfo("noise.1.action", "1", "action", "uniform", ()),
        ),
        parameters=(ParameterInfo("param.1.eps", "1", "eps", 0.1),),
        outputs=(
            TensorInfo("action", "action", "int64", (2,)),
            TensorInfo("action_value", "action_value", "float32", (2,)),
            TensorInfo("chosen_action_value", "chosen_action_value", "float32", (1,)),
            TensorInfo(("agents", "a.b"), "agents.a\\.b", "bool", (0, 3)),
        ),
        observation_spec={"type": "Unbounded", "shape": [4], "dtype": "float32"},
        action_spec={"type": "OneHot", "n": 2, "shape": [2], "dtype": "int64"},
        env_id="CartPole-v1",
        env_kwargs={"max_episode_steps": 500},
        transforms=({"type": "ObservationNorm", "loc": [0.0] * 4, "scale": [1.0] * 4},),
        versions={"torch": "2.13.0", "onnx": "1.23.2", "tensordict": "0.15.3"},
        opset=18 if artifact_format == "onnx" else None,
        policy_file="policy.py",
        policy_sha256="0" * 64,
        policy_class="QValueActor",
        created="2025-01-31T12:00:00+00:00",
    )


VALID = json.loads(cartpole_metadata().to_json())


# --- round trips ------------------------------------------------------------------------------


def test_round_trip_of_a_full_document():
    meta = cartpole_metadata()
    text = meta.to_json()
    assert parse_metadata(text) == meta
    assert parse_metadata(text.encode()) == meta
    assert parse_metadata(text).outputs[3].key == ("agents", "a.b")
    assert json.loads(text)["inputs"][0]["key"] == ["observation"]
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_graph_order_is_inputs_noise_parameters():
    meta = cartpole_metadata()
    assert meta.input_names == ("observation", "noise.1.explore", "noise.1.action", "param.1.eps")
    assert meta.output_names[:3] == ("action", "action_value", "chosen_action_value")


def test_defaults_make_a_minimal_valid_document():
    meta = ArtifactMetadata(
        rlpol_version="0.1.0",
        artifact_format="torchscript",
        exploration="deterministic",
        inputs=(TensorInfo("observation", "observation", "float32", (4,)),),
        outputs=(TensorInfo("action", "action", "int64", ()),),
    )
    assert parse_metadata(meta.to_json()) == meta
    assert meta.format_version == FORMAT_VERSION


def test_to_json_refuses_what_would_not_parse_back():
    meta = cartpole_metadata()
    with pytest.raises(ArtifactError, match="cannot write rlpol metadata"):
        dataclasses.replace(
            meta, parameters=(ParameterInfo("p", "1", "eps", float("nan")),)
        ).to_json()
    with pytest.raises(ArtifactError, match=r"inputs\[0\]\.dtype"):
        dataclasses.replace(meta, inputs=(TensorInfo("o", "o", "float33", (4,)),)).to_json()


# --- a table of malformed documents --------------------------------------------------------------


def edited(edit):
    """The valid document, as JSON text, after ``edit(doc)``."""
    doc = copy.deepcopy(VALID)
    edit(doc)
    return json.dumps(doc)


def setter(*path_and_value):
    *path, value = path_and_value

    def edit(doc):
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit


def deleter(*path):
    def edit(doc):
        target = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return edit


MALFORMED = [
    ("{", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[]", "not an rlpol artifact: its metadata is a list of 0 items"),
    ('"rlpol"', "not an rlpol artifact"),
    (edited(deleter("format")), "'format' is missing; expected 'rlpol-artifact'"),
    (edited(setter("format", "onnx")), "'format' is 'onnx'; expected 'rlpol-artifact'"),
    (edited(setter("format_version", FORMAT_VERSION + 1)), f"version {FORMAT_VERSION + 1}.*upgrade rlpol"),
    (edited(setter("format_version", "1")), "'format_version' is '1'; expected a positive integer"),
    (edited(setter("format_version", True)), "'format_version' is true"),
    (edited(setter("format_version", 0)), "'format_version' is 0"),
    (edited(deleter("inputs")), "field 'inputs' is missing"),
    (edited(setter("extra", 1)), "unknown field 'extra'"),
    (edited(setter("rlpol_version", 1)), "'rlpol_version' is 1; expected a non-empty string"),
    (edited(setter("artifact_format", "tflite")), "'artifact_format' is 'tflite'; expected one"),
    (edited(setter("exploration", "explore")), "'exploration' is 'explore'"),
    (edited(setter("inputs", {})), "'inputs' is an object with 0 fields; expected a list"),
    (edited(setter("inputs", 0, "x")), r"'inputs\[0\]' is 'x'; expected an object"),
    (edited(deleter("inputs", 0, "dtype")), r"'inputs\[0\].dtype' is missing"),
    (edited(setter("inputs", 0, "extra", 1)), r"inputs\[0\] has the unknown field 'extra'"),
    (edited(setter("inputs", 0, "dtype", "float33")), r"'inputs\[0\].dtype' is 'float33'"),
    (edited(setter("inputs", 0, "shape", [-1])), r"'inputs\[0\].shape\[0\]' is -1"),
    (edited(setter("inputs", 0, "shape", [1.5])), r"'inputs\[0\].shape\[0\]' is 1.5"),
    (edited(setter("inputs", 0, "shape", [True])), r"'inputs\[0\].shape\[0\]' is true"),
    (edited(setter("inputs", 0, "shape", "4")), r"'inputs\[0\].shape' is '4'; expected a list"),
    (edited(setter("inputs", 0, "shape", [1] * 65)), "at most 64 dimensions"),
    (edited(setter("inputs", 0, "key", [])), r"'inputs\[0\].key' is a list of 0 items"),
    (edited(setter("inputs", 0, "key", "observation")), r"'inputs\[0\].key' is 'observation'"),
    (edited(setter("inputs", 0, "key", ["a", ""])), r"'inputs\[0\].key\[1\]' is ''"),
    (edited(setter("inputs", 0, "name", "")), r"'inputs\[0\].name' is ''"),
    (edited(setter("noise", 0, "distribution", "gaussian")), "'gaussian'; expected one of"),
    (edited(setter("noise", 0, "draw", None)), r"'noise\[0\].draw' is null"),
    (edited(setter("parameters", 0, "value", "0.1")), r"'parameters\[0\].value' is '0.1'"),
    (edited(setter("parameters", 0, "value", False)), r"'parameters\[0\].value' is false"),
    (edited(setter("outputs", 0, "name", "observation")), 'graph name "observation" is used'),
    (edited(setter("noise", 1, "name", "param.1.eps")), 'graph name "param.1.eps" is used'),
    (edited(setter("outputs", 1, "key", ["action"])), r'tensordict key \["action"\] is used'),
    (edited(setter("noise", 1, "draw", "explore")), r"\(module, draw\) pair"),
    (edited(setter("observation_spec", [])), "'observation_spec' is a list of 0 items"),
    (edited(setter("action_spec", "OneHot")), "'action_spec' is 'OneHot'; expected an object"),
    (edited(setter("env_id", 3)), "'env_id' is 3; expected a string"),
    (edited(setter("env_kwargs", None)), "'env_kwargs' is null; expected an object"),
    (edited(setter("transforms", 0, "type", 1)), r"'transforms\[0\].type' is 1"),
    (edited(deleter("transforms", 0, "type")), r"'transforms\[0\].type' is missing"),
    (edited(setter("versions", "torch", 2)), "'versions.torch' is 2; expected a string"),
    (edited(setter("opset", 0)), "'opset' is 0; expected an integer from 1"),
    (edited(setter("policy_sha256", "abc")), "64 lowercase hexadecimal digits"),
    (edited(setter("created", "yesterday")), "'created' is 'yesterday'; expected an ISO 8601"),
    (json.dumps(VALID).replace("0.1", "NaN"), "non-standard JSON number NaN"),
    (json.dumps(VALID).replace("0.1", "1e999"), "non-standard JSON number 1e999"),
    ('{"format": "rlpol-artifact", "format": "rlpol-artifact"}', "field 'format' twice"),
    ("[" * 200_000, "nested too deeply"),
    ("1" * 5000, "not valid JSON"),
    (" " * (MAX_METADATA_BYTES + 1), f"expected at most {MAX_METADATA_BYTES}"),
    (b" " * (MAX_METADATA_BYTES + 1), f"expected at most {MAX_METADATA_BYTES}"),
]


@pytest.mark.parametrize(("text", "match"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_documents_say_what_is_wrong(text, match):
    with pytest.raises(ArtifactError, match=match):
        parse_metadata(text)


def test_wrong_argument_type_is_an_artifact_error():
    with pytest.raises(ArtifactError, match="got a dict; expected JSON as str or bytes"):
        parse_metadata({})  # type: ignore[arg-type]


# --- state pairs (format version 2) -------------------------------------------------------------


def lstm_metadata() -> ArtifactMetadata:
    """A one-layer LSTM policy: two state pairs reset by ``is_init``."""
    state = TensorInfo("recurrent_state_h", "recurrent_state_h", "float32", (1, 8))
    cell = TensorInfo("recurrent_state_c", "recurrent_state_c", "float32", (1, 8))
    return dataclasses.replace(
        cartpole_metadata(),
        inputs=(
            TensorInfo("observation", "observation", "float32", (4,)), state, cell,
            TensorInfo("is_init", "is_init", "bool", (1,)),
        ),
        outputs=(
            TensorInfo("action", "action", "int64", (2,)),
            TensorInfo(("next", "recurrent_state_h"), "next.recurrent_state_h", "float32", (1, 8)),
            TensorInfo(("next", "recurrent_state_c"), "next.recurrent_state_c", "float32", (1, 8)),
        ),
        states=(
            StateInfo("recurrent_state_h", "next.recurrent_state_h", "float32", (1, 8), 0.0,
                      "is_init"),
            StateInfo("recurrent_state_c", "next.recurrent_state_c", "float32", (1, 8), 0.0,
                      "is_init"),
        ),
    )  # fmt: skip


LSTM_VALID = json.loads(lstm_metadata().to_json())


def test_state_pairs_round_trip():
    meta = lstm_metadata()
    assert parse_metadata(meta.to_json()) == meta
    assert json.loads(meta.to_json())["states"][0] == {
        "input": "recurrent_state_h", "output": "next.recurrent_state_h", "dtype": "float32",
        "shape": [1, 8], "initial": 0.0, "reset_input": "is_init",
    }  # fmt: skip


def test_a_version_1_document_loads_as_stateless():
    old = copy.deepcopy(VALID)
    del old["states"], old["env_imports"]
    old["format_version"] = 1
    meta = parse_metadata(json.dumps(old))
    assert meta.format_version == 1 and meta.states == ()
    # written back as version 1, it has no states field, as the old code wrote it
    assert "states" not in json.loads(meta.to_json())
    old["states"] = []
    with pytest.raises(ArtifactError, match="unknown field 'states'"):
        parse_metadata(json.dumps(old))


def test_a_version_2_document_loads_with_no_env_imports():
    old = copy.deepcopy(VALID)
    del old["env_imports"]
    old["format_version"] = 2
    meta = parse_metadata(json.dumps(old))
    assert meta.format_version == 2 and meta.env_imports == ()
    assert "env_imports" not in json.loads(meta.to_json())
    old["env_imports"] = ["ale_py"]
    with pytest.raises(ArtifactError, match="unknown field 'env_imports'"):
        parse_metadata(json.dumps(old))


@pytest.mark.parametrize("name", ["", "ale-py", "os;rm", "a..b", 3])
def test_env_imports_must_be_module_names(name):
    doc = copy.deepcopy(VALID)
    doc["env_imports"] = [name]
    with pytest.raises(ArtifactError, match=r"env_imports\[0\]"):
        parse_metadata(json.dumps(doc))


def test_a_version_3_document_needs_states():
    doc = copy.deepcopy(VALID)
    del doc["states"]
    with pytest.raises(ArtifactError, match="field 'states' is missing"):
        parse_metadata(json.dumps(doc))


def state_edit(*path_and_value):
    doc = copy.deepcopy(LSTM_VALID)
    setter("states", *path_and_value)(doc)
    return json.dumps(doc)


BAD_STATES = [
    (state_edit(0, "input", "memory"), r"'states\[0\]\.input' is 'memory'; expected the name of an 'inputs'"),
    (state_edit(0, "output", "action"), r"'states\[0\]\.output' is 'action'; expected the output of key \['next', 'recurrent_state_h'\]"),
    (state_edit(1, "output", "next.recurrent_state_h"), r"state output .* used by both 'states\[0\]\.output' and 'states\[1\]\.output'"),
    (state_edit(0, "shape", [2, 8]), r"'states\[0\]\.shape' is a list of 2 items; expected float32 \[1, 8\]"),
    (state_edit(0, "dtype", "float64"), r"'states\[0\]\.shape'.*\(dtype 'float64'\)"),
    (state_edit(0, "dtype", "f32"), r"'states\[0\]\.dtype' is 'f32'"),
    (state_edit(0, "initial", "0"), r"'states\[0\]\.initial' is '0'; expected a finite number"),
    (state_edit(0, "reset_input", "observation"), r"'states\[0\]\.reset_input' is 'observation'; expected null or the name of a bool"),
    (state_edit(0, "reset_input", ""), r"'states\[0\]\.reset_input' is ''; expected a non-empty string"),
    (state_edit(0, {"input": "recurrent_state_h"}), r"'states\[0\]\.output' is missing"),
    (state_edit({}), r"field 'states' is an object with 0 fields; expected a list"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "match"), BAD_STATES, ids=range(len(BAD_STATES)))
def test_bad_state_pairs_name_the_field(text, match):
    with pytest.raises(ArtifactError, match=match):
        parse_metadata(text)


# --- property: untrusted input only ever raises ArtifactError ----------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from([FORMAT, "float32", "normal", "onnx", "random", "observation"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*VALID, "x"]) | st.text(max_size=6), children, max_size=5
        )
    ),
    max_leaves=20,
)


def parse_or_artifact_error(text) -> ArtifactMetadata | None:
    try:
        meta = parse_metadata(text)
    except ArtifactError:
        return None
    assert parse_metadata(meta.to_json()) == meta
    return meta


@given(json_values)
def test_arbitrary_json_only_raises_artifact_error(value):
    parse_or_artifact_error(json.dumps(value))


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_arbitrary_text_only_raises_artifact_error(text):
    parse_or_artifact_error(text)


def paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for part, child in items:
        yield from paths(child, (*prefix, part))


ALL_PATHS = list(paths(VALID))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.data())
def test_mutated_documents_only_raise_artifact_error(data):
    doc = copy.deepcopy(VALID)
    path = data.draw(st.sampled_from(ALL_PATHS[1:]))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    operation = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if operation == "replace":
        parent[path[-1]] = data.draw(json_values)
    elif operation == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6))] = data.draw(json_values)
    else:
        parent.insert(path[-1], data.draw(json_values))
    parse_or_artifact_error(json.dumps(doc))


# --- read_metadata on real files ---------------------------------------------------------------


def onnx_model(props: dict[str, str] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["observation"], ["action"])],
        "policy",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph)
    if props:
        helper.set_model_props(model, props)
    return model


ONNX_TYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "bool": TensorProto.BOOL}


def signature_model(meta: ArtifactMetadata) -> onnx.ModelProto:
    """A node-less graph whose inputs and outputs are those ``meta`` describes."""

    def value(name, dtype, shape):
        return helper.make_tensor_value_info(name, ONNX_TYPES[dtype], list(shape))

    inputs = [value(i.name, i.dtype, ("batch", *i.shape)) for i in meta.inputs]
    inputs += [value(n.name, "float32", ("batch", *n.shape)) for n in meta.noise]
    inputs += [value(p.name, "float32", ()) for p in meta.parameters]
    outputs = [value(o.name, o.dtype, ("batch", *o.shape)) for o in meta.outputs]
    model = helper.make_model(helper.make_graph([], "policy", inputs, outputs))
    helper.set_model_props(model, {"author": "me", METADATA_KEY: meta.to_json()})
    return model


def save_torchscript(path, extra_files: dict[str, str] | None = None) -> None:
    traced = torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4))
    torch.jit.save(traced, str(path), _extra_files=extra_files or {})


def test_reads_onnx_metadata(tmp_path):
    meta = cartpole_metadata("onnx")
    path = tmp_path / "policy.onnx"
    onnx.save(signature_model(meta), str(path))
    assert read_metadata(path) == ("onnx", meta)
    assert detect_format(path) == "onnx"


def test_reads_torchscript_metadata_by_content_not_suffix(tmp_path):
    meta = cartpole_metadata("torchscript")
    path = tmp_path / "policy.bin"
    save_torchscript(path, {EXTRA_FILE_NAME: meta.to_json()})
    assert "policy/extra/rlpol.json" in zipfile.ZipFile(path).namelist()
    renamed = path.rename(tmp_path / "renamed.onnx")  # the archive folder stays "policy"
    assert read_metadata(renamed) == ("torchscript", meta)


def test_reads_exported_program_metadata(tmp_path):
    meta = cartpole_metadata("exported_program")
    program = torch.export.export(torch.nn.Linear(4, 2), (torch.zeros(2, 4),))
    path = tmp_path / "policy.pt2"
    torch.export.save(program, str(path), extra_files={EXTRA_FILE_NAME: meta.to_json()})
    assert "policy/extra/rlpol.json" in zipfile.ZipFile(path).namelist()
    assert read_metadata(path) == ("exported_program", meta)


def write_bytes(name, data):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


def onnx_file(props):
    def make(tmp_path):
        path = tmp_path / "model.onnx"
        onnx.save(onnx_model(props), str(path))
        return path

    return make


def truncated(make, fraction=0.5):
    def make_truncated(tmp_path):
        path = make(tmp_path)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
        return path

    return make_truncated


def torchscript_file(extra_files):
    def make(tmp_path):
        path = tmp_path / "model.pt"
        save_torchscript(path, extra_files)
        return path

    return make


def plain_zip(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/extra/rlpol.json", cartpole_metadata("torchscript").to_json())
    return path


def checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    return path


BAD_FILES = [
    (lambda tmp_path: tmp_path / "missing.onnx", "no such file"),
    (lambda tmp_path: tmp_path, "it is a directory"),
    (write_bytes("empty.onnx", b""), "the file is empty"),
    (write_bytes("random.onnx", random.Random(0).randbytes(512)), "cannot load artifact"),
    (write_bytes("text.onnx", b"hello, I am not a model"), "neither an ONNX model"),
    (write_bytes("zip.pt", b"PK\x03\x04garbage"), "truncated or corrupt zip archive"),
    (onnx_file(None), "not an rlpol artifact: it has no 'rlpol' metadata entry"),
    (onnx_file({"other": "x"}), "not an rlpol artifact: it has no 'rlpol' metadata entry"),
    (onnx_file({METADATA_KEY: "{}"}), "model.onnx': not an rlpol artifact: metadata field"),
    (onnx_file({METADATA_KEY: "[1"}), "invalid rlpol metadata: it is not valid JSON"),
    (
        onnx_file({METADATA_KEY: cartpole_metadata("torchscript").to_json()}),
        "is an ONNX model but its metadata says artifact_format 'torchscript'",
    ),
    (truncated(onnx_file({METADATA_KEY: cartpole_metadata().to_json()})), "truncated or corrupt"),
    (truncated(torchscript_file({EXTRA_FILE_NAME: "{}"})), "truncated or corrupt zip archive"),
    (torchscript_file(None), "TorchScript archive without the 'rlpol.json' extra file"),
    (
        torchscript_file({EXTRA_FILE_NAME: " " * (MAX_METADATA_BYTES + 1)}),
        f"expected at most {MAX_METADATA_BYTES}",
    ),
    (plain_zip, "zip archive but not a TorchScript, torch.export .* or AOTInductor"),
    (checkpoint, "torch.save checkpoint"),
]


@pytest.mark.parametrize(("make", "match"), BAD_FILES, ids=range(len(BAD_FILES)))
def test_bad_files_raise_artifact_error(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ArtifactError, match=match):
        read_metadata(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.onnx"
    onnx.save(onnx_model({METADATA_KEY: cartpole_metadata().to_json()}), str(path))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user (root) that reads files without permission")
        with pytest.raises(ArtifactError, match="permission denied"):
            read_metadata(path)
    finally:
        path.chmod(0o600)
