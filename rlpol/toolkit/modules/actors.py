"""Policies that read and write tensordicts: TorchRL's actors on top of ``tensordict.nn``.

- :class:`Actor`: a deterministic ``TensorDictModule``, ``"observation"`` -> ``"action"``.
- :class:`ProbabilisticActor`: parameters -> distribution -> value (and log-probability).
- :class:`QValueModule` / :class:`QValueActor`: greedy actions from action values.

Every class checks its input keys first and raises :class:`~rlpol.errors.InputMismatchError`
naming the missing ones. Everything here can be traced with ``torch.export`` (non-strict)
and ``torch.jit.trace``: no ``.item()``, no data-dependent Python branch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
    dispatch,
    skip_existing,
)
from torch import nn

from rlpol._compat import sequence_log_prob_key, sequence_modules
from rlpol.toolkit.keys import (
    ACTION,
    ACTION_VALUE,
    CHOSEN_ACTION_VALUE,
    OBSERVATION,
    NestedKey,
)
from rlpol.toolkit.modules._common import check_in_keys, normalize_action_space
from rlpol.toolkit.modules.probabilistic import ProbabilisticModule

__all__ = ["Actor", "ProbabilisticActor", "QValueActor", "QValueModule"]


def _as_key_list(keys: NestedKey | Sequence[NestedKey] | None, default: NestedKey) -> list:
    if keys is None:
        return [default]
    if isinstance(keys, (str, tuple)):
        return [keys]
    return list(keys)


def _first_in_features(module: nn.Module) -> int | None:
    """The input width of ``module``'s first linear layer, if it is known (not lazy)."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.lazy.LazyModuleMixin):
            return None
        if isinstance(sub, nn.Linear):
            return sub.in_features
    return None


def _input_shapes(module: nn.Module, in_keys: Sequence[NestedKey]) -> dict:
    """Expected trailing shapes of a one-input module's key, where its first layer says."""
    if len(in_keys) != 1:
        return {}
    width = _first_in_features(module)
    return {} if width is None else {in_keys[0]: (width,)}


class Actor(TensorDictModule):
    """A deterministic policy: a ``TensorDictModule`` from ``"observation"`` to ``"action"``.

    Args:
        module: the network, called with the ``in_keys`` entries as positional tensors.
        in_keys: the entries the network reads. Defaults to ``["observation"]``.
        out_keys: where its outputs go. Defaults to ``["action"]``.

    Keyword Args:
        spec: the action spec, kept as ``actor.spec`` (no projection is applied).

    Raises:
        InputMismatchError: at call time, when an ``in_keys`` entry is missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.modules import MLP, Actor
        >>> actor = Actor(MLP(3, 1, num_cells=[32, 64]))
        >>> actor.in_keys, actor.out_keys
        (['observation'], ['action'])
        >>> td = actor(TensorDict(observation=torch.zeros(10, 3), batch_size=[10]))
        >>> td["action"].shape
        torch.Size([10, 1])
    """

    def __init__(
        self,
        module: nn.Module,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        *,
        spec: object | None = None,
    ) -> None:
        super().__init__(
            module,
            in_keys=_as_key_list(in_keys, OBSERVATION),
            out_keys=_as_key_list(out_keys, ACTION),
        )
        self.spec = spec

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase, *args, **kwargs) -> TensorDictBase:
        """Write the network's outputs at ``out_keys``."""
        shapes = functools.partial(_input_shapes, self.module, self.in_keys)
        check_in_keys(type(self).__name__, tensordict, self.in_keys, shapes)
        return super().forward(tensordict, *args, **kwargs)


class ProbabilisticActor(ProbabilisticTensorDictSequential):
    """A stochastic policy: ``module`` writes distribution parameters, then a value is drawn.

    It is ``ProbabilisticTensorDictSequential(module, ProbabilisticModule(...))``: the last
    module (``actor[-1]``, a :class:`~rlpol.toolkit.modules.ProbabilisticModule` and a
    :class:`~rlpol.toolkit.noise.StochasticModule`) builds ``distribution_class`` from the
    ``in_keys`` entries and writes at ``out_keys``:

    - under ``RANDOM``, a value computed from one declared draw (``noise_specs ==
      (NoiseSpec("action", "normal" | "uniform", row),)``; see ``ProbabilisticModule``);
    - otherwise the deterministic value: ``Normal``: ``loc``; :class:`TanhNormal`:
      ``mid + half * tanh(loc)``; ``Categorical`` / ``OneHotCategorical``: the argmax.

    When no exploration type is set, ``default_interaction_type`` (``DETERMINISTIC``)
    applies. With ``return_log_prob=True`` the log-probability of the value goes to
    ``log_prob_key`` (``"action_log_prob"`` by default).

    Args:
        module: a ``TensorDictModule`` (or sequence) writing the parameters.
        in_keys: the parameter entries, e.g. ``["loc", "scale"]`` or ``["logits"]``.
        out_keys: where the value goes. Defaults to ``["action"]``.

    Keyword Args:
        spec: the action spec. Gives :class:`TanhNormal` its ``low`` / ``high`` (unless in
            ``distribution_kwargs``) and the dtype of discrete values.
        distribution_class: ``torch.distributions.Normal``, :class:`TanhNormal`,
            ``Categorical``, ``OneHotCategorical`` (torch's or tensordict's), or any
            distribution for deterministic use.
        distribution_kwargs: more keyword arguments of ``distribution_class``.
        return_log_prob: write the log-probability too.
        default_interaction_type: the interaction type when none is set.
        log_prob_key: where the log-probability goes.
        generator: the generator of the eager draws (default: torch's global one).

    Raises:
        TypeError: ``module`` is not a tensordict module.
        InputMismatchError: at call time, when an input entry is missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import NormalParamExtractor, TensorDictModule
        >>> from rlpol.toolkit.modules import MLP, ProbabilisticActor
        >>> backbone = TensorDictModule(
        ...     torch.nn.Sequential(MLP(3, 2), NormalParamExtractor()),
        ...     in_keys=["observation"],
        ...     out_keys=["loc", "scale"],
        ... )
        >>> policy = ProbabilisticActor(
        ...     backbone,
        ...     in_keys=["loc", "scale"],
        ...     distribution_class=torch.distributions.Normal,
        ...     return_log_prob=True,
        ... )
        >>> td = policy(TensorDict(observation=torch.zeros(4, 3), batch_size=[4]))
        >>> sorted(td.keys())
        ['action', 'action_log_prob', 'loc', 'observation', 'scale']
        >>> bool((td["action"] == td["loc"]).all())  # DETERMINISTIC by default
        True
    """

    def __init__(
        self,
        module: TensorDictModuleBase,
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
        if not isinstance(module, TensorDictModuleBase):
            raise TypeError(
                f"ProbabilisticActor needs a tensordict module that writes {in_keys}, got "
                f"{type(module).__name__}. Wrap it: TensorDictModule(module, "
                f"in_keys=['observation'], out_keys={list(in_keys)!r})."
            )
        sampler = ProbabilisticModule(
            in_keys,
            out_keys,
            spec=spec,
            distribution_class=distribution_class,
            distribution_kwargs=distribution_kwargs,
            return_log_prob=return_log_prob,
            default_interaction_type=default_interaction_type,
            log_prob_key=log_prob_key,
            generator=generator,
        )
        super().__init__(module, sampler)
        self.spec = spec

    @property
    def log_prob_key(self) -> NestedKey:
        """Where the log-probability goes (``"action_log_prob"`` by default)."""
        return sequence_log_prob_key(self)

    @dispatch(auto_batch_size=False)
    def forward(
        self,
        tensordict: TensorDictBase,
        tensordict_out: TensorDictBase | None = None,
        **kwargs,
    ) -> TensorDictBase:
        """Run the parameter module, then write the value (and log-probability)."""
        check_in_keys(type(self).__name__, tensordict, self.in_keys)
        return super().forward(tensordict, tensordict_out, **kwargs)


class QValueModule(TensorDictModuleBase):
    """Greedy action selection from action values, for discrete action spaces.

    Reads ``action_value`` ``[*B, n]`` (and an optional bool ``action_mask`` ``[*B, n]``)
    and writes:

    - ``action``: ``one_hot(argmax)`` int64 ``[*B, n]`` for a one-hot space, or the argmax
      int64 ``[*B]`` for a categorical one (first index on ties);
    - ``action_value``: the values, where masked-out actions hold the dtype's lowest value;
    - ``chosen_action_value``: the value of the chosen action, ``[*B, 1]``.

    Args:
        action_space: the action spec itself (``env.action_spec``: ``OneHot`` or
            ``Categorical``), or ``"one_hot"`` / ``"categorical"`` (``"one-hot"`` accepted).

    Keyword Args:
        spec: the action spec, as an alternative to ``action_space``.
        action_value_key: where the action values are read.
        action_key: where the action goes.
        chosen_action_value_key: where the chosen action's value goes.
        action_mask_key: a bool entry ``[*B, n]``, True for allowed actions (optional).

    Raises:
        SpecError: the action space is missing, unsupported, or given twice inconsistently.
        InputMismatchError: at call time, when an input entry is missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.modules import QValueModule
        >>> module = QValueModule(action_space="one_hot")
        >>> td = module(TensorDict(action_value=torch.tensor([[0.1, 0.5], [0.9, 0.2]]),
        ...                        batch_size=[2]))
        >>> td["action"]
        tensor([[0, 1],
                [1, 0]])
        >>> td["chosen_action_value"]
        tensor([[0.5000],
                [0.9000]])
    """

    def __init__(
        self,
        action_space: object | str | None = None,
        *,
        spec: object | None = None,
        action_value_key: NestedKey = ACTION_VALUE,
        action_key: NestedKey = ACTION,
        chosen_action_value_key: NestedKey = CHOSEN_ACTION_VALUE,
        action_mask_key: NestedKey | None = None,
    ) -> None:
        kind, spec = normalize_action_space(action_space, spec, owner="QValueModule")
        super().__init__()
        self.action_space = kind
        self.spec = spec
        self.action_value_key = action_value_key
        self.action_key = action_key
        self.chosen_action_value_key = chosen_action_value_key
        self.action_mask_key = action_mask_key
        in_keys = [action_value_key]
        if action_mask_key is not None:
            in_keys.append(action_mask_key)
        self.in_keys = in_keys
        self.out_keys = [action_key, action_value_key, chosen_action_value_key]

    def _expected_shapes(self) -> dict:
        n = getattr(self.spec, "n", None)
        if n is None:
            return {}
        return {key: (int(n),) for key in self.in_keys}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the greedy action, the (masked) values and the chosen value."""
        check_in_keys(type(self).__name__, tensordict, self.in_keys, self._expected_shapes)
        values = tensordict.get(self.action_value_key)
        if self.action_mask_key is not None:
            mask = tensordict.get(self.action_mask_key).to(torch.bool)
            lowest = torch.finfo(values.dtype).min
            values = torch.where(mask, values, torch.full_like(values, lowest))
        # one max (value and first index of the maximum, as argmax) and one scatter: each
        # torch op costs microseconds at the batch sizes of a rollout
        chosen, index = values.max(-1, keepdim=True)
        if self.action_space == "one_hot":
            action = torch.zeros_like(
                values, dtype=torch.int64, memory_format=torch.contiguous_format
            ).scatter_(-1, index, 1)
        else:
            action = index.squeeze(-1)
        tensordict.set(self.action_key, action)
        tensordict.set(self.action_value_key, values)
        tensordict.set(self.chosen_action_value_key, chosen)
        return tensordict


class QValueActor(TensorDictSequential):
    """A value network followed by a :class:`QValueModule`: a greedy discrete policy.

    Args:
        module: the value network. A plain ``nn.Module`` is wrapped in a
            ``TensorDictModule`` reading ``in_keys`` and writing ``action_value_key``; a
            tensordict module must already write ``action_value_key``.

    Keyword Args:
        in_keys: the entries a plain ``module`` reads. Defaults to ``["observation"]``.
        spec: the action spec (``OneHot`` or ``Categorical``).
        action_space: the spec or ``"one_hot"`` / ``"categorical"`` (see QValueModule).
        action_value_key: the action-value entry.
        action_mask_key: a bool entry of allowed actions (optional).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol.toolkit.modules import MLP, QValueActor
        >>> actor = QValueActor(MLP(4, 2), action_space="categorical")
        >>> td = actor(TensorDict(observation=torch.zeros(3, 4), batch_size=[3]))
        >>> sorted(td.keys())
        ['action', 'action_value', 'chosen_action_value', 'observation']
        >>> td["action"].dtype
        torch.int64
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        spec: object | None = None,
        action_space: object | str | None = None,
        action_value_key: NestedKey = ACTION_VALUE,
        action_mask_key: NestedKey | None = None,
    ) -> None:
        if isinstance(module, TensorDictModuleBase):
            if action_value_key not in module.out_keys:
                raise ValueError(
                    f"QValueActor's module writes {module.out_keys}, not the action values "
                    f"{action_value_key!r}; pass action_value_key= naming its output."
                )
            value_net = module
        else:
            value_net = TensorDictModule(
                module,
                in_keys=_as_key_list(in_keys, OBSERVATION),
                out_keys=[action_value_key],
            )
        qvalue = QValueModule(
            action_space,
            spec=spec,
            action_value_key=action_value_key,
            action_mask_key=action_mask_key,
        )
        super().__init__(value_net, qvalue)
        self.spec = qvalue.spec
        self.action_space = qvalue.action_space

    @dispatch(auto_batch_size=False)
    def forward(
        self,
        tensordict: TensorDictBase,
        tensordict_out: TensorDictBase | None = None,
        **kwargs,
    ) -> TensorDictBase:
        """Compute the action values, then the greedy action."""
        # indexing the ModuleList costs about 1 us per lookup, reaching it as much again
        value_net, *rest = sequence_modules(self)
        shapes = functools.partial(_input_shapes, value_net, value_net.in_keys)
        check_in_keys(type(self).__name__, tensordict, self.in_keys, shapes)
        if (
            len(rest) != 1
            or tensordict_out is not None
            or kwargs
            or self.inplace not in (None, True)
            or self.partial_tolerant
            or self.out_keys != self.out_keys_source  # select_out_keys was called
            or skip_existing()
        ):
            return super().forward(tensordict, tensordict_out, **kwargs)
        # With these default options TensorDictSequential.forward calls the two modules in
        # order on ``tensordict``; calling them here skips its per-call option handling (a
        # rollout calls this every step). tests/toolkit/test_modules.py compares the two.
        result = rest[0](value_net(tensordict))
        if self.inplace is True and result is not tensordict:
            return tensordict.update(result, keys_to_update=self.out_keys)
        return result
