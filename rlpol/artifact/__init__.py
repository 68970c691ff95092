"""The artifact contract shared by :mod:`rlpol.export` (which writes it) and :mod:`rlpol.runtime`.

Nothing here imports torch, the exporter or the runtime: reading and validating an artifact's
metadata (``rlpol inspect``) needs only ``json``, ``zipfile`` and, for ONNX files, ``onnx``.

* :mod:`rlpol.artifact.constants` -- the format's names and numbers (``METADATA_KEY``, ...),
  imported from there (``from rlpol.artifact.constants import FORMAT_VERSION``);
* :mod:`rlpol.artifact.metadata` -- the metadata schema: :class:`ArtifactMetadata`,
  :func:`parse_metadata` (checks untrusted JSON with :mod:`rlpol.artifact._validate`);
* :mod:`rlpol.artifact.naming` -- the reversible tensordict key <-> graph name rule;
* :mod:`rlpol.artifact.reader` -- reading a file's format and metadata: :func:`read_metadata`.
"""

from rlpol.artifact.metadata import (
    ArtifactMetadata,
    NoiseInfo,
    ParameterInfo,
    StateInfo,
    TensorInfo,
    parse_metadata,
)
from rlpol.artifact.naming import key_to_name, name_to_key
from rlpol.artifact.reader import detect_format, read_metadata

__all__ = [
    "ArtifactMetadata",
    "NoiseInfo",
    "ParameterInfo",
    "StateInfo",
    "TensorInfo",
    "detect_format",
    "key_to_name",
    "name_to_key",
    "parse_metadata",
    "read_metadata",
]
