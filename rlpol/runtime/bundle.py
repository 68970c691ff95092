"""``verify_bundle``: replay a bundle's test vectors through every model it holds.

Each model file of the bundle (:data:`~rlpol.artifact.bundle.MODEL_FILES`) is loaded with
:func:`~rlpol.runtime.load_policy` (onnxruntime for ``model.onnx``, ``torch.jit.load`` for
``model.pt``, the AOTInductor loader for ``model.aoti.pt2``; the last two run code stored in
the file, and so only with ``trust_code``), its graph names are checked against the data sets', and every data
set runs through its backend as-is (the stored noise and parameters included).

An output matches where ``|actual - expected| <= atol + rtol * |expected|`` everywhere
(``torch.allclose``'s rule, NaN matching NaN) for floats, and exactly for integers and bools;
a wrong shape or dtype is a mismatch. The report holds the largest ``|actual - expected|``
of each (model, output) over all data sets. The runtime never imports the exporter, so
checking a bundle on a deployment machine needs no more than loading one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlpol.artifact.bundle import MODEL_FILES, DataSet, read_bundle_metadata, read_data_sets
from rlpol.artifact.trust import CODE_FORMATS
from rlpol.errors import ArtifactError
from rlpol.runtime.policy import load_policy

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "BundleReport", "OutputCheck", "verify_bundle"]

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5


@dataclass(frozen=True)
class OutputCheck:
    """One output of one model, over all data sets.

    Attributes:
        model: the model file (``"model.onnx"``).
        backend: the runtime that ran it (``"onnxruntime"``, ``"torchscript"``, ...).
        output: the graph output name.
        dtype: the expected dtype (numpy's name).
        max_abs_diff: the largest ``|actual - expected|`` (``inf`` for a shape or dtype
            mismatch, NaN against a number, or an infinity against a finite value).
        worst: the data set where it was reached.
        ok: whether every data set matched within the tolerance.
    """

    model: str
    backend: str
    output: str
    dtype: str
    max_abs_diff: float
    worst: str
    ok: bool


@dataclass(frozen=True)
class BundleReport:
    """What :func:`verify_bundle` found.

    Attributes:
        checks: one :class:`OutputCheck` per (model, output), models in bundle order.
        skipped: ``(model file, why)`` for each model present but not run.
        data_sets: how many data sets each model replayed.
        atol: the absolute tolerance for floats.
        rtol: the relative tolerance for floats.
    """

    checks: tuple[OutputCheck, ...]
    skipped: tuple[tuple[str, str], ...]
    data_sets: int
    atol: float
    rtol: float

    @property
    def ok(self) -> bool:
        """Whether at least one model ran and every output of every model matched."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    def rows(self) -> list[tuple[str, str, str, str, str, str, str]]:
        """Table rows: model, backend, output, dtype, max |diff|, worst data set, status."""
        return [
            (c.model, c.backend, c.output, c.dtype, f"{c.max_abs_diff:.3g}", c.worst,
             "ok" if c.ok else "MISMATCH")
            for c in self.checks
        ]  # fmt: skip


def verify_bundle(
    directory: str | os.PathLike[str],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    trust_code: bool = False,
) -> BundleReport:
    """Replay every data set of the bundle ``directory`` through every model in it.

    Args:
        directory: a bundle written by ``rlpol bundle``.
        atol: absolute tolerance for float outputs.
        rtol: relative tolerance for float outputs.
        trust_code: also run ``model.pt`` and ``model.aoti.pt2``, whose loading runs code
            stored in them; without it they are reported as skipped.

    Returns:
        the report; ``report.ok`` says whether everything matched.

    Raises:
        ArtifactError: ``rlpol.json`` or a data set is missing or malformed, the bundle holds
            no model, a model cannot be loaded, or a data set's input names are not the
            model's graph inputs.

    Examples:
        >>> report = verify_bundle("/tmp/pendulum-bundle")  # see write_bundle's example
        >>> report.ok, report.data_sets, report.rows()[0][:3]
        (True, 2, ('model.onnx', 'onnxruntime', 'action'))
    """
    directory = Path(directory)
    metadata = read_bundle_metadata(directory)
    data_sets = read_data_sets(directory)
    expected_inputs = [
        info.name for info in (*metadata.inputs, *metadata.noise, *metadata.parameters)
    ]
    for data_set in data_sets:
        _check_names(directory, data_set, expected_inputs, [i.name for i in metadata.outputs])
    present = [
        (fmt, name) for fmt, name in MODEL_FILES.items() if (directory / name).is_file()
    ]
    if not present:
        raise ArtifactError(
            f"bundle '{directory}' holds none of {list(MODEL_FILES.values())}; rewrite it with "
            "`rlpol bundle POLICY_FILE DIR`"
        )
    checks, skipped = [], []
    for artifact_format, name in present:
        if artifact_format in CODE_FORMATS and not trust_code:
            skipped.append((name, "loading it runs code stored in it: pass --trust-code to run it"))
            continue
        policy = load_policy(directory / name, trust_code=trust_code)
        outputs = [policy.backend.run_arrays(list(ds.inputs.values())) for ds in data_sets]
        for position, info in enumerate(metadata.outputs):
            pairs = [
                (ds.name, ds.outputs[info.name], actual[position])
                for ds, actual in zip(data_sets, outputs)
            ]
            checks.append(_check_output(name, policy.backend.name, info.name, pairs, atol, rtol))
    return BundleReport(tuple(checks), tuple(skipped), len(data_sets), atol, rtol)


def _check_names(
    directory: Path, data_set: DataSet, inputs: list[str], outputs: list[str]
) -> None:
    for role, found, expected in (
        ("inputs", list(data_set.inputs), inputs), ("outputs", list(data_set.outputs), outputs)
    ):
        if found != expected:
            raise ArtifactError(
                f"data set '{directory / data_set.name}' holds {role} {found} but "
                f"{directory / 'rlpol.json'} describes graph {role} {expected}; the vectors "
                "belong to another model: rewrite the bundle with `rlpol bundle`"
            )


def _check_output(
    model: str,
    backend: str,
    output: str,
    pairs: list[tuple[str, np.ndarray, np.ndarray]],
    atol: float,
    rtol: float,
) -> OutputCheck:
    worst_diff, worst, ok = 0.0, pairs[0][0], True
    for name, expected, actual in pairs:
        diff, matched = _compare(expected, np.asarray(actual), atol, rtol)
        ok = ok and matched
        if diff > worst_diff:
            worst_diff, worst = diff, name
    return OutputCheck(model, backend, output, str(pairs[0][1].dtype), worst_diff, worst, ok)


def _compare(
    expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float
) -> tuple[float, bool]:
    """``(max |actual - expected|, matched)`` for one data set's output."""
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return math.inf, False
    if expected.size == 0:
        return 0.0, True
    if not np.issubdtype(expected.dtype, np.floating):
        diff = np.abs(expected.astype(np.int64) - actual.astype(np.int64))
        return float(diff.max()), bool((diff == 0).all())
    expected64, actual64 = expected.astype(np.float64), actual.astype(np.float64)
    same = (expected64 == actual64) | (np.isnan(expected64) & np.isnan(actual64))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(actual64 - expected64))
    diff = np.where(np.isnan(diff), math.inf, diff)
    within = same | (diff <= atol + rtol * np.abs(expected64))
    return float(diff.max()), bool(within.all())
