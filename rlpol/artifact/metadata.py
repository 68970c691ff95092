"""The metadata an rlpol artifact carries: the contract between exporter and runtime.

One versioned JSON document (:class:`ArtifactMetadata`) says which tensordict key each graph
input and output stands for (dtype, trailing shape), which inputs are random draws or
exploration parameters, and where the policy came from. ONNX stores it as the
``metadata_props`` entry ``"rlpol"``; TorchScript and ``.pt2`` archives as the extra file
``"rlpol.json"``. Graph inputs are ``inputs``, then ``noise`` (in draw order, see
:mod:`rlpol.toolkit.noise`), then ``parameters``; outputs are ``outputs``; every tensor has a
leading dynamic batch axis ``"batch"``.

:func:`parse_metadata` is fed untrusted files: it reads JSON only and checks every field,
raising :class:`~rlpol.errors.ArtifactError` (never ``KeyError``/``TypeError``) that names the
field, what was found and what was expected. ``docs/artifact-format.md`` documents the schema."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from rlpol.artifact._validate import (
    MISSING,
    check_choice,
    check_entries,
    check_fields,
    check_float,
    check_int,
    check_json_object,
    check_key,
    check_optional,
    check_sha256,
    check_shape,
    check_str,
    check_string_map,
    check_timestamp,
    check_unique,
    decode_json,
    describe,
    fail,
)
from rlpol.artifact.constants import (
    ARTIFACT_FORMATS,
    DISTRIBUTIONS,
    EXPLORATION_TYPES,
    FORMAT,
    FORMAT_VERSION,
    MAX_METADATA_BYTES,
)
from rlpol.dtypes import DTYPE_NAMES
from rlpol.errors import ArtifactError
from rlpol.toolkit.keys import NestedKey

__all__ = [
    "ArtifactMetadata",
    "NoiseInfo",
    "ParameterInfo",
    "StateInfo",
    "TensorInfo",
    "parse_metadata",
]



def _key_to_json(key: NestedKey) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output bound to a tensordict entry.

    Attributes:
        key: the tensordict key (``"observation"``, ``("agents", "obs")``).
        name: the graph input/output name (see :mod:`rlpol.artifact.naming`).
        dtype: the torch dtype name without ``torch.``: ``"float32"``, ``"int64"``, ``"bool"``...
        shape: the trailing shape; the graph adds a leading dynamic batch axis ``"batch"``.
    """

    key: NestedKey
    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the key as a list of strings, the shape as a list of ints."""
        return {**asdict(self), "key": _key_to_json(self.key), "shape": list(self.shape)}


@dataclass(frozen=True)
class NoiseInfo:
    """A graph input carrying one random draw of a stochastic module.

    Attributes:
        name: the graph input name (``"noise.1.explore"``).
        module: the qualified name of the drawing module in the policy (``"1"``; ``""``: root).
        draw: the draw's name within the module (its ``NoiseSpec.name``).
        distribution: ``"normal"`` (``torch.randn``) or ``"uniform"`` (``torch.rand``).
        shape: the trailing shape; the batch shape is prepended. Dtype is always float32.
    """

    name: str
    module: str
    draw: str
    distribution: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this entry."""
        return {**asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class ParameterInfo:
    """A scalar float32 graph input for an exploration parameter, such as epsilon's ``eps``.

    Attributes:
        name: the graph input name (``"param.1.eps"``).
        module: the qualified name of the module owning the parameter.
        parameter: the parameter's name in ``module.exploration_parameters()``.
        value: its value at export time, the default a runtime feeds.
    """

    name: str
    module: str
    parameter: str
    value: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this entry."""
        return {**asdict(self), "value": float(self.value)}


@dataclass(frozen=True)
class StateInfo:
    """A *state pair*: a graph output to feed back into a graph input at the next step.

    The policy reads ``key`` and writes ``("next", *key)`` (a recurrent module's state). A
    caller threads the state: the first step and each reset row get ``initial``; every other
    step gets the ``output`` of the step before. Where ``reset_input`` is set, the graph
    itself resets the rows whose reset input is True (``is_init``), so feeding ``initial`` or
    the previous output there gives the same result.

    Attributes:
        input: the graph input name of the state (an ``inputs`` entry, ``"recurrent_state_h"``).
        output: the graph output name of the next state (an ``outputs`` entry,
            ``"next.recurrent_state_h"``).
        dtype: the state's dtype name, the two entries' dtype.
        shape: the trailing shape (``[num_layers, hidden_size]``), the two entries' shape.
        initial: the value of a fresh state (``0.0``), every element.
        reset_input: the graph input name of the bool ``[batch, 1]`` entry that resets rows
            to the initial state inside the graph (``"is_init"``); None if the graph has none.
    """

    input: str
    output: str
    dtype: str
    shape: tuple[int, ...]
    initial: float = 0.0
    reset_input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this entry."""
        return {**asdict(self), "shape": list(self.shape), "initial": float(self.initial)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class ArtifactMetadata:
    """Everything a runtime needs to rebuild a policy's TensorDict interface around a graph.

    Attributes:
        rlpol_version: the rlpol version that exported the artifact.
        artifact_format: ``"onnx"``, ``"torchscript"`` or ``"exported_program"`` (``.pt2``).
        exploration: the exploration type the graph was traced under: ``"deterministic"``,
            ``"random"``, ``"mode"`` or ``"mean"``.
        inputs: the observation-side graph inputs, first in graph order.
        outputs: the graph outputs, in graph order.
        noise: the random-draw graph inputs, after ``inputs``, in draw order.
        parameters: the exploration-parameter graph inputs, after ``noise``.
        states: the state pairs, :class:`StateInfo` (empty for a stateless policy).
        observation_spec: the env's observation spec (``rlpol.toolkit.specs.spec_to_dict``).
        action_spec: the env's action spec, same form.
        env_id: the gymnasium id of the env the policy was exported with, if known.
        env_kwargs: the keyword arguments that env was made with.
        env_imports: the modules to import before ``env_id`` is registered (``["ale_py"]``
            for ``ALE/...`` ids), in import order.
        transforms: observation transforms folded into the graph, each ``{"type": ..., ...}``.
        versions: library versions at export (``{"torch": "2.13.0", ...}``).
        opset: the ONNX opset, ``None`` for other formats.
        policy_file: the policy file the policy was loaded from, if any.
        policy_sha256: the SHA-256 (hex) of that file's bytes.
        policy_class: the qualified class name of the exported policy.
        created: ISO 8601 timestamp of the export (default: now, UTC).
        format_version: the metadata schema version (:data:`FORMAT_VERSION`).

    Examples:
        >>> meta = ArtifactMetadata(
        ...     rlpol_version="0.1.0", artifact_format="onnx", exploration="deterministic",
        ...     inputs=(TensorInfo("observation", "observation", "float32", (4,)),),
        ...     outputs=(TensorInfo("action", "action", "int64", ()),),
        ...     created="2025-01-01T00:00:00+00:00")
        >>> parse_metadata(meta.to_json()) == meta
        True
        >>> meta.input_names, meta.output_names
        (('observation',), ('action',))
    """

    rlpol_version: str
    artifact_format: str
    exploration: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    noise: tuple[NoiseInfo, ...] = ()
    parameters: tuple[ParameterInfo, ...] = ()
    states: tuple[StateInfo, ...] = ()
    observation_spec: dict[str, Any] | None = None
    action_spec: dict[str, Any] | None = None
    env_id: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_imports: tuple[str, ...] = ()
    transforms: tuple[dict[str, Any], ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    opset: int | None = None
    policy_file: str | None = None
    policy_sha256: str | None = None
    policy_class: str | None = None
    created: str = field(default_factory=_now)
    format_version: int = FORMAT_VERSION

    @property
    def input_names(self) -> tuple[str, ...]:
        """All graph input names in graph order: inputs, noise, parameters."""
        groups = (self.inputs, self.noise, self.parameters)
        return tuple(entry.name for group in groups for entry in group)

    @property
    def output_names(self) -> tuple[str, ...]:
        """All graph output names in graph order."""
        return tuple(entry.name for entry in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in the artifact (keys as lists, tuples as lists)."""
        document: dict[str, Any] = {"format": FORMAT}
        known = _FIELDS_BY_VERSION.get(self.format_version, _TOP_FIELDS)
        for item in fields(self):
            if item.name not in known:  # a field newer than the version written
                continue
            value = getattr(self, item.name)
            if isinstance(value, (tuple, list)):  # the entry lists and the transforms
                value = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
            document[item.name] = value
        return document

    def to_json(self) -> str:
        """The metadata as JSON text, checked to parse back with :func:`parse_metadata`.

        Returns:
            Compact JSON (``,`` and ``:`` separators, no spaces) with sorted keys, no NaN
            or infinity.

        Raises:
            ArtifactError: if a field holds a value the schema refuses (the exporter's bug).
        """
        try:
            text = json.dumps(
                self.to_dict(), sort_keys=True, allow_nan=False, separators=(",", ":")
            )
        except (TypeError, ValueError) as exc:
            raise ArtifactError(
                f"cannot write rlpol metadata: {exc}; expected only JSON values (str, int, "
                "finite float, bool, None, lists and dicts with string keys)"
            ) from exc
        parse_metadata(text)
        return text


def parse_metadata(text: str | bytes) -> ArtifactMetadata:
    """Parse and fully validate an artifact's metadata document.

    Args:
        text: the JSON document, as text or UTF-8 bytes (at most :data:`MAX_METADATA_BYTES`).

    Returns:
        The metadata, keys turned back into strings or tuples of strings.

    Raises:
        ArtifactError: for anything but a valid document: too large, not UTF-8 or JSON, not
            an rlpol document, a newer ``format_version`` (upgrade rlpol), a missing or unknown
            field, a wrong type, an unknown dtype or distribution, a negative dimension,
            duplicate names, a state pair that names no input or output or disagrees with
            them. The message names the field, what it held and what was expected. Documents
            of version 1 (no ``states`` field) load as stateless.

    Examples:
        >>> parse_metadata('{"format": "something-else"}')
        Traceback (most recent call last):
        ...
        rlpol.errors.ArtifactError: not an rlpol artifact: metadata field 'format' is \
'something-else'; expected 'rlpol-artifact'
    """
    document = decode_json(text, max_bytes=MAX_METADATA_BYTES)
    return _metadata_from_object(document)


_TOP_FIELDS = (
    "format", "format_version", "rlpol_version", "artifact_format", "exploration", "inputs",
    "noise", "parameters", "outputs", "observation_spec", "action_spec", "env_id",
    "env_kwargs", "transforms", "versions", "opset", "policy_file", "policy_sha256",
    "policy_class", "created", "states", "env_imports",
)  # fmt: skip
# the fields each older version has: what it lacks gets its default
_FIELDS_BY_VERSION = {1: _TOP_FIELDS[:-2], 2: _TOP_FIELDS[:-1], 3: _TOP_FIELDS, 4: _TOP_FIELDS}


def _check_header(document: object) -> dict[str, Any]:
    """Check the document is an rlpol document of a version this rlpol reads, then its fields."""
    if not isinstance(document, dict):
        raise ArtifactError(
            f"not an rlpol artifact: its metadata is {describe(document)}; expected a JSON "
            f'object with "format": "{FORMAT}"'
        )
    if document.get("format") != FORMAT:
        found = describe(document.get("format", MISSING))
        raise ArtifactError(
            f"not an rlpol artifact: metadata field 'format' is {found}; expected '{FORMAT}'"
        )
    version = document.get("format_version", MISSING)
    if type(version) is not int or version < 1:
        fail("format_version", version, "a positive integer")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"this artifact uses rlpol metadata format version {version}, but this rlpol reads "
            f"versions up to {FORMAT_VERSION}; upgrade rlpol (pip install -U rlpol) to load it"
        )
    return check_fields(document, "", _FIELDS_BY_VERSION[version])


def _metadata_from_object(document: object) -> ArtifactMetadata:
    doc = _check_header(document)
    meta = ArtifactMetadata(
        format_version=doc["format_version"],
        rlpol_version=check_str(doc["rlpol_version"], "rlpol_version", nonempty=True),
        artifact_format=check_choice(doc["artifact_format"], "artifact_format", ARTIFACT_FORMATS),
        exploration=check_choice(doc["exploration"], "exploration", EXPLORATION_TYPES),
        inputs=check_entries(doc["inputs"], "inputs", _tensor_info),
        noise=check_entries(doc["noise"], "noise", _noise_info),
        parameters=check_entries(doc["parameters"], "parameters", _parameter_info),
        outputs=check_entries(doc["outputs"], "outputs", _tensor_info),
        observation_spec=check_optional(doc["observation_spec"], "observation_spec", _object),
        action_spec=check_optional(doc["action_spec"], "action_spec", _object),
        env_id=check_optional(doc["env_id"], "env_id", check_str),
        env_kwargs=check_json_object(doc["env_kwargs"], "env_kwargs"),
        transforms=check_entries(doc["transforms"], "transforms", _transform),
        versions=check_string_map(doc["versions"], "versions"),
        opset=check_optional(doc["opset"], "opset", _opset),
        policy_file=check_optional(doc["policy_file"], "policy_file", check_str),
        policy_sha256=check_optional(doc["policy_sha256"], "policy_sha256", check_sha256),
        policy_class=check_optional(doc["policy_class"], "policy_class", check_str),
        created=check_timestamp(doc["created"], "created"),
        states=check_entries(doc.get("states", []), "states", _state_info),
        env_imports=check_entries(doc.get("env_imports", []), "env_imports", _module_name),
    )
    _check_consistency(meta)
    return meta


def _tensor_info(value: object, path: str) -> TensorInfo:
    d = check_fields(value, path, ("key", "name", "dtype", "shape"))
    return TensorInfo(
        key=check_key(d["key"], f"{path}.key"),
        name=check_str(d["name"], f"{path}.name", nonempty=True),
        dtype=check_choice(d["dtype"], f"{path}.dtype", DTYPE_NAMES),
        shape=check_shape(d["shape"], f"{path}.shape"),
    )


def _noise_info(value: object, path: str) -> NoiseInfo:
    d = check_fields(value, path, ("name", "module", "draw", "distribution", "shape"))
    return NoiseInfo(
        name=check_str(d["name"], f"{path}.name", nonempty=True),
        module=check_str(d["module"], f"{path}.module"),
        draw=check_str(d["draw"], f"{path}.draw", nonempty=True),
        distribution=check_choice(d["distribution"], f"{path}.distribution", DISTRIBUTIONS),
        shape=check_shape(d["shape"], f"{path}.shape"),
    )


def _parameter_info(value: object, path: str) -> ParameterInfo:
    d = check_fields(value, path, ("name", "module", "parameter", "value"))
    return ParameterInfo(
        name=check_str(d["name"], f"{path}.name", nonempty=True),
        module=check_str(d["module"], f"{path}.module"),
        parameter=check_str(d["parameter"], f"{path}.parameter", nonempty=True),
        value=check_float(d["value"], f"{path}.value"),
    )


def _state_info(value: object, path: str) -> StateInfo:
    d = check_fields(value, path, ("input", "output", "dtype", "shape", "initial", "reset_input"))
    return StateInfo(
        input=check_str(d["input"], f"{path}.input", nonempty=True),
        output=check_str(d["output"], f"{path}.output", nonempty=True),
        dtype=check_choice(d["dtype"], f"{path}.dtype", DTYPE_NAMES),
        shape=check_shape(d["shape"], f"{path}.shape"),
        initial=check_float(d["initial"], f"{path}.initial"),
        reset_input=check_optional(d["reset_input"], f"{path}.reset_input", _nonempty_str),
    )


def _nonempty_str(value: object, path: str) -> str:
    return check_str(value, path, nonempty=True)


def _object(value: object, path: str) -> dict[str, Any]:
    return check_json_object(value, path)


def _opset(value: object, path: str) -> int:
    return check_int(value, path, minimum=1)


def _transform(value: object, path: str) -> dict[str, Any]:
    transform = check_json_object(value, path)
    check_str(transform.get("type", MISSING), f"{path}.type", nonempty=True)
    return transform


def _module_name(value: object, path: str) -> str:
    """A dotted Python module name (``ale_py``), the only thing a runtime will import."""
    name = check_str(value, path, nonempty=True)
    if not all(part.isidentifier() for part in name.split(".")):
        fail(path, value, "a dotted Python module name such as 'ale_py'")
    return name


def _check_consistency(meta: ArtifactMetadata) -> None:
    """Names unique across the graph; keys unique within inputs and within outputs."""
    groups = {"inputs": meta.inputs, "noise": meta.noise, "parameters": meta.parameters}
    groups["outputs"] = meta.outputs
    check_unique(
        [(f"{g}[{i}].name", e.name) for g, es in groups.items() for i, e in enumerate(es)],
        what="graph name",
    )
    for group in ("inputs", "outputs"):
        check_unique(
            [(f"{group}[{i}].key", _key_to_json(e.key)) for i, e in enumerate(groups[group])],
            what="tensordict key",
        )
    check_unique(
        [(f"noise[{i}]", [e.module, e.draw]) for i, e in enumerate(meta.noise)],
        what="(module, draw) pair",
    )
    check_unique(
        [(f"parameters[{i}]", [e.module, e.parameter]) for i, e in enumerate(meta.parameters)],
        what="(module, parameter) pair",
    )
    _check_states(meta)


def _check_states(meta: ArtifactMetadata) -> None:
    """Each state pair binds an input to the output of its ``("next", ...)`` key, alike."""
    inputs = {entry.name: entry for entry in meta.inputs}
    outputs = {entry.name: entry for entry in meta.outputs}
    for group in ("input", "output"):
        check_unique(
            [(f"states[{i}].{group}", getattr(e, group)) for i, e in enumerate(meta.states)],
            what=f"state {group}",
        )
    for index, state in enumerate(meta.states):
        path = f"states[{index}]"
        read = inputs.get(state.input)
        if read is None:
            fail(f"{path}.input", state.input, f"the name of an 'inputs' entry: {list(inputs)}")
        written = outputs.get(state.output)
        if written is None:
            fail(f"{path}.output", state.output, f"the name of an 'outputs' entry: {list(outputs)}")
        if _key_to_json(written.key) != ["next", *_key_to_json(read.key)]:
            fail(f"{path}.output", state.output,
                 f"the output of key {['next', *_key_to_json(read.key)]}, the next state of "
                 f"input {state.input!r}")  # fmt: skip
        for entry in (read, written):
            if (entry.dtype, entry.shape) != (state.dtype, state.shape):
                fail(f"{path}.shape", list(state.shape),
                     f"{entry.dtype} {list(entry.shape)} as {entry.name!r} declares (dtype "
                     f"{state.dtype!r})")  # fmt: skip
        if state.reset_input is not None:
            reset = inputs.get(state.reset_input)
            if reset is None or (reset.dtype, reset.shape) != ("bool", (1,)):
                fail(f"{path}.reset_input", state.reset_input,
                     "null or the name of a bool 'inputs' entry of shape [1]")  # fmt: skip
