"""Image observation transforms with TorchRL's names, arguments and defaults.

:class:`ToTensorImage`, :class:`Resize`, :class:`CenterCrop`, :class:`GrayScale`,
:class:`UnsqueezeTransform` and :class:`PermuteTransform` are
:class:`~.transforms.ObservationTransform` subclasses: pure torch functions of an image with
any number of leading batch dims, with no Python branch on tensor values, so they trace
(``torch.jit.trace``, ``torch.onnx.export(..., dynamo=True)`` with a dynamic batch) and an
exporter folds them into a policy's graph. Their default in_key is ``"pixels"`` (TorchRL's
``IMAGE_KEYS``; :class:`UnsqueezeTransform` and :class:`PermuteTransform` have none and
must be told).

Shapes follow TorchRL: :class:`ToTensorImage` turns ``[*, H, W, C]`` into ``[*, C, H, W]``;
``Resize(w, h)`` and ``CenterCrop(w, h)`` write ``[*, C, w, h]`` (TorchRL hands ``[w, h]``
to torchvision, whose size is ``(rows, columns)``: ``w`` counts rows).

Specs (:meth:`~.transforms.ObservationTransform.apply_spec`): a ``Bounded`` spec's bounds go
through the same function, which is exact for the re-indexing transforms and keeps every
output within the new bounds for :class:`Resize` and :class:`GrayScale` (non-negative
weights: the output is monotone in each input); an ``Unbounded`` spec keeps its kind with
the new shape and dtype.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from rlpol import Compose, GrayScale, Resize, ToTensorImage
    >>> chain = Compose(ToTensorImage(), Resize(84), GrayScale())
    >>> frames = torch.randint(0, 256, (2, 210, 160, 3), dtype=torch.uint8)
    >>> print(chain(TensorDict(pixels=frames, batch_size=[2])))
    TensorDict(batch_size=[2], fields={pixels: f32[1,84,84]})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from rlpol.errors import SpecError
from rlpol.toolkit.envs.transforms import ObservationTransform
from rlpol.toolkit.keys import PIXELS, NestedKey
from rlpol.toolkit.specs import Bounded, TensorSpec, Unbounded

__all__ = [
    "INTERPOLATIONS",
    "CenterCrop",
    "GrayScale",
    "PermuteTransform",
    "Resize",
    "ToTensorImage",
    "UnsqueezeTransform",
    "map_spec",
]

#: the ``interpolation`` values :class:`Resize` takes (torchvision's names)
INTERPOLATIONS = ("nearest", "bilinear")

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), as TorchRL's GrayScale uses
_LUMA = (0.2989, 0.587, 0.114)


def map_spec(
    spec: TensorSpec, function: Callable[[torch.Tensor], torch.Tensor], owner: str
) -> TensorSpec:
    """``spec`` seen through ``function``: a Bounded's bounds mapped, an Unbounded's shape.

    Args:
        spec: a leaf spec (Bounded or Unbounded).
        function: a pure tensor function (shapes with any leading dims).
        owner: the transform's name, for the error.

    Raises:
        SpecError: ``spec`` is neither Bounded nor Unbounded.
    """
    if isinstance(spec, Bounded):
        low, high = function(spec.low), function(spec.high)
        return Bounded(low, high, shape=low.shape, device=spec.device, dtype=low.dtype)
    if isinstance(spec, Unbounded):
        out = function(torch.zeros(spec.shape, dtype=spec.dtype, device=spec.device))
        return Unbounded(shape=out.shape, device=spec.device, dtype=out.dtype)
    raise SpecError(
        f"{owner} maps Bounded or Unbounded image specs, found a {type(spec).__name__} spec; "
        "apply it to an image key (in_keys=[...])."
    )


def _size(owner: str, w: int, h: int | None) -> tuple[int, int]:
    """TorchRL's ``(w, h)`` arguments: ``h`` defaults to ``w``; both >= 1."""
    h = w if h is None else h
    if min(w, h) < 1:
        raise ValueError(f"{owner}(w, h) takes sizes >= 1, got w={w}, h={h}")
    return int(w), int(h)


def _check_dims(spec: TensorSpec, owner: str, needed: int, layout: str, fix: str) -> None:
    if len(spec.shape) < needed:
        raise SpecError(
            f"{owner} reads images {layout}, found the spec shape {list(spec.shape)}; {fix}"
        )


class _ImageTransform(ObservationTransform):
    """An observation transform on images: in_keys default to ``["pixels"]`` (required where
    ``DEFAULT_IN_KEYS`` is empty), the spec is its function's (:func:`map_spec`), and
    ``to_dict`` records the attributes named in ``PARAMS``."""

    DEFAULT_IN_KEYS: tuple[NestedKey, ...] = (PIXELS,)
    PARAMS: tuple[str, ...] = ()

    def __init__(
        self,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        if not self.DEFAULT_IN_KEYS and not in_keys:
            name = type(self).__name__
            raise ValueError(
                f"{name} needs in_keys (the entries to transform; TorchRL's default of none "
                f"transforms nothing), got {in_keys!r}; e.g. {name}(..., in_keys=['pixels'])."
            )
        super().__init__(in_keys, out_keys)

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        return map_spec(spec, self._apply_transform, type(self).__name__)

    def to_dict(self) -> dict:
        return {**super().to_dict(), **{name: getattr(self, name) for name in self.PARAMS}}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({fields})"


class ToTensorImage(_ImageTransform):
    """``[*, H, W, C]`` images to float ``[*, C, H, W]``, scaled from ``0..255`` to ``[0, 1]``.

    As TorchRL's: the channels move first, then integer images are divided by 255
    (``from_int=None``; ``True`` divides float images too, ``False`` never divides), then
    cast to ``dtype``. A uint8 image spec becomes ``Bounded(0, 1)``. TorchRL's ``unsqueeze``
    and ``shape_tolerant`` options are not offered (use :class:`UnsqueezeTransform`).

    Args:
        from_int: whether to divide by 255 (None: when the image is not floating point).

    Keyword Args:
        dtype: the output dtype (default: torch's default dtype, float32).
        in_keys: image keys (default ``["pixels"]``).
        out_keys: where to write the results (default: the in_keys).

    Raises:
        SpecError: the image spec has fewer than 3 dims.

    Examples:
        >>> import torch
        >>> from rlpol import ToTensorImage
        >>> from rlpol.toolkit.specs import Unbounded
        >>> image = torch.full((4, 5, 3), 255, dtype=torch.uint8)
        >>> ToTensorImage().apply(image).shape, ToTensorImage().apply(image).max()
        (torch.Size([3, 4, 5]), tensor(1.))
        >>> ToTensorImage().apply_spec(Unbounded((4, 5, 3), dtype=torch.uint8)).high.shape
        torch.Size([3, 4, 5])
    """

    PARAMS = ("from_int",)

    def __init__(
        self,
        from_int: bool | None = None,
        *,
        dtype: torch.dtype | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        self.from_int = from_int
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()

    def _scales(self, dtype: torch.dtype) -> bool:
        return bool(self.from_int) or (self.from_int is None and not dtype.is_floating_point)

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        observation = observation.permute(*range(observation.dim() - 3), -1, -3, -2)
        if self._scales(observation.dtype):
            observation = observation.div(255)
        return observation.to(self.dtype)

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        _check_dims(spec, "ToTensorImage", 3, "[*, H, W, C]", "is in_keys the image entry?")
        if isinstance(spec, Unbounded) and spec.dtype == torch.uint8 and self._scales(spec.dtype):
            *lead, height, width, channels = spec.shape
            shape = (*lead, channels, height, width)
            return Bounded(0.0, 1.0, shape=shape, device=spec.device, dtype=self.dtype)
        return super().apply_spec(spec)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "dtype": str(self.dtype).removeprefix("torch.")}


class Resize(_ImageTransform):
    """Resize ``[*, C, H, W]`` images to ``[*, C, w, h]`` with ``torch.nn.functional.interpolate``.

    As TorchRL's (which calls torchvision's ``resize``): bilinear with ``antialias=True``
    and ``align_corners=False``, or nearest; integer images are resized as float32, then
    rounded back to their dtype. An image already ``[..., w, h]`` is returned as it is. In
    ONNX this is one ``Resize`` node (opset 18's ``antialias`` attribute for bilinear).

    Args:
        w: the output size of dim -2 (rows; TorchRL's name).
        h: the output size of dim -1 (default: ``w``).
        interpolation: ``"bilinear"`` (TorchRL's default) or ``"nearest"``.
        in_keys: image keys (default ``["pixels"]``).
        out_keys: where to write the results (default: the in_keys).

    Raises:
        ValueError: a size below 1, or an interpolation not in :data:`INTERPOLATIONS`.
        SpecError: the image spec has fewer than 3 dims.

    Examples:
        >>> import torch
        >>> from rlpol import Resize
        >>> Resize(84, 42).apply(torch.rand(5, 2, 3, 210, 160)).shape
        torch.Size([5, 2, 3, 84, 42])
    """

    PARAMS = ("w", "h", "interpolation")

    def __init__(
        self,
        w: int,
        h: int | None = None,
        interpolation: str = "bilinear",
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        self.w, self.h = _size("Resize", w, h)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"Resize(interpolation=...) takes one of {list(INTERPOLATIONS)}, got "
                f"{interpolation!r}"
            )
        self.interpolation = interpolation

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        if tuple(observation.shape[-2:]) == (self.w, self.h):
            return observation
        images = observation.reshape(-1, *observation.shape[-3:])  # [N, C, H, W]
        integer = not observation.is_floating_point()
        if integer:
            images = images.float()
        if self.interpolation == "bilinear":
            images = F.interpolate(
                images, size=(self.w, self.h), mode="bilinear", align_corners=False,
                antialias=True,
            )  # fmt: skip
        else:
            images = F.interpolate(images, size=(self.w, self.h), mode="nearest")
        if integer:
            images = images.round().to(observation.dtype)
        return images.reshape(*observation.shape[:-2], self.w, self.h)

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        _check_dims(spec, "Resize", 3, "[*, C, H, W]", "put ToTensorImage() before Resize.")
        return super().apply_spec(spec)


class CenterCrop(_ImageTransform):
    """Crop the center ``[w, h]`` of ``[*, C, H, W]`` images (``w`` rows, ``h`` columns).

    As torchvision's ``center_crop`` (which TorchRL calls): the crop starts at row
    ``round((H - w) / 2)`` and column ``round((W - h) / 2)``. A crop larger than the image
    is refused (torchvision pads with zeros).

    Args:
        w: the number of rows kept.
        h: the number of columns kept (default: ``w``).
        in_keys: image keys (default ``["pixels"]``).
        out_keys: where to write the results (default: the in_keys).

    Raises:
        ValueError: a size below 1.
        SpecError: the image spec has fewer than 2 dims or is smaller than the crop.

    Examples:
        >>> import torch
        >>> from rlpol import CenterCrop
        >>> CenterCrop(2).apply(torch.arange(16.0).reshape(1, 4, 4))
        tensor([[[ 5.,  6.],
                 [ 9., 10.]]])
    """

    PARAMS = ("w", "h")

    def __init__(
        self,
        w: int,
        h: int | None = None,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        self.w, self.h = _size("CenterCrop", w, h)

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        rows, columns = (int(size) for size in observation.shape[-2:])  # static when traced
        top = round((rows - self.w) / 2.0)
        left = round((columns - self.h) / 2.0)
        return observation[..., top : top + self.w, left : left + self.h]

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        _check_dims(spec, "CenterCrop", 2, "[*, H, W]", "is in_keys the image entry?")
        rows, columns = spec.shape[-2:]
        if self.w > rows or self.h > columns:
            raise SpecError(
                f"CenterCrop(w={self.w}, h={self.h}) crops [{self.w}, {self.h}] out of images "
                f"[{rows}, {columns}] (spec shape {list(spec.shape)}); pick w <= {rows} and "
                f"h <= {columns}, or Resize first."
            )
        return super().apply_spec(spec)


class GrayScale(_ImageTransform):
    """RGB ``[*, 3, H, W]`` images to grayscale ``[*, 1, H, W]``, in the input's dtype.

    The luma of torchvision's ``rgb_to_grayscale``, as TorchRL's:
    ``0.2989 * r + 0.587 * g + 0.114 * b`` (integer images are truncated back to their
    dtype, as there).

    Args:
        in_keys: image keys (default ``["pixels"]``).
        out_keys: where to write the results (default: the in_keys).

    Raises:
        SpecError: the image spec has no 3 channels at dim -3.

    Examples:
        >>> import torch
        >>> from rlpol import GrayScale
        >>> GrayScale().apply(torch.ones(2, 3, 4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        red, green, blue = observation.unbind(-3)
        luma = _LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue
        return luma.to(observation.dtype).unsqueeze(-3)

    def apply_spec(self, spec: TensorSpec) -> TensorSpec:
        fix = "put ToTensorImage() before GrayScale to move the channels first."
        _check_dims(spec, "GrayScale", 3, "[*, 3, H, W]", fix)
        if spec.shape[-3] != 3:
            raise SpecError(
                f"GrayScale reads RGB images [*, 3, H, W], found the spec shape "
                f"{list(spec.shape)} ({spec.shape[-3]} channels at dim -3); {fix}"
            )
        return super().apply_spec(spec)


class UnsqueezeTransform(_ImageTransform):
    """Insert a dim of size 1 at ``dim`` (negative: counted from the end, batch-size free).

    TorchRL's, without ``allow_positive_dim`` and the inverse keys. TorchRL's default
    in_keys (none) would transform nothing, so ``in_keys`` is required here.

    Args:
        dim: where the new dim goes, ``< 0`` (``-1``: last).

    Keyword Args:
        in_keys: the entries to unsqueeze.
        out_keys: where to write the results (default: the in_keys).

    Raises:
        ValueError: ``dim >= 0`` or no in_keys.

    Examples:
        >>> import torch
        >>> from rlpol import UnsqueezeTransform
        >>> UnsqueezeTransform(-4, in_keys=["pixels"]).apply(torch.zeros(5, 3, 8, 8)).shape
        torch.Size([5, 1, 3, 8, 8])
    """

    DEFAULT_IN_KEYS = ()
    PARAMS = ("dim",)

    def __init__(
        self,
        dim: int,
        *,
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        if dim >= 0:
            raise ValueError(
                f"UnsqueezeTransform(dim={dim}): dim must be < 0 (counted from the end), so "
                "that it means the same for every batch size; e.g. dim=-4 for a [*, 1, C, H, W]."
            )
        self.dim = dim

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        return observation.unsqueeze(self.dim)


class PermuteTransform(_ImageTransform):
    """Permute the last ``len(dims)`` dims: ``dims`` is a reordering of ``-len(dims) .. -1``.

    TorchRL's, without the inverse keys; e.g. ``PermuteTransform((-1, -3, -2))`` turns
    ``[*, H, W, C]`` into ``[*, C, H, W]``. ``in_keys`` is required (TorchRL's default of
    none would transform nothing).

    Args:
        dims: the new order of the trailing dims, as negative indices.
        in_keys: the entries to permute.
        out_keys: where to write the results (default: the in_keys).

    Raises:
        ValueError: ``dims`` is not a reordering of ``-len(dims) .. -1``, or no in_keys.

    Examples:
        >>> import torch
        >>> from rlpol import PermuteTransform
        >>> PermuteTransform((-1, -3, -2), ["pixels"]).apply(torch.zeros(5, 210, 160, 3)).shape
        torch.Size([5, 3, 210, 160])
    """

    DEFAULT_IN_KEYS = ()
    PARAMS = ("dims",)

    def __init__(
        self,
        dims: Sequence[int],
        in_keys: Sequence[NestedKey],
        out_keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        self.dims = [int(dim) for dim in dims]
        if sorted(self.dims) != list(range(-len(self.dims), 0)):
            raise ValueError(
                f"PermuteTransform(dims={self.dims}) takes a reordering of the trailing dims "
                f"as negative indices, i.e. of {list(range(-len(self.dims), 0))}; e.g. "
                "(-1, -3, -2) for [*, H, W, C] -> [*, C, H, W]."
            )

    def _apply_transform(self, observation: torch.Tensor) -> torch.Tensor:
        return observation.permute(*range(observation.dim() - len(self.dims)), *self.dims)
