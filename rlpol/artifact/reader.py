"""Read an artifact's format and metadata without running anything from it.

The format is recognised by content, not by file name:

* a zip archive (it starts with ``PK\\x03\\x04``) holding ``<archive>/code/...`` is a
  TorchScript archive (``torch.jit.save``); one holding ``<archive>/archive_format`` is a
  torch.export ``.pt2`` archive (``torch.export.save``). Both store the metadata as the extra
  file ``<archive>/extra/rlpol.json``, where ``<archive>`` is the archive's single top-level
  folder (the saved file's stem, or ``archive`` when saved to a buffer); one holding
  ``<archive>/data/aotinductor/...`` is an AOTInductor package, whose
  ``<archive>/data/aotinductor/model/*_metadata.json`` (a JSON object of strings) holds the
  metadata under ``"rlpol"`` and the compiled code's target under ``"rlpol.target"``;
* anything else is parsed as an ONNX ``ModelProto`` (protobuf only, external data not
  loaded), whose ``metadata_props`` entry ``"rlpol"`` holds the metadata.

For ONNX, the graph's inputs and outputs (names in order, dtypes, batch axis, trailing dims)
are also checked against the metadata, so a tampered or transplanted metadata document is
refused here, before any runtime loads the graph.

Only ``zipfile``, protobuf and ``json`` touch the bytes: no ``torch.load``, no pickle, no
TorchScript or ONNX code is executed. (Loading a ``.pt2`` graph afterwards is another matter:
``torch.export.load`` unpickles and evaluates strings from the archive, see ``docs/errors.md``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from rlpol.artifact.constants import (
    AOTI_TARGET_KEY,
    BATCH_DIM,
    EXTRA_FILE_NAME,
    MAX_METADATA_BYTES,
    METADATA_KEY,
    ZIP_MAGIC,
)
from rlpol.artifact.metadata import ArtifactMetadata, parse_metadata
from rlpol.dtypes import by_onnx
from rlpol.errors import ArtifactError

if TYPE_CHECKING:
    import onnx

__all__ = ["detect_format", "read_aoti_target", "read_metadata"]

_FIX = "export the policy with `rlpol export`"
_FORMAT_NAMES = {
    "onnx": "an ONNX model",
    "torchscript": "a TorchScript archive",
    "exported_program": "a torch.export (.pt2) archive",
    "aot_inductor": "an AOTInductor (.aoti.pt2) package",
}
_AOTI_MODEL = "/data/aotinductor/"
_TARGET_FIELDS = ("platform", "machine", "device", "isa")


def read_metadata(path: str | os.PathLike[str]) -> tuple[str, ArtifactMetadata]:
    """The format and validated metadata of the artifact at ``path``.

    Args:
        path: an ``.onnx``, TorchScript ``.pt`` or torch.export ``.pt2`` file (the suffix is
            not consulted).

    Returns:
        ``(artifact_format, metadata)``, the format being ``"onnx"``, ``"torchscript"`` or
        ``"exported_program"`` or ``"aot_inductor"``, and equal to ``metadata.artifact_format``.

    Raises:
        ArtifactError: if the file is missing, a directory, unreadable, empty, neither ONNX nor
            a torch archive, truncated or corrupt, has no rlpol metadata, or its metadata is
            invalid, names another format or (ONNX) describes other graph inputs/outputs.

    Examples:
        >>> import tempfile, pathlib
        >>> bad = pathlib.Path(tempfile.mkdtemp()) / "policy.onnx"
        >>> _ = bad.write_bytes(b"not a model")
        >>> read_metadata(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rlpol.errors.ArtifactError: cannot load artifact '...policy.onnx': it is neither an ONNX ...
    """
    path = Path(path)
    model = None
    if _is_zip(path):
        artifact_format, text = _read_archive(path)
    else:
        model = _load_onnx(path)
        artifact_format, text = "onnx", _onnx_metadata_text(path, model)
    try:
        metadata = parse_metadata(text)
    except ArtifactError as exc:
        raise _error(path, exc.message) from None
    if metadata.artifact_format != artifact_format:
        raise _error(
            path,
            f"the file is {_FORMAT_NAMES[artifact_format]} but its metadata says "
            f"artifact_format {metadata.artifact_format!r}; the metadata was copied from another "
            f"artifact or edited, re-export the policy with `rlpol export`",
        )
    if model is not None:
        _check_onnx_signature(path, model.graph, metadata)
    return artifact_format, metadata


def detect_format(path: str | os.PathLike[str]) -> str:
    """The artifact format of the file at ``path``, from its content.

    Args:
        path: the file to inspect.

    Returns:
        ``"torchscript"``, ``"exported_program"`` or ``"aot_inductor"`` for the matching torch
        zip archives,
        ``"onnx"`` for anything else (to be confirmed by parsing it).

    Raises:
        ArtifactError: if the file cannot be read, is empty, or is a zip archive that is
            corrupt or not a TorchScript / torch.export archive.
    """
    path = Path(path)
    if not _is_zip(path):
        return "onnx"
    with _zip(path) as archive:
        return _archive_format(path, archive.namelist())


def _error(path: Path, message: str) -> ArtifactError:
    return ArtifactError(f"cannot load artifact '{path}': {message}")


def _open(path: Path) -> BinaryIO:
    """Open ``path`` for reading binary, with a clear error for every way that fails."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise _error(path, "no such file; check the path") from None
    except OSError as exc:
        raise _error(path, f"cannot access it ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise _error(path, "it is a directory; expected an artifact file (.onnx, .pt, .pt2)")
    if not stat.S_ISREG(mode):
        raise _error(
            path, "it is not a regular file (a pipe or device?); expected an artifact file"
        )
    try:
        return path.open("rb")
    except PermissionError:
        raise _error(path, "permission denied; make the file readable (chmod +r)") from None
    except OSError as exc:
        raise _error(path, f"cannot read it ({exc.strerror})") from None


def _load_onnx(path: Path) -> onnx.ModelProto:
    """Parse the file as an ONNX ``ModelProto`` (protobuf only, external data not loaded)."""
    import onnx  # here: reading a torch archive's metadata needs no onnx

    with _open(path) as file:
        data = file.read()
    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf DecodeError, or any failure of the parser
        raise _error(
            path,
            "it is neither an ONNX model nor a TorchScript/.pt2 archive, or it is truncated or "
            f"corrupt ({type(exc).__name__}: {exc}); expected an rlpol artifact, {_FIX}",
        ) from None


def _onnx_metadata_text(path: Path, model: onnx.ModelProto) -> str:
    if not model.HasField("graph"):
        raise _error(
            path,
            "it is neither an ONNX model (no graph) nor a TorchScript/.pt2 archive; "
            f"expected an rlpol artifact, {_FIX}",
        )
    values = [prop.value for prop in model.metadata_props if prop.key == METADATA_KEY]
    if not values:
        raise _error(
            path,
            f"not an rlpol artifact: it has no '{METADATA_KEY}' metadata entry; export it with "
            "`rlpol export`",
        )
    if len(values) > 1:
        raise _error(
            path,
            f"it has {len(values)} '{METADATA_KEY}' metadata entries; expected one (the file was "
            "edited), re-export the policy with `rlpol export`",
        )
    return values[0]


_TAMPERED = (
    "the metadata was edited or belongs to another graph, re-export the policy with `rlpol export`"
)


def _check_onnx_signature(path: Path, graph: onnx.GraphProto, metadata: ArtifactMetadata) -> None:
    """Check the graph's inputs and outputs are the ones the metadata describes.

    Names in order, dtypes, a leading batch axis that is not fixed (for every tensor but the
    0-d exploration parameters) and the trailing dims, read from the protobuf alone.
    """
    initializers = {tensor.name for tensor in graph.initializer}
    graph_inputs = [value for value in graph.input if value.name not in initializers]
    for what, values, expected in (
        ("inputs", graph_inputs, metadata.input_names),
        ("outputs", list(graph.output), metadata.output_names),
    ):
        found = [value.name for value in values]
        if found != list(expected):
            raise _error(
                path,
                f"its metadata describes graph {what} {list(expected)} but the graph has "
                f"{found}; {_TAMPERED}",
            )
    described = [
        *((info.name, info.dtype, (BATCH_DIM, *info.shape)) for info in metadata.inputs),
        *((info.name, "float32", (BATCH_DIM, *info.shape)) for info in metadata.noise),
        *((info.name, "float32", ()) for info in metadata.parameters),
        *((info.name, info.dtype, (BATCH_DIM, *info.shape)) for info in metadata.outputs),
    ]
    for value, (name, dtype, shape) in zip([*graph_inputs, *graph.output], described):
        if not value.type.ByteSize():
            continue  # untyped (allowed by ONNX): onnxruntime checks what flows through it
        found = _onnx_type(value)
        if found is not None and found[0] == dtype and _dims_match(found[1], shape):
            continue
        has = "a value that is not a tensor" if found is None else f"{found[0]} {_dims(found[1])}"
        raise _error(
            path,
            f"its metadata describes graph tensor {name!r} as {dtype} {_dims(shape)} but the "
            f"graph has {has}; {_TAMPERED}",
        )


def _onnx_type(value: onnx.ValueInfoProto) -> tuple[str, tuple[int | str, ...] | None] | None:
    """``(dtype, dims)`` of a graph tensor (dims ``None`` when unknown); None if not a tensor."""
    if not value.type.HasField("tensor_type"):
        return None
    tensor = value.type.tensor_type
    known = by_onnx(tensor.elem_type)
    dtype = known.name if known is not None else f"ONNX type {tensor.elem_type}"
    if not tensor.HasField("shape"):
        return dtype, None
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?")
        for dim in tensor.shape.dim
    )
    return dtype, dims


def _dims_match(found: tuple[int | str, ...] | None, expected: tuple[int | str, ...]) -> bool:
    """Whether the graph's dims fit: same rank, a symbolic batch axis, equal known dims."""
    if found is None:
        return True
    if len(found) != len(expected):
        return False
    for got, want in zip(found, expected):
        if want == BATCH_DIM:
            if isinstance(got, int):
                return False  # a fixed batch size: the artifact would run at one batch only
        elif isinstance(got, int) and got != want:
            return False
    return True


def _dims(dims: tuple[int | str, ...] | None) -> str:
    return "of unknown shape" if dims is None else f"[{', '.join(map(str, dims))}]"


def _is_zip(path: Path) -> bool:
    """Whether the file starts like a zip archive (refusing empty and unreadable files)."""
    with _open(path) as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        raise _error(path, f"the file is empty (0 bytes); expected an rlpol artifact, {_FIX}")
    return head == ZIP_MAGIC


@contextlib.contextmanager
def _zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """The zip archive at ``path``, open for the ``with`` block."""
    with _open(path) as file:
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise _error(
                path,
                f"it is a truncated or corrupt zip archive ({exc}); expected a complete "
                "TorchScript or .pt2 archive, re-export or re-copy it",
            ) from None
        with archive:
            yield archive


def _archive_format(path: Path, names: list[str]) -> str:
    """``"torchscript"`` or ``"exported_program"`` from the archive's entry names."""
    prefixes = {name.split("/", 1)[0] for name in names}
    if len(prefixes) == 1:
        (prefix,) = prefixes
        if any(name.startswith(f"{prefix}{_AOTI_MODEL}") for name in names):
            return "aot_inductor"
        if f"{prefix}/archive_format" in names:
            return "exported_program"
        if any(name.startswith(f"{prefix}/code/") for name in names):
            return "torchscript"
        if f"{prefix}/data.pkl" in names:
            raise _error(
                path,
                "it is a torch.save checkpoint (a pickle), not an artifact; rlpol never "
                f"unpickles files, {_FIX}",
            )
    raise _error(
        path,
        "it is a zip archive but not a TorchScript, torch.export (.pt2) or AOTInductor "
        f"(.aoti.pt2) archive; expected an rlpol artifact, {_FIX}",
    )


def _read_archive(path: Path) -> tuple[str, bytes]:
    """The format of the torch archive at ``path`` and the bytes of its rlpol.json."""
    with _zip(path) as archive:
        names = archive.namelist()
        artifact_format = _archive_format(path, names)
        if artifact_format == "aot_inductor":
            return artifact_format, _package_metadata(path, archive, METADATA_KEY)
        prefix = names[0].split("/", 1)[0]
        entry = f"{prefix}/extra/{EXTRA_FILE_NAME}"
        if entry not in names:
            raise _error(
                path,
                f"not an rlpol artifact: {_FORMAT_NAMES[artifact_format]} without the "
                f"'{EXTRA_FILE_NAME}' extra file; export it with `rlpol export`",
            )
        return artifact_format, _member(path, archive, entry, EXTRA_FILE_NAME)


def _member(path: Path, archive: zipfile.ZipFile, entry: str, what: str) -> bytes:
    """The bytes of the archive's ``entry`` (at most :data:`MAX_METADATA_BYTES`)."""
    info = archive.getinfo(entry)
    if info.file_size > MAX_METADATA_BYTES:
        raise _error(
            path,
            f"its {what} is {info.file_size} bytes; expected at most "
            f"{MAX_METADATA_BYTES}, re-export the policy with `rlpol export`",
        )
    try:
        with archive.open(info) as member:
            return member.read(MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError,
            RuntimeError, ValueError) as exc:  # fmt: skip  (ValueError: bad UTF-8 names)
        raise _error(
            path,
            f"its {what} cannot be read ({exc}); the archive is corrupt, re-export or re-copy it",
        ) from None


def _package_metadata(path: Path, archive: zipfile.ZipFile, key: str) -> str:
    """The string at ``key`` of an AOTInductor package's ``aot_inductor.metadata``."""
    entries = sorted(
        name for name in archive.namelist()
        if _AOTI_MODEL in name and name.endswith("_metadata.json")
    )  # fmt: skip
    what = "AOTInductor metadata (data/aotinductor/model/*_metadata.json)"
    if not entries:
        raise _error(path, f"not an rlpol artifact: an AOTInductor package without {what}; {_FIX}")
    try:
        document = json.loads(_member(path, archive, entries[0], what))
    except ValueError as exc:
        raise _error(path, f"its {what} is not JSON ({exc}); re-export or re-copy it") from None
    value = document.get(key) if isinstance(document, dict) else None
    if not isinstance(value, str):
        raise _error(
            path,
            f"not an rlpol artifact: its {what} has no {key!r} string (an AOTInductor package "
            f"not exported by rlpol); {_FIX}",
        )
    return value


def read_aoti_target(path: str | os.PathLike[str]) -> dict[str, str]:
    """What the compiled code of the AOTInductor package at ``path`` needs to run.

    Args:
        path: an ``.aoti.pt2`` package exported by rlpol.

    Returns:
        ``{"platform": "linux", "machine": "x86_64", "device": "cpu", "isa": "avx2"}``
        (``isa`` is ``""`` for scalar code), as :mod:`rlpol.export.aoti` records it.

    Raises:
        ArtifactError: the file is not an AOTInductor package, or its target record is
            missing or malformed.
    """
    path = Path(path)
    with _zip(path) as archive:
        if _archive_format(path, archive.namelist()) != "aot_inductor":
            raise _error(path, "it is not an AOTInductor (.aoti.pt2) package")
        text = _package_metadata(path, archive, AOTI_TARGET_KEY)
    try:
        target = json.loads(text)
    except ValueError:
        target = None
    if not (
        isinstance(target, dict)
        and all(isinstance(target.get(field), str) for field in _TARGET_FIELDS)
    ):
        raise _error(
            path,
            f"its {AOTI_TARGET_KEY!r} record is {text[:200]!r}; expected a JSON object of "
            f"strings {list(_TARGET_FIELDS)}, re-export the policy with `rlpol export`",
        )
    return {field: target[field] for field in _TARGET_FIELDS}
