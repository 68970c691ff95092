"""Compile a torch.export program ahead of time into an AOTInductor package (``.aoti.pt2``).

The package is ``torch._inductor.aoti_compile_and_package``'s zip: a shared library compiled
for this machine's CPU, its weights inside. Its ``aot_inductor.metadata`` option stores two
strings, which the package's ``*_metadata.json`` entries and the loaded model's
``get_metadata()`` return:

* ``"rlpol"`` (:data:`~rlpol.artifact.constants.METADATA_KEY`): the rlpol metadata document;
* ``"rlpol.target"`` (:data:`~rlpol.artifact.constants.AOTI_TARGET_KEY`): JSON
  ``{"platform": "linux", "machine": "x86_64", "device": "cpu", "isa": "avx2"}``, what the
  compiled code needs: ``sys.platform``, ``platform.machine()``, the device and the vector
  instruction set of its CPU kernels (``""`` for none), so that a loader elsewhere can refuse
  it with a sentence instead of crashing on an illegal instruction.

Compiling runs a C++ compiler: 10-40 s for rlpol's policies on 2 cores.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from rlpol._compat import aoti_compile, cpu_isa
from rlpol.artifact.constants import AOTI_TARGET_KEY, METADATA_KEY
from rlpol.errors import ExportError

__all__ = ["aoti_package_bytes", "aoti_target"]


def aoti_target() -> dict[str, str]:
    """What code compiled here needs: ``{"platform", "machine", "device", "isa"}``.

    Examples:
        >>> sorted(aoti_target())
        ['device', 'isa', 'machine', 'platform']
    """
    return {
        "platform": sys.platform,
        "machine": platform.machine(),
        "device": "cpu",
        "isa": cpu_isa(),
    }


def aoti_package_bytes(program: torch.export.ExportedProgram, metadata_json: str) -> bytes:
    """Compile ``program`` (CPU) into an AOTInductor package holding ``metadata_json``.

    Args:
        program: a torch.export program on the CPU (``rlpol.export.torchscript.export_program``).
        metadata_json: the rlpol metadata document.

    Returns:
        The bytes of the ``.aoti.pt2`` package.

    Raises:
        ExportError: inductor failed to compile the program (no C++ compiler, an unsupported
            op), with its first line.
    """
    metadata = {METADATA_KEY: metadata_json, AOTI_TARGET_KEY: json.dumps(aoti_target())}
    with tempfile.TemporaryDirectory(prefix="rlpol-aoti-") as directory:
        package = Path(directory) / "model.aoti.pt2"  # the zip's folder: "model.aoti/"
        try:
            aoti_compile(program, str(package), metadata)
        except Exception as error:  # inductor and the C++ toolchain raise many types
            message = str(error).strip().splitlines()
            raise ExportError(
                "torch._inductor.aoti_compile_and_package failed: "
                f"{type(error).__name__}: {message[0][:500] if message else ''}; AOTInductor "
                "needs a C++ compiler (g++ or clang++ on PATH), else export .pt2 or .onnx"
            ) from error
        return package.read_bytes()
