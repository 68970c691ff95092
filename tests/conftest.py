"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``cuda`` cleanly on machines without a GPU."""
    if CUDA:
        return
    skip = pytest.mark.skip(reason="CUDA not available")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same torch generator state."""
    torch.manual_seed(0)
