"""``write_bundle``: a deployable directory of models, metadata and test vectors.

The layout is :mod:`rlpol.artifact.bundle`'s; the vectors are :mod:`rlpol.export.vectors`'.
The directory is built beside its target and renamed into place only once complete (and,
with ``check``, verified), so a failed bundle leaves no half-written directory and an earlier
bundle at the same path untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tensordict.nn import TensorDictModuleBase

from rlpol._atomic import atomic_directory, atomic_write_bytes
from rlpol.artifact.bundle import (
    METADATA_FILE,
    MODEL_FILES,
    bundle_metadata_text,
    write_data_set,
)
from rlpol.artifact.reader import read_metadata
from rlpol.errors import ExportError
from rlpol.export.api import export_policy
from rlpol.export.vectors import reference_data_sets
from rlpol.toolkit.envs import EnvBase
from rlpol.toolkit.modules import ExplorationType

__all__ = ["write_bundle"]


def write_bundle(
    policy: TensorDictModuleBase,
    directory: str | os.PathLike[str],
    *,
    env: EnvBase,
    exploration: ExplorationType | str = ExplorationType.DETERMINISTIC,
    policy_file: str | os.PathLike[str] | None = None,
    aoti: bool = False,
    seed: int = 0,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Export ``policy`` to a bundle directory and return its resolved path.

    Writes ``model.onnx``, ``model.pt``, ``rlpol.json`` (the metadata of ``model.onnx``) and
    the test vectors ``test_data_set_<N>/`` (see :mod:`rlpol.artifact.bundle`), whose outputs
    are the eager policy's.

    Args:
        policy: the policy, weights loaded.
        directory: the bundle to write. A missing directory is created; an existing one is
            replaced only if it is empty or a bundle (it holds ``rlpol.json``).
        env: the policy's env (specs, folded transforms, where the vectors' inputs come from).
        exploration: the exploration type the models compute.
        policy_file: the policy file, recorded in the metadata.
        aoti: also write ``model.aoti.pt2`` (AOTInductor).
        seed: seeds the vectors' inputs (same seed, same vectors).
        check: called with the complete staging directory before it replaces ``directory``;
            raise to abort (``rlpol bundle`` runs ``verify_bundle`` here).

    Returns:
        the resolved path of the bundle.

    Raises:
        ExportError: the export failed (see :func:`export_policy`), ``directory`` is a file
            or a non-empty directory that is no bundle, or it cannot be written; nothing is
            written then.

    Examples:
        >>> from rlpol import Actor, GymEnv, MLP
        >>> env = GymEnv("Pendulum-v1")
        >>> bundle = write_bundle(Actor(MLP(3, 1, num_cells=[16])), "/tmp/pendulum-bundle", env=env)
        >>> sorted(path.name for path in bundle.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['model.onnx', 'model.pt', 'rlpol.json', 'test_data_set_0', 'test_data_set_1']
    """
    target = Path(directory)
    _check_target(target)
    try:
        with atomic_directory(target) as staging:
            onnx_path = _export(policy, staging, "onnx", env, exploration, policy_file)
            _export(policy, staging, "torchscript", env, exploration, policy_file)
            if aoti:  # compiles C++: 10-40 s on 2 cores
                _export(policy, staging, "aot_inductor", env, exploration, policy_file)
            _, metadata = read_metadata(onnx_path)
            atomic_write_bytes(staging / METADATA_FILE, bundle_metadata_text(metadata).encode())
            for index, data_set in enumerate(reference_data_sets(policy, env, metadata, seed=seed)):
                write_data_set(staging, index, data_set)
            if check is not None:
                check(staging)
    except OSError as error:
        raise ExportError(
            f"cannot write the bundle to '{target}': {error.strerror or error}; choose a "
            "writable directory"
        ) from error
    return target.resolve()


def _export(
    policy: TensorDictModuleBase,
    staging: Path,
    artifact_format: str,
    env: EnvBase,
    exploration: ExplorationType | str,
    policy_file: str | os.PathLike[str] | None,
) -> Path:
    return export_policy(
        policy, staging / MODEL_FILES[artifact_format], env=env, exploration=exploration,
        policy_file=policy_file,
    )  # fmt: skip


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ExportError(
            f"'{target}' is a file; the bundle is a directory: pass a new or empty directory"
        )
    if target.is_dir() and any(target.iterdir()) and not (target / METADATA_FILE).is_file():
        raise ExportError(
            f"'{target}' is a non-empty directory without {METADATA_FILE}, so not a bundle that "
            "may be replaced; pass a new or empty directory, or an earlier bundle"
        )
