"""``export_policy``: turn a tensordict policy into a self-describing artifact file."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path

import onnx
import tensordict
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase

import rlpol
from rlpol._atomic import atomic_write_bytes
from rlpol.artifact.constants import FORMAT_SUFFIXES, FORMAT_VERSION, METADATA_KEY
from rlpol.artifact.metadata import ArtifactMetadata, NoiseInfo, ParameterInfo, TensorInfo
from rlpol.dtypes import DTYPE_NAMES, dtype_name
from rlpol.errors import ExportError, SpecError
from rlpol.export.aoti import aoti_package_bytes
from rlpol.export.graph import GraphSignature, PolicyGraph, build_signature
from rlpol.export.onnx import export_onnx_model, model_bytes
from rlpol.export.recurrent import check_recurrent_example, state_pairs
from rlpol.export.torchscript import export_program, exported_program_bytes, torchscript_bytes
from rlpol.toolkit.envs import EnvBase
from rlpol.toolkit.envs.folding import folded_transforms, graph_input_spec
from rlpol.toolkit.from_torchrl import rlpol_env, rlpol_policy
from rlpol.toolkit.modules import ExplorationType
from rlpol.toolkit.noise import draw
from rlpol.toolkit.specs import Composite, TensorSpec, spec_to_dict

__all__ = ["EXAMPLE_BATCH", "FORMATS", "export_policy", "format_for_path"]

FORMATS = FORMAT_SUFFIXES  # the suffix -> artifact format table of the contract
EXAMPLE_BATCH = 3  # > 1 so the tracer cannot specialise the batch axis


def format_for_path(path: str | os.PathLike[str]) -> str:
    """The artifact format its suffix names.

    ``.onnx``, ``.pt`` (TorchScript), ``.pt2`` (torch.export) or ``.aoti.pt2``
    (AOTInductor package; the two-part suffix is matched first).

    Examples:
        >>> format_for_path("model.aoti.pt2"), format_for_path("model.pt2")
        ('aot_inductor', 'exported_program')
    """
    suffixes = Path(path).suffixes
    for suffix in ("".join(suffixes[-2:]), "".join(suffixes[-1:])):
        if suffix in FORMATS:
            return FORMATS[suffix]
    raise ExportError(
        f"cannot tell the artifact format of {str(path)!r}: the suffix must be one of "
        f"{sorted(FORMATS)} (ONNX, TorchScript, torch.export, AOTInductor), got "
        f"{''.join(suffixes[-1:]) or 'none'!r}"
    )


def export_policy(
    policy: TensorDictModuleBase,
    path: str | os.PathLike[str],
    *,
    env: EnvBase | None = None,
    example: TensorDictBase | None = None,
    exploration: ExplorationType | str = ExplorationType.DETERMINISTIC,
    opset: int | None = None,
    fold_transforms: bool = True,
    policy_file: str | os.PathLike[str] | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Export ``policy`` to ``path`` (format from the suffix) and return the written path.

    The artifact has one input per policy in_key (named by flattening nested keys with
    ``"."``), one per random draw and exploration parameter when ``exploration`` is RANDOM,
    one output per key the policy writes, a dynamic leading batch axis, and JSON metadata
    (see ``docs/artifact-format.md``). Recurrent modules (``LSTMModule``, ``GRUModule``) are
    traced in step mode: their state and ``is_init`` are inputs, the next state
    (``next.recurrent_state_h``, ...) outputs, declared as state pairs in the metadata; the
    env must carry ``InitTracker()`` and the module's ``make_tensordict_primer()``. The file is written atomically: a failed export (or
    a failed ``check``) leaves an existing file at ``path`` byte-identical.

    Args:
        policy: a ``TensorDictModuleBase`` (weights loaded).
        path: where to write; ``.onnx``, ``.pt`` (TorchScript), ``.pt2`` (torch.export) or
            ``.aoti.pt2`` (an AOTInductor package: the ``.pt2`` program compiled ahead of
            time for this machine's CPU, 10-40 s; see :mod:`rlpol.export.aoti`).
        env: gives the observation shapes/dtypes (its ``observation_spec``), the specs and
            env id recorded in the metadata, and the observation transforms to fold.
        example: a tensordict of observations (batch dims 0 or 1) used instead of ``env``'s
            spec for shapes and dtypes.
        exploration: the exploration type the graph computes (DETERMINISTIC or RANDOM are
            the usual; MODE and MEAN work too).
        opset: ONNX opset (>= 18; default: the exporter's).
        fold_transforms: bake ``env``'s observation transforms (``ObservationNorm``,
            ``DoubleToFloat``, ...) into the graph so it takes raw env observations.
        policy_file: the source file, recorded with its sha256.
        check: called with the path of the complete artifact, written to a hidden temp file
            beside ``path`` (``.<name>.<random>.tmp<suffix>``; the format is read from its content),
            before it replaces ``path``; raise to abort the export (``rlpol export`` runs its
            quick check here).

    Returns:
        the resolved path of the artifact.

    Raises:
        ExportError: bad arguments, a recurrent policy whose env lacks its primer or
            ``InitTracker`` (or gives a state of another shape), a policy that raises on the
            env's observations, writes no action or an action that does not fit ``env``'s
            action spec (shape, dtype), a policy that cannot be traced, a graph that fails verification, or an output path
            that cannot be written; nothing is written then.

    Examples:
        >>> import torch
        >>> from rlpol import Actor, GymEnv, MLP, export_policy
        >>> env = GymEnv("Pendulum-v1")
        >>> policy = Actor(MLP(3, 1, num_cells=[16]))
        >>> export_policy(policy, "/tmp/pendulum.onnx", env=env).name
        'pendulum.onnx'
    """
    artifact_format = format_for_path(path)
    if not isinstance(policy, TensorDictModuleBase):
        raise ExportError(
            f"export_policy expects a tensordict.nn.TensorDictModuleBase, got "
            f"{type(policy).__name__}; wrap a plain module with TensorDictModule(module, "
            "in_keys=[...], out_keys=[...])"
        )
    exploration = _exploration(exploration)
    env = rlpol_env(env)
    transforms = folded_transforms(env) if fold_transforms else ()
    from_env = example is None
    example = _example(env, example, fold_transforms)
    original = policy
    policy, _ = rlpol_policy(policy, example)
    check_recurrent_example(policy, example, from_env=from_env)
    signature = build_signature(policy, example, exploration=exploration, transforms=transforms)
    if env is not None:
        _check_action(signature, env)
    graph = PolicyGraph(policy, signature).eval()
    args = _example_args(signature, example)
    metadata = _metadata(
        signature, artifact_format, env=env, fold_transforms=fold_transforms,
        opset=opset, policy=original, policy_file=policy_file,
    )
    if artifact_format == "onnx":
        model = export_onnx_model(graph, args, opset=opset)
        metadata = dataclasses.replace(metadata, opset=_opset_of(model))
        onnx.helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
        data = model_bytes(model)
    elif artifact_format == "torchscript":
        data = torchscript_bytes(graph, args, metadata.to_json())
    elif artifact_format == "exported_program":
        data = exported_program_bytes(export_program(graph, args), metadata.to_json())
    else:
        data = aoti_package_bytes(export_program(graph, args), metadata.to_json())
    try:
        return atomic_write_bytes(path, data, check=check)
    except OSError as error:
        raise ExportError(
            f"cannot write the artifact to {str(path)!r}: {error.strerror or error}; choose a "
            "writable output path (-o)"
        ) from error


def _exploration(exploration: ExplorationType | str) -> ExplorationType:
    if isinstance(exploration, ExplorationType):
        return exploration
    try:
        return ExplorationType(str(exploration).lower())
    except ValueError:
        choices = [member.value for member in ExplorationType]
        raise ExportError(
            f"unknown exploration {exploration!r}; expected one of {choices}"
        ) from None


def _check_action(signature: GraphSignature, env: EnvBase) -> None:
    """The action the policy wrote in the probe run must fit one sub-env's action spec."""
    key = getattr(env, "action_key", "action")
    spec = env.single_action_spec
    env_name = f"{env.env_id}'s" if getattr(env, "env_id", None) else "the env's"
    written = {_key_tuple(slot.key): slot for slot in signature.outputs}
    slot = written.get(_key_tuple(key))
    if slot is None:
        raise ExportError(
            f"the policy does not write {key!r}, where {env_name} step() reads the action; it "
            f"writes {[slot.key for slot in signature.outputs]}: make its last module write "
            f"out_keys=[{key!r}] ({_words(spec)})"
        )
    if isinstance(spec, Composite):
        return
    if slot.shape != tuple(spec.shape) or slot.dtype != spec.dtype:
        raise ExportError(
            f"the policy writes {key!r} as {dtype_name(slot.dtype)} of shape "
            f"{_batched(slot.shape)} but {env_name} action spec ({type(spec).__name__}) expects "
            f"{_words(spec)}; change the policy's output to fit the action spec"
        )


def _key_tuple(key) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _batched(shape) -> str:
    return f"[{', '.join(['*B', *map(str, shape)])}]"


def _words(spec: TensorSpec) -> str:
    if isinstance(spec, Composite):
        return "a Composite action spec"
    return f"{dtype_name(spec.dtype)} of shape {_batched(spec.shape)}"


def _example(
    env: EnvBase | None, example: TensorDictBase | None, fold_transforms: bool
) -> TensorDictBase:
    if example is not None:
        if example.batch_dims == 0:
            example = example.unsqueeze(0)
        if example.batch_dims != 1:
            raise ExportError(
                f"the export example must have 0 or 1 batch dims, got {list(example.batch_size)}"
            )
        if example.batch_size[0] >= EXAMPLE_BATCH:
            return example[:EXAMPLE_BATCH].clone()
        return example[:1].expand(EXAMPLE_BATCH).clone()
    if env is None:
        raise ExportError(
            "export_policy needs `env` (for the observation spec) or an `example` tensordict"
        )
    return graph_input_spec(env, fold_transforms).rand((EXAMPLE_BATCH,))


def _example_args(signature: GraphSignature, example: TensorDictBase) -> list[torch.Tensor]:
    args = [example.get(slot.key) for slot in signature.inputs]
    device = args[0].device
    for plan in signature.noise:
        args += [draw(spec, (EXAMPLE_BATCH,), device=device) for spec in plan.draws]
    for plan in signature.noise:
        args += [torch.tensor(value, dtype=torch.float32, device=device)
                 for _, value in plan.parameters]
    return args


def _metadata(
    signature: GraphSignature,
    artifact_format: str,
    *,
    env: EnvBase | None,
    fold_transforms: bool,
    opset: int | None,
    policy: TensorDictModuleBase,
    policy_file: str | os.PathLike[str] | None,
) -> ArtifactMetadata:
    noise, parameters = [], []
    for plan in signature.noise:
        noise += [
            NoiseInfo(name, plan.module_name, spec.name, spec.distribution, spec.shape)
            for name, spec in zip(plan.draw_names(), plan.draws)
        ]
        parameters += [
            ParameterInfo(name, plan.module_name, parameter, value)
            for name, (parameter, value) in zip(plan.parameter_names(), plan.parameters)
        ]
    observation_spec = action_spec = None
    env_id, env_kwargs, env_imports = None, {}, ()
    if env is not None:
        observation_spec = spec_to_dict(graph_input_spec(env, fold_transforms))
        action_spec = spec_to_dict(env.single_action_spec)
        env_id = getattr(env, "env_id", None)
        env_kwargs = _json_safe(getattr(env, "make_kwargs", {}))
        env_imports = tuple(getattr(env, "env_imports", ()))
    sha256 = None
    if policy_file is not None:
        sha256 = hashlib.sha256(Path(policy_file).read_bytes()).hexdigest()
    return ArtifactMetadata(
        format_version=FORMAT_VERSION,
        rlpol_version=rlpol.__version__,
        artifact_format=artifact_format,
        exploration=signature.exploration.value,
        inputs=tuple(_info(slot) for slot in signature.inputs),
        noise=tuple(noise),
        parameters=tuple(parameters),
        states=state_pairs(signature.inputs, signature.outputs, dtype_name),
        outputs=tuple(_info(slot) for slot in signature.outputs),
        observation_spec=observation_spec,
        action_spec=action_spec,
        env_id=env_id,
        env_kwargs=env_kwargs,
        env_imports=env_imports,
        transforms=tuple(t.to_dict() for t in signature.transforms),
        versions={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "tensordict": tensordict.__version__,
        },
        opset=opset,
        policy_file=str(policy_file) if policy_file is not None else None,
        policy_sha256=sha256,
        policy_class=type(policy).__name__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _info(slot) -> TensorInfo:
    try:
        dtype = dtype_name(slot.dtype)
    except SpecError:
        raise ExportError(
            f"the policy reads or writes {slot.key!r} as {slot.dtype}, which rlpol artifacts "
            f"cannot hold; expected one of {list(DTYPE_NAMES)}: convert the entry in the policy"
        ) from None
    return TensorInfo(slot.key, slot.name, dtype, slot.shape)


def _json_safe(kwargs: dict) -> dict:
    safe = {}
    for key, value in kwargs.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        safe[str(key)] = value
    return safe


def _opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
