"""Hostile artifact files: refused with one sentence by ``load_policy`` and the CLI, none harmed.

Every case is a file an ``rlpol`` user might be handed: random bytes, a truncated export, a
foreign ONNX model, a real export whose metadata was tampered with, a pickle in disguise, a
directory, a missing or unreadable path. Each must give an :class:`ArtifactError` naming the
problem and the fix (``rlpol inspect``/``run``/``check``: ``Error: <sentence>``, exit 1, no
traceback), must not change any file, and must run no code from the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from rlpol import export_policy
from rlpol.artifact.constants import FORMAT_VERSION, MAX_METADATA_BYTES, METADATA_KEY
from rlpol.cli import main
from rlpol.errors import ArtifactError, InputMismatchError
from rlpol.runtime import load_policy, read_metadata
from rlpol.testing import policy_case

CASE = "qvalue_onehot"  # CartPole, deterministic: a one-hot int64 action and two float outputs
POLICY_FILE = f"""
from rlpol.testing import policy_case

CASE = policy_case({CASE!r})


def make_env():
    return CASE.make_env()


def make_policy(env):
    return CASE.make_policy(env)
"""
FIX = re.escape("export the policy with `rlpol export`")
RE_EXPORT = re.escape("re-export the policy with `rlpol export`")


@dataclass(frozen=True)
class Exported:
    """A real export, in both formats, and the policy file it came from."""

    onnx: Path
    torchscript: Path
    policy_file: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exported:
    directory = tmp_path_factory.mktemp("hostile-sources")
    case = policy_case(CASE)
    env = case.make_env()
    policy = case.make_policy(env)
    policy_file = directory / "policy.py"
    policy_file.write_text(POLICY_FILE)
    return Exported(
        onnx=export_policy(policy, directory / "good.onnx", env=env),
        torchscript=export_policy(policy, directory / "good.pt", env=env),
        policy_file=policy_file,
    )


# --- how each hostile file is made -----------------------------------------------------------

Make = Callable[[Path, Exported], Path]


def write(name: str, data: Callable[[Exported], bytes]) -> Make:
    def make(directory: Path, source: Exported) -> Path:
        path = directory / name
        path.write_bytes(data(source))
        return path

    return make


def truncated(attribute: str, name: str) -> Make:
    def data(source: Exported) -> bytes:
        content = getattr(source, attribute).read_bytes()
        return content[: len(content) // 2]

    return write(name, data)


def foreign_onnx(directory: Path, source: Exported) -> Path:
    """A valid ONNX model made with onnx.helper: no rlpol metadata."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["observation"], ["action"])],
        "not-rlpol",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 4])],
    )
    path = directory / "foreign.onnx"
    onnx.save(helper.make_model(graph, producer_name="someone-else"), str(path))
    return path


def tampered(name: str, edit: Callable[[str], str]) -> Make:
    """The real ONNX export with its rlpol metadata text passed through ``edit``."""

    def make(directory: Path, source: Exported) -> Path:
        model = onnx.load(str(source.onnx))
        (entry,) = [prop for prop in model.metadata_props if prop.key == METADATA_KEY]
        entry.value = edit(entry.value)
        path = directory / name
        onnx.save(model, str(path))
        return path

    return make


def edit_json(change: Callable[[dict], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        document = json.loads(text)
        change(document)
        return json.dumps(document)

    return edit


def _set(path: tuple, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value

    return change


class _WritesMarker:
    """Unpickling this would create the marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def marker_of(directory: Path) -> Path:
    return directory.parent / f"{directory.name}-CODE-RAN"


def torch_save_pickle(directory: Path, source: Exported) -> Path:
    path = directory / "checkpoint.pt"
    torch.save({"weights": torch.zeros(2), "hook": _WritesMarker(marker_of(directory))}, path)
    return path


def raw_pickle(directory: Path, source: Exported) -> Path:
    path = directory / "pickle.pt"
    path.write_bytes(pickle.dumps(_WritesMarker(marker_of(directory))))
    return path


def fifo(directory: Path, source: Exported) -> Path:
    """A named pipe: opening it to read would block forever, so it must not be opened."""
    path = directory / "pipe.onnx"
    os.mkfifo(path)
    return path


def unreadable(directory: Path, source: Exported) -> Path:
    path = directory / "secret.onnx"
    shutil.copyfile(source.onnx, path)
    path.chmod(0)
    if os.access(path, os.R_OK):
        path.chmod(0o644)
        pytest.skip("running as a user (root) that reads files without permission")
    return path


# --- the table --------------------------------------------------------------------------------

HOSTILE: list[tuple[str, Make, str]] = [
    (
        "random-bytes",
        write("random.onnx", lambda _: random.Random(0).randbytes(4096)),
        rf"it is neither an ONNX model nor a TorchScript/\.pt2 archive, or it is truncated or "
        rf"corrupt \(.*\); expected an rlpol artifact, {FIX}",
    ),
    ("empty", write("empty.onnx", lambda _: b""), rf"the file is empty \(0 bytes\).*{FIX}"),
    (
        "truncated-onnx",
        truncated("onnx", "truncated.onnx"),
        rf"(truncated or corrupt|not an rlpol artifact: it has no 'rlpol' metadata entry).*"
        rf"{re.escape('`rlpol export`')}",
    ),
    (
        "truncated-torchscript",
        truncated("torchscript", "truncated.pt"),
        r"it is a truncated or corrupt zip archive \(.*\); expected a complete TorchScript or "
        r"\.pt2 archive, re-export or re-copy it",
    ),
    (
        "foreign-onnx",
        foreign_onnx,
        r"not an rlpol artifact: it has no 'rlpol' metadata entry; export it with "
        r"`rlpol export`",
    ),
    (
        "metadata-invalid-json",
        tampered("bad-json.onnx", lambda text: text[:-7]),
        rf"invalid rlpol metadata: it is not valid JSON \(.*\); expected a JSON object "
        rf"\(the artifact is corrupt or was edited; {RE_EXPORT}\)",
    ),
    (
        "metadata-names-not-in-graph",
        tampered("renamed.onnx", edit_json(_set(("inputs", 0, "name"), "obs"))),
        rf"its metadata describes graph inputs \['obs'\] but the graph has \['observation'\]; "
        rf"the metadata was edited or belongs to another graph, {RE_EXPORT}",
    ),
    (
        "metadata-shape-not-in-graph",
        tampered("reshaped.onnx", edit_json(_set(("inputs", 0, "shape"), [7]))),
        r"its metadata describes graph tensor 'observation' as float32 \[batch, 7\] but the "
        rf"graph has float32 \[batch, 4\]; the metadata was edited .*{RE_EXPORT}",
    ),
    (
        "metadata-dtype-not-in-graph",
        tampered("retyped.onnx", edit_json(_set(("outputs", 0, "dtype"), "float64"))),
        r"its metadata describes graph tensor 'action' as float64 \[batch, 2\] but the graph "
        r"has int64 \[batch, 2\]",
    ),
    (
        "metadata-newer-version",
        tampered("future.onnx", edit_json(_set(("format_version",), 99))),
        r"this artifact uses rlpol metadata format version 99, but this rlpol reads versions "
        rf"up to {FORMAT_VERSION}; upgrade rlpol \(pip install -U rlpol\) to load it",
    ),
    (
        "metadata-wrong-version",
        tampered("version-string.onnx", edit_json(_set(("format_version",), "1"))),
        r"invalid rlpol metadata: field 'format_version' is '1'; expected a positive integer",
    ),
    (
        "metadata-not-rlpol",
        tampered("other-format.onnx", edit_json(_set(("format",), "their-format"))),
        r"not an rlpol artifact: metadata field 'format' is 'their-format'; expected "
        r"'rlpol-artifact'",
    ),
    (
        "metadata-over-size-bound",
        tampered("huge.onnx", edit_json(_set(("env_kwargs",), {"pad": "x" * MAX_METADATA_BYTES}))),
        rf"invalid rlpol metadata: it is \d+ bytes; expected at most {MAX_METADATA_BYTES}",
    ),
    (
        "torch-save-pickle-renamed-pt",
        torch_save_pickle,
        r"it is a torch\.save checkpoint \(a pickle\), not an artifact; rlpol never unpickles "
        rf"files, {FIX}",
    ),
    ("raw-pickle-renamed-pt", raw_pickle, r"it is neither an ONNX model nor a TorchScript"),
    (
        "directory",
        lambda directory, _: directory,
        r"it is a directory; expected an artifact file \(\.onnx, \.pt, \.pt2\)",
    ),
    (
        "fifo",
        fifo,
        r"it is not a regular file \(a pipe or device\?\); expected an artifact file",
    ),
    (
        "missing",
        lambda directory, _: directory / "missing.onnx",
        r"missing\.onnx': no such file; check the path",
    ),
    ("unreadable", unreadable, r"permission denied; make the file readable \(chmod \+r\)"),
]
IDS = [case[0] for case in HOSTILE]
COMMANDS = ["inspect", "run", "check"]


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (and its sibling marker) by name, with its sha256."""
    files = {}
    for path in [*sorted(directory.rglob("*")), marker_of(directory)]:
        if path.is_file() and os.access(path, os.R_OK):
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.exists():
            files[str(path)] = "unreadable"
    return files


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "artifacts"
    directory.mkdir()
    return directory


@pytest.mark.parametrize(("name", "make", "message"), HOSTILE, ids=IDS)
def test_load_policy_refuses(hostile_dir, exported, name, make, message):
    path = make(hostile_dir, exported)
    before = snapshot(hostile_dir)
    with pytest.raises(ArtifactError, match=rf"^cannot load artifact '{re.escape(str(path))}': "):
        load_policy(path, trust_code=True)
    with pytest.raises(ArtifactError, match=message):
        load_policy(path, trust_code=True)
    assert snapshot(hostile_dir) == before
    assert not marker_of(hostile_dir).exists(), "loading ran code from the file"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("name", "make", "message"), HOSTILE, ids=IDS)
def test_cli_refuses(hostile_dir, exported, command, name, make, message):
    path = make(hostile_dir, exported)
    before = snapshot(hostile_dir)
    args = {
        "inspect": ["inspect", str(path)],
        "run": ["run", str(path), "--episodes", "1"],
        "check": ["check", str(exported.policy_file), str(path), "--steps", "5"],
    }[command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), "the CLI raised instead of printing"
    assert result.output.startswith(f"Error: cannot load artifact '{path}': "), result.output
    assert result.output.count("\n") == 1, "one sentence on one line"
    assert "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert snapshot(hostile_dir) == before
    assert not marker_of(hostile_dir).exists(), "loading ran code from the file"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), attribute=st.sampled_from(["onnx", "torchscript"]))
def test_damaged_real_artifacts_only_raise_artifact_error(
    exported, tmp_path_factory, data, attribute
):
    """Flipped bytes or a cut anywhere in a real export: read_metadata raises ArtifactError or,
    where the damage missed what it reads, returns valid metadata (only protobuf/zip/json run)."""
    content = bytearray(getattr(exported, attribute).read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        content = content[: data.draw(st.integers(0, len(content) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            position = data.draw(st.integers(0, len(content) - 1), label="position")
            content[position] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path_factory.mktemp("damaged") / "damaged.bin"
    path.write_bytes(bytes(content))
    try:
        artifact_format, metadata = read_metadata(path)
    except ArtifactError as error:
        assert str(error).startswith(f"cannot load artifact '{path}': ")
    else:
        assert metadata.artifact_format == artifact_format


# --- content, not suffix ----------------------------------------------------------------------


def test_torchscript_renamed_onnx_loads_by_content(hostile_dir, exported):
    path = hostile_dir / "really-torchscript.onnx"
    shutil.copyfile(exported.torchscript, path)
    renamed, original = load_policy(path, trust_code=True), load_policy(exported.torchscript, trust_code=True)
    assert renamed.metadata.artifact_format == "torchscript"
    inputs = original.sample_inputs(5)
    expected = original(inputs.clone())
    got = renamed(inputs.clone())
    for key in original.out_keys:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)

    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert f"artifact     {path} (torchscript, format v{FORMAT_VERSION})" in result.output
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1"])
    assert result.exit_code == 1 and "--trust-code" in result.output  # TorchScript runs code
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1", "--trust-code"])
    assert result.exit_code == 0, result.output
    assert "mean return" in result.output


def test_renamed_key_is_the_metadatas_call_and_fails_on_first_use(hostile_dir, exported):
    """The metadata is the authority on keys: a renamed key loads, then names what is missing."""
    edit = edit_json(_set(("inputs", 0, "key"), ["pixels"]))
    path = tampered("rekeyed.onnx", edit)(hostile_dir, exported)
    policy = load_policy(path, trust_code=True)
    assert policy.in_keys == ["pixels"]
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert re.search(
        r"^Error: the policy reads 'pixels' \(float32 of shape \[\*B, 4\]\) but the tensordict "
        r"has no such entry; it holds \[.*'observation'.*\]$",
        result.output,
        re.MULTILINE,
    ), result.output
    with pytest.raises(InputMismatchError, match="'pixels'"):
        policy(policy.sample_inputs(2).rename_key_("pixels", "observation"))


def transplanted(directory: Path, source: Exported) -> Path:
    """rlpol's metadata on a foreign graph that declares the right outputs but computes others.

    Declared (and checked at load): ``action`` int64 [batch, 2]; computed: int64 [batch, 3].
    """
    model = onnx.load(str(source.onnx))
    (entry,) = [prop for prop in model.metadata_props if prop.key == METADATA_KEY]
    ints = {name: helper.make_tensor(name, TensorProto.INT64, [1], [value])
            for name, value in (("zero", 0), ("one", 1), ("two", 2), ("three", 3))}  # fmt: skip

    def first(n: str, out: str):
        return helper.make_node("Slice", ["observation", "zero", n, "one"], [out])

    nodes = [
        first("three", "three_columns"),
        helper.make_node("Cast", ["three_columns"], ["action"], to=TensorProto.INT64),
        first("two", "action_value"),
        first("one", "chosen_action_value"),
    ]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("action", TensorProto.INT64, ["batch", 2]),
         helper.make_tensor_value_info("action_value", TensorProto.FLOAT, ["batch", 2]),
         helper.make_tensor_value_info("chosen_action_value", TensorProto.FLOAT, ["batch", 1])],
        initializer=list(ints.values()),
    )  # fmt: skip
    foreign = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(foreign, {METADATA_KEY: entry.value})
    path = directory / "transplanted.onnx"
    onnx.save(foreign, str(path))
    return path


def test_a_graph_computing_other_shapes_than_declared_is_named(hostile_dir, exported):
    path = transplanted(hostile_dir, exported)
    policy = load_policy(path, trust_code=True)  # names, dtypes and declared shapes all match the metadata
    with pytest.raises(ArtifactError, match=r"'action'.*\[2, 3\].*re-export"):
        policy(policy.sample_inputs(2))
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output


# --- loading runs no code from the artifact ---------------------------------------------------

RLPOL = Path(__file__).resolve().parents[2] / "rlpol"
# the packages that read and load artifacts
LOADING_MODULES = sorted([*(RLPOL / "artifact").glob("*.py"), *(RLPOL / "runtime").glob("*.py")])
UNSAFE_CALLS = [
    (r"\bpickle\.loads?\(|\bUnpickler\(", "pickle"),
    (r"\bdill\.|\bcloudpickle\.|\bjoblib\.load|\bmarshal\.loads?\(", "another unpickler"),
    (r"torch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"\bnp\.load\([^)]*allow_pickle\s*=\s*True", "numpy pickles"),
]


@pytest.mark.parametrize(
    "module", LOADING_MODULES, ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_runtime_source_never_unpickles_or_evals(module):
    source = module.read_text()
    for pattern, what in UNSAFE_CALLS:
        found = re.search(pattern, source)
        assert found is None, f"{module.name} calls {what}: {found.group(0)!r}"


def _pt2_with_pickled_sample_inputs(directory: Path) -> Path:
    """A real ``.pt2`` export whose sample inputs entry is a pickle that writes the marker."""
    case = policy_case(CASE)
    env = case.make_env()
    source = export_policy(case.make_policy(env), directory / "source.pt2", env=env)
    payload = io.BytesIO()
    torch.save(_WritesMarker(marker_of(directory)), payload)
    path = directory / "hostile.pt2"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("/data/sample_inputs/model.pt"):
                data = payload.getvalue()
            copy.writestr(info, data)
    return path


def test_a_hostile_pt2_runs_no_code(hostile_dir):
    # torch.export.load unpickles and evaluates parts of a .pt2: rlpol refuses the format
    # unless the caller says it trusts the file.
    path = _pt2_with_pickled_sample_inputs(hostile_dir)
    with pytest.raises(ArtifactError, match=r"\.pt2\) archive.*runs code.*trust_code=True"):
        load_policy(path)
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1"])
    assert result.exit_code == 1 and "--trust-code" in result.output
    assert not marker_of(hostile_dir).exists(), "loading the .pt2 ran code from the file"


def test_a_hostile_torchscript_archive_is_refused_before_it_is_loaded(hostile_dir, exported):
    # TorchScript code stored in a .pt runs when the module is called, and can read any file
    # the process can (torch.from_file): rlpol refuses the format unless the caller trusts it.
    secret = hostile_dir / "secret"
    secret.write_bytes(b"\x01\x02\x03")

    class Leaks(torch.nn.Module):
        def __init__(self, secret: str) -> None:
            super().__init__()
            self.secret = secret

        def forward(self, observation: torch.Tensor) -> torch.Tensor:
            leaked = torch.from_file(self.secret, shared=False, size=3, dtype=torch.uint8)
            return observation[..., :1] * 0 + leaked[:1].to(observation.dtype)

    _, metadata = read_metadata(exported.torchscript)
    path = hostile_dir / "leaks.pt"
    torch.jit.save(torch.jit.script(Leaks(str(secret))), str(path),
                   _extra_files={"rlpol.json": metadata.to_json()})  # fmt: skip
    with pytest.raises(ArtifactError, match=r"TorchScript archive.*read any file.*trust_code=True"):
        load_policy(path)
    result = CliRunner().invoke(main, ["run", str(path), "--episodes", "1"])
    assert result.exit_code == 1 and "--trust-code" in result.output
