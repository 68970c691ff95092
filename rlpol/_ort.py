"""Opening an onnxruntime session the way every rlpol runner does, without importing torch.

:class:`rlpol.runtime.backends.OnnxRuntimeBackend` (which imports torch for its tensors) and
the torch-free policy server (:mod:`rlpol.serve`) both open their sessions here, so the two
agree on threads, log level and the error a bad file gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from rlpol.errors import ArtifactError

__all__ = ["open_session"]


def open_session(
    path: str | Path,
    *,
    providers: Sequence[Any] = ("CPUExecutionProvider",),
    intra_op_threads: int | None = 1,
) -> ort.InferenceSession:
    """An ``onnxruntime.InferenceSession`` of the ``.onnx`` file at ``path``.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers, in order (default: the CPU).
        intra_op_threads: onnxruntime's intra-op threads (1: lowest latency for small
            batches; None: onnxruntime's default, one per core). Inter-op threads are 1
            whenever this is set.

    Raises:
        ArtifactError: onnxruntime cannot load the file (its first line of explanation).
    """
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as error:  # onnxruntime raises its own exception types
        raise ArtifactError(
            f"onnxruntime cannot load {str(path)!r}: {str(error).strip().splitlines()[0]}"
        ) from error
