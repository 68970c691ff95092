"""Load rlpol artifacts and run them where the eager policy ran (never imports rlpol.export).

The artifact contract (:class:`ArtifactMetadata`, :func:`parse_metadata`,
:func:`read_metadata`) is defined in :mod:`rlpol.artifact` and exported here too.

Forwarding aliases: the verification names (``check_artifact``, ``compare_rollouts``,
``CheckReport``, ``ParityReport``, ``FieldParity``, ``seeded_rollout``) are defined in
:mod:`rlpol.verify`, a layer above this one. They stay importable from here through a lazy
module ``__getattr__``, which imports :mod:`rlpol.verify` on first use, so
``import rlpol.runtime`` alone does not load it.
"""

from rlpol._lazy import lazy_attributes
from rlpol.artifact.metadata import ArtifactMetadata, parse_metadata
from rlpol.artifact.reader import read_metadata
from rlpol.runtime.envs import make_artifact_env
from rlpol.runtime.episodes import EpisodeResult, run_episodes, summarize
from rlpol.runtime.policy import ExportedPolicy, load_policy
from rlpol.runtime.session import PolicySession

_FORWARDED = dict.fromkeys(
    [
        "CheckReport", "FieldParity", "ParityReport", "check_artifact", "compare_rollouts",
        "seeded_rollout",
    ],
    "rlpol.verify",
)  # fmt: skip
__getattr__, __dir__ = lazy_attributes(__name__, _FORWARDED)

__all__ = [
    "ArtifactMetadata",
    "CheckReport",
    "EpisodeResult",
    "ExportedPolicy",
    "FieldParity",
    "ParityReport",
    "PolicySession",
    "check_artifact",
    "compare_rollouts",
    "load_policy",
    "make_artifact_env",
    "parse_metadata",
    "read_metadata",
    "run_episodes",
    "seeded_rollout",
    "summarize",
]
