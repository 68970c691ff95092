"""Rebuild the env an artifact was exported for, from its metadata alone."""

from __future__ import annotations

import torch

from rlpol.artifact.metadata import ArtifactMetadata
from rlpol.errors import ArtifactError
from rlpol.toolkit.envs import GymEnv

__all__ = ["make_artifact_env"]


def make_artifact_env(
    metadata: ArtifactMetadata,
    *,
    env_id: str | None = None,
    device: torch.device | str = "cpu",
    render: bool = False,
) -> GymEnv:
    """The :class:`GymEnv` the artifact acts in: ``env_id`` or the recorded one.

    Discrete actions follow the recorded action spec (one-hot or categorical); the recorded
    make kwargs are passed on; ``render=True`` asks for ``render_mode="rgb_array"``.

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
    kwargs = dict(metadata.env_kwargs)
    if render:
        kwargs["render_mode"] = "rgb_array"
    action_class = (metadata.action_spec or {}).get("class")
    return GymEnv(
        env_id, device=device, categorical_action_encoding=action_class == "Categorical", **kwargs
    )
