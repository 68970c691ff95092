"""Export a :class:`PolicyGraph` to TorchScript (``.pt``) or a torch.export program (``.pt2``).

TorchScript: ``torch.jit.trace`` of the wrapper (torch 2.13 marks TorchScript deprecated; it
still serves C++/libtorch deployments). ``.pt2``: ``torch.export.export`` with a dynamic batch
axis, the modern successor (:mod:`rlpol.export.aoti` compiles that program ahead of time).
Both take one argument per graph input, named as :class:`PolicyGraph`'s ``forward`` names
them. Both archives carry the metadata as the extra file
``rlpol.json`` (:data:`rlpol.artifact.constants.EXTRA_FILE_NAME`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch

from rlpol.artifact.constants import BATCH_DIM, EXTRA_FILE_NAME
from rlpol.export.graph import PolicyGraph, tracer_errors

__all__ = ["export_program", "exported_program_bytes", "torchscript_bytes"]


def torchscript_bytes(
    graph: PolicyGraph, example_args: Sequence[torch.Tensor], metadata_json: str
) -> bytes:
    """Trace ``graph`` and return the TorchScript archive holding ``metadata_json``."""
    with tracer_errors("torch.jit.trace", graph):
        traced = torch.jit.trace(graph, tuple(example_args), check_trace=False, strict=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE_NAME: metadata_json})
    return buffer.getvalue()


def export_program(
    graph: PolicyGraph, example_args: Sequence[torch.Tensor]
) -> torch.export.ExportedProgram:
    """``torch.export`` ``graph`` with a dynamic batch axis (the program, not saved)."""
    batch = torch.export.Dim(BATCH_DIM)
    # one entry per named argument of graph.forward (see rlpol.export.graph)
    dynamic_shapes = tuple({0: batch} if arg.dim() > 0 else None for arg in example_args)
    with tracer_errors("torch.export", graph):
        return torch.export.export(
            graph, tuple(example_args), dynamic_shapes=dynamic_shapes, strict=False
        )


def exported_program_bytes(program: torch.export.ExportedProgram, metadata_json: str) -> bytes:
    """The ``.pt2`` archive of ``program``, holding ``metadata_json``."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={EXTRA_FILE_NAME: metadata_json})
    return buffer.getvalue()
