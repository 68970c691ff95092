"""Export TorchRL-style tensordict policies to self-describing ONNX / TorchScript artifacts."""

from rlpol.artifact.naming import key_to_name, name_to_key
from rlpol.export.api import FORMATS, export_policy, format_for_path
from rlpol.export.policy_file import LoadedPolicyFile, load_policy_file
from rlpol.export.verify import QuickCheck, compare_on_inputs, quick_check

__all__ = [
    "FORMATS",
    "LoadedPolicyFile",
    "QuickCheck",
    "compare_on_inputs",
    "export_policy",
    "format_for_path",
    "key_to_name",
    "load_policy_file",
    "name_to_key",
    "quick_check",
]
