"""Doctests on either supported tensordict release (pytest collects ``rlpol/`` doctests too),
and without TorchRL (the interop modules' doctests need it) or PyTriton (``--engine triton``).

rlpol's examples print TensorDicts in tensordict 0.15's compact form. tensordict 0.14.3
(TorchRL 0.14's pin, run by the interop job) prints the same TensorDict in its long form. There,
an expected and an actual output that both hold TensorDicts are compared by what they print
of them: the same entries (name, dtype, shape, nested ones included), the same outermost batch
size, and the same text outside them. On 0.15 the doctests compare exactly, as usual.
"""

from __future__ import annotations

import doctest
import importlib.util
import re

from rlpol._compat import prints_compact_tensordicts

# 0.15: ``observation: f32[4]``; 0.14: ``observation: Tensor(shape=torch.Size([4]), device=cpu,
# dtype=torch.float32, is_shared=False)``
_COMPACT_ENTRY = re.compile(r"([\w.]+): (bool|[a-z]+\d+)\[([\d,]*)\]")
_LONG_ENTRY = re.compile(
    r"([\w.]+): Tensor\(shape=torch\.Size\(\[([\d, ]*)\]\), device=[\w:]+, dtype=torch\.(\w+), "
    r"is_shared=\w+\)"
)
_COMPACT_BATCH = re.compile(r"batch_size=\[([\d, ]*)\]")
_LONG_BATCH = re.compile(r"batch_size=torch\.Size\(\[([\d, ]*)\]\)")
_SHORT_DTYPES = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
                 "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
                 "bool": "bool"}  # fmt: skip


def _shape(text: str) -> str:
    return ",".join(part.strip() for part in text.split(",") if part.strip())


def _tensordict_entries(text: str) -> tuple[list[tuple[str, str, str]], str | None] | None:
    """The entries and the outermost batch size a TensorDict repr (either form) in ``text``
    prints; shapes without the batch dims, as 0.15 prints them (0.14 prints whole shapes)."""
    if "TensorDict(" not in text:
        return None
    # 0.15 prints a nested TensorDict as "next: {...}", without its batch size
    batch = _COMPACT_BATCH.search(text) or _LONG_BATCH.search(text)
    batch_shape = _shape(batch.group(1)) if batch else ""
    batch_dims = len(batch_shape.split(",")) if batch_shape else 0
    entries = [(n, d, _shape(s)) for n, d, s in _COMPACT_ENTRY.findall(text)]
    for name, shape, dtype in _LONG_ENTRY.findall(text):
        row = _shape(shape).split(",")[batch_dims:] if _shape(shape) else []
        entries.append((name, _SHORT_DTYPES.get(dtype, dtype), ",".join(row)))
    return sorted(entries), batch_shape


def _outside(text: str) -> str:
    """``text`` without its TensorDict reprs (they start at ``TensorDict(`` and close at the
    matching parenthesis)."""
    kept, depth, i = [], 0, 0
    while i < len(text):
        if depth == 0 and text.startswith("TensorDict(", i):
            depth, i = 1, i + len("TensorDict(")
            continue
        if depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
        else:
            kept.append(text[i])
        i += 1
    return "".join(kept).strip()


_exact_check = doctest.OutputChecker.check_output


def _check_either_form(checker: doctest.OutputChecker, want: str, got: str, flags: int) -> bool:
    """doctest's check, else: the same TensorDict entries, and the same text around them."""
    if _exact_check(checker, want, got, flags):
        return True
    expected = _tensordict_entries(want)
    return (
        expected is not None
        and expected == _tensordict_entries(got)
        and _exact_check(checker, _outside(want), _outside(got), flags)
    )


# the TorchRL interop modules' examples build TorchRL objects: collected where torchrl is
collect_ignore_glob = [] if importlib.util.find_spec("torchrl") else ["rlpol/toolkit/from_torchrl/*"]
# the Ray Serve engine's modules import ray: collected where the rlpol[ray] extra is
if not importlib.util.find_spec("ray"):
    collect_ignore_glob.append("rlpol/serve/engines/ray*.py")
# --engine triton's modules import PyTriton (the triton extra): collected where it is installed
if not importlib.util.find_spec("pytriton"):
    collect_ignore_glob += ["rlpol/serve/engines/triton.py", "rlpol/serve/engines/_pytriton_compat.py",
                            "rlpol/serve/engines/triton_binding.py"]


def pytest_configure(config) -> None:
    """On tensordict 0.14, compare the TensorDicts doctests print by their entries (pytest's
    doctest checker subclasses doctest's, so it inherits this)."""
    if not prints_compact_tensordicts():
        doctest.OutputChecker.check_output = _check_either_form
