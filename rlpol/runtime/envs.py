"""Rebuild the env an artifact was exported for, from its metadata alone."""

from __future__ import annotations

from collections.abc import Collection

import torch

from rlpol.artifact.metadata import ArtifactMetadata
from rlpol.dtypes import torch_dtype
from rlpol.errors import ArtifactError
from rlpol.toolkit.envs import (
    Compose,
    EnvBase,
    GymEnv,
    InitTracker,
    TensorDictPrimer,
    Transform,
    TransformedEnv,
)
from rlpol.toolkit.envs.gym import import_env_modules
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.specs import Unbounded

__all__ = ["make_artifact_env", "state_transforms"]


def make_artifact_env(
    metadata: ArtifactMetadata,
    *,
    env_id: str | None = None,
    device: torch.device | str = "cpu",
    render: bool = False,
) -> EnvBase:
    """The :class:`GymEnv` the artifact acts in: ``env_id`` or the recorded one.

    Discrete actions follow the recorded action spec (one-hot or categorical); the recorded
    make kwargs are passed on, after importing the modules that register the recorded id
    (``env_imports``, e.g. ``ale_py``); ``render=True`` asks for ``render_mode="rgb_array"``. A
    stateful artifact (state pairs in its metadata) gets the transforms that thread its
    state: a ``TransformedEnv`` with ``InitTracker`` (its reset input) and a
    ``TensorDictPrimer`` of its state entries.

    Raises:
        ArtifactError: no env id was given and the artifact records none.
        UnknownEnvError: the env id is not registered.
    """
    env_id = env_id or metadata.env_id
    if env_id is None:
        raise ArtifactError(
            "the artifact records no env id (it was exported from an `example`, not an env); "
            "pass one with --env"
        )
    if env_id == metadata.env_id:
        import_env_modules(metadata.env_imports)
    kwargs = dict(metadata.env_kwargs)
    if render:
        kwargs["render_mode"] = "rgb_array"
    action_class = (metadata.action_spec or {}).get("class")
    env = GymEnv(
        env_id, device=device, categorical_action_encoding=action_class == "Categorical", **kwargs
    )
    if not metadata.states:
        return env
    return TransformedEnv(env, Compose(*state_transforms(metadata)))


def state_transforms(
    metadata: ArtifactMetadata, *, keys: Collection[NestedKey] | None = None
) -> list[Transform]:
    """The transforms that thread an artifact's state: ``InitTracker`` for its reset input
    (if any) and a ``TensorDictPrimer`` of its state entries.

    Args:
        metadata: the artifact's metadata (its ``states``).
        keys: only these input keys (state entries and the reset input); default all.
    """
    key_of = {info.name: info.key for info in metadata.inputs}
    wanted = (lambda name: True) if keys is None else (lambda name: key_of[name] in keys)
    transforms: list[Transform] = []
    reset_inputs = {state.reset_input for state in metadata.states} - {None}
    for name in sorted(filter(wanted, reset_inputs)):
        transforms.append(InitTracker(init_key=key_of[name]))
    states = [state for state in metadata.states if wanted(state.input)]
    if states:
        primers = {
            key_of[state.input]: Unbounded(state.shape, dtype=torch_dtype(state.dtype))
            for state in states
        }
        defaults = {key_of[state.input]: state.initial for state in states}
        transforms.append(TensorDictPrimer(primers, default_value=defaults))
    return transforms
