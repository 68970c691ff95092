"""The SAC Pendulum policy of ``models/pendulum_normal.py``, written with TorchRL itself.

A policy file as a TorchRL user has one: TorchRL's ``GymEnv``, ``MLP``,
``NormalParamExtractor``, ``ProbabilisticActor`` and ``TanhNormal``, with the trained weights
that ``models/pendulum_normal.py`` ships (the two ``MLP`` classes have the same layers, so the
same ``state_dict``). It needs ``pip install torchrl==0.14.1`` (which pins
``tensordict<0.15``) beside rlpol; rlpol exports it like its own policies::

    rlpol export models/torchrl_policies/pendulum_sac.py -o pendulum_sac.onnx
    rlpol check models/torchrl_policies/pendulum_sac.py pendulum_sac.onnx

Exporting swaps TorchRL's ``TanhNormal`` sampler for rlpol's (same bounds, same
deterministic action, draws that are graph inputs) and rebuilds the env as rlpol's
``GymEnv("Pendulum-v1")``; see ``rlpol.toolkit.from_torchrl``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import EnvBase, GymEnv
from torchrl.modules import MLP, NormalParamExtractor, ProbabilisticActor, TanhNormal

ENV_ID = "Pendulum-v1"
NUM_CELLS = (256, 256)
"""The hidden layers of ``models/pendulum_normal.py``'s policy (its ``Config.num_cells``)."""
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "pendulum_normal.pt"


def make_env() -> EnvBase:
    """TorchRL's ``GymEnv("Pendulum-v1")``: observation ``[3]``, action ``[1]`` in [-2, 2]."""
    return GymEnv(ENV_ID)


def make_policy(env: EnvBase) -> ProbabilisticActor:
    """TorchRL's ProbabilisticActor over a TanhNormal on [-2, 2], the shipped weights loaded."""
    backbone = nn.Sequential(
        MLP(in_features=3, out_features=2, num_cells=list(NUM_CELLS), activation_class=nn.ReLU),
        NormalParamExtractor(),  # [loc, scale]: scale = softplus, > 0
    )
    low, high = env.action_spec.space.low, env.action_spec.space.high
    policy = ProbabilisticActor(
        TensorDictModule(backbone, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": low, "high": high},
        return_log_prob=True,
    )
    # rlpol's actor keeps the backbone at "module.0.module." (and its bounds as buffers)
    state = torch.load(WEIGHTS, weights_only=True)
    prefix = "module.0.module."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return policy
