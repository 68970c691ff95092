"""Tests of the leaf specs (rlpol.toolkit.specs._base, .continuous, .discrete).

Sampling, validation, ``repr``, construction, ``expand``/``to``/``clone``/indexing, equality
and the numpy conversions, on every leaf class; most tests run over :data:`LEAF_SPECS`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlpol.errors import SpecError
from rlpol.toolkit.specs import (
    Binary,
    Bounded,
    BoxList,
    Categorical,
    CategoricalBox,
    ContinuousBox,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    TensorSpec,
    Unbounded,
    spec_from_dict,
    spec_to_dict,
)

INF = math.inf

LEAF_SPECS: list[TensorSpec] = [
    Unbounded((3,)),
    Unbounded((), dtype=torch.int32),
    Unbounded((2,), dtype=torch.bool),
    Bounded(-2.0, 2.0, (1,)),
    Bounded(np.array([-1.0, -INF, -INF]), np.array([INF, 1.0, INF]), dtype=torch.float64),
    Bounded(0, 255, (2, 2), dtype=torch.uint8),
    Bounded(-1e38, 3e38, (2,)),
    Categorical(3),
    Categorical(4, (2,)),
    OneHot(2),
    OneHot(3, (2, 3), dtype=torch.bool),
    Binary(4),
    MultiCategorical([3, 2]),
    MultiOneHot([3, 1, 2]),
]

# (spec, a value of the right shape and dtype outside the spec's domain)
OUT_OF_DOMAIN = [
    (Bounded(-2.0, 2.0, (1,)), torch.tensor([2.5])),
    (Bounded(-2.0, 2.0, (1,)), torch.tensor([float("nan")])),
    (Bounded(0, 3, (), dtype=torch.int64), torch.tensor(4)),
    (Categorical(3), torch.tensor(3)),
    (Categorical(3), torch.tensor(-1)),
    (OneHot(3), torch.tensor([1, 1, 0])),
    (OneHot(3), torch.tensor([0, 0, 0])),
    (OneHot(3), torch.tensor([2, -1, 0])),
    (Binary(3), torch.tensor([0, 2, 1], dtype=torch.int8)),
    (MultiCategorical([3, 2]), torch.tensor([1, 2])),
    (MultiOneHot([2, 2]), torch.tensor([1, 0, 1, 1])),
]


def _id(value: object) -> str:
    return repr(value).split("(")[0]


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_rand_is_in_with_batch_shape(spec: TensorSpec, batch: tuple[int, ...]) -> None:
    value = spec.rand(batch)
    assert value.shape == (*batch, *spec.shape)
    assert value.dtype == spec.dtype
    assert value.device == spec.device
    assert spec.is_in(value)
    spec.check(value)


@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
def test_rand_follows_the_generator(spec: TensorSpec) -> None:
    draws = [spec.rand((4,), generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    torch.manual_seed(3)
    first = spec.rand((4,))
    torch.manual_seed(3)
    assert torch.equal(first, spec.rand((4,)))


@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
def test_zero_has_the_spec_shape_and_dtype(spec: TensorSpec) -> None:
    zero = spec.zero((2,))
    assert zero.shape == (2, *spec.shape) and zero.dtype == spec.dtype
    assert not zero.any()


def test_bounded_samples_each_part_of_mixed_bounds() -> None:
    spec = Bounded(torch.tensor([0.0, -INF, 5.0, -INF]), torch.tensor([1.0, 0.0, INF, INF]))
    sample = spec.rand((2000,), generator=torch.Generator().manual_seed(0))
    assert spec.is_in(sample)
    assert bool((sample[:, 0] >= 0).all() and (sample[:, 0] <= 1).all())
    assert bool((sample[:, 1] <= 0).all() and (sample[:, 2] >= 5).all())
    assert sample[:, 3].min() < -1 and sample[:, 3].max() > 1  # normal, not uniform on [0, 1)


def test_bounded_integer_sampling_reaches_both_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    sample = Bounded(-1, 1, (), dtype=torch.int64).rand((500,), generator=generator)
    assert set(sample.tolist()) == {-1, 0, 1}


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.int8])
def test_bounded_integer_sampling_at_the_dtype_extremes(dtype: torch.dtype) -> None:
    info = torch.iinfo(dtype)
    for low, high in [(0, info.max), (info.min, info.max), (info.max - 1, info.max)]:
        spec = Bounded(low, high, (), dtype=dtype)
        sample = spec.rand((2000,), generator=torch.Generator().manual_seed(1))
        assert spec.is_in(sample), (low, high, sample.min(), sample.max())
    assert Bounded(info.max, info.max, (3,), dtype=dtype).rand().tolist() == [info.max] * 3


def test_bounded_handles_a_range_wider_than_the_dtype() -> None:
    info = torch.finfo(torch.float32)
    spec = Bounded(info.min, info.max, (1000,))
    sample = spec.rand()
    assert bool(torch.isfinite(sample).all()) and spec.is_in(sample)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 3), max_size=3),
    low=st.floats(-(2.0**100), 2.0**100, width=32),
    width=st.floats(0, 2.0**100, width=32),
    open_low=st.booleans(),
    open_high=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_bounded_rand_is_in_for_any_bounds(
    shape: list[int],
    low: float,
    width: float,
    open_low: bool,
    open_high: bool,
    dtype: torch.dtype,
) -> None:
    high = float(np.float32(low + width))
    spec = Bounded(-INF if open_low else low, INF if open_high else high, shape, dtype=dtype)
    sample = spec.rand((3,))
    assert sample.shape == (3, *shape)
    assert spec.is_in(sample)


@settings(max_examples=40, deadline=None)
@given(
    nvec=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    batch=st.lists(st.integers(0, 3), max_size=2),
)
def test_discrete_rand_is_in_for_any_cardinality(nvec: list[int], batch: list[int]) -> None:
    specs = [
        Categorical(nvec[0], batch),
        OneHot(nvec[0]).expand(batch),
        Binary(len(nvec)).expand(batch),
        MultiCategorical(nvec).expand(batch),
        MultiOneHot(nvec).expand(batch),
    ]
    for spec in specs:
        assert spec.is_in(spec.rand((2,))), spec


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
def test_is_in_rejects_a_wrong_trailing_shape_or_dtype(spec: TensorSpec) -> None:
    value = spec.rand()
    if spec.shape:  # (a () spec takes any shape: all of it is batch dimensions)
        wider = (*spec.shape[:-1], spec.shape[-1] + 1)
        assert not spec.is_in(torch.zeros(wider, dtype=spec.dtype))
    other = torch.float16 if spec.dtype != torch.float16 else torch.float32
    assert not spec.is_in(value.to(other))
    assert not spec.is_in(value.numpy())


@pytest.mark.parametrize(("spec", "value"), OUT_OF_DOMAIN, ids=lambda v: _id(v))
def test_is_in_rejects_values_outside_the_domain(spec: TensorSpec, value: torch.Tensor) -> None:
    assert not spec.is_in(value)
    assert not spec.is_in(torch.stack([spec.rand(), value]))
    with pytest.raises(SpecError, match=r"values are not|not one-hot"):
        spec.check(value, key="x")


def test_check_names_key_shapes_and_bounds() -> None:
    spec = Bounded(-2.0, 2.0, (1,))
    expected = r"action: expected shape \[\*B, 1\] dtype torch.float32 within \[-2.0, 2.0\]"
    with pytest.raises(SpecError, match=expected + r", received shape \[3\] dtype torch.float32: "):
        spec.check(torch.zeros(3), key="action")
    with pytest.raises(SpecError, match=r"received shape \[1\] dtype torch.float64: .*\.to\("):
        spec.check(torch.zeros(1, dtype=torch.float64), key="action")
    with pytest.raises(
        SpecError, match=r"1 of 2 values are not within the bounds \(e.g. \[3.5\]\)"
    ):
        spec.check(torch.tensor([[0.0], [3.5]]), key="action")
    with pytest.raises(SpecError, match=r"action: expected a torch.Tensor .* received a ndarray"):
        spec.check(np.zeros(1, dtype=np.float32), key="action")


def test_check_lists_elementwise_bounds_and_nested_keys() -> None:
    spec = Bounded([-1.0, 0.0], [1.0, INF])
    with pytest.raises(
        SpecError, match=r"\('next', 'obs'\): .* within low=\[-1.0, 0.0\], high=\[1.0, inf\]"
    ):
        spec.check(torch.tensor([0.0, -1.0]), key=("next", "obs"))


# --------------------------------------------------------------------------------------------
# repr
# --------------------------------------------------------------------------------------------


def test_repr_of_one_hot_matches_torchrl() -> None:
    assert repr(OneHot(2)) == (
        "OneHot(\n"
        "    shape=torch.Size([2]),\n"
        "    space=CategoricalBox(n=2),\n"
        "    device=cpu,\n"
        "    dtype=torch.int64,\n"
        "    domain=discrete)"
    )


def test_repr_of_bounded_and_unbounded_matches_torchrl() -> None:
    tensor = "Tensor(shape=torch.Size([1]), device=cpu, dtype=torch.float32, contiguous=True)"
    assert repr(Bounded(-2.0, 2.0, (1,))) == (
        "BoundedContinuous(\n"
        "    shape=torch.Size([1]),\n"
        "    space=ContinuousBox(\n"
        f"        low={tensor},\n"
        f"        high={tensor}),\n"
        "    device=cpu,\n"
        "    dtype=torch.float32,\n"
        "    domain=continuous)"
    )
    assert repr(Bounded(0, 9, (1,), dtype=torch.int64)).startswith("BoundedDiscrete(\n")
    assert repr(Unbounded((1,))).startswith("UnboundedContinuous(\n")
    assert "domain=discrete" in repr(Unbounded((1,), dtype=torch.int64))
    assert "space=BoxList(boxes=[CategoricalBox(n=3), CategoricalBox(n=2)])" in repr(
        MultiOneHot([3, 2])
    )


# --------------------------------------------------------------------------------------------
# Construction, expand, to, clone, equality
# --------------------------------------------------------------------------------------------


def test_leaf_attributes() -> None:
    spec = Bounded(np.array([-1.0, 0.0]), 1.0)
    assert spec.shape == torch.Size([2]) and spec.domain == "continuous"
    assert isinstance(spec.space, ContinuousBox)
    assert torch.equal(spec.low, torch.tensor([-1.0, 0.0]))
    assert torch.equal(spec.high, torch.tensor([1.0, 1.0]))
    assert OneHot(4).n == 4 and OneHot(4).space == CategoricalBox(4)
    assert Categorical(4).shape == torch.Size([]) and Categorical(4).domain == "discrete"
    assert Binary(3).shape == torch.Size([3]) and Binary(shape=(2, 3)).dtype == torch.int8
    assert MultiCategorical(np.array([3, 2])).nvec == (3, 2)
    assert MultiOneHot([3, 2]).shape == torch.Size([5])
    assert MultiOneHot([3, 2]).space == BoxList([CategoricalBox(3), CategoricalBox(2)])
    assert Unbounded(dtype=torch.uint8).space.high == 255


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Bounded(1.0, 0.0), "low must not exceed high"),
        (lambda: Bounded(float("nan"), 0.0), "neither may be NaN"),
        (lambda: Bounded(np.zeros(2), np.ones(3)), "do not broadcast together"),
        (lambda: Bounded(np.zeros(2), 1.0, (3,)), r"do not broadcast to shape \[3\]"),
        (lambda: Bounded(-INF, 0, (), dtype=torch.int64), "non-finite values"),
        (lambda: Bounded(0, 1, (), dtype=torch.bool), "use Binary"),
        (lambda: Bounded("a", 1.0), "low must be a number"),
        (lambda: OneHot(3, (4,)), "last entry of shape must be n=3"),
        (lambda: OneHot(0), "n must be a positive int"),
        (lambda: Categorical(2.5), "n must be a positive int"),
        (lambda: Binary(), "Binary needs n or shape"),
        (lambda: MultiCategorical([]), "non-empty sequence"),
        (lambda: MultiCategorical(np.ones((2, 2), dtype=int)), "one-dimensional"),
        (lambda: MultiOneHot([2, 2], (3,)), r"sum\(nvec\)=4"),
        (lambda: Unbounded((-1,)), "negative sizes"),
        (lambda: Unbounded("3"), "sequence of ints"),
        (lambda: Unbounded(device="nowhere"), "is not a torch device"),
        (lambda: Unbounded(dtype="float32"), "must be a torch.dtype"),
    ],
)
def test_construction_errors_say_what_is_wrong(build, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build()


@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
def test_expand_clone_and_to_give_new_specs(spec: TensorSpec) -> None:
    expanded = spec.expand(4, 2)
    assert expanded.shape == (4, 2, *spec.shape)
    assert expanded == spec.expand([4, 2]) == spec.expand(torch.Size([4, 2]))
    assert expanded.is_in(spec.rand((4, 2))) and not expanded.is_in(spec.rand((4,)))
    clone = spec.clone()
    assert clone == spec and clone is not spec and clone != expanded
    moved = spec.to("cpu")
    assert moved == spec and moved is not spec


def test_bounded_expand_broadcasts_the_bounds() -> None:
    spec = Bounded([-1.0, 0.0], [1.0, 2.0]).expand(3)
    assert torch.equal(spec.low, torch.tensor([[-1.0, 0.0]] * 3))


def test_int_indexing_removes_the_first_batch_dimension() -> None:
    bounded = Bounded(torch.tensor([[0.0], [1.0]]), 2.0)
    assert bounded[1] == Bounded(1.0, 2.0, (1,)) and bounded[-2] == Bounded(0.0, 2.0, (1,))
    assert OneHot(3).expand(4)[0] == OneHot(3)
    assert MultiOneHot([2, 1]).expand(2, 5)[1] == MultiOneHot([2, 1]).expand(5)
    assert Categorical(3, (2,))[0] == Categorical(3)
    for bad_spec, index in [(OneHot(3), 0), (Categorical(3), 0), (Unbounded((2,)), 2)]:
        with pytest.raises(SpecError, match="can be indexed by an int"):
            bad_spec[index]


def test_equality_compares_class_shape_dtype_and_parameters() -> None:
    assert Bounded(-1.0, 1.0, (2,)) == Bounded(np.array([-1.0, -1.0]), 1.0)
    assert Bounded(-1.0, 1.0, (2,)) != Bounded(-1.0, 2.0, (2,))
    assert Bounded(-1.0, 1.0, (2,)) != Bounded(-1.0, 1.0, (2,), dtype=torch.float64)
    assert Bounded(-INF, INF, (2,)) != Unbounded((2,))
    assert OneHot(3) != Categorical(3) and Categorical(3) != Categorical(4)
    assert MultiOneHot([3, 2]) != MultiOneHot([2, 3])
    assert Binary(2) != Categorical(2, (2,)) and Binary(2) != 2


# --------------------------------------------------------------------------------------------
# from_numpy / to_numpy (gymnasium values)
# --------------------------------------------------------------------------------------------


def test_to_numpy_return_types() -> None:
    one_hot = OneHot(3)
    assert type(one_hot.to_numpy(torch.tensor([0, 0, 1]))) is np.int64
    batched = one_hot.to_numpy(torch.tensor([[0, 0, 1], [1, 0, 0]]))
    assert batched.dtype == np.int64 and batched.tolist() == [2, 0]
    assert OneHot(2, dtype=torch.bool).to_numpy(torch.tensor([False, True])) == 1
    assert type(Categorical(3).to_numpy(torch.tensor(2))) is int
    assert Categorical(3, (2,)).to_numpy(torch.tensor([2, 1])).tolist() == [2, 1]
    assert MultiOneHot([2, 3]).to_numpy(torch.tensor([[0, 1, 0, 0, 1]])).tolist() == [[1, 2]]
    continuous = Bounded(-1.0, 1.0, (2,)).to_numpy(torch.tensor([0.5, 0.25], requires_grad=True))
    assert continuous.dtype == np.float32
    assert (
        Bounded(-1.0, 1.0, (2,), dtype=torch.float64).to_numpy(torch.zeros(2)).dtype == np.float64
    )


def test_from_numpy_copies_casts_and_reshapes() -> None:
    spec = Bounded(-2.0, 2.0, (1,))
    array = np.array([0.5], dtype=np.float32)
    tensor = spec.from_numpy(array)
    array[0] = 1.5
    assert tensor.tolist() == [0.5]  # no shared memory with the env's buffer
    assert spec.from_numpy(np.float64(1.0)).shape == (1,)  # a gym scalar fits a [1] spec
    assert spec.from_numpy(np.zeros((4, 1))).dtype == torch.float32
    assert Categorical(3).from_numpy(np.int64(2)).shape == ()
    assert Categorical(3, (1,)).from_numpy(2).tolist() == [2]
    assert OneHot(3).from_numpy(np.array([2, 0])).tolist() == [[0, 0, 1], [1, 0, 0]]
    reversed_view = np.arange(3.0)[::-1]
    assert Unbounded((3,)).from_numpy(reversed_view).tolist() == [2.0, 1.0, 0.0]
    readonly = np.ones(3, dtype=np.float32)
    readonly.flags.writeable = False
    assert Unbounded((3,)).from_numpy(readonly).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (
            Bounded(-1.0, 1.0, (2,)),
            np.zeros(3),
            r"received a value of shape \[3\], expected \[\*B, 2\]",
        ),
        (Unbounded((2,)), "text", "cannot convert a str"),
        (OneHot(3), 3, r"expected integers in \[0, 2\]"),
        (OneHot(3), -1, r"expected integers in \[0, 2\]"),
        (MultiOneHot([2, 3]), np.array([1, 3]), r"for nvec=\[2, 3\]"),
    ],
)
def test_from_numpy_errors(spec: TensorSpec, value: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec.from_numpy(value)


# --------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("spec", LEAF_SPECS, ids=_id)
def test_specs_on_cuda(spec: TensorSpec) -> None:
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    cuda = spec.to("cuda")
    sample = cuda.rand((3,))
    assert sample.device.type == "cuda" and cuda.is_in(sample) and not spec == cuda
    assert spec.is_in(sample.cpu())
    assert cuda.from_numpy(spec.to_numpy(sample[0].cpu())).device.type == "cuda"
    assert spec_from_dict(spec_to_dict(cuda)) == cuda
