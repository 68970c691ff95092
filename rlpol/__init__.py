"""rlpol: TorchRL-style RL policies, from PyTorch research code to ONNX / TorchScript deployment.

Three layers, data flowing one way:

* :mod:`rlpol.toolkit` -- author policies: specs, gymnasium envs in TorchRL's TED format,
  transforms, batched envs, ``TensorDictModule`` actors and exploration modules;
* :mod:`rlpol.export` -- turn a policy into a self-describing ONNX / TorchScript artifact;
* :mod:`rlpol.runtime` -- load an artifact and use it where the eager policy was used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from rlpol.errors import (
    ArtifactError,
    BackendUnavailableError,
    EnvClosedError,
    ExportError,
    InputMismatchError,
    PolicyFileError,
    RlpolError,
    SpecError,
    UnknownEnvError,
)
from rlpol.export import export_policy, load_policy_file
from rlpol.runtime import ExportedPolicy, load_policy
from rlpol.toolkit.envs import (
    Compose,
    DoubleToFloat,
    EnvBase,
    GymEnv,
    InitTracker,
    ObservationNorm,
    ObservationTransform,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    Transform,
    TransformedEnv,
    step_mdp,
    use_fast_rollout,
)
from rlpol.toolkit.modules import (
    MLP,
    Actor,
    AdditiveGaussianModule,
    ConvNet,
    EGreedyModule,
    ExplorationType,
    NormalParamExtractor,
    OrnsteinUhlenbeckProcessModule,
    ProbabilisticActor,
    QValueActor,
    QValueModule,
    TanhNormal,
    TensorDictModule,
    TensorDictSequential,
    exploration_type,
    set_exploration_type,
)
from rlpol.toolkit.specs import (
    Binary,
    Bounded,
    Categorical,
    Composite,
    MultiCategorical,
    MultiOneHot,
    OneHot,
    TensorSpec,
    Unbounded,
)
from rlpol.verify import check_artifact, compare_rollouts

__all__ = [
    "MLP",
    "Actor",
    "AdditiveGaussianModule",
    "ArtifactError",
    "BackendUnavailableError",
    "Binary",
    "Bounded",
    "Categorical",
    "Compose",
    "Composite",
    "ConvNet",
    "DoubleToFloat",
    "EGreedyModule",
    "EnvBase",
    "EnvClosedError",
    "ExplorationType",
    "ExportError",
    "ExportedPolicy",
    "GymEnv",
    "InitTracker",
    "InputMismatchError",
    "MultiCategorical",
    "MultiOneHot",
    "NormalParamExtractor",
    "ObservationNorm",
    "ObservationTransform",
    "OneHot",
    "OrnsteinUhlenbeckProcessModule",
    "ParallelEnv",
    "PolicyFileError",
    "ProbabilisticActor",
    "QValueActor",
    "QValueModule",
    "RewardSum",
    "RlpolError",
    "SerialEnv",
    "SpecError",
    "StepCounter",
    "TanhNormal",
    "TensorDictModule",
    "TensorDictSequential",
    "TensorSpec",
    "Transform",
    "TransformedEnv",
    "Unbounded",
    "UnknownEnvError",
    "__version__",
    "check_artifact",
    "compare_rollouts",
    "exploration_type",
    "export_policy",
    "load_policy",
    "load_policy_file",
    "set_exploration_type",
    "step_mdp",
    "use_fast_rollout",
]
