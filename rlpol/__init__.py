"""rlpol: TorchRL-style RL policies, from PyTorch research code to ONNX / TorchScript deployment.

Layers, data flowing one way:

* :mod:`rlpol.toolkit` -- author policies: specs, gymnasium envs in TorchRL's TED format,
  transforms, batched envs, ``TensorDictModule`` actors and exploration modules;
* :mod:`rlpol.artifact` -- the artifact contract: metadata schema, key naming, file reading;
* :mod:`rlpol.export` -- turn a policy into a self-describing ONNX / TorchScript artifact;
* :mod:`rlpol.runtime` -- load an artifact and use it where the eager policy was used;
* :mod:`rlpol.verify` -- check an artifact against its eager policy (above export and runtime).

``import rlpol`` imports none of them: each public name below is imported from its module on
first use (a module ``__getattr__`` over :data:`_PUBLIC`), so ``rlpol --help`` and
``rlpol inspect`` start without torch.

Examples:
    >>> import rlpol
    >>> rlpol.load_policy.__module__
    'rlpol.runtime.policy'
"""

from __future__ import annotations

from rlpol._lazy import lazy_attributes

__version__ = "0.1.0"

# the module each public name is defined in (imported when the name is first looked up)
_PUBLIC_BY_MODULE: dict[str, tuple[str, ...]] = {
    "rlpol.errors": (
        "ArtifactError", "BackendUnavailableError", "EnvClosedError", "ExportError",
        "InputMismatchError", "PolicyFileError", "RlpolError", "SpecError", "UnknownEnvError",
    ),
    "rlpol.export": ("export_policy", "load_policy_file"),
    "rlpol.runtime": ("ExportedPolicy", "load_policy"),
    "rlpol.verify": ("check_artifact", "compare_rollouts"),
    "rlpol.toolkit.envs": (
        "CatFrames", "CenterCrop", "Compose", "DoubleToFloat", "EnvBase", "GrayScale", "GymEnv",
        "GymLikeEnv", "IndexSelect", "InitTracker", "ObservationNorm", "ObservationTransform",
        "ParallelEnv", "PermuteTransform", "Resize", "RewardSum", "RolloutPath", "RolloutPlan",
        "SerialEnv", "StepCounter", "TensorDictPrimer", "ToTensorImage", "Transform",
        "TransformedEnv", "UnsqueezeTransform", "record_rollout_plans", "rollout_plan",
        "step_mdp", "use_fast_rollout",
    ),
    "rlpol.toolkit.modules": (
        "MLP", "Actor", "AdditiveGaussianModule", "ConvNet", "EGreedyModule", "ExplorationType",
        "GRUModule", "LSTMModule", "NormalParamExtractor", "OrnsteinUhlenbeckProcessModule",
        "ProbabilisticActor", "QValueActor", "QValueModule", "TanhNormal", "TensorDictModule",
        "TensorDictSequential", "exploration_type", "recurrent_mode", "set_exploration_type",
        "set_recurrent_mode",
    ),
    "rlpol.toolkit.specs": (
        "Binary", "Bounded", "Categorical", "Composite", "MultiCategorical", "MultiOneHot",
        "OneHot", "TensorSpec", "Unbounded",
    ),
}  # fmt: skip
_PUBLIC = {name: module for module, names in _PUBLIC_BY_MODULE.items() for name in names}
__getattr__, __dir__ = lazy_attributes(__name__, _PUBLIC)

__all__ = [
    "MLP",
    "Actor",
    "AdditiveGaussianModule",
    "ArtifactError",
    "BackendUnavailableError",
    "Binary",
    "Bounded",
    "CatFrames",
    "Categorical",
    "CenterCrop",
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
    "GRUModule",
    "GrayScale",
    "GymEnv",
    "GymLikeEnv",
    "IndexSelect",
    "InitTracker",
    "InputMismatchError",
    "LSTMModule",
    "MultiCategorical",
    "MultiOneHot",
    "NormalParamExtractor",
    "ObservationNorm",
    "ObservationTransform",
    "OneHot",
    "OrnsteinUhlenbeckProcessModule",
    "ParallelEnv",
    "PermuteTransform",
    "PolicyFileError",
    "ProbabilisticActor",
    "QValueActor",
    "QValueModule",
    "Resize",
    "RewardSum",
    "RlpolError",
    "RolloutPath",
    "RolloutPlan",
    "SerialEnv",
    "SpecError",
    "StepCounter",
    "TanhNormal",
    "TensorDictModule",
    "TensorDictPrimer",
    "TensorDictSequential",
    "TensorSpec",
    "ToTensorImage",
    "Transform",
    "TransformedEnv",
    "Unbounded",
    "UnknownEnvError",
    "UnsqueezeTransform",
    "__version__",
    "check_artifact",
    "compare_rollouts",
    "exploration_type",
    "export_policy",
    "load_policy",
    "load_policy_file",
    "record_rollout_plans",
    "recurrent_mode",
    "rollout_plan",
    "set_exploration_type",
    "set_recurrent_mode",
    "step_mdp",
    "use_fast_rollout",
]
