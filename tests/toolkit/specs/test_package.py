"""Tests of the rlpol.toolkit.specs package: what it exports, and what the tree imports from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rlpol.toolkit.specs as specs
from rlpol.toolkit.specs import _base, boxes, composite, continuous, discrete, gym, serialize

ROOT = Path(__file__).resolve().parents[3]
# where code imports from rlpol.toolkit.specs (the package's own modules import its modules)
IMPORTING_TREES = ("rlpol", "tests", "benchmarks", "models")
MODULES = [_base, boxes, composite, continuous, discrete, gym, serialize]


def _names_imported_from_specs() -> list[str]:
    """Every name a ``from rlpol.toolkit.specs import ...`` in the tree's code asks for."""
    names = set()
    for tree in IMPORTING_TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(module):
                if isinstance(node, ast.ImportFrom) and node.module == "rlpol.toolkit.specs":
                    names.update(alias.name for alias in node.names)
    return sorted(names)


IMPORTED = _names_imported_from_specs()


@pytest.mark.parametrize("name", specs.__all__)
def test_every_public_name_is_importable(name: str) -> None:
    assert hasattr(specs, name), f"rlpol.toolkit.specs.__all__ names {name!r}, which it lacks"


@pytest.mark.parametrize("name", IMPORTED)
def test_every_name_the_tree_imports_is_importable(name: str) -> None:
    assert hasattr(specs, name), f"the tree imports {name!r} from rlpol.toolkit.specs"


def test_the_scan_finds_public_and_private_names() -> None:
    assert {"Composite", "spec_from_dict", "_LeafSpec"} <= set(IMPORTED)


def test_all_is_the_public_names_of_the_modules() -> None:
    public = [name for module in MODULES for name in module.__all__]
    assert sorted(public) == sorted(specs.__all__) == sorted(set(specs.__all__))
    for module in MODULES:
        for name in module.__all__:
            assert getattr(specs, name) is getattr(module, name), (module.__name__, name)
