"""Export a :class:`PolicyGraph` to ONNX with the dynamo exporter, then verify the graph.

Verification (each a separate check, raising :class:`ExportError`):

* ``onnx.checker.check_model`` passes and the opset is >= 18;
* the graph's input and output names are exactly the signature's, in order;
* the leading axis of every batched input and output is symbolic (the dynamo exporter can
  silently freeze it to the example's size);
* no random op (``RandomNormal``, ``RandomUniform``, ``Multinomial``, ...) is left: the draws
  must arrive as inputs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import onnx
import torch

from rlpol.artifact.constants import BATCH_DIM
from rlpol.errors import ExportError
from rlpol.export.graph import PolicyGraph, tracer_errors

__all__ = ["MIN_OPSET", "RANDOM_OPS", "export_onnx_model", "verify_onnx_model"]

MIN_OPSET = 18
RANDOM_OPS = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)


def export_onnx_model(
    graph: PolicyGraph, example_args: Sequence[torch.Tensor], *, opset: int | None = None
) -> onnx.ModelProto:
    """Trace ``graph`` on ``example_args`` and return the verified ONNX model (not saved).

    Args:
        graph: the wrapper around the policy.
        example_args: one tensor per graph input; batched ones with a batch size > 1 (a
            size-1 example would be specialised).
        opset: the ONNX opset (default: the exporter's, >= 18).

    Raises:
        ExportError: tracing failed, or the graph failed a check.
    """
    signature = graph.signature
    batch = torch.export.Dim(BATCH_DIM)
    dynamic_shapes = tuple({0: batch} if arg.dim() > 0 else None for arg in example_args)
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old: rlpol exports need opset >= {MIN_OPSET}")
    with tracer_errors("torch.onnx.export", graph), _quiet_logs():
        program = torch.onnx.export(
            graph,
            tuple(example_args),
            dynamo=True,
            input_names=signature.input_names,
            output_names=signature.output_names,
            dynamic_shapes=dynamic_shapes,  # one per named argument of graph.forward
            opset_version=opset,
            verbose=False,
            report=False,
        )
    model = program.model_proto
    batched = [arg.dim() > 0 for arg in example_args]
    verify_onnx_model(model, signature.input_names, signature.output_names, batched)
    return model


def verify_onnx_model(
    model: onnx.ModelProto,
    input_names: Sequence[str],
    output_names: Sequence[str],
    batched_inputs: Sequence[bool],
) -> None:
    """Run every check of the module docstring on ``model``."""
    _check_model(model)
    _check_opset(model)
    _check_names(model, input_names, output_names)
    _check_dynamic_batch(model, batched_inputs)
    _check_no_random_ops(model)


def _check_model(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"the exported ONNX graph is invalid: {_first_line(error)}") from error


def _check_opset(model: onnx.ModelProto) -> None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise ExportError(f"the exported graph uses opset {opset}; rlpol needs >= {MIN_OPSET}")


def _check_names(
    model: onnx.ModelProto, input_names: Sequence[str], output_names: Sequence[str]
) -> None:
    found_in = [value.name for value in model.graph.input]
    found_out = [value.name for value in model.graph.output]
    if found_in != list(input_names):
        raise ExportError(
            f"the exported graph's inputs are {found_in}, expected {list(input_names)}; an input "
            "the policy never reads is dropped by the exporter (a draw or parameter unused "
            "under this exploration type?)"
        )
    if found_out != list(output_names):
        raise ExportError(
            f"the exported graph's outputs are {found_out}, expected {list(output_names)}"
        )


def _check_dynamic_batch(model: onnx.ModelProto, batched_inputs: Sequence[bool]) -> None:
    values = [
        (value, is_batched) for value, is_batched in zip(model.graph.input, batched_inputs)
    ] + [(value, True) for value in model.graph.output]
    for value, is_batched in values:
        dims = value.type.tensor_type.shape.dim
        if not is_batched:
            continue
        if not dims or dims[0].HasField("dim_value") or not dims[0].dim_param:
            frozen = dims[0].dim_value if dims else "none"
            raise ExportError(
                f"graph value {value.name!r} has a fixed leading axis ({frozen}) instead of a "
                "symbolic batch axis; the policy must not depend on the batch size (avoid "
                "Python ints taken from tensor shapes, and batch-size-1 examples)"
            )


def _check_no_random_ops(model: onnx.ModelProto) -> None:
    nodes = list(model.graph.node)
    for function in model.functions:
        nodes.extend(function.node)
    random = sorted({node.op_type for node in nodes if node.op_type in RANDOM_OPS})
    if random:
        raise ExportError(
            f"the exported graph contains random ops {random}; stochastic modules must take "
            "their draws through rlpol.toolkit.noise.draw_noise so they become graph inputs"
        )


class _quiet_logs:
    """Silence torch.onnx's registration chatter on stderr during export."""

    def __enter__(self) -> None:
        import logging

        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._logger.setLevel(self._level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Serialise ``model`` (a single file, weights inline)."""
    buffer = io.BytesIO()
    onnx.save_model(model, buffer)
    return buffer.getvalue()
