"""Inference backends: onnxruntime, TorchScript, torch.export programs and AOTInductor packages.

A backend runs the graph on a list of tensors (one per graph input, in graph order, already
on the backend's device and of the right dtype) and returns one tensor per output; it is
told each output's shape and dtype so that a GPU backend can write into buffers it owns. None of
them falls back silently: asking for CUDA where it is missing raises
:class:`BackendUnavailableError` with the fix.

On the CPU a backend also runs on numpy arrays: :meth:`Backend.run_arrays` for one call, and
:meth:`Backend.bind_arrays` for many calls on inputs of fixed shapes (a rollout), which
reuses its input and output buffers (onnxruntime's IO binding) instead of allocating per call.
"""

from __future__ import annotations

import contextlib
import platform
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rlpol._compat import aoti_load, bound_runner, runnable_cpu_isas, session_runner
from rlpol._ort import open_session
from rlpol.artifact.reader import read_aoti_target
from rlpol.dtypes import numpy_dtype
from rlpol.errors import ArtifactError, BackendUnavailableError

__all__ = [
    "BACKENDS",
    "AotInductorBackend",
    "Backend",
    "BoundRun",
    "ExportedProgramBackend",
    "OnnxRuntimeBackend",
    "TorchScriptBackend",
    "backend_for_format",
]


OutputShape = tuple[tuple[int, ...], torch.dtype]


class Backend:
    """Runs one loaded graph."""

    name: str
    # whether run_arrays is the native call (else it wraps run), on the CPU
    prefers_arrays = False

    def __init__(self, device: torch.device) -> None:
        # CPU tensors report device "cpu" (no index): "cpu:0" would refuse every input
        self.device = torch.device("cpu") if device.type == "cpu" else device

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

    def run_arrays(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the graph on the CPU on numpy arrays (graph order); returns new arrays."""
        outputs = self.run([torch.from_numpy(array) for array in inputs], ())
        return [output.numpy() for output in outputs]

    def bind_arrays(self, inputs: Sequence[np.ndarray]) -> BoundRun:
        """A :class:`BoundRun` for repeated CPU runs on inputs shaped like ``inputs``."""
        return BoundRun(self, inputs)


class BoundRun:
    """Repeated CPU runs of one graph on inputs of fixed shapes and dtypes.

    Write the inputs into :attr:`inputs` (one C-contiguous array per graph input, in graph
    order), then call. The default runs :meth:`Backend.run_arrays`; backends override it to
    skip per-call allocation.

    Attributes:
        inputs: the arrays the next call reads.
        tensors: the same memory as torch tensors (e.g. to draw noise into with ``out=``).
    """

    def __init__(self, backend: Backend, inputs: Sequence[np.ndarray]) -> None:
        self.backend = backend
        self.inputs = [np.empty_like(array, order="C") for array in inputs]
        self.tensors = [torch.from_numpy(array) for array in self.inputs]

    def __call__(self) -> list[np.ndarray]:
        """Run the graph; the outputs may be overwritten by the next call."""
        return self.backend.run_arrays(self.inputs)


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
    prefers_arrays = True

    def __init__(
        self, path: str | Path, device: torch.device, *, intra_op_threads: int | None = 1
    ) -> None:
        super().__init__(device)
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
        self.session = open_session(path, providers=providers, intra_op_threads=intra_op_threads)
        self._inputs = [value.name for value in self.session.get_inputs()]
        self._outputs = [value.name for value in self.session.get_outputs()]
        # InferenceSession.run re-validates the feed's names on every call; the names were
        # checked against the metadata at load, so CPU calls go to the C session directly.
        self._run = session_runner(self.session)

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
        return [torch.from_numpy(array) for array in self._run(self._outputs, feed, None)]

    def run_arrays(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self._run(self._outputs, dict(zip(self._inputs, inputs)), None)

    def bind_arrays(self, inputs: Sequence[np.ndarray]) -> BoundRun:
        if self.device.type != "cpu":
            return super().bind_arrays(inputs)
        return _OnnxBoundRun(self, inputs)

    def _run_bound(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        """Run on CUDA tensors in place: inputs and outputs bound by pointer, no host copy."""
        binding = self.session.io_binding()
        device_id = self.device.index or 0
        for name, tensor in zip(self._inputs, inputs):
            tensor = tensor.contiguous()
            binding.bind_input(
                name, "cuda", device_id, numpy_dtype(tensor.dtype).type, list(tensor.shape),
                tensor.data_ptr(),
            )
        results = [torch.empty(shape, dtype=dtype, device=self.device) for shape, dtype in outputs]
        for name, tensor in zip(self._outputs, results):
            binding.bind_output(
                name, "cuda", device_id, numpy_dtype(tensor.dtype).type, list(tensor.shape),
                tensor.data_ptr(),
            )
        self.session.run_with_iobinding(binding)
        return results


class _OnnxBoundRun(BoundRun):
    """IO binding on the CPU: inputs bound once; outputs bound to arrays sized by the first run."""

    def __init__(self, backend: OnnxRuntimeBackend, inputs: Sequence[np.ndarray]) -> None:
        super().__init__(backend, inputs)
        self._binding = backend.session.io_binding()
        for name, array in zip(backend._inputs, self.inputs):
            self._binding.bind_input(
                name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data
            )
        self._outputs: list[np.ndarray] | None = None
        # the C session's call, as Backend._run: the public one adds a Python frame per call
        self._run_bound = bound_runner(backend.session, self._binding)

    def __call__(self) -> list[np.ndarray]:
        if self._outputs is not None:
            self._run_bound()
            return self._outputs
        first = self.backend.run_arrays(self.inputs)
        self._outputs = [np.empty_like(array, order="C") for array in first]
        for name, array in zip(self.backend._outputs, self._outputs):
            self._binding.bind_output(
                name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data
            )
        for array, value in zip(self._outputs, first):
            array[...] = value
        return self._outputs


@contextlib.contextmanager
def _loader_errors(loader: str, path: str | Path) -> Iterator[None]:
    """Silence a torch loader's warnings; turn its failures into one ArtifactError sentence."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except Exception as error:  # torch's loaders raise RuntimeError and many others
        raise ArtifactError(
            f"{loader} cannot read {str(path)!r}: {str(error).strip().splitlines()[0][:300]}"
        ) from error


class TorchScriptBackend(Backend):
    """A TorchScript archive loaded with ``torch.jit.load`` (no Python code is executed)."""

    name = "torchscript"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__(device)
        _require_cuda(device, self.name)
        with _loader_errors("torch.jit.load", path):
            self.module = torch.jit.load(str(path), map_location=device)
        self.module.eval()
        # Inference only: with frozen parameters (and inputs that never require grad: the
        # policy detaches them) no output requires grad, so no grad-mode context is entered
        # per call; entering one costs more than the module call saves.
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        # Script modules take no Python hooks: calling forward skips nn.Module.__call__'s
        # dispatch (about 1.5 us of a 20 us batch-1 call).
        self._forward = self.module.forward
        self._arguments = [argument.name for argument in self._forward.schema.arguments[1:]]

    def input_names(self) -> list[str]:
        """``forward``'s argument names (``self`` aside), from its TorchScript schema."""
        return list(self._arguments)

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        outputs = self._forward(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]

    def bind_arrays(self, inputs: Sequence[np.ndarray]) -> BoundRun:
        return _TorchBoundRun(self, inputs)


class _TorchBoundRun(BoundRun):
    """The script module's ``forward`` called on tensors sharing the input arrays' memory."""

    def __init__(self, backend: TorchScriptBackend, inputs: Sequence[np.ndarray]) -> None:
        super().__init__(backend, inputs)
        self._forward = backend._forward

    def __call__(self) -> list[np.ndarray]:
        outputs = self._forward(*self.tensors)
        if not isinstance(outputs, (tuple, list)):
            outputs = [outputs]
        return [output.numpy() for output in outputs]


class ExportedProgramBackend(Backend):
    """A ``.pt2`` archive from ``torch.export.save``, loaded with ``torch.export.load``."""

    name = "torch.export"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__(device)
        _require_cuda(device, self.name)
        with _loader_errors("torch.export.load", path), open(path, "rb") as file:
            program = torch.export.load(file)  # a file object: any name loads without warning
        self.module = program.module().to(device)
        self._arguments = list(program.graph_signature.user_inputs)

    def input_names(self) -> list[str]:
        """The program's user input names (its ``forward``'s argument names)."""
        return list(self._arguments)

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        with torch.inference_mode():
            outputs = self.module(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


class AotInductorBackend(Backend):
    """An AOTInductor package (``.aoti.pt2``), loaded with ``torch._inductor.aoti_load_package``.

    The package holds a shared library compiled for a CPU; it is refused with a sentence
    before it is loaded when its recorded target (``rlpol.target``) is another platform,
    machine or device, or needs a vector instruction set this CPU lacks.
    """

    name = "aot_inductor"

    def __init__(self, path: str | Path, device: torch.device) -> None:
        super().__init__(device)
        check_aoti_target(read_aoti_target(path), device, path)
        with _loader_errors("torch._inductor.aoti_load_package", path):
            self._model = aoti_load(str(path))

    def run(
        self, inputs: Sequence[torch.Tensor], outputs: Sequence[OutputShape]
    ) -> list[torch.Tensor]:
        outputs = self._model(*inputs)
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def check_aoti_target(target: dict[str, str], device: torch.device, path: str | Path) -> None:
    """Refuse a package whose compiled code this machine (or ``device``) cannot run.

    Raises:
        BackendUnavailableError: naming what the package needs, what is here and the fix.
    """
    here = {"platform": sys.platform, "machine": platform.machine(), "device": device.type}
    for field, value in here.items():
        if target[field] != value:
            raise BackendUnavailableError(
                f"{str(path)!r} is an AOTInductor package compiled for {field} "
                f"{target[field]!r}, but this is {value!r}; export it again on the target "
                "machine (rlpol export -o model.aoti.pt2), or deploy the .onnx or .pt artifact"
            )
    isas = runnable_cpu_isas()
    if target["isa"] and target["isa"] not in isas:
        raise BackendUnavailableError(
            f"{str(path)!r} is an AOTInductor package whose CPU kernels use the "
            f"{target['isa']!r} instruction set, which this CPU lacks (it runs "
            f"{list(isas) or 'no vector instruction set'}); export it again on a machine "
            "like the target, or deploy the .onnx or .pt artifact"
        )


BACKENDS: dict[str, type[Backend]] = {
    "onnx": OnnxRuntimeBackend,
    "torchscript": TorchScriptBackend,
    "exported_program": ExportedProgramBackend,
    "aot_inductor": AotInductorBackend,
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

