"""Image transforms: ToTensorImage, Resize, CenterCrop, GrayScale, UnsqueezeTransform,
PermuteTransform: values, specs, new out_keys, metadata, ONNX / TorchScript exports, Pong."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from tensordict import TensorDict

from rlpol import (
    CenterCrop,
    Compose,
    GrayScale,
    GymEnv,
    ObservationTransform,
    PermuteTransform,
    Resize,
    SpecError,
    ToTensorImage,
    TransformedEnv,
    UnsqueezeTransform,
)
from rlpol.toolkit.specs import Bounded, Composite, Unbounded


@dataclass(frozen=True)
class Case:
    """One transform: how to build it with given keys, and an input image of a batch size."""

    name: str
    make: Callable[..., ObservationTransform]
    shape: tuple[int, ...]  # one image
    dtype: torch.dtype = torch.float32

    def image(self, batch: int) -> torch.Tensor:
        if self.dtype == torch.uint8:
            return torch.randint(0, 256, (batch, *self.shape), dtype=torch.uint8)
        return torch.rand(batch, *self.shape)

    def spec(self) -> Bounded:
        high = 255 if self.dtype == torch.uint8 else 1.0
        return Bounded(0, high, self.shape, dtype=self.dtype)


CASES = [
    Case("ToTensorImage", lambda **keys: ToTensorImage(**keys), (12, 10, 3), torch.uint8),
    Case("Resize-bilinear", lambda **keys: Resize(6, 4, **keys), (3, 12, 10)),
    Case("Resize-nearest", lambda **keys: Resize(6, 4, "nearest", **keys), (3, 12, 10)),
    Case("Resize-up", lambda **keys: Resize(16, **keys), (3, 12, 10)),
    Case("CenterCrop", lambda **keys: CenterCrop(5, 4, **keys), (3, 12, 10)),
    Case("GrayScale", lambda **keys: GrayScale(**keys), (3, 12, 10)),
    Case("UnsqueezeTransform", lambda in_keys=("pixels",), **keys: UnsqueezeTransform(
        -4, in_keys=in_keys, **keys), (3, 12, 10)),
    Case("PermuteTransform", lambda in_keys=("pixels",), **keys: PermuteTransform(
        (-1, -3, -2), in_keys, **keys), (12, 10, 3)),
]  # fmt: skip


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request) -> Case:
    return request.param


# -- values -------------------------------------------------------------------------------
def test_to_tensor_image_moves_channels_first_and_scales_integers():
    image = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    out = ToTensorImage().apply(image)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 5)
    assert torch.equal(out, image.permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(
        ToTensorImage(from_int=False).apply(image), image.permute(0, 3, 1, 2).float()
    )
    floats = torch.rand(4, 5, 3) * 7
    assert torch.equal(ToTensorImage().apply(floats), floats.permute(2, 0, 1))
    assert torch.equal(ToTensorImage(from_int=True).apply(floats), floats.permute(2, 0, 1) / 255)
    assert ToTensorImage(dtype=torch.float64).apply(image).dtype == torch.float64


def test_to_tensor_image_spec_of_uint8_images_is_bounded_0_1():
    spec = ToTensorImage().apply_spec(Unbounded((7, 210, 160, 3), dtype=torch.uint8))
    assert isinstance(spec, Bounded) and spec.shape == (7, 3, 210, 160)
    assert spec.dtype == torch.float32 and spec.low.max() == 0 and spec.high.min() == 1
    unscaled = ToTensorImage(from_int=False).apply_spec(Unbounded((4, 5, 3), dtype=torch.uint8))
    assert isinstance(unscaled, Unbounded) and unscaled.shape == (3, 4, 5)


def test_resize_writes_w_rows_and_h_columns_as_torchrl():
    frames = torch.rand(2, 5, 3, 21, 16)
    assert Resize(8, 4).apply(frames).shape == (2, 5, 3, 8, 4)
    assert Resize(8).apply(frames).shape == (2, 5, 3, 8, 8)
    assert torch.equal(Resize(8, 4).apply(frames)[1, 3], Resize(8, 4).apply(frames[1, 3]))
    assert Resize(21, 16).apply(frames) is frames  # already that size


def test_resize_nearest_takes_the_floor_source_pixel():
    image = torch.arange(24.0).reshape(1, 4, 6)
    expected = image[:, [0, 2]][:, :, [0, 2, 4]]
    assert torch.equal(Resize(2, 3, "nearest").apply(image), expected)


def test_resize_bilinear_downsampling_is_antialiased_as_torchvision():
    image = torch.rand(1, 8, 8)
    out = Resize(4).apply(image)[0]
    # halving with antialias: the triangle filter stretched x2, taps (1, 3, 3, 1) / 8 inside
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    rows = torch.stack([taps @ image[0, 2 * i - 1 : 2 * i + 3] for i in (1, 2)])
    inner = torch.stack([rows[:, 2 * j - 1 : 2 * j + 3] @ taps for j in (1, 2)], dim=1)
    torch.testing.assert_close(out[1:3, 1:3], inner)


def test_resize_bilinear_upsampling_has_half_pixel_centers():
    image = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    ramp = torch.tensor([0.0, 0.25, 0.75, 1.0])
    torch.testing.assert_close(Resize(4).apply(image)[0], 2 * ramp[:, None] + ramp[None, :])


def test_resize_rounds_integer_images_back_to_their_dtype():
    image = torch.randint(0, 256, (2, 3, 12, 10), dtype=torch.uint8)
    out = Resize(5).apply(image)
    assert out.dtype == torch.uint8
    assert torch.equal(out, Resize(5).apply(image.float()).round().to(torch.uint8))


def test_center_crop_starts_where_torchvision_does():
    image = torch.arange(35.0).reshape(1, 5, 7)
    # rows: round((5 - 2) / 2) = 2, columns: round((7 - 3) / 2) = 2
    assert torch.equal(CenterCrop(2, 3).apply(image), image[:, 2:4, 2:5])
    assert torch.equal(CenterCrop(3).apply(image), image[:, 1:4, 2:5])
    with pytest.raises(SpecError, match=r"crops \[6, 3\] out of images \[5, 7\]"):
        CenterCrop(6, 3).apply_spec(Unbounded((1, 5, 7)))


def test_gray_scale_uses_torchvision_weights_in_the_input_dtype():
    image = torch.rand(2, 3, 4, 4)
    expected = 0.2989 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    torch.testing.assert_close(GrayScale().apply(image), expected.unsqueeze(1), rtol=0, atol=0)
    white = torch.full((3, 1, 1), 255, dtype=torch.uint8)
    assert GrayScale().apply(white).tolist() == [[[254]]]  # 254.97, truncated as TorchRL
    with pytest.raises(
        SpecError,
        match=r"RGB images \[\*, 3, H, W\], found the spec shape "
        r"\[210, 160, 3\].*put ToTensorImage\(\) before",
    ):
        GrayScale().apply_spec(Unbounded((210, 160, 3), dtype=torch.uint8))


def test_unsqueeze_and_permute_work_on_the_trailing_dims():
    frames = torch.rand(2, 5, 3, 4)
    assert torch.equal(UnsqueezeTransform(-4, in_keys=["x"]).apply(frames), frames[:, None])
    assert torch.equal(UnsqueezeTransform(-1, in_keys=["x"]).apply(frames), frames[..., None])
    assert torch.equal(PermuteTransform((-1, -3, -2), ["x"]).apply(frames),
                       frames.permute(0, 3, 1, 2))  # fmt: skip
    with pytest.raises(ValueError, match=r"dim must be < 0"):
        UnsqueezeTransform(0, in_keys=["x"])
    with pytest.raises(ValueError, match=r"UnsqueezeTransform needs in_keys"):
        UnsqueezeTransform(-1, in_keys=[])
    with pytest.raises(ValueError, match=r"reordering of the trailing dims .* \[-3, -2, -1\]"):
        PermuteTransform((0, 1, 2), ["x"])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Resize(0), r"sizes >= 1"),
        (lambda: Resize(8, interpolation="bicubic"), r"one of \['nearest', 'bilinear'\]"),
        (lambda: CenterCrop(4, 0), r"sizes >= 1"),
        (lambda: Resize(8, in_keys=["a", "b"], out_keys=["a"]), r"as many out_keys as in_keys"),
    ],
)
def test_bad_arguments_say_what_is_expected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- specs, keys, metadata ----------------------------------------------------------------
def test_bounded_spec_holds_the_transformed_images(case):
    transform, spec = case.make(), case.spec()
    out_spec = transform.apply_spec(spec)
    images = spec.rand((6,))
    out = transform.apply(images)
    assert out.shape[1:] == out_spec.shape and out.dtype == out_spec.dtype
    assert out_spec.is_in(out)
    unbounded = transform.apply_spec(Unbounded((2, *case.shape), dtype=case.dtype))
    assert unbounded.shape == transform.apply(case.image(2)).shape


def test_writing_a_new_key_leaves_the_in_key_alone(case):
    transform = case.make(in_keys=["pixels"], out_keys=["processed"])
    spec = Composite(pixels=case.spec())
    seen = transform.transform_observation_spec(spec.clone())
    assert seen["pixels"] == case.spec()
    assert seen["processed"] == case.make().apply_spec(case.spec())
    images = case.image(3)
    td = transform(TensorDict(pixels=images.clone(), batch_size=[3]))
    assert torch.equal(td["pixels"], images)
    assert torch.equal(td["processed"], case.make().apply(images))


def test_to_dict_records_the_arguments(case):
    record = case.make().to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["type"] == case.name.split("-")[0] and record["in_keys"] == ["pixels"]
    assert Resize(84, 42, "nearest").to_dict() == {
        "type": "Resize", "in_keys": ["pixels"], "out_keys": ["pixels"], "w": 84, "h": 42,
        "interpolation": "nearest",
    }  # fmt: skip
    assert ToTensorImage(in_keys=["observation"], out_keys=["pixels"]).to_dict() == {
        "type": "ToTensorImage", "in_keys": ["observation"], "out_keys": ["pixels"],
        "from_int": None, "dtype": "float32",
    }  # fmt: skip


# -- exports ------------------------------------------------------------------------------
def test_exports_to_onnx_with_a_dynamic_batch_and_traces(case, export_module):
    exported = export_module(case.make(), ["pixels"], ["pixels"], (case.image(3),))
    for batch in (1, 5):
        images = case.image(batch)
        (eager,) = exported.eager(images)
        (onnx_out,) = exported.onnx(images)
        (traced,) = exported.traced(images)
        assert onnx_out.shape == eager.shape and onnx_out.dtype == eager.dtype
        torch.testing.assert_close(onnx_out, eager, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(traced, eager, rtol=0, atol=0)
    if case.name.startswith("Resize"):
        assert "Resize" in exported.onnx_ops


# -- on Pong ------------------------------------------------------------------------------
def test_pong_frames_go_through_the_chain_as_its_forward_maps_them():
    chain = Compose(
        ToTensorImage(out_keys=["frame"]),
        CenterCrop(160, in_keys=["frame"]), Resize(84, in_keys=["frame"]),
        GrayScale(in_keys=["frame"]),
    )  # fmt: skip
    env = TransformedEnv(GymEnv("ALE/Pong-v5", categorical_action_encoding=True), chain)
    env.set_seed(0)
    rollout = env.rollout(6)
    assert rollout["frame"].shape == (6, 1, 84, 84) and rollout["pixels"].dtype == torch.uint8
    assert env.observation_spec["frame"].is_in(rollout["next", "frame"])
    assert env.observation_spec["pixels"].shape == (210, 160, 3)
    mapped = chain(rollout.select("pixels").clone())
    assert torch.equal(mapped["frame"], rollout["frame"])
