"""Inference backends: onnxruntime, TorchScript and torch.export programs, on CPU or CUDA.

A backend runs the graph on a list of tensors (one per graph input, in graph order, already
on the backend's device and of the right dtype) and returns one tensor per output; it is
told each output's shape and dtype so that a GPU backend can write into buffers it owns. None of
them falls back silently: asking for CUDA where it is missing raises
:class:`BackendUnavailableError` with the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rlpol.errors import ArtifactError, BackendUnavailableError

__all__ = [
    "BACKENDS",
    "Backend",
    "ExportedProgramBackend",
    "OnnxRuntimeBackend",
    "TorchScriptBackend",
    "backend_for_format",
]


OutputShape = tuple[tuple[int, ...], torch.dtype]


class Backend:
    """Runs one loaded graph."""

    name: str

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def input_names(self) -> list[str] | None:
        """The graph's input names when the format records them (else None)."""
        return None

    def output_names(self) -> list[str] | None:
        """The graph's output names when the format records them (else None)."""
        return None

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        """Run the graph; ``outputs`` holds each output's full shape and dtype."""
        raise NotImplementedError


def _require_cuda(device: torch.device, backend: str) -> None:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device 'cuda' was asked for the {backend} backend but torch sees no CUDA GPU; "
            "use --device cpu, or run on a machine with a GPU and a CUDA build of torch"
        )


class OnnxRuntimeBackend(Backend):
    """onnxruntime: CPUExecutionProvider, or CUDAExecutionProvider with IO binding.

    Args:
        path: the ``.onnx`` file.
        device: ``cpu`` or ``cuda[:i]``.
        intra_op_threads: onnxruntime's intra-op threads (default 1: lowest latency for the
            small batches of a rollout; raise it for large batches).
    """

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, device: torch.device, *, intra_op_threads: int | None = 1
    ) -> None:
        super().__init__(device)
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if device.type == "cuda":
            _require_cuda(device, self.name)
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailableError(
                    "device 'cuda' needs onnxruntime's CUDAExecutionProvider, which this "
                    f"onnxruntime {ort.__version__} lacks (providers: "
                    f"{ort.get_available_providers()}); install it with "
                    "`pip uninstall -y onnxruntime && pip install onnxruntime-gpu`"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            raise ArtifactError(
                f"onnxruntime cannot load {str(path)!r}: {str(error).strip().splitlines()[0]}"
            ) from error
        self._inputs = [value.name for value in self.session.get_inputs()]
        self._outputs = [value.name for value in self.session.get_outputs()]

    def input_names(self) -> list[str]:
        return list(self._inputs)

    def output_names(self) -> list[str]:
        return list(self._outputs)

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        if self.device.type == "cuda":
            return self._run_bound(inputs, outputs)
        feed = {name: tensor.numpy() for name, tensor in zip(self._inputs, inputs)}
        return [torch.from_numpy(array) for array in self.session.run(self._outputs, feed)]

    def _run_bound(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        """Run on CUDA tensors in place: inputs and outputs bound by pointer, no host copy."""
        binding = self.session.io_binding()
        device_id = self.device.index or 0
        for name, tensor in zip(self._inputs, inputs):
            tensor = tensor.contiguous()
            binding.bind_input(
                name, "cuda", device_id, _numpy_dtype(tensor.dtype), list(tensor.shape),
                tensor.data_ptr(),
            )
        results = [torch.empty(shape, dtype=dtype, device=self.device) for shape, dtype in outputs]
        for name, tensor in zip(self._outputs, results):
            binding.bind_output(
                name, "cuda", device_id, _numpy_dtype(tensor.dtype), list(tensor.shape),
                tensor.data_ptr(),
            )
        self.session.run_with_iobinding(binding)
        return results


class TorchScriptBackend(Backend):
    """A TorchScript archive loaded with ``torch.jit.load`` (no Python code is executed)."""

    name = "torchscript"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__(device)
        _require_cuda(device, self.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.module = torch.jit.load(str(path), map_location=device)
        except Exception as error:  # torch.jit.load raises RuntimeError and others
            raise ArtifactError(
                f"torch.jit.load cannot read {str(path)!r}: "
                f"{str(error).strip().splitlines()[0][:300]}"
            ) from error
        self.module.eval()

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        with torch.inference_mode():
            outputs = self.module(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


class ExportedProgramBackend(Backend):
    """A ``.pt2`` archive from ``torch.export.save``, loaded with ``torch.export.load``."""

    name = "torch.export"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__(device)
        _require_cuda(device, self.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.load(str(path))
        except Exception as error:  # torch.export.load raises many types
            raise ArtifactError(
                f"torch.export.load cannot read {str(path)!r}: "
                f"{str(error).strip().splitlines()[0][:300]}"
            ) from error
        self.module = program.module().to(device)

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        with torch.inference_mode():
            outputs = self.module(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


BACKENDS: dict[str, type[Backend]] = {
    "onnx": OnnxRuntimeBackend,
    "torchscript": TorchScriptBackend,
    "exported_program": ExportedProgramBackend,
}
_BACKEND_NAMES = {cls.name: fmt for fmt, cls in BACKENDS.items()}


def backend_for_format(artifact_format: str, backend: str | None) -> type[Backend]:
    """The backend class for an artifact format, checking an explicit ``backend`` name."""
    if backend is None:
        return BACKENDS[artifact_format]
    if backend not in _BACKEND_NAMES:
        raise BackendUnavailableError(
            f"unknown backend {backend!r}; expected one of {sorted(_BACKEND_NAMES)}"
        )
    if _BACKEND_NAMES[backend] != artifact_format:
        raise BackendUnavailableError(
            f"backend {backend!r} cannot run a {artifact_format} artifact; use "
            f"{BACKENDS[artifact_format].name!r} (or leave backend unset)"
        )
    return BACKENDS[artifact_format]


def _numpy_dtype(dtype: torch.dtype) -> type:
    return torch.empty((), dtype=dtype).numpy().dtype.type if dtype != torch.bool else np.bool_
