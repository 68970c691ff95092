"""Distributions for bounded continuous actions: :class:`TanhNormal`, as in TorchRL."""

from __future__ import annotations

import torch
from torch import distributions as D
from torch.distributions import constraints
from torch.distributions.transforms import AffineTransform, TanhTransform

__all__ = ["TanhNormal"]


class _SafeTanhTransform(TanhTransform):
    """``tanh`` kept strictly inside ``(-1, 1)`` so that its inverse stays finite."""

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        limit = 1.0 - torch.finfo(x.dtype).eps
        return x.tanh().clamp(-limit, limit)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        limit = 1.0 - torch.finfo(y.dtype).eps
        return torch.atanh(y.clamp(-limit, limit))


def _as_bound(bound: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(bound, torch.Tensor):
        return bound.to(dtype=like.dtype, device=like.device)
    return torch.full((), float(bound), dtype=like.dtype, device=like.device)


class TanhNormal(D.TransformedDistribution):
    """A Normal squashed by ``tanh`` and mapped affinely onto ``[low, high]``.

    A value is ``mid + half * tanh(x)`` with ``x ~ Normal(loc, scale)``,
    ``mid = (high + low) / 2`` and ``half = (high - low) / 2``. The ``tanh`` is clamped to
    ``[-1 + eps, 1 - eps]`` (``eps`` the dtype's machine epsilon), so values stay strictly
    inside the bounds and :meth:`log_prob` stays finite. The last ``event_dims`` dimensions
    form the event: :meth:`log_prob` sums over them (TorchRL's convention), so for ``loc``
    of shape ``[*B, d]`` it returns ``[*B]``.

    Deterministic values (no closed form exists for the mean or the mode):
    :attr:`deterministic_sample` and :attr:`median` are ``mid + half * tanh(loc)``, the
    exact median. :attr:`mean` and :attr:`mode` raise ``NotImplementedError``; rlpol's
    probabilistic modules answer ``MEAN`` and ``MODE`` with the deterministic sample.

    Args:
        loc: the location of the Normal before squashing, ``[*B, d]``.
        scale: its standard deviation, positive, broadcastable to ``loc``.

    Keyword Args:
        low: the lower bound of the values (a float or a tensor broadcastable to ``loc``).
        high: the upper bound.
        event_dims: how many trailing dimensions form one event. Defaults to
            ``min(1, loc.ndim)``.
        tanh_loc: if True, ``loc`` is first squashed to ``upscale * tanh(loc / upscale)``.
        upscale: see ``tanh_loc``.
        validate_args: as for ``torch.distributions``; rlpol's actors pass ``False`` so
            that the distribution can be traced.

    Examples:
        >>> import torch
        >>> from rlpol.toolkit.modules import TanhNormal
        >>> dist = TanhNormal(torch.zeros(2, 1), torch.ones(2, 1), low=-2.0, high=2.0)
        >>> dist.deterministic_sample
        tensor([[0.],
                [0.]])
        >>> dist.log_prob(torch.tensor([[0.0], [1.0]])).shape
        torch.Size([2])
        >>> value = dist.sample_from_noise(torch.tensor([[0.0], [100.0]]))
        >>> value  # prints 2.0000, but lies strictly inside (-2, 2)
        tensor([[0.0000],
                [2.0000]])
        >>> bool((value < 2.0).all()), bool(dist.log_prob(value).isfinite().all())
        (True, True)
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        *,
        low: float | torch.Tensor = -1.0,
        high: float | torch.Tensor = 1.0,
        event_dims: int | None = None,
        tanh_loc: bool = False,
        upscale: float = 5.0,
        validate_args: bool | None = None,
    ) -> None:
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low >= high:
            raise ValueError(f"TanhNormal needs low < high, got low={low} and high={high}.")
        if tanh_loc:
            loc = upscale * torch.tanh(loc / upscale)
        self.loc = loc
        self.scale = scale
        self.low = _as_bound(low, loc)
        self.high = _as_bound(high, loc)
        self._mid = (self.high + self.low) / 2
        self._half = (self.high - self.low) / 2
        if event_dims is None:
            event_dims = min(1, loc.ndim)
        base: D.Distribution = D.Normal(loc, scale, validate_args=validate_args)
        if event_dims > 0:
            base = D.Independent(base, event_dims, validate_args=validate_args)
        transforms = [
            _SafeTanhTransform(cache_size=1),
            AffineTransform(loc=self._mid, scale=self._half, cache_size=1),
        ]
        super().__init__(base, transforms, validate_args=validate_args)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """``mid + half * tanh(loc)`` (clamped as the samples are): the median.

        Computed through the caching transforms, as :meth:`sample_from_noise` is, so that
        :meth:`log_prob` of the returned tensor scores ``loc`` itself: recovering it with
        ``atanh`` from a saturated ``tanh`` would turn one ulp of ``tanh`` into an error of
        order 1 in the log-probability (and differ between runtimes).
        """
        return self._squash(self.loc)

    @property
    def median(self) -> torch.Tensor:
        """The exact median, ``mid + half * tanh(loc)``."""
        return self.deterministic_sample

    def sample_from_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """The reparametrised value for a standard-normal draw ``noise`` of the sample's shape.

        ``mid + half * tanh(loc + scale * noise)``: what :meth:`rsample` computes from its own
        draw. The transforms cache the pre-image, so :meth:`log_prob` of the returned tensor
        scores ``loc + scale * noise`` exactly, even where ``tanh`` saturates.
        """
        return self._squash(self.loc + self.scale * noise)

    def _squash(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        """``mid + half * tanh(pre_tanh)``; each transform caches its pre-image (see above)."""
        value = pre_tanh
        for transform in self.transforms:
            value = transform(value)
        return value
