"""Tests of rlpol.toolkit.specs.composite: nested keys, children's shapes and devices, values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from rlpol.errors import SpecError
from rlpol.toolkit.specs import (
    Binary,
    Bounded,
    Categorical,
    Composite,
    OneHot,
    Unbounded,
)


def test_composite_nested_get_set_and_keys() -> None:
    spec = Composite({"observation": Unbounded((3,)), ("next", "reward"): Unbounded((1,))})
    spec["next", "done"] = Categorical(2, (1,))
    spec["info"] = {"gear": OneHot(3)}
    assert isinstance(spec["next"], Composite) and isinstance(spec["info"], Composite)
    assert spec["next", "reward"] == Unbounded((1,))
    assert spec["next"]["done"] == Categorical(2, (1,))
    assert spec.keys() == ["observation", "next", "info"]
    assert spec.keys(include_nested=True, leaves_only=True) == [
        "observation",
        ("next", "reward"),
        ("next", "done"),
        ("info", "gear"),
    ]
    assert spec.keys(True) == [
        "observation",
        "next",
        ("next", "reward"),
        ("next", "done"),
        "info",
        ("info", "gear"),
    ]
    assert spec.keys(leaves_only=True) == ["observation"]
    assert [key for key, _ in spec.items(True, True)] == spec.keys(True, True)
    assert spec.values(True, True)[-1] == OneHot(3)
    assert len(spec) == 3 and list(spec) == spec.keys()
    assert ("next", "reward") in spec and "reward" not in spec
    assert ("observation", "x") not in spec and 3 not in spec
    with pytest.raises(KeyError, match="'missing' is not in this Composite"):
        spec["missing"]
    with pytest.raises(SpecError, match="holds a Unbounded, not a Composite"):
        spec["observation", "x"] = Unbounded()


def test_composite_children_start_with_its_shape_and_share_its_device() -> None:
    spec = Composite(shape=(4,))
    spec["observation"] = Unbounded((4, 3))
    spec["next", "reward"] = Unbounded((4, 1))
    assert spec["next"].shape == torch.Size([4])
    with pytest.raises(SpecError, match=r"does not start with the Composite's shape \[4\]"):
        spec["action"] = Unbounded((3,))
    with pytest.raises(SpecError, match=r"the Composite on meta; pass spec\.to"):
        Composite(device="meta", action=Unbounded())
    with pytest.raises(SpecError, match="must be a TensorSpec"):
        Composite(action=3)
    with pytest.raises(SpecError, match="takes a dict of specs"):
        Composite([Unbounded()])


def test_composite_rand_zero_and_is_in() -> None:
    spec = Composite(observation=Bounded(-1.0, 1.0, (2, 3)), shape=(2,))
    spec["next", "reward"] = Unbounded((2, 1))
    td = spec.rand((5,))
    assert isinstance(td, TensorDict) and td.batch_size == torch.Size([5, 2])
    assert td["next", "reward"].shape == (5, 2, 1) and spec.is_in(td)
    zero = spec.zero()
    assert zero.batch_size == torch.Size([2]) and not zero["observation"].any()
    assert not spec.is_in(td.set("observation", torch.full_like(td["observation"], 3.0)))
    first = spec.rand(generator=torch.Generator().manual_seed(0))
    assert (first == spec.rand(generator=torch.Generator().manual_seed(0))).all()


def test_composite_expand_to_clone_and_equality() -> None:
    spec = Composite(observation=Unbounded((3,)), next=Composite(reward=Unbounded((1,))))
    expanded = spec.expand(4)
    assert expanded.shape == torch.Size([4]) and expanded["next"].shape == torch.Size([4])
    assert expanded["next", "reward"].shape == torch.Size([4, 1])
    assert spec.clone() == spec and spec.to("cpu") == spec and spec.clone() is not spec
    assert expanded != spec
    assert Composite(a=Categorical(2), b=Categorical(3)) == Composite(
        b=Categorical(3), a=Categorical(2)
    )
    assert Composite(a=Categorical(2)) != Composite(a=Categorical(3))


def test_composite_numpy_round_trip(assert_gym_equal: Callable[[object, object], None]) -> None:
    spec = Composite(position=Bounded(-1.0, 1.0, (2,)), inner=Composite(gear=OneHot(3)))
    td = spec.from_numpy({"position": np.array([0.5, -0.5]), "inner": {"gear": 2}})
    assert td["inner", "gear"].tolist() == [0, 0, 1]
    assert td["position"].dtype == torch.float32
    out = spec.to_numpy(td)
    assert_gym_equal(out, {"position": np.array([0.5, -0.5], np.float32), "inner": {"gear": 2}})
    with pytest.raises(SpecError, match=r"expected a dict with keys \['position', 'inner'\]"):
        spec.from_numpy({"position": np.zeros(2)})


def test_check_of_a_composite_names_the_nested_key() -> None:
    spec = Composite(observation=Unbounded((3,)), next=Composite(reward=Unbounded((1,))))
    good = spec.rand((4,))
    spec.check(good)
    with pytest.raises(SpecError, match=r"\('next', 'reward'\): expected shape \[\*B, 1\]"):
        spec.check(good.set(("next", "reward"), torch.zeros(4, 2)))
    with pytest.raises(SpecError, match=r"observation: missing; expected shape \[\*B, 3\]"):
        spec.check(TensorDict(next=TensorDict(reward=torch.zeros(1))))
    with pytest.raises(SpecError, match="expected a tensordict with keys"):
        spec.check(torch.zeros(3))
    assert not spec.is_in({"observation": torch.zeros(3)})


def test_repr_of_composite_matches_torchrl() -> None:
    spec = Composite(action=Categorical(2))
    assert repr(spec) == (
        "Composite(\n"
        "    action: Categorical(\n"
        "        shape=torch.Size([]),\n"
        "        space=CategoricalBox(n=2),\n"
        "        device=cpu,\n"
        "        dtype=torch.int64,\n"
        "        domain=discrete),\n"
        "    device=cpu,\n"
        "    shape=torch.Size([]))"
    )


def test_composite_int_indexing_removes_the_first_batch_dimension() -> None:
    spec = Composite(observation=Unbounded((3,)), next=Composite(done=Binary(1))).expand(4)
    single = Composite(observation=Unbounded((3,)), next=Composite(done=Binary(1)))
    assert spec[0] == single
    with pytest.raises(SpecError, match="can be indexed by an int"):
        single[0]
    assert 0 not in spec
