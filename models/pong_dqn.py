"""Atari Pong with the Nature DQN: TorchRL's export tutorial, as an rlpol policy file.

The env and the policy are the ones of TorchRL's "Exporting TorchRL modules" tutorial, plus
the frame stack a DQN plays Atari with::

    TransformedEnv(GymEnv("ALE/Pong-v5", categorical_action_encoding=True), Compose(
        ToTensorImage(),       # "pixels": uint8 [210, 160, 3] -> float32 [3, 210, 160] in [0, 1]
        Resize(84),            # -> [3, 84, 84], bilinear
        GrayScale(),           # -> [1, 84, 84]
        CatFrames(4, dim=-3),  # -> [4, 84, 84]: the last 4 frames, the first repeated at a reset
        StepCounter(),         # "step_count"; stays in the env on export
    ))
    QValueActor(ConvNet.default_atari_dqn(6), in_keys=["pixels"], spec=env.action_spec)

``rlpol export models/pong_dqn.py`` folds the four image transforms into the graph, so the
artifact takes the raw screen (``pixels``, uint8 ``[batch, 210, 160, 3]``): the frame stack
becomes a state pair (``cat_frames_pixels`` in, ``next.cat_frames_pixels`` out, reset by
``is_init``), threaded by the runtime like a recurrent state. ``rlpol run pong.onnx`` needs
no ``--env`` and no import: the metadata names the env id and ``ale_py``, which registers it.

The weights are not trained (this file is about the deployment path, not about playing well:
training a Pong DQN takes hours of GPU time). They are initialised from ``SEED``, the lazy
layers of the Nature DQN included (materialised by one forward on ``env.fake_tensordict()``),
so every ``make_policy`` builds the same policy. It loses every point (return -21);
``RETURN_THRESHOLD`` is None.

Importing this file builds nothing.
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase

from rlpol.toolkit.envs import (
    CatFrames,
    Compose,
    EnvBase,
    GrayScale,
    GymEnv,
    Resize,
    StepCounter,
    ToTensorImage,
    TransformedEnv,
)
from rlpol.toolkit.modules import ConvNet, QValueActor

ENV_ID = "ALE/Pong-v5"
RETURN_THRESHOLD = None
"""Untrained: no return to reach (the demo reports the return without judging it)."""
SEED = 0
"""Seeds torch before the weights are initialised."""
FRAMES = 4
"""Frames stacked by ``CatFrames``: what the Nature DQN reads."""


def make_env() -> EnvBase:
    """Pong seen through the tutorial's preprocessing: ``pixels`` float32 [4, 84, 84]."""
    preprocessing = Compose(
        ToTensorImage(), Resize(84), GrayScale(), CatFrames(FRAMES, dim=-3), StepCounter()
    )
    return TransformedEnv(GymEnv(ENV_ID, categorical_action_encoding=True), preprocessing)


def make_policy(env: EnvBase) -> TensorDictModuleBase:
    """The Nature DQN Q-value actor reading ``pixels``; weights from ``SEED`` (untrained)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        q_net = ConvNet.default_atari_dqn(env.action_spec.space.n)
        policy = QValueActor(q_net, in_keys=["pixels"], spec=env.action_spec)
        with torch.no_grad():
            policy(env.fake_tensordict().unsqueeze(0))  # materialise the lazy layers (SEED too)
    finally:
        torch.random.set_rng_state(generator_state)
    return policy
