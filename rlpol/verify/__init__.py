"""Verification: does an artifact behave like the eager policy it was exported from?

This package sits above both :mod:`rlpol.export` and :mod:`rlpol.runtime`: it imports the
runtime (to load artifacts) and the toolkit (envs, exploration modes), never the exporter, so
checking an artifact someone else exported costs no exporter import.

* :mod:`rlpol.verify.parity` -- field-by-field comparison of two TED rollouts:
  :func:`compare_rollouts`, :class:`ParityReport`, :class:`FieldParity`;
* :mod:`rlpol.verify.check` -- the closed-loop + replay check behind ``rlpol check``:
  :func:`check_artifact`, :class:`CheckReport`, :func:`seeded_rollout`;
* :mod:`rlpol.verify.quick` -- the quick check ``rlpol export`` runs on spec samples:
  :func:`quick_check`, :class:`QuickCheck`, :func:`compare_on_inputs`.

:mod:`rlpol.runtime` and :mod:`rlpol.export` forward the names their users imported from
them before this package existed, and :mod:`rlpol` exports ``check_artifact`` and
``compare_rollouts``.
"""

from rlpol.verify.check import CheckReport, check_artifact, seeded_rollout
from rlpol.verify.parity import FieldParity, ParityReport, compare_rollouts
from rlpol.verify.quick import QUICK_CHECK_BATCHES, QuickCheck, compare_on_inputs, quick_check

__all__ = [
    "QUICK_CHECK_BATCHES",
    "CheckReport",
    "FieldParity",
    "ParityReport",
    "QuickCheck",
    "check_artifact",
    "compare_on_inputs",
    "compare_rollouts",
    "quick_check",
    "seeded_rollout",
]
