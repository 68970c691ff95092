"""Policy modules: networks, actors, distributions and exploration, TorchRL-style.

The tensordict building blocks (``TensorDictModule``, ``TensorDictSequential``, the
probabilistic modules, ``NormalParamExtractor`` and the interaction type) are tensordict's
own, re-exported here. rlpol adds TorchRL's networks and actors on top, whose random draws
follow :mod:`rlpol.toolkit.noise` so that a policy can be exported and replayed.

Stochastic modules (find them with :func:`rlpol.toolkit.noise.stochastic_modules`):
:class:`ProbabilisticModule` (the last module of a :class:`ProbabilisticActor`),
:class:`EGreedyModule`, :class:`AdditiveGaussianModule`,
:class:`OrnsteinUhlenbeckProcessModule`.
"""

from __future__ import annotations

from tensordict.nn import (
    InteractionType,
    NormalParamExtractor,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictModuleBase,
    TensorDictSequential,
    set_interaction_type,
)
from tensordict.nn.distributions import OneHotCategorical

from rlpol._compat import interaction_type
from rlpol.toolkit.modules.actors import Actor, ProbabilisticActor, QValueActor, QValueModule
from rlpol.toolkit.modules.distributions import TanhNormal
from rlpol.toolkit.modules.exploration import (
    AdditiveGaussianModule,
    EGreedyModule,
    ExplorationType,
    OrnsteinUhlenbeckProcessModule,
    exploration_type,
    set_exploration_type,
)
from rlpol.toolkit.modules.networks import MLP, ConvNet, SquashDims
from rlpol.toolkit.modules.probabilistic import ProbabilisticModule
from rlpol.toolkit.modules.recurrent import (
    GRUModule,
    LSTMModule,
    recurrent_mode,
    set_recurrent_mode,
)

__all__ = [
    "MLP",
    "Actor",
    "AdditiveGaussianModule",
    "ConvNet",
    "EGreedyModule",
    "ExplorationType",
    "GRUModule",
    "InteractionType",
    "LSTMModule",
    "NormalParamExtractor",
    "OneHotCategorical",
    "OrnsteinUhlenbeckProcessModule",
    "ProbabilisticActor",
    "ProbabilisticModule",
    "ProbabilisticTensorDictModule",
    "ProbabilisticTensorDictSequential",
    "QValueActor",
    "QValueModule",
    "SquashDims",
    "TanhNormal",
    "TensorDictModule",
    "TensorDictModuleBase",
    "TensorDictSequential",
    "exploration_type",
    "interaction_type",
    "recurrent_mode",
    "set_exploration_type",
    "set_interaction_type",
    "set_recurrent_mode",
]
