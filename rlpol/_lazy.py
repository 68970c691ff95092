"""Module attributes imported on first use: a package's ``__getattr__`` and ``__dir__``.

A package lists its public names with the module that defines each; the module is imported
only when a name is first looked up, then the value is cached as a plain attribute. This keeps
``import rlpol`` and ``rlpol --help`` from importing torch, onnx and the exporter, and lets a
lower layer (:mod:`rlpol.runtime`) forward names defined in a layer above it
(:mod:`rlpol.verify`) without an import cycle.

Examples:
    >>> import rlpol.runtime
    >>> rlpol.runtime.check_artifact.__module__  # a forwarding alias of rlpol.verify's
    'rlpol.verify.check'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    module_name: str, table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a module whose names ``table`` maps to modules.

    Args:
        module_name: the importing module's ``__name__``.
        table: public name -> the module that defines it (``{"load_policy": "rlpol.runtime"}``).

    Returns:
        ``(__getattr__, __dir__)``, to be assigned at the importing module's top level.
    """
    module = sys.modules[module_name]

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(module, name, value)  # later lookups find it without __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *table})

    return __getattr__, __dir__
