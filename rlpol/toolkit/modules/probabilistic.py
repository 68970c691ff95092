"""The probabilistic module of rlpol's actors: samples computed from declared draws.

:class:`ProbabilisticModule` is tensordict's ``ProbabilisticTensorDictModule`` whose random
values follow rlpol's randomness protocol (:mod:`rlpol.toolkit.noise`): under ``RANDOM`` it
takes one draw through :func:`~rlpol.toolkit.noise.draw_noise` and computes the sample as a
deterministic function of the distribution's parameters and that draw. An exporter can then
feed the draw as a graph input, and a runtime can replay an eager rollout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    dispatch,
)
from tensordict.nn.distributions import Delta
from tensordict.nn.distributions import OneHotCategorical as TDOneHotCategorical
from torch import distributions as D

from rlpol._compat import (
    base_dist_sample,
    hasattr_safe,
    interaction_type,
    overrides_dist_sample,
)
from rlpol.errors import SpecError
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.modules._common import check_in_keys, one_hot
from rlpol.toolkit.modules.distributions import TanhNormal
from rlpol.toolkit.noise import NoiseSpec, StochasticModule, draw_noise

__all__ = ["ProbabilisticModule", "sampler_kind"]

# What a RANDOM call draws, by family of distribution.
_NORMAL = "normal"  # one standard-normal draw per element of the sample
_CATEGORICAL = "categorical"  # one uniform draw per row (the category dimension excluded)
_NONE = "none"  # no draw: the distribution is a point mass


def sampler_kind(distribution_class: object) -> str | None:
    """How :class:`ProbabilisticModule` samples ``distribution_class`` under ``RANDOM``.

    Returns:
        ``"normal"`` for ``Normal`` and :class:`TanhNormal` (reparametrised from a
        standard-normal draw), ``"categorical"`` for ``Categorical`` and both
        ``OneHotCategorical`` (inverse CDF of one uniform draw per row), ``"none"`` for
        tensordict's ``Delta``, and ``None`` for anything else (such a module only works
        under the deterministic interaction types).

    Examples:
        >>> import torch
        >>> from rlpol.toolkit.modules import TanhNormal
        >>> from rlpol.toolkit.modules.probabilistic import sampler_kind
        >>> sampler_kind(TanhNormal), sampler_kind(torch.distributions.Categorical)
        ('normal', 'categorical')
        >>> print(sampler_kind(torch.distributions.Beta))
        None
    """
    if not isinstance(distribution_class, type):
        return None
    if issubclass(distribution_class, (D.Normal, TanhNormal)):
        return _NORMAL
    if issubclass(distribution_class, (D.Categorical, D.OneHotCategorical)):
        return _CATEGORICAL
    if issubclass(distribution_class, Delta):
        return _NONE
    return None


def _normal_base(dist: D.Distribution) -> D.Distribution:
    """The object holding ``loc`` and ``scale``: the distribution, or the one it wraps."""
    if isinstance(dist, TanhNormal):
        return dist
    return dist.base_dist if isinstance(dist, D.Independent) else dist


def _normal_sample(dist: D.Distribution, noise: torch.Tensor) -> torch.Tensor:
    """``loc + scale * noise`` (``Normal.rsample``), or its TanhNormal image."""
    if isinstance(dist, TanhNormal):
        return dist.sample_from_noise(noise)
    base = _normal_base(dist)
    return base.loc + base.scale * noise


def _categorical_index(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """The inverse CDF: the number of cumulative probabilities ``<= u * total``.

    ``probs`` is ``[*R, n]`` and ``uniform`` is ``[*R]`` in ``[0, 1)``. Category ``k`` is
    chosen iff ``cdf[k-1] <= u * cdf[-1] < cdf[k]``, so zero-probability categories are
    never chosen and the index stays below ``n``. Returns int64 ``[*R]``.
    """
    cdf = probs.cumsum(-1)
    target = uniform.unsqueeze(-1) * cdf[..., -1:]
    index = (cdf <= target).sum(-1)
    return index.clamp(max=probs.shape[-1] - 1)


@overrides_dist_sample
@hasattr_safe
class ProbabilisticModule(ProbabilisticTensorDictModule, StochasticModule):
    """A ``ProbabilisticTensorDictModule`` whose random samples are functions of declared draws.

    The value written at ``out_keys`` depends on the interaction type (the one set with
    ``set_exploration_type`` / ``set_interaction_type``, else ``default_interaction_type``):

    - ``RANDOM``: one draw from :func:`~rlpol.toolkit.noise.draw_noise`, named ``"action"``,
      of shape ``[*B, *row]`` where ``B`` is the input's batch size:

      * ``Normal``: ``"normal"`` draw ``eps`` of the sample's shape; value
        ``loc + scale * eps`` (what ``Normal.rsample`` computes).
      * :class:`TanhNormal`: same draw; value ``mid + half * tanh(loc + scale * eps)``.
      * ``Categorical`` / ``OneHotCategorical``: ``"uniform"`` draw ``u``, one per row (the
        category dimension excluded); the category is the inverse CDF
        ``index = #{k : cumsum(probs)[k] <= u * sum(probs)}``; ``OneHotCategorical``
        writes ``one_hot(index, n)``.
      * tensordict's ``Delta``: no draw.

    - ``DETERMINISTIC``: the distribution's ``deterministic_sample`` if it has one, else its
      mean for real supports (``Normal``: ``loc``) and its mode for discrete ones
      (``Categorical``: ``argmax``), as tensordict does. :class:`TanhNormal`:
      ``mid + half * tanh(loc)``.
    - ``MODE`` / ``MEAN`` / ``MEDIAN``: the attribute of that name; when the distribution
      has no closed form for it (``TanhNormal``'s mean and mode), the deterministic sample.
      Never an empirical estimate. For the categorical family ``MEAN`` and ``MODE`` both
      give the argmax (the mean of categories is not a category).

    With a ``spec``, values of a discrete spec are cast to its dtype (int64 for ``OneHot``
    and ``Categorical``). Distributions are built with ``validate_args=False`` unless
    ``distribution_kwargs`` says otherwise, so that the module can be traced. For
    :class:`TanhNormal`, ``low`` / ``high`` default to the bounds of a ``Bounded`` spec;
    tensor-valued ``distribution_kwargs`` are kept as buffers (they follow ``.to(device)``).

    The draw's trailing shape (``noise_specs``) comes from the last call, or before the
    first call from ``spec`` (``spec.shape`` for continuous and ``Categorical`` values,
    ``spec.shape[:-1]`` for one-hot ones).

    Args:
        in_keys: the distribution parameters, e.g. ``["loc", "scale"]`` or ``["logits"]``;
            a dict maps distribution keywords to keys.
        out_keys: where the value goes. Defaults to ``["action"]``.

    Keyword Args:
        spec: the value's spec (optional; see above).
        distribution_class: the distribution (see :func:`sampler_kind` for the ones that
            support ``RANDOM``).
        distribution_kwargs: more keyword arguments for ``distribution_class``.
        return_log_prob: also write the log-probability of the value at ``log_prob_key``.
        default_interaction_type: used when no exploration type is set.
        log_prob_key: defaults to ``"<out_key>_log_prob"`` (``"action_log_prob"``).
        generator: the generator the eager draws come from (default: torch's global one).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.modules import ProbabilisticModule, set_exploration_type
        >>> module = ProbabilisticModule(
        ...     ["logits"], distribution_class=torch.distributions.Categorical
        ... )
        >>> td = TensorDict(logits=torch.tensor([[0.0, 3.0], [2.0, 0.0]]), batch_size=[2])
        >>> module(td)["action"]  # DETERMINISTIC: argmax
        tensor([1, 0])
        >>> module.noise_specs
        (NoiseSpec(name='action', distribution='uniform', shape=()),)
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | dict[str, NestedKey],
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        *,
        spec: object | None = None,
        distribution_class: type,
        distribution_kwargs: dict | None = None,
        return_log_prob: bool = False,
        default_interaction_type: InteractionType | str = InteractionType.DETERMINISTIC,
        log_prob_key: NestedKey | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if out_keys is None:
            out_keys = ["action"]
        if isinstance(out_keys, (str, tuple)):
            out_keys = [out_keys]
        if len(out_keys) != 1:
            raise ValueError(
                f"ProbabilisticModule writes one value, got out_keys={list(out_keys)}; "
                "use one module per sampled key."
            )
        kwargs = dict(distribution_kwargs or {})
        if isinstance(distribution_class, type) and issubclass(distribution_class, D.Distribution):
            kwargs.setdefault("validate_args", False)
        if isinstance(distribution_class, type) and issubclass(distribution_class, TanhNormal):
            _bounds_from_spec(kwargs, spec)
        super().__init__(
            in_keys,
            out_keys,
            default_interaction_type=default_interaction_type,
            distribution_class=distribution_class,
            distribution_kwargs=kwargs,
            return_log_prob=return_log_prob,
            log_prob_key=log_prob_key,
        )
        self.spec = spec
        self.generator = generator
        self._kind = sampler_kind(distribution_class)
        self._row_shape: tuple[int, ...] | None = None
        self._batch_size: torch.Size | None = None

    # -- distribution kwargs: tensors live in buffers so they follow .to(device) -----------
    @property
    def distribution_kwargs(self) -> dict:
        merged = dict(self._static_dist_kwargs)
        for name in self._tensor_dist_kwargs:
            merged[name] = getattr(self, f"_dist_kwarg_{name}")
        return merged

    @distribution_kwargs.setter
    def distribution_kwargs(self, value: dict) -> None:
        self._static_dist_kwargs = {}
        self._tensor_dist_kwargs = []
        for name, item in value.items():
            if isinstance(item, torch.Tensor):
                self.register_buffer(f"_dist_kwarg_{name}", item)
                self._tensor_dist_kwargs.append(name)
            else:
                self._static_dist_kwargs[name] = item

    # -- StochasticModule -----------------------------------------------------------------
    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        """``(NoiseSpec("action", "normal" | "uniform", row),)``, or ``()`` (see class doc)."""
        if self._kind == _NONE:
            return ()
        if self._kind is None:
            raise self._unsupported_error()
        distribution = "normal" if self._kind == _NORMAL else "uniform"
        return (NoiseSpec("action", distribution, self._draw_shape()),)

    def is_exploring(self) -> bool:
        """True when the current interaction type (or the default) is ``RANDOM``."""
        current = interaction_type() or self.default_interaction_type
        return current is InteractionType.RANDOM and self._kind != _NONE

    # -- the call ------------------------------------------------------------------------
    @dispatch(auto_batch_size=False)
    def forward(
        self,
        tensordict: TensorDictBase,
        tensordict_out: TensorDictBase | None = None,
        _requires_sample: bool = True,
    ) -> TensorDictBase:
        """Write the value (and log-probability) for the parameters in ``tensordict``."""
        check_in_keys(self._name(), tensordict, self.in_keys)
        self._batch_size = tensordict.batch_size
        try:
            return super().forward(tensordict, tensordict_out, _requires_sample=_requires_sample)
        finally:
            self._batch_size = None

    def draw_dist_sample(
        self,
        dist: D.Distribution,
        interaction_type: InteractionType | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One value of ``dist`` for ``interaction_type`` (tensordict's draw hook, installed by
        :func:`rlpol._compat.overrides_dist_sample`): under ``RANDOM`` computed from the
        declared draw, under ``MEAN`` / ``MODE`` in closed form, else tensordict's own."""
        if interaction_type is None:
            interaction_type = self.default_interaction_type
        self._record_row_shape(dist)
        if interaction_type is InteractionType.RANDOM:
            value = self._sample_from_draws(dist)
        elif interaction_type in (InteractionType.MEAN, InteractionType.MODE):
            value = self._closed_form(dist, interaction_type)
        else:
            value = base_dist_sample(self, dist, interaction_type, generator=generator)
        return self._cast(value)

    # -- helpers -------------------------------------------------------------------------
    def _sample_from_draws(self, dist: D.Distribution) -> torch.Tensor:
        if self._kind == _NONE:
            return dist.rsample()
        if self._kind is None:
            raise self._unsupported_error()
        batch = self._batch_size if self._batch_size is not None else torch.Size()
        device = dist.probs.device if self._kind == _CATEGORICAL else _normal_base(dist).loc.device
        (noise,) = draw_noise(self, batch, device)
        if self._kind == _NORMAL:
            return _normal_sample(dist, noise)
        index = _categorical_index(dist.probs, noise)
        if isinstance(dist, TDOneHotCategorical):
            return one_hot(index, dist.probs.shape[-1])
        if isinstance(dist, D.OneHotCategorical):
            return one_hot(index, dist.probs.shape[-1]).to(dist.probs.dtype)
        return index

    def _record_row_shape(self, dist: D.Distribution) -> None:
        """Remember the draw's per-row shape: the value's shape without the batch dims
        (and without the category dimension for the categorical family)."""
        if self._kind not in (_NORMAL, _CATEGORICAL) or torch.jit.is_tracing():
            return
        batch = self._batch_size if self._batch_size is not None else torch.Size()
        if self._kind == _NORMAL:
            full = dist.batch_shape + dist.event_shape
        else:
            full = dist.batch_shape
        self._row_shape = tuple(full[len(batch) :])

    def _closed_form(self, dist: D.Distribution, which: InteractionType) -> torch.Tensor:
        if self._kind == _CATEGORICAL:  # the mean of categories is no category: the mode
            return base_dist_sample(self, dist, InteractionType.DETERMINISTIC)
        try:
            return dist.mean if which is InteractionType.MEAN else dist.mode
        except (AttributeError, NotImplementedError):
            return base_dist_sample(self, dist, InteractionType.DETERMINISTIC)

    def _cast(self, value: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        dtype = getattr(spec, "dtype", None)
        if dtype is None or dtype.is_floating_point or value.dtype == dtype:
            return value
        return value.to(dtype)

    def _draw_shape(self) -> tuple[int, ...]:
        if self._row_shape is not None:
            return self._row_shape
        shape = getattr(self.spec, "shape", None)
        if shape is None:
            raise SpecError(
                f"{self._name()}.noise_specs is not known yet: pass spec=env.action_spec, "
                "or call the module once (its draw's shape comes from the last call)."
            )
        one_hot = isinstance(self.distribution_class, type) and issubclass(
            self.distribution_class, (D.OneHotCategorical, TDOneHotCategorical)
        )
        return tuple(shape[:-1]) if one_hot else tuple(shape)

    def _unsupported_error(self) -> SpecError:
        return SpecError(
            f"{self._name()} cannot sample {self._dist_name()} under RANDOM: supported "
            "distributions are Normal, TanhNormal, Categorical, OneHotCategorical and "
            "Delta. Use a deterministic exploration type, or one of those distributions."
        )

    def _name(self) -> str:
        return f"{type(self).__name__}({self._dist_name()})"

    def _dist_name(self) -> str:
        return getattr(self.distribution_class, "__name__", repr(self.distribution_class))


def _bounds_from_spec(kwargs: dict, spec: object | None) -> None:
    """Fill TanhNormal's ``low`` / ``high`` from a ``Bounded`` spec where not given."""
    if spec is None or ("low" in kwargs and "high" in kwargs):
        return
    low, high = getattr(spec, "low", None), getattr(spec, "high", None)
    if low is None or high is None:
        raise SpecError(
            f"TanhNormal takes its bounds from a Bounded spec, got {type(spec).__name__}; "
            "pass spec=Bounded(low, high, shape) or distribution_kwargs={'low': ..., 'high': ...}."
        )
    kwargs.setdefault("low", low.clone())
    kwargs.setdefault("high", high.clone())
