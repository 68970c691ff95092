"""``TransformedEnv``: an env seen through its transforms, on the generic or an array path.

Every step and reset of the base env goes through the transform (a :class:`Compose` for
several; see :mod:`.transforms`). A ``TransformedEnv`` whose transforms are only
``InitTracker`` and ``TensorDictPrimer`` (what a recurrent policy needs) over a base env
that takes an array path rolls out on arrays too: the array loops write ``is_init`` and
carry the primed state (:class:`~._arrays.ArrayTransforms`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from rlpol.toolkit.envs._arrays import ArrayTransforms
from rlpol.toolkit.envs.array_loops import ArrayRun
from rlpol.toolkit.envs.common import EnvBase, keep_next_preset
from rlpol.toolkit.envs.plan import ArrayLoop, array_stepping_refusal, declare_array_stepping
from rlpol.toolkit.envs.primer import TensorDictPrimer
from rlpol.toolkit.envs.transforms import Compose, InitTracker, Transform
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.specs import Composite, TensorSpec

__all__ = ["TransformedEnv"]


@declare_array_stepping(
    neutral=(
        "append_transform", "transforms", "single_observation_spec", "single_action_spec",
        "env_id", "make_kwargs", "env_imports",
    )
)  # fmt: skip
class TransformedEnv(EnvBase):
    """An env seen through a transform (use :class:`Compose` for several).

    The base env does the stepping; the transform edits every reset and step output and the
    observation spec. Batch size, device, action and reward specs are the base env's.

    It rolls out on the base env's array loop (see :mod:`.plan`) when the base env can and
    every transform is one the array loops reproduce: :class:`InitTracker` and
    :class:`~.primer.TensorDictPrimer` (a recurrent policy's env); any other transform
    takes the generic path, and ``rollout_plan`` names it.

    Args:
        env: the env to wrap.
        transform: a transform, or None for the identity.

    Examples:
        >>> from rlpol import GymEnv, StepCounter, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), StepCounter())
        >>> env.reset()["step_count"]
        tensor([0])
    """

    def __init__(self, env: EnvBase, transform: Transform | None = None) -> None:
        self.base_env = env
        self.transform = transform if transform is not None else Compose()
        self.device = env.device
        self.batch_size = env.batch_size
        self.action_key = env.action_key
        self.action_spec = env.action_spec
        self.reward_spec = env.reward_spec
        self.done_spec = env.done_spec
        self.observation_spec = self.transform.transform_observation_spec(
            env.observation_spec.clone()
        )
        self._closed = False

    def append_transform(self, transform: Transform) -> TransformedEnv:
        """Add ``transform`` after the current ones and return self."""
        if not isinstance(self.transform, Compose):
            self.transform = Compose(self.transform)
        self.transform.append(transform)
        self.observation_spec = transform.transform_observation_spec(self.observation_spec)
        return self

    @property
    def transforms(self) -> list[Transform]:
        """The transforms in application order, flattened."""
        if isinstance(self.transform, Compose):
            return list(self.transform)
        return [self.transform]

    def to(self, device: torch.device | str) -> TransformedEnv:
        self.base_env.to(device)
        self.transform.to(device)  # its buffers (ObservationNorm's loc and scale, ...)
        return super().to(device)

    @property
    def single_observation_spec(self) -> Composite:
        return self.transform.transform_observation_spec(
            self.base_env.single_observation_spec.clone()
        )

    @property
    def single_action_spec(self) -> TensorSpec:
        return self.base_env.single_action_spec

    @property
    def env_id(self) -> str | None:
        return getattr(self.base_env, "env_id", None)

    @property
    def make_kwargs(self) -> dict:
        return getattr(self.base_env, "make_kwargs", {})

    @property
    def env_imports(self) -> tuple[str, ...]:
        """The base env's: the modules that register its env id (``("ale_py",)``)."""
        return tuple(getattr(self.base_env, "env_imports", ()))

    def render(self):
        return self.base_env.render()

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        return self.transform.on_reset(self.base_env.reset(tensordict))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        next_td = self.base_env._step(tensordict)
        # what the policy wrote for t + 1, before the transforms see the step (as in TorchRL)
        keep_next_preset(next_td, tensordict)
        return self.transform.on_step(tensordict, next_td)

    def _reset_rows(self, done: torch.Tensor) -> TensorDictBase:
        return self.transform.on_reset(self.base_env._reset_rows(done))

    def _set_seed(self, seed: int) -> None:
        self.base_env.set_seed(seed)

    # -- the array paths: the base env's loop, with the transforms' entries on buffers --
    @property
    def _observation_leaves(self) -> list[tuple[NestedKey, TensorSpec]]:
        spec = self.observation_spec
        return [(key, spec[key]) for key in spec.keys(include_nested=True, leaves_only=True)]

    def _array_refusal(self) -> str | None:
        base = self.base_env
        refusal = array_stepping_refusal(type(base)) or base._array_refusal()
        if refusal is None and isinstance(base, TransformedEnv):
            refusal = "it is a TransformedEnv itself (put all the transforms in one Compose)"
        if refusal is not None:
            return f"the base env {type(base).__name__} takes no array path: {refusal}"
        transforms = _array_transforms(self.transforms)
        return transforms if isinstance(transforms, str) else None

    def _array_loop(self) -> ArrayLoop:
        return self.base_env._array_loop()

    def _array_state_keys(self) -> frozenset[str]:
        transforms = _array_transforms(self.transforms)
        if isinstance(transforms, str):
            return frozenset()
        return frozenset(key for key, _ in transforms.primers)

    def _rollout_on_arrays(self, run: ArrayRun) -> TensorDictBase:
        own = _array_transforms(self.transforms)
        if isinstance(own, str) or run.transforms is not None:  # _array_refusal said so first
            raise RuntimeError(f"TransformedEnv has no array rollout here: {self._array_refusal()}")
        return self.base_env._rollout_on_arrays(dataclasses.replace(run, transforms=own))

    def _close(self) -> None:
        self.base_env.close()

    def __repr__(self) -> str:
        return f"TransformedEnv(env={self.base_env!r}, transform={self.transform!r})"


def _array_transforms(transforms: Sequence[Transform]) -> ArrayTransforms | str:
    """What ``transforms`` write at each step, for the array loops; or why they cannot."""
    init_keys: list[str] = []
    primers: list[tuple[str, float]] = []
    order: list[str] = []
    for transform in transforms:
        if type(transform) is InitTracker:
            init_keys.append(transform.init_key)
            order.append(transform.init_key)
        elif type(transform) is TensorDictPrimer:
            for path, default in transform.default_value.items():
                if len(path) != 1:
                    return f"the primer's key {path} is nested; array rollouts need flat keys"
                primers.append((path[0], default))
                order.append(path[0])
        else:
            return (
                f"the transform {type(transform).__name__} has no array step (a TransformedEnv "
                "takes an array path with InitTracker and TensorDictPrimer only); the generic "
                f"path runs {type(transform).__name__}"
            )
    return ArrayTransforms(tuple(init_keys), tuple(primers), tuple(order))
