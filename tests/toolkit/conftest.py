"""Fixtures of the toolkit tests: a tensordict module exported to ONNX and TorchScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx
import onnxruntime as ort
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase

from rlpol.toolkit.keys import NestedKey


class TensorsModule(torch.nn.Module):
    """Tensors in, a tensordict module in between, tensors out: what an exporter traces."""

    def __init__(
        self,
        module: TensorDictModuleBase,
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey],
    ) -> None:
        super().__init__()
        self.module, self.in_keys, self.out_keys = module, list(in_keys), list(out_keys)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        td = TensorDict(dict(zip(self.in_keys, tensors)), batch_size=tensors[0].shape[:1])
        td = self.module(td)
        return tuple(td.get(key) for key in self.out_keys)


@dataclass
class Exported:
    """One module as torch runs it, as onnxruntime runs its ONNX export, and traced."""

    eager: TensorsModule
    session: ort.InferenceSession
    traced: torch.jit.ScriptModule
    onnx_ops: list[str]

    def onnx(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        feed = {i.name: t.numpy() for i, t in zip(self.session.get_inputs(), tensors)}
        return [torch.from_numpy(out) for out in self.session.run(None, feed)]


@pytest.fixture
def export_module(tmp_path):
    """``export(module, in_keys, out_keys, example)``: an :class:`Exported` of the module.

    The ONNX export is ``torch.onnx.export(..., dynamo=True)`` with the leading dim of every
    input dynamic; the TorchScript one is ``torch.jit.trace``. ``example`` needs a batch > 1.
    """

    def export(module, in_keys, out_keys, example: Sequence[torch.Tensor]) -> Exported:
        eager = TensorsModule(module, in_keys, out_keys).eval()
        batch = torch.export.Dim("batch")
        path = tmp_path / f"{type(module).__name__}.onnx"
        program = torch.onnx.export(
            eager, tuple(example), dynamo=True, dynamic_shapes=(tuple({0: batch} for _ in example),),
            verbose=False, report=False,
        )  # fmt: skip
        program.save(str(path))
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        traced = torch.jit.trace(eager, tuple(example), check_trace=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return Exported(eager, session, traced, [node.op_type for node in model.graph.node])

    return export
