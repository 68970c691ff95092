"""The artifact contract is defined once: the exporter and the runtime use the same objects.

One test per contract constant (and per shared function of the contract): every module that
writes or reads it holds the very object of :mod:`rlpol.artifact` (or :mod:`rlpol.dtypes`),
not a copy that could drift.
"""

from __future__ import annotations

import importlib

import pytest

import rlpol.artifact
import rlpol.artifact.constants
import rlpol.dtypes

# contract name -> the modules of export and runtime that use it, each under that name
USERS = {
    "METADATA_KEY": ["rlpol.export.api", "rlpol.artifact.reader"],
    "EXTRA_FILE_NAME": ["rlpol.export.torchscript", "rlpol.artifact.reader"],
    "FORMAT_VERSION": ["rlpol.export.api", "rlpol.artifact.metadata"],
    "MAX_METADATA_BYTES": ["rlpol.artifact.metadata", "rlpol.artifact.reader"],
    "BATCH_DIM": ["rlpol.export.onnx", "rlpol.export.torchscript", "rlpol.artifact.reader"],
    "FORMAT": ["rlpol.artifact.metadata"],
    "ZIP_MAGIC": ["rlpol.artifact.reader"],
    "ARTIFACT_FORMATS": ["rlpol.artifact.metadata"],
    "EXPLORATION_TYPES": ["rlpol.artifact.metadata", "rlpol.cli"],
    "ArtifactMetadata": ["rlpol.export.api", "rlpol.runtime", "rlpol.runtime.policy"],
    "TensorInfo": ["rlpol.export.api", "rlpol.runtime.policy"],
    "parse_metadata": ["rlpol.runtime"],
    "read_metadata": ["rlpol.runtime", "rlpol.runtime.policy"],
    "key_to_name": ["rlpol.export", "rlpol.export.graph"],
    "name_to_key": ["rlpol.export"],
}
DTYPE_USERS = {
    "DTYPE_NAMES": ["rlpol.artifact.metadata", "rlpol.export.api"],
    "by_onnx": ["rlpol.artifact.reader"],
    "numpy_dtype": ["rlpol.runtime.backends", "rlpol.runtime.policy"],
    "torch_dtype": ["rlpol.runtime.policy"],
    "NUMPY_DTYPE_NAMES": ["rlpol.runtime.policy"],
    "dtype_name": ["rlpol.export.api"],
}


def _uses(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, module) for name, modules in table.items() for module in modules]


@pytest.mark.parametrize(("name", "module"), _uses(USERS))
def test_export_and_runtime_use_the_artifact_packages_object(name, module):
    contract = rlpol.artifact.constants if name.isupper() else rlpol.artifact
    assert getattr(importlib.import_module(module), name) is getattr(contract, name)


@pytest.mark.parametrize(("name", "module"), _uses(DTYPE_USERS))
def test_dtypes_are_mapped_by_the_one_table(name, module):
    assert getattr(importlib.import_module(module), name) is getattr(rlpol.dtypes, name)


def test_the_exporters_suffix_table_is_the_contracts():
    import rlpol.export

    assert rlpol.export.FORMATS is rlpol.artifact.constants.FORMAT_SUFFIXES
    constants = rlpol.artifact.constants
    assert set(constants.FORMAT_SUFFIXES.values()) == set(constants.ARTIFACT_FORMATS)


def test_exploration_types_are_values_of_the_toolkits_enum():
    # the contract spells them without importing torch; the enum is the toolkit's (which also
    # has "median", a type no artifact records)
    from rlpol.toolkit.modules import ExplorationType

    types = rlpol.artifact.constants.EXPLORATION_TYPES
    assert set(types) <= {member.value for member in ExplorationType}


def test_the_contract_is_exported_once():
    names = rlpol.artifact.__all__
    assert len(names) == len(set(names))
    assert all(hasattr(rlpol.artifact, name) for name in names)
