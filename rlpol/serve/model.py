"""A served artifact: its request-side tensor table and a batched numpy call of its graph.

:class:`ServedModel` reads an artifact's metadata (no torch) and opens its graph: ONNX in
onnxruntime (torch is never imported), TorchScript (and, when trusted, ``.pt2``) through
:mod:`rlpol.runtime.backends`, which imports torch on demand. :meth:`ServedModel.run` takes
the feeds of several requests (one dict of ``[rows_i, *shape]`` arrays each), concatenates
them along the batch axis, runs the graph once and splits the outputs back by rows.

What a request may feed (:attr:`ServedModel.slots`, by graph input name):

* ``input``: the observation-side inputs (``metadata.inputs`` except state and reset
  inputs), required;
* ``noise``: the random draws of a ``random`` artifact (``metadata.noise``), optional: the
  server draws the missing ones (:func:`draw_noise`);
* ``state`` / ``reset``: a recurrent (or frame-stacking) artifact's state inputs and its
  ``is_init``, optional outside a sequence (initial state, ``is_init`` True), and fed by the
  server inside one (:mod:`rlpol.serve.sequences`).

Exploration parameters (``param.1.eps``) are fed their metadata values.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlpol.artifact.metadata import ArtifactMetadata
from rlpol.artifact.reader import read_metadata
from rlpol.artifact.trust import require_trust
from rlpol.dtypes import by_name
from rlpol.errors import ArtifactError, ServeError

__all__ = ["ROLES", "ServedModel", "Slot", "draw_noise"]

ROLES = ("input", "noise", "state", "reset")

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Slot:
    """One tensor of a request or response.

    Attributes:
        name: the graph input or output name (``"observation"``, ``"noise.1.explore"``).
        role: ``"input"``, ``"noise"``, ``"state"``, ``"reset"`` (requests) or ``"output"``.
        dtype: its numpy dtype.
        datatype: its KServe v2 datatype (``"FP32"``).
        shape: the trailing shape; the batch axis is prepended.
        distribution: ``"normal"`` / ``"uniform"`` for noise, else None.
        initial: a state's fresh value (states only), else None.
    """

    name: str
    role: str
    dtype: np.dtype
    datatype: str
    shape: tuple[int, ...]
    distribution: str | None = None
    initial: float | None = None

    @property
    def row_size(self) -> int:
        """Elements per batch row."""
        return math.prod(self.shape)


def _slot(name: str, role: str, dtype: str, shape: Sequence[int], **extra) -> Slot:
    known = by_name(dtype)
    if known.numpy is None:
        raise ServeError(
            f"the policy server cannot serve graph tensor {name!r} of dtype {dtype}: numpy has "
            "no such dtype; re-export the policy with float32 tensors"
        )
    return Slot(name, role, np.dtype(known.numpy), known.v2, tuple(shape), **extra)


def draw_noise(slot: Slot, rows: int, rng: np.random.Generator) -> np.ndarray:
    """One float32 ``[rows, *slot.shape]`` draw of a noise input, as the runtime draws it.

    The same distributions as :func:`rlpol.toolkit.noise.draw` (standard normal, uniform on
    ``[0, 1)``), from a numpy generator: ``rng.standard_normal`` / ``rng.random``.

    Examples:
        >>> slot = Slot("noise.1.explore", "noise", np.dtype("float32"), "FP32", (), "uniform")
        >>> draw_noise(slot, 3, np.random.default_rng(0)).shape
        (3,)
    """
    size = (rows, *slot.shape)
    if slot.distribution == "normal":
        return rng.standard_normal(size, dtype=np.float32)
    return rng.random(size, dtype=np.float32)


class ServedModel:
    """One version of one artifact, ready to run batched numpy calls.

    Args:
        name: the model name clients use.
        version: its version string (``"1"``).
        path: the artifact file.
        trust_code: allow a ``.pt2`` archive (its loader runs code stored in the file).

    Attributes:
        metadata: the artifact's :class:`~rlpol.artifact.ArtifactMetadata`.
        slots: what a request may feed, by graph input name, in graph order.
        outputs: the graph's outputs, in graph order.
        required: the names a request must feed (the ``input`` slots).
        stateful: whether the artifact has state pairs (a sequence can drive it).

    Raises:
        ArtifactError: the file is not an rlpol artifact, or a ``.pt2`` one without trust.
        ServeError: a tensor's dtype has no numpy equivalent (bfloat16).
    """

    def __init__(self, name: str, version: str, path: Path, *, trust_code: bool = False) -> None:
        self.name = name
        self.version = version
        self.path = Path(path)
        self.artifact_format, self.metadata = read_metadata(self.path)
        meta: ArtifactMetadata = self.metadata
        state_inputs = {state.input: state for state in meta.states}
        resets = {state.reset_input for state in meta.states} - {None}
        slots = []
        for info in meta.inputs:
            if info.name in state_inputs:
                slots.append(_slot(info.name, "state", info.dtype, info.shape,
                                   initial=state_inputs[info.name].initial))  # fmt: skip
            else:
                role = "reset" if info.name in resets else "input"
                slots.append(_slot(info.name, role, info.dtype, info.shape))
        for noise in meta.noise:
            slots.append(_slot(noise.name, "noise", "float32", noise.shape,
                               distribution=noise.distribution))  # fmt: skip
        self.slots = {slot.name: slot for slot in slots}
        self.outputs = [_slot(info.name, "output", info.dtype, info.shape)
                        for info in meta.outputs]  # fmt: skip
        self.required = [slot.name for slot in slots if slot.role == "input"]
        self.stateful = bool(meta.states)
        self._parameters = {p.name: np.array(p.value, dtype=np.float32) for p in meta.parameters}
        self._runner = self._open(trust_code=trust_code)

    def _open(self, *, trust_code: bool) -> Runner:
        output_names = [slot.name for slot in self.outputs]
        if self.artifact_format == "onnx":
            from rlpol._ort import open_session  # onnxruntime only: no torch

            session = open_session(self.path)
            return lambda feed: session.run(output_names, feed)
        require_trust(self.path, self.artifact_format, trust_code, verb="serve")
        import torch  # TorchScript, .pt2 and AOTI need torch: imported only for them

        from rlpol.runtime.backends import BACKENDS

        backend = BACKENDS[self.artifact_format](self.path, torch.device("cpu"))
        input_names = self.metadata.input_names

        def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            # torch.from_numpy warns on read-only arrays (np.frombuffer of a request body)
            arrays = [feed[name] if feed[name].flags.writeable else feed[name].copy()
                      for name in input_names]  # fmt: skip
            return backend.run_arrays(arrays)

        return run

    def run(self, feeds: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """Run the graph once on the rows of every feed; each feed's outputs, in order.

        Args:
            feeds: one dict per request holding every graph input but the parameters, each
                ``[rows_i, *shape]`` of its slot's dtype.

        Returns:
            per feed, one array per output (graph order), ``[rows_i, *shape]``.

        Raises:
            ArtifactError: the graph returned another shape or dtype than its metadata says.
        """
        rows = [len(next(iter(feed.values()))) for feed in feeds]
        if len(feeds) == 1:
            feed = dict(feeds[0])
        else:
            feed = {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        feed.update(self._parameters)
        outputs = self._runner(feed)
        total = sum(rows)
        for slot, array in zip(self.outputs, outputs):
            if array.shape != (total, *slot.shape) or array.dtype != slot.dtype:
                raise ArtifactError(
                    f"{self.name}: the graph returned {array.dtype} {list(array.shape)} for "
                    f"{slot.name!r} but its metadata declares {slot.dtype} "
                    f"[{total}, {', '.join(map(str, slot.shape))}]; re-export the policy"
                )
        if len(feeds) == 1:
            return [list(outputs)]
        bounds = np.cumsum([0, *rows])
        return [[array[a:b] for array in outputs] for a, b in itertools.pairwise(bounds)]

    def __repr__(self) -> str:
        return (
            f"ServedModel(name={self.name!r}, version={self.version!r}, "
            f"format={self.artifact_format}, inputs={list(self.slots)}, "
            f"outputs={[s.name for s in self.outputs]})"
        )
