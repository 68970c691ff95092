"""Add 1 to the first element of a test vector (a TensorProto .pb file), in place.

``make examples`` runs the clients on a tampered copy of a bundle and expects them to fail::

    python examples/tamper.py BUNDLE/test_data_set_0/output_0.pb
"""

from __future__ import annotations

import sys

import onnx
from onnx import numpy_helper


def tamper(path: str) -> None:
    """Rewrite ``path`` with its first element increased by 1 (dtype, name and dims kept)."""
    proto = onnx.load_tensor(path)
    array = numpy_helper.to_array(proto).copy()
    array.flat[0] += 1
    onnx.save_tensor(numpy_helper.from_array(array, proto.name), path)


if __name__ == "__main__":
    tamper(sys.argv[1])
