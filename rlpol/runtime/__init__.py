"""Load rlpol artifacts and run them where the eager policy ran (never imports rlpol.export)."""

from rlpol.artifact.metadata import ArtifactMetadata, parse_metadata
from rlpol.artifact.reader import read_metadata
from rlpol.runtime.check import CheckReport, check_artifact, seeded_rollout
from rlpol.runtime.envs import make_artifact_env
from rlpol.runtime.episodes import EpisodeResult, run_episodes, summarize
from rlpol.runtime.parity import FieldParity, ParityReport, compare_rollouts
from rlpol.runtime.policy import ExportedPolicy, load_policy

__all__ = [
    "ArtifactMetadata",
    "CheckReport",
    "EpisodeResult",
    "ExportedPolicy",
    "FieldParity",
    "ParityReport",
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
