"""``ExportedPolicy``: an artifact used exactly where the eager policy was used."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol._compat import str_getter, str_setter
from rlpol.artifact.metadata import ArtifactMetadata, TensorInfo
from rlpol.artifact.naming import argument_names
from rlpol.artifact.reader import read_metadata
from rlpol.artifact.trust import require_trust
from rlpol.dtypes import NUMPY_DTYPE_NAMES, numpy_dtype, torch_dtype
from rlpol.errors import ArtifactError, InputMismatchError
from rlpol.runtime.backends import Backend, BoundRun, backend_for_format
from rlpol.runtime.session import PolicySession
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.noise import NoiseSpec, draw
from rlpol.toolkit.specs import spec_from_dict

__all__ = ["MAX_BOUND_ROWS", "MAX_BOUND_SHAPES", "ExportedPolicy", "load_policy"]

MAX_BOUND_ROWS = 4096
"""Batches of more rows than this are not IO-bound (the graph dominates; buffers would stay)."""
MAX_BOUND_SHAPES = 16
"""The (thread, batch shape) bindings an ExportedPolicy remembers at most."""


class _Input(NamedTuple):
    """One graph input: its metadata entry, torch dtype and trailing shape."""

    info: TensorInfo
    dtype: torch.dtype
    shape: torch.Size


class _ArrayInput(NamedTuple):
    """A graph input as the numpy path checks it (tuple shape, numpy dtype)."""

    key: NestedKey
    numpy_dtype: np.dtype
    shape: tuple[int, ...]
    input: _Input


class _ArrayOutput(NamedTuple):
    """A graph output as the numpy path checks it."""

    info: TensorInfo
    numpy_dtype: np.dtype
    shape: tuple[int, ...]


class ExportedPolicy(TensorDictModuleBase):
    """A loaded artifact as a tensordict module: reads its in_keys, writes its out_keys.

    Works on tensordicts with any number of leading batch dims (they are flattened into the
    graph's one batch axis and restored). Inputs are checked before the graph runs. A
    stochastic artifact (exploration ``random``) draws its noise inputs from torch's global
    generator (or ``generator``) in the order the eager modules draw them, so a seeded
    rollout with the artifact equals the seeded eager rollout.

    On the CPU it also implements the toolkit's
    :class:`~rlpol.toolkit.envs.fast_rollout.ArrayPolicy`: ``env.rollout`` then checks the
    inputs once and runs the graph on numpy buffers, with the same draws and result. With
    onnxruntime on the CPU, calls on a plain TensorDict are bound the same way from a batch
    shape's second call (per thread); outputs are copied out, never overwritten later.

    Attributes:
        metadata: the artifact's :class:`ArtifactMetadata`.
        exploration: the exploration type the graph computes (``"deterministic"``, ...).
        parameters_by_name: exploration parameters (``eps``, ``sigma``) fed to the graph,
            by graph input name; change them with :meth:`set_parameter`.

    Examples:
        >>> from rlpol import GymEnv, load_policy
        >>> policy = load_policy("/tmp/pendulum.onnx")  # see export_policy's example
        >>> GymEnv("Pendulum-v1").rollout(5, policy)["action"].shape
        torch.Size([5, 1])
    """

    def __init__(
        self,
        metadata: ArtifactMetadata,
        backend: Backend,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.metadata = metadata
        self.backend = backend
        self.device = backend.device
        self._generator = generator
        self.in_keys = [info.key for info in metadata.inputs]
        self.out_keys = [info.key for info in metadata.outputs]
        self._inputs = [
            _Input(info, torch_dtype(info.dtype), torch.Size(info.shape))
            for info in metadata.inputs
        ]
        self._outputs = [(info, torch_dtype(info.dtype)) for info in metadata.outputs]
        self._output_entries = [(info.key, tuple(info.shape)) for info in metadata.outputs]
        self._noise = [NoiseSpec(n.draw, n.distribution, n.shape) for n in metadata.noise]
        self.parameters_by_name = {p.name: float(p.value) for p in metadata.parameters}
        # the CPU path hands the backend numpy arrays: every dtype must be one numpy holds
        self._on_arrays = self.device.type == "cpu" and all(
            info.dtype in NUMPY_DTYPE_NAMES for info in (*metadata.inputs, *metadata.outputs)
        )
        # forward hands the graph numpy arrays where the backend's native call takes them
        # (onnxruntime on the CPU), and checks them as numpy dtypes and tuple shapes
        self._array_inputs = self._array_outputs = None
        if self._on_arrays and backend.prefers_arrays:
            self._array_inputs = [
                _ArrayInput(entry.info.key, numpy_dtype(entry.dtype), tuple(entry.shape), entry)
                for entry in self._inputs
            ]
            self._array_outputs = [
                _ArrayOutput(info, numpy_dtype(dtype), tuple(info.shape))
                for info, dtype in self._outputs
            ]
        self._str_in_keys = all(type(key) is str for key in self.in_keys)
        # forward binds the graph per (thread, batch shape) where it can: _remember_batch_shape
        self._bindable = (
            self._array_inputs is not None
            and self._str_in_keys
            and all(type(key) is str for key in self.out_keys)
        )
        self._bound_forwards: dict[tuple[int, torch.Size], _BoundForward | None] = {}
        self._bound_forwards_lock = threading.Lock()
        self._set_parameter_inputs()

    @property
    def generator(self) -> torch.Generator | None:
        """The generator noise inputs are drawn from (None: torch's global one)."""
        return self._generator

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        self._generator = generator
        self._bound_forwards = {}  # they draw from the generator they were bound with

    @property
    def exploration(self) -> str:
        return self.metadata.exploration

    def sample_inputs(self, batch_size: int) -> TensorDictBase:
        """Random inputs of batch ``[batch_size]``, drawn from the recorded observation spec.

        Keys the spec does not describe are filled by dtype (standard normal floats, zero
        integers and bools). Used by ``rlpol export``'s quick check and ``rlpol bench``.
        """
        spec = None
        if self.metadata.observation_spec is not None:
            spec = spec_from_dict(self.metadata.observation_spec, device=self.device)
        source = {}
        for info, dtype, shape in self._inputs:
            if spec is not None and info.key in spec:
                source[info.key] = spec[info.key].rand((batch_size,))
            elif dtype.is_floating_point:
                source[info.key] = torch.randn((batch_size, *shape), device=self.device)
            else:
                source[info.key] = torch.zeros((batch_size, *shape), dtype=dtype,
                                               device=self.device)
        return TensorDict(source, batch_size=[batch_size], device=self.device)

    def session(self, *, batch: int = 1) -> PolicySession:
        """A :class:`~rlpol.runtime.session.PolicySession`: numpy steps that hold the state.

        For deployment loops without an env: ``session.step({"observation": obs})`` feeds
        the recurrent state the previous step wrote (the metadata's ``states``) and the
        reset input, and returns the other outputs as numpy arrays.

        Args:
            batch: the number of rows stepped together.
        """
        return PolicySession(self, batch)

    def set_parameter(self, name: str, value: float) -> None:
        """Set an exploration parameter input (e.g. ``"param.1.eps"``) for later calls."""
        if name not in self.parameters_by_name:
            raise KeyError(
                f"{name!r} is not a parameter of this artifact; it has "
                f"{sorted(self.parameters_by_name)}"
            )
        self.parameters_by_name[name] = float(value)
        self._set_parameter_inputs()

    def _set_parameter_inputs(self) -> None:
        """The parameters as graph inputs: 0-d float32 tensors (and their numpy views)."""
        self._parameter_tensors = [
            torch.tensor(value, dtype=torch.float32, device=self.device)
            for value in self.parameters_by_name.values()
        ]
        if self._array_inputs is not None:
            self._parameter_arrays = [tensor.numpy() for tensor in self._parameter_tensors]
        self._bound_forwards = {}  # their bound buffers hold the old parameters

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch_shape = tensordict.batch_size
        bound = self._bound_forwards.get((threading.get_ident(), batch_shape))
        if bound is not None and bound(tensordict):
            return tensordict
        dims = len(batch_shape)
        rows = batch_shape[0] if dims == 1 else math.prod(batch_shape)
        # both check every output before the first is written: a refused call writes nothing
        if self._array_inputs is None:
            outputs = self._run_tensors(tensordict, batch_shape, rows)
        else:
            outputs = self._run_arrays(tensordict, batch_shape, rows)
        # A plain TensorDict takes the outputs without re-validating them: their leading dims
        # are its batch size by construction and they live on the inputs' device.
        plain = type(tensordict) is TensorDict and tensordict.device in (None, self.device)
        set_entry = str_setter(tensordict) if plain else tensordict.set
        for (key, shape), value in zip(self._output_entries, outputs):
            if dims != 1:
                value = value.reshape((*batch_shape, *shape))
            if plain and type(key) is str:
                set_entry(key, value)
            else:
                tensordict.set(key, value)
        if plain and self._bindable:
            self._remember_batch_shape(batch_shape)
        return tensordict

    def _remember_batch_shape(self, batch_shape: torch.Size) -> None:
        """Bind the graph for this thread's calls on ``batch_shape``, from its second call.

        A :class:`_BoundForward` runs a batch-1 call through onnxruntime's IO binding on
        reused buffers, about 60% of the time of ``session.run``; at large batches the graph
        dominates, so batches of more than :data:`MAX_BOUND_ROWS` rows are not bound (nor
        hold buffers). A shape is bound on its second call, so that one-off shapes bind
        nothing, and per thread, as the buffers serve one call at a time. At most
        :data:`MAX_BOUND_SHAPES` shapes are remembered; a new one replaces the oldest seen
        only once, else the oldest bound.
        """
        if math.prod(batch_shape) > MAX_BOUND_ROWS:
            return
        key = (threading.get_ident(), batch_shape)
        with self._bound_forwards_lock:
            bound_forwards = self._bound_forwards
            if key not in bound_forwards:
                if len(bound_forwards) >= MAX_BOUND_SHAPES:
                    oldest = next(iter(bound_forwards))
                    del bound_forwards[
                        next((k for k, bound in bound_forwards.items() if bound is None), oldest)
                    ]
                bound_forwards[key] = None
            elif bound_forwards[key] is None:
                bound_forwards[key] = _BoundForward(self, batch_shape)

    def _run_tensors(
        self, tensordict: TensorDictBase, batch_shape: torch.Size, rows: int
    ) -> list[torch.Tensor]:
        """Check the inputs and run the graph on tensors.

        Returns:
            the outputs, of shape ``[rows, *info.shape]`` and the declared dtypes.
        """
        dims = len(batch_shape)
        inputs = []
        for entry in self._inputs:
            value = tensordict.get(entry[0].key, None)
            if (
                value is None
                or value.dtype != entry[1]
                or value.shape[dims:] != entry[2]
                or value.device != self.device
                or value.requires_grad
            ):
                value = self._input(tensordict, *entry, rows)  # raises, or detaches
            elif dims != 1:
                value = value.reshape((rows, *entry[2]))
            inputs.append(value)
        for spec in self._noise:
            noise = draw(spec, batch_shape, device=self.device, generator=self.generator)
            inputs.append(noise if dims == 1 else noise.reshape((rows, *spec.shape)))
        inputs.extend(self._parameter_tensors)
        shapes = [((rows, *info.shape), dtype) for info, dtype in self._outputs]
        outputs = self.backend.run(inputs, shapes)
        for (_, shape), (info, dtype), value in zip(self._output_entries, self._outputs, outputs):
            if value.shape[1:] != shape or value.shape[0] != rows or value.dtype != dtype:
                raise _output_mismatch(info, value, rows)
        return outputs

    def _run_arrays(
        self, tensordict: TensorDictBase, batch_shape: torch.Size, rows: int
    ) -> list[torch.Tensor]:
        """:meth:`_run_tensors` through the backend's numpy call (onnxruntime on the CPU).

        Inputs and outputs are checked as numpy dtypes and tuple shapes, about ten times
        cheaper than torch's dtypes and ``torch.Size``: at small batches the checks are a
        large part of a call. An input that ``Tensor.numpy()`` refuses (a missing entry, a
        CUDA tensor, one that requires grad, a dtype numpy lacks) or that fails a check goes
        through :meth:`_input`, which raises its error or detaches it.
        """
        dims = len(batch_shape)
        get = tensordict.get
        if type(tensordict) is TensorDict and self._str_in_keys:
            get = str_getter(tensordict)  # the same lookup, without parsing the key
        arrays = []
        for key, dtype, shape, entry in self._array_inputs:
            value = get(key, None)
            try:
                array = value.numpy()
                checked = array.dtype == dtype and array.shape[dims:] == shape
            except (AttributeError, RuntimeError, TypeError):
                checked = False
            if not checked:
                array = self._input(tensordict, *entry, rows).numpy()
            elif dims != 1:
                array = array.reshape((rows, *shape))
            arrays.append(array)
        for spec in self._noise:
            noise = draw(spec, batch_shape, device=self.device, generator=self.generator).numpy()
            arrays.append(noise if dims == 1 else noise.reshape((rows, *spec.shape)))
        arrays.extend(self._parameter_arrays)
        outputs = []
        for (info, dtype, shape), array in zip(
            self._array_outputs, self.backend.run_arrays(arrays)
        ):
            if array.shape != (rows, *shape) or array.dtype != dtype:
                raise _output_mismatch(info, array, rows)
            outputs.append(torch.from_numpy(array))
        return outputs

    def array_kernel(self, root: TensorDictBase) -> _ArrayKernel | None:
        """This policy as a kernel on numpy arrays for tensordicts like ``root``.

        Implements :class:`~rlpol.toolkit.envs.fast_rollout.ArrayPolicy` (used by
        ``env.rollout``): checks ``root``'s inputs as :meth:`forward` does, raising the same
        :class:`InputMismatchError`, and returns None where only :meth:`forward` applies (a
        CUDA policy, dtypes numpy lacks, hooks registered on the module, a stateful artifact
        whose state pairs are not root entries ``key`` -> ``("next", key)``).

        A stateful artifact's kernel reads each state and its reset input (``is_init``) from
        the root and writes the next state to ``("next", key)``; the env carries it to the
        next root (a ``TensorDictPrimer``; see :func:`~rlpol.toolkit.envs.fast_rollout.\
array_kernel_for`).

        Raises:
            InputMismatchError: an input is missing or has the wrong shape, dtype or device.
        """
        rows = math.prod(root.batch_size)
        for info, dtype, shape in self._inputs:
            self._input(root, info, dtype, shape, rows)
        if (not self._on_arrays or self._forward_hooks or self._forward_pre_hooks
                or not self._states_on_root()):  # fmt: skip
            return None
        return _ArrayKernel(self, root.batch_size)

    def _states_on_root(self) -> bool:
        """Whether every state pair reads a root entry ``key`` (and a root reset input) and
        writes ``("next", key)``: what an array rollout's buffers hold (True if stateless)."""
        inputs = {info.name: info.key for info in self.metadata.inputs}
        outputs = {info.name: info.key for info in self.metadata.outputs}
        for state in self.metadata.states:
            key = inputs.get(state.input)
            if type(key) is not str or outputs.get(state.output) != ("next", key):
                return False
            if state.reset_input is not None and type(inputs.get(state.reset_input)) is not str:
                return False
        return True

    def _input(
        self,
        tensordict: TensorDictBase,
        info: TensorInfo,
        dtype: torch.dtype,
        shape: torch.Size,
        rows: int,
    ) -> torch.Tensor:
        value = tensordict.get(info.key, None)
        if value is None:
            raise InputMismatchError(
                f"the policy reads {info.key!r} ({info.dtype} of shape [*B, "
                f"{', '.join(map(str, shape))}]) but the tensordict has no such entry; it holds "
                f"{sorted(map(str, tensordict.keys(include_nested=True, leaves_only=True)))}"
            )
        batch_dims = tensordict.batch_dims
        if value.shape[batch_dims:] != shape or value.dtype != dtype:
            raise InputMismatchError(
                f"{info.key!r}: expected {info.dtype} of shape [*B, "
                f"{', '.join(map(str, shape))}], received {str(value.dtype).removeprefix('torch.')}"
                f" of shape {list(value.shape)} (batch dims {list(tensordict.batch_size)})"
            )
        if value.device != self.device:
            raise InputMismatchError(
                f"{info.key!r} is on {value.device} but the policy was loaded on {self.device}; "
                f"load it with device={str(value.device)!r} or move the env to {self.device}"
            )
        if value.requires_grad:
            value = value.detach()
        return value.reshape((rows, *shape))

    def __repr__(self) -> str:
        return (
            f"ExportedPolicy(format={self.metadata.artifact_format}, backend={self.backend.name}, "
            f"device={self.device}, exploration={self.exploration}, in_keys={self.in_keys}, "
            f"out_keys={self.out_keys})"
        )


class _ArrayKernel:
    """An :class:`ExportedPolicy` on numpy arrays for one batch shape (an ``ArrayKernel``).

    Inputs are copied into buffers bound to the graph once (:meth:`Backend.bind_arrays`);
    each call draws the noise inputs into their buffers with the generator the policy uses,
    in its order and shapes (``[*batch_shape, *spec.shape]``), then runs the graph.
    """

    def __init__(self, policy: ExportedPolicy, batch_shape: torch.Size) -> None:
        rows = math.prod(batch_shape)
        self.in_keys = list(policy.in_keys)
        self.out_keys = list(policy.out_keys)
        examples = [
            np.empty((rows, *shape), dtype=numpy_dtype(dtype))
            for _, dtype, shape in policy._inputs
        ]
        examples += [np.empty((rows, *spec.shape), dtype=np.float32) for spec in policy._noise]
        examples += [tensor.numpy() for tensor in policy._parameter_tensors]
        self._run: BoundRun = policy.backend.bind_arrays(examples)
        count = len(self.in_keys)
        self.inputs = self._run.inputs[:count]  # the graph's in_keys inputs, [rows, *shape]
        generator = policy.generator
        # device: the buffers' own, whatever torch.set_default_device says
        self._draws = [
            (
                torch.randn if spec.distribution == "normal" else torch.rand,
                (*batch_shape, *spec.shape),
                generator,
                tensor.view((*batch_shape, *spec.shape)),
                tensor.device,
            )
            for spec, tensor in zip(policy._noise, self._run.tensors[count:])
        ]
        for array, tensor in zip(
            self._run.inputs[count + len(self._draws):], policy._parameter_tensors
        ):
            array[...] = tensor.numpy()
        self._shapes = [(rows, *info.shape) for info, _ in policy._outputs]
        self._reshape: bool | None = None  # whether outputs need forward's reshape (1st call)

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        for buffer, array in zip(self.inputs, inputs):
            np.copyto(buffer, array)
        return self.run()

    def run(self) -> list[np.ndarray]:
        """Draw the noise inputs and run the graph on what :attr:`inputs` holds."""
        for sampler, shape, generator, out, device in self._draws:
            sampler(shape, generator=generator, out=out, device=device)
        outputs = self._run()
        if self._reshape is None:
            self._reshape = any(a.shape != s for a, s in zip(outputs, self._shapes))
        if self._reshape:  # as forward does: torch's reshape, and its error
            outputs = [
                torch.from_numpy(array).reshape(shape).numpy()
                for array, shape in zip(outputs, self._shapes)
            ]
        return outputs


class _BoundForward:
    """:meth:`ExportedPolicy.forward` on plain TensorDicts of one batch shape, bound.

    Reads and checks each input straight into an :class:`_ArrayKernel`'s bound buffer, runs
    the kernel (same draws as forward) and writes a copy of each output in batch shape (the
    kernel reuses its output buffers, so what the tensordict receives is never overwritten).
    Made only after forward's checked call on this batch shape succeeded.
    """

    def __init__(self, policy: ExportedPolicy, batch_shape: torch.Size) -> None:
        self._kernel = _ArrayKernel(policy, batch_shape)
        self._dims = len(batch_shape)
        self._inputs = [
            (key, dtype, shape, buffer.reshape((*batch_shape, *shape)))
            for (key, dtype, shape, _), buffer in zip(policy._array_inputs, self._kernel.inputs)
        ]
        self._outputs = [(key, (*batch_shape, *shape)) for key, shape in policy._output_entries]
        self._device = policy.device

    def __call__(self, tensordict: TensorDictBase) -> bool:
        """Run on ``tensordict`` and write the outputs into it.

        Returns:
            False, having drawn and written nothing, where an input needs forward's checked
            path (a missing entry, another dtype or shape, grad, another device, not a plain
            TensorDict); True otherwise.
        """
        if type(tensordict) is not TensorDict or tensordict.device not in (None, self._device):
            return False
        dims = self._dims
        get = str_getter(tensordict)
        for key, dtype, shape, buffer in self._inputs:
            try:
                array = get(key, None).numpy()
                if array.dtype != dtype or array.shape[dims:] != shape:
                    return False
            except (AttributeError, RuntimeError, TypeError):
                return False
            buffer[...] = array
        set_entry = str_setter(tensordict)
        for (key, shape), output in zip(self._outputs, self._kernel.run()):
            value = torch.from_numpy(output.copy())
            if dims != 1:  # torch's reshape, as forward's (numpy's differs on empty batches)
                value = value.reshape(shape)
            set_entry(key, value)
        return True


def _output_mismatch(
    info: TensorInfo, value: torch.Tensor | np.ndarray, rows: int
) -> ArtifactError:
    return ArtifactError(
        f"{info.key!r}: the graph returned {str(value.dtype).removeprefix('torch.')} of shape "
        f"{list(value.shape)} but its metadata declares {info.dtype} of shape "
        f"[{rows}, {', '.join(map(str, info.shape))}]; the graph does not match its metadata, "
        "re-export the policy with `rlpol export`"
    )


def load_policy(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    backend: str | None = None,
    generator: torch.Generator | None = None,
    trust_code: bool = False,
) -> ExportedPolicy:
    """Load an rlpol artifact as an :class:`ExportedPolicy`.

    The format is read from the file's content (ONNX, TorchScript, ``.pt2`` or an
    AOTInductor ``.aoti.pt2`` package), not its name. Loading parses the metadata as JSON
    and validates it before any graph is loaded. Only ONNX loads without ``trust_code``:
    the other formats store code that loading or running them executes (see
    ``docs/artifact-format.md``, "What loading runs").

    Args:
        path: the artifact file.
        device: ``"cpu"`` or ``"cuda"``; inputs must live there (AOTInductor packages:
            ``"cpu"``, the device they were compiled for).
        backend: ``"onnxruntime"``, ``"torchscript"``, ``"torch.export"`` or
            ``"aot_inductor"``; default: the one that runs the artifact's format.
        generator: the generator noise inputs are drawn from (default: torch's global one).
        trust_code: allow loading a format that runs code stored in the file: TorchScript
            (``torch.jit.load`` compiles the archive's TorchScript, which can read any file
            the process can), ``.pt2`` (``torch.export.load`` unpickles and evaluates
            strings) and AOTInductor packages (a shared library is loaded and run). Only
            pass it for files you exported yourself or got from a source you trust.

    Raises:
        ArtifactError: the file is missing, foreign, corrupt, or its metadata does not match
            its graph; or it is a format that runs code and ``trust_code`` is False.
        BackendUnavailableError: the backend or device is not available here, or an
            AOTInductor package was compiled for another machine.
    """
    artifact_format, metadata = read_metadata(path)
    require_trust(path, artifact_format, trust_code)
    device = torch.device(device)
    backend_class = backend_for_format(artifact_format, backend)
    runner = backend_class(Path(path), device)
    _check_graph_names(runner, metadata, path)
    return ExportedPolicy(metadata, runner, generator=generator)


# the format version from which TorchScript / .pt2 arguments carry the graph inputs' names
_NAMED_ARGUMENTS_VERSION = 4


def _check_graph_names(runner: Backend, metadata: ArtifactMetadata, path: object) -> None:
    expected_in = list(metadata.input_names)
    if runner.name != "onnxruntime":  # forward's arguments are code: identifiers
        if metadata.format_version < _NAMED_ARGUMENTS_VERSION:
            expected_in = None  # exported before they were named: tracer-made names
        else:
            expected_in = argument_names(expected_in)
    expected_out = [info.name for info in metadata.outputs]
    if expected_in is not None:
        _compare_names("inputs", runner.input_names(), expected_in, path)
    _compare_names("outputs", runner.output_names(), expected_out, path)


def _compare_names(
    what: str, found: Sequence[str] | None, expected: Sequence[NestedKey], path: object
) -> None:
    if found is not None and list(found) != list(expected):
        raise ArtifactError(
            f"{str(path)!r}: its metadata describes graph {what} {list(expected)} but the graph "
            f"has {list(found)}; the metadata was tampered with or belongs to another graph. "
            "Re-export the policy with `rlpol export`."
        )
