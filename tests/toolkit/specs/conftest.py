"""Fixtures shared by the spec tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def _assert_gym_equal(received: object, expected: object) -> None:
    if isinstance(expected, dict):
        assert isinstance(received, dict) and received.keys() == expected.keys()
        for key, value in expected.items():
            _assert_gym_equal(received[key], value)
    else:
        np.testing.assert_array_equal(received, expected)


@pytest.fixture
def assert_gym_equal() -> Callable[[object, object], None]:
    """Asserts two gymnasium values (arrays, numbers, dicts of them nested) are equal."""
    return _assert_gym_equal
