"""TorchRL-style environments: gymnasium envs in the TED format, transforms (image ones and
frame stacking included), batching."""

from rlpol.toolkit.envs.batched import ParallelEnv, SerialEnv
from rlpol.toolkit.envs.common import EnvBase, step_mdp
from rlpol.toolkit.envs.fast_rollout import use_fast_rollout
from rlpol.toolkit.envs.frames import CatFrames
from rlpol.toolkit.envs.gym import GymEnv
from rlpol.toolkit.envs.gym_like import GymLikeEnv
from rlpol.toolkit.envs.image import (
    CenterCrop,
    GrayScale,
    PermuteTransform,
    Resize,
    ToTensorImage,
    UnsqueezeTransform,
)
from rlpol.toolkit.envs.plan import (
    ArrayLoop,
    RolloutPath,
    RolloutPlan,
    declare_array_stepping,
    record_rollout_plans,
    rollout_plan,
)
from rlpol.toolkit.envs.primer import TensorDictPrimer
from rlpol.toolkit.envs.transformed import TransformedEnv
from rlpol.toolkit.envs.transforms import (
    Compose,
    DoubleToFloat,
    IndexSelect,
    InitTracker,
    ObservationNorm,
    ObservationTransform,
    RewardSum,
    StepCounter,
    Transform,
)

__all__ = [
    "ArrayLoop",
    "CatFrames",
    "CenterCrop",
    "Compose",
    "DoubleToFloat",
    "EnvBase",
    "GrayScale",
    "GymEnv",
    "GymLikeEnv",
    "IndexSelect",
    "InitTracker",
    "ObservationNorm",
    "ObservationTransform",
    "ParallelEnv",
    "PermuteTransform",
    "Resize",
    "RewardSum",
    "RolloutPath",
    "RolloutPlan",
    "SerialEnv",
    "StepCounter",
    "TensorDictPrimer",
    "ToTensorImage",
    "Transform",
    "TransformedEnv",
    "UnsqueezeTransform",
    "declare_array_stepping",
    "record_rollout_plans",
    "rollout_plan",
    "step_mdp",
    "use_fast_rollout",
]
