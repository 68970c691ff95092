"""The names and numbers of the rlpol artifact format, each written once.

The exporter writes them and the runtime reads them; both import them from here, so the two
sides cannot drift apart. Dtype names come from the one dtype table, :mod:`rlpol.dtypes`. ``docs/artifact-format.md`` explains each one.

Examples:
    >>> from rlpol.artifact.constants import FORMAT_SUFFIXES, METADATA_KEY
    >>> METADATA_KEY, FORMAT_SUFFIXES[".pt"]
    ('rlpol', 'torchscript')
"""

from __future__ import annotations

__all__ = [
    "AOTI_TARGET_KEY",
    "ARTIFACT_FORMATS",
    "BATCH_DIM",
    "CODE_FORMATS",
    "DISTRIBUTIONS",
    "EXPLORATION_TYPES",
    "EXTRA_FILE_NAME",
    "FORMAT",
    "FORMAT_SUFFIXES",
    "FORMAT_VERSION",
    "MAX_METADATA_BYTES",
    "METADATA_KEY",
    "ZIP_MAGIC",
]

# the metadata document's "format" marker and its schema version
FORMAT = "rlpol-artifact"
FORMAT_VERSION = 4  # 2: the "states" field (recurrent state pairs); 3: "env_imports";
# 4: TorchScript / .pt2 arguments named after the graph inputs, the "aot_inductor" format
# where the document is stored: ONNX metadata_props key; extra file of a torch archive
METADATA_KEY = "rlpol"
EXTRA_FILE_NAME = "rlpol.json"
MAX_METADATA_BYTES = 1_000_000
# torch archives (TorchScript, .pt2) are zip files; anything else is parsed as ONNX
ZIP_MAGIC = b"PK\x03\x04"
# the name of every batched graph tensor's leading dynamic axis
BATCH_DIM = "batch"

ARTIFACT_FORMATS = ("onnx", "torchscript", "exported_program", "aot_inductor")
# the file suffix an exporter reads the format from (a reader looks at the content instead);
# ".aoti.pt2" is matched before ".pt2" (torch's AOTInductor loader wants names ending ".pt2")
FORMAT_SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pt2": "exported_program",
    ".aoti.pt2": "aot_inductor",
}
# the formats whose loading runs code stored in the file: loaders refuse them unless trusted
CODE_FORMATS = ("torchscript", "exported_program", "aot_inductor")
# an AOTInductor package's ``aot_inductor.metadata`` keys: the metadata and the target the
# compiled code needs (JSON {"platform", "machine", "device", "isa"})
AOTI_TARGET_KEY = "rlpol.target"
# rlpol.toolkit.modules.ExplorationType's values, spelled here without importing torch
EXPLORATION_TYPES = ("deterministic", "random", "mode", "mean")
DISTRIBUTIONS = ("normal", "uniform")
