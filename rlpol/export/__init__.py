"""Export TorchRL-style tensordict policies to self-describing ONNX / TorchScript artifacts.

The key naming rule (:func:`key_to_name`, :func:`name_to_key`) is part of the artifact
contract, defined in :mod:`rlpol.artifact.naming` and exported here too.

Forwarding aliases: the quick check (``quick_check``, ``QuickCheck``, ``compare_on_inputs``)
is defined in :mod:`rlpol.verify`, above both export and runtime; it stays importable from
here through a lazy module ``__getattr__`` that imports :mod:`rlpol.verify` on first use.
"""

from rlpol._lazy import lazy_attributes
from rlpol.artifact.naming import key_to_name, name_to_key
from rlpol.export.api import FORMATS, export_policy, format_for_path
from rlpol.export.policy_file import LoadedPolicyFile, load_policy_file

_FORWARDED = dict.fromkeys(["QuickCheck", "compare_on_inputs", "quick_check"], "rlpol.verify")
__getattr__, __dir__ = lazy_attributes(__name__, _FORWARDED)

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
