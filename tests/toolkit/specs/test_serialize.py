"""Tests of rlpol.toolkit.specs.serialize: spec_to_dict/spec_from_dict round trips and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlpol.errors import SpecError
from rlpol.toolkit.specs import (
    Binary,
    Bounded,
    Categorical,
    Composite,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    TensorSpec,
    Unbounded,
    spec_from_dict,
    spec_to_dict,
)

INF = math.inf


@st.composite
def leaf_specs(draw: st.DrawFn) -> TensorSpec:
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    n = draw(st.integers(1, 5))
    nvec = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    float_dtype = draw(
        st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])
    )
    low = draw(st.one_of(st.just(-INF), st.floats(-100, 0)))
    high = draw(st.one_of(st.just(INF), st.floats(0, 100)))
    candidates = [
        Unbounded(shape, dtype=draw(st.sampled_from([torch.float32, torch.int64, torch.bool]))),
        Bounded(low, high, shape, dtype=float_dtype),
        Bounded(draw(st.integers(-5, 0)), draw(st.integers(0, 5)), shape, dtype=torch.int16),
        Categorical(n, shape),
        OneHot(n).expand(shape),
        Binary(n, dtype=torch.uint8).expand(shape),
        MultiCategorical(nvec).expand(shape),
        MultiOneHot(nvec, dtype=torch.bool).expand(shape),
    ]
    return draw(st.sampled_from(candidates))


@settings(max_examples=60, deadline=None)
@given(
    children=st.dictionaries(st.text("abc_", min_size=1, max_size=4), leaf_specs(), max_size=3),
    leaf=leaf_specs(),
)
def test_spec_dict_round_trips_through_strict_json(
    children: dict[str, TensorSpec], leaf: TensorSpec
) -> None:
    for spec in (leaf, Composite(children, nested=Composite(leaf=leaf))):
        text = json.dumps(spec_to_dict(spec), allow_nan=False)
        assert spec_from_dict(json.loads(text)) == spec


def test_spec_dict_format() -> None:
    assert spec_to_dict(Bounded([-1.0, -INF], [INF, 2.0])) == {
        "class": "Bounded",
        "shape": [2],
        "device": "cpu",
        "dtype": "float32",
        "low": [-1.0, "-inf"],
        "high": ["inf", 2.0],
    }
    assert spec_to_dict(Composite(action=MultiOneHot([2, 3]), shape=())) == {
        "class": "Composite",
        "shape": [],
        "device": "cpu",
        "children": {
            "action": {
                "class": "MultiOneHot",
                "shape": [5],
                "device": "cpu",
                "dtype": "int64",
                "nvec": [2, 3],
            }
        },
    }


def test_spec_from_dict_can_override_the_device() -> None:
    described = spec_to_dict(Composite(action=OneHot(2)))
    described["device"] = described["children"]["action"]["device"] = "cuda:0"
    assert spec_from_dict(described, device="cpu") == Composite(action=OneHot(2))


def test_spec_to_dict_rejects_unsupported_dtypes() -> None:
    with pytest.raises(SpecError, match=r"cannot describe dtype torch\.complex64"):
        spec_to_dict(Unbounded((1,), dtype=torch.complex64))


_GOOD = {"class": "Categorical", "shape": [], "device": "cpu", "dtype": "int64", "n": 3}
_BOUNDED = spec_to_dict(Bounded(-1.0, 1.0, (2,)))
_MULTI = spec_to_dict(MultiOneHot([2, 2]))


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ([1, 2], "expected a dict describing a spec, received a list"),
        (json.dumps(_GOOD), "parse JSON text with json.loads first"),
        ({**_GOOD, "class": "Tensor"}, "unknown class 'Tensor'"),
        ({**_GOOD, "class": ["OneHot"]}, r"unknown class \['OneHot'\]"),
        ({**_GOOD, "extra": 1}, r"unknown: \['extra'\]"),
        ({k: v for k, v in _GOOD.items() if k != "n"}, r"missing: \['n'\]"),
        ({**_GOOD, "dtype": "float128"}, "spec\\['dtype'\\]: expected one of"),
        ({**_GOOD, "dtype": 5}, "spec\\['dtype'\\]: expected one of"),
        ({**_GOOD, "device": "nowhere"}, "'nowhere' is not a torch device"),
        ({**_GOOD, "device": 0}, "expected a string such as 'cpu'"),
        ({**_GOOD, "shape": [2, -1]}, "list of non-negative ints"),
        ({**_GOOD, "shape": "2"}, "list of non-negative ints"),
        ({**_GOOD, "shape": [True]}, "list of non-negative ints"),
        ({**_GOOD, "n": "3"}, r"spec\['n'\]: expected an int"),
        ({**_GOOD, "n": 0}, "n must be a positive int"),
        ({**_MULTI, "nvec": [2, None]}, "expected a list of ints"),
        ({**_MULTI, "nvec": []}, "non-empty sequence"),
        ({**_BOUNDED, "low": [-1.0, None]}, "expected nested lists of numbers"),
        ({**_BOUNDED, "low": [-1.0, "nan"]}, "expected nested lists of numbers"),
        ({**_BOUNDED, "low": [[-1.0], -1.0]}, "ragged"),
        ({**_BOUNDED, "low": [-1.0]}, r"of the spec's shape \[2\], received shape \[1\]"),
        ({**_BOUNDED, "low": [2.0, 2.0]}, "low must not exceed high"),
        ({**_BOUNDED, "dtype": "int64", "low": [-1.5, 0]}, r"ints \(integer dtype\)"),
        ({**_BOUNDED, "dtype": "int64", "low": [-1, 0], "high": ["inf", 1]}, "integer dtype"),
        (
            {"class": "Composite", "shape": [], "device": "cpu", "children": {"a": {"class": 1}}},
            r"spec\['children'\]\['a'\]: unknown class 1",
        ),
        (
            {"class": "Composite", "shape": [], "device": "cpu", "children": []},
            "expected a dict from string keys to specs",
        ),
        (
            {"class": "Composite", "shape": [2], "device": "cpu", "children": {"a": _GOOD}},
            "does not start with the Composite's shape",
        ),
    ],
)
def test_malformed_descriptions_raise_spec_errors(description: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_dict(description)


def test_deeply_nested_descriptions_are_rejected() -> None:
    description: dict = {"class": "Composite", "shape": [], "device": "cpu", "children": {}}
    for _ in range(100):
        description = {
            "class": "Composite",
            "shape": [],
            "device": "cpu",
            "children": {"a": description},
        }
    with pytest.raises(SpecError, match="nest deeper than 64 levels"):
        spec_from_dict(description)


def test_uniform_bounds_are_one_number_each_and_read_back() -> None:
    screen = Bounded(0, 255, (210, 160, 3), dtype=torch.uint8)
    described = spec_to_dict(screen)
    assert (described["low"], described["high"]) == (0, 255)
    assert len(json.dumps(described)) < 200
    assert spec_from_dict(described) == screen
    mixed = Bounded(torch.tensor([-1.0, 0.0]), float("inf"), (2,))
    assert spec_to_dict(mixed)["low"] == [-1.0, 0.0] and spec_to_dict(mixed)["high"] == "inf"
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(mixed)))) == mixed
