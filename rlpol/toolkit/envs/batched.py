"""Batched environments on ``gymnasium.vector``: ``SerialEnv`` and ``ParallelEnv``.

Both run ``n`` copies of a gymnasium env as one env of batch size ``[n]``; rollouts are
``[n, T]``. Sub-environments that finish reset on their own (gymnasium's ``SAME_STEP``
autoreset): the step's ``"next"`` keeps the final observation of the finished episode and
:meth:`EnvBase.step_and_maybe_reset` puts the reset observation at the next root, so TED
semantics hold row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from tensordict import TensorDictBase

from rlpol.errors import SpecError
from rlpol.toolkit.envs._arrays import plain_cast
from rlpol.toolkit.envs.array_loops import ArrayRun, rollout_sub_envs, rollout_vector
from rlpol.toolkit.envs.common import done_spec_for, merge_rows, reward_spec_for
from rlpol.toolkit.envs.gym import (
    GymEnv,
    env_imports_for,
    observation_spec_from_space,
    whole_observation_key,
)
from rlpol.toolkit.envs.gym_like import GYM_HOOKS, GymLikeEnv
from rlpol.toolkit.envs.plan import (
    ArrayLoop,
    array_stepping_refusal,
    declare_array_stepping,
    overridden_hooks,
)
from rlpol.toolkit.keys import DONE, REWARD, TERMINATED, TRUNCATED
from rlpol.toolkit.specs import Composite, TensorSpec, spec_from_gym_space

__all__ = ["ParallelEnv", "SerialEnv"]

EnvMaker = Callable[[], "GymEnv | gym.Env"]


class _GymnasiumMaker:
    """Picklable callable: run a maker and hand its gymnasium env to ``gymnasium.vector``."""

    def __init__(self, make_env: EnvMaker) -> None:
        self.make_env = make_env

    def __call__(self) -> gym.Env:
        return _unwrap(self.make_env())


def _unwrap(env: GymEnv | gym.Env) -> gym.Env:
    if isinstance(env, GymEnv):
        _check_plain_stepping(type(env))
        return env.env
    if isinstance(env, gym.Env):
        return env
    raise TypeError(
        f"a batched env's make_env must return a GymEnv or a gymnasium.Env, got "
        f"{type(env).__name__}. Wrap the batched env in TransformedEnv to add transforms."
    )


def _check_plain_stepping(cls: type[GymEnv]) -> None:
    """A batched env steps the gymnasium env inside each GymEnv itself: refuse a GymEnv
    subclass whose hooks or stepping would silently not run."""
    changed = sorted(overridden_hooks(cls)) or array_stepping_refusal(cls)
    if changed:
        raise TypeError(
            f"a batched env steps the gymnasium env inside each {cls.__name__} itself, so "
            f"{cls.__name__}'s own stepping would never run ({changed}); override the hooks "
            "(read_obs, read_reward, read_action, read_done) on a SerialEnv / ParallelEnv "
            "subclass instead (they receive batched values), or wrap the gymnasium env in a "
            "gymnasium.Wrapper"
        )


class _VectorGymEnv(GymLikeEnv):
    """Shared machinery of :class:`SerialEnv` and :class:`ParallelEnv`.

    Subclasses adapt the batched values through the hooks of :class:`GymLikeEnv`:
    ``read_obs`` receives the stacked observations (``[n, ...]``), ``read_reward`` the
    ``[n]`` rewards, ``read_done`` ``[n]`` flag arrays, ``read_action`` the ``[n, ...]``
    action tensor.
    """

    _vector_class: type[VectorEnv]

    def __init__(
        self,
        num_workers: int,
        create_env_fn: EnvMaker | Sequence[EnvMaker],
        *,
        device: torch.device | str = "cpu",
    ) -> None:
        makers = _makers(num_workers, create_env_fn)
        super().__init__(device=device, batch_size=(num_workers,))
        probe = makers[0]()
        self.categorical_action_encoding = bool(
            getattr(probe, "categorical_action_encoding", False)
        )
        self.env_id = getattr(probe, "env_id", None)
        self.make_kwargs = dict(getattr(probe, "make_kwargs", {}))
        probe_gym = _unwrap(probe)
        single_observation_space = probe_gym.observation_space
        single_action_space = probe_gym.action_space
        probe_gym.close()
        try:
            self._vector_env = self._vector_class(
                [_GymnasiumMaker(maker) for maker in makers],
                autoreset_mode=AutoresetMode.SAME_STEP,
                **self._vector_kwargs(),
            )
        except RuntimeError as error:
            if "space" not in str(error):
                raise
            raise SpecError(
                "the sub-environments of a batched env must share observation and action "
                f"spaces; gymnasium reports: {str(error).splitlines()[0][:400]}"
            ) from error
        self.whole_observation_key = whole_observation_key(single_observation_space)
        self._single_observation_spec = observation_spec_from_space(
            single_observation_space,
            categorical_action_encoding=self.categorical_action_encoding,
            device=self.device,
        )
        self.observation_spec = self._single_observation_spec.expand(*self.batch_size)
        self._single_action_spec = spec_from_gym_space(
            single_action_space,
            categorical_action_encoding=self.categorical_action_encoding,
            device=self.device,
        )
        self.action_spec = self._single_action_spec.expand(*self.batch_size)
        self.reward_spec = reward_spec_for(self.batch_size, self.device)
        self.done_spec = done_spec_for(self.batch_size, self.device)
        self._observation_leaves = [
            (key, self.observation_spec[key])
            for key in self.observation_spec.keys(include_nested=True, leaves_only=True)
        ]
        self._seed: int | None = None
        # the root gymnasium's autoreset produced at the last step, and which rows it reset
        self._pending_reset: tuple[TensorDictBase, np.ndarray] | None = None
        self._false = torch.zeros((num_workers, 1), dtype=torch.bool, device=self.device)

    def _vector_kwargs(self) -> dict[str, Any]:
        return {}

    @property
    def single_observation_spec(self) -> Composite:
        return self._single_observation_spec

    @property
    def single_action_spec(self) -> TensorSpec:
        return self._single_action_spec

    @property
    def num_workers(self) -> int:
        return self.batch_size[0]

    @property
    def env_imports(self) -> tuple[str, ...]:
        """The modules to import before making the sub-envs again (see
        :attr:`GymEnv.env_imports`)."""
        return env_imports_for(self.env_id)

    def _move_cached(self, device: torch.device) -> None:
        self._false = self._false.to(device)
        self._single_observation_spec = self._single_observation_spec.to(device)
        self._single_action_spec = self._single_action_spec.to(device)
        self._observation_leaves = [(key, spec.to(device)) for key, spec in self._observation_leaves]

    def _set_seed(self, seed: int) -> None:
        self._seed = seed
        self._vector_env.action_space.seed(seed)

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        observation, _ = self._vector_env.reset(seed=self._seed)
        self._seed = None
        self._pending_reset = None
        return self._root_from(observation)

    def _root_from(self, observation: Any) -> TensorDictBase:
        source = self._observation_source(observation)
        for key in (DONE, TERMINATED, TRUNCATED):
            source[key] = self._false.clone()
        return self._new_tensordict(source)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = self.read_action(tensordict.get(self.action_key))
        observation, reward, terminated, truncated, info = self._vector_env.step(action)
        reset = np.logical_or(terminated, truncated)  # the rows gymnasium reset
        if reset.any():
            self._pending_reset = (self._root_from(observation), reset)
            observation = _final_observation(observation, info, reset)
        terminated, truncated, done = self._done_flags(terminated, truncated)
        device = self.device
        source = self._observation_source(observation)
        # a column [n, 1] is made in numpy (cheaper than torch indexing), then wrapped
        reward = self.read_reward(reward)
        source[REWARD] = torch.as_tensor(_as_column(reward, np.float32), device=device)
        source[TERMINATED] = torch.as_tensor(_as_column(terminated), device=device)
        source[TRUNCATED] = torch.as_tensor(_as_column(truncated), device=device)
        source[DONE] = torch.as_tensor(_as_column(done), device=device)
        return self._new_tensordict(source)

    def _array_refusal(self) -> str | None:
        if "read_done" in overridden_hooks(type(self)):
            return (
                f"{type(self).__name__} overrides read_done: a batched env then resets rows "
                "that gymnasium did not, which only the generic path does"
            )
        return super()._array_refusal()

    def _array_loop(self) -> ArrayLoop:
        """``SUB_ENVS`` where the array loop may step the sub-envs itself as
        ``SyncVectorEnv.step`` does (in this process, actions it iterates row by row, one
        whole observation Box it stacks, no overridden hook), else ``VECTOR``."""
        vector_env = self._vector_env
        leaves = self._observation_leaves
        if (
            type(vector_env) is SyncVectorEnv
            and vector_env.autoreset_mode == AutoresetMode.SAME_STEP
            and type(vector_env.action_space) in _ROW_ITERATED_SPACES
            and type(vector_env.single_observation_space) is spaces.Box
            and len(leaves) == 1
            and leaves[0][0] == self.whole_observation_key
            and plain_cast(leaves[0][1])
            and not overridden_hooks(type(self))
        ):
            return ArrayLoop.SUB_ENVS
        return ArrayLoop.VECTOR

    def _rollout_on_arrays(self, run: ArrayRun) -> TensorDictBase:
        if self._array_loop() is ArrayLoop.SUB_ENVS:
            return rollout_sub_envs(
                self, run,
                observation_leaves=self._observation_leaves,
                sub_envs=self._vector_env.envs,
            )  # fmt: skip
        return rollout_vector(
            self, run,
            observation_leaves=self._observation_leaves,
            step=self._vector_env.step,
            final_observation=_final_observation,
            hooks=self._step_hooks(),
        )  # fmt: skip

    def _reset_rows(self, done: torch.Tensor) -> TensorDictBase:
        if self._pending_reset is None:
            # done was set by a transform (e.g. StepCounter truncation): reset those rows.
            return self._reset_selected(done)
        (fresh, reset), self._pending_reset = self._pending_reset, None
        others = done.cpu().numpy() & ~reset  # done by read_done, not reset by gymnasium
        if others.any():
            rows = torch.from_numpy(others)
            merge_rows(fresh, self._reset_selected(rows), rows.to(self.device))
        return fresh

    def _reset_selected(self, done: torch.Tensor) -> TensorDictBase:
        observation, _ = self._vector_env.reset(options={"reset_mask": done.cpu().numpy()})
        return self._root_from(observation)

    def _close(self) -> None:
        self._vector_env.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(env={self.env_id}, num_workers={self.num_workers}, "
            f"device={self.device})"
        )


def _final_observation(observation: Any, info: dict, done: np.ndarray) -> Any:
    """The observation with the rows that finished replaced by their final observation."""
    final = info["final_obs"]
    if isinstance(observation, dict):
        return {
            key: _final_observation(value, {"final_obs": _column(final, key, done)}, done)
            for key, value in observation.items()
        }
    observation = observation.copy()
    for row in np.flatnonzero(done):
        observation[row] = final[row]
    return observation


def _column(final: np.ndarray, key: str, done: np.ndarray) -> np.ndarray:
    column = np.empty(len(final), dtype=object)
    for row in np.flatnonzero(done):
        column[row] = final[row][key]
    return column


# batched action spaces whose actions gymnasium.vector.utils.iterate hands out row by row
_ROW_ITERATED_SPACES = (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)


def _as_column(values: Any, dtype: type | None = None) -> np.ndarray:
    """``values`` (one per sub-env) as an ``[n, 1]`` array, cast to ``dtype`` if given."""
    array = np.asarray(values) if dtype is None else np.asarray(values, dtype=dtype)
    return array.reshape(-1, 1)


def _makers(num_workers: int, create_env_fn: EnvMaker | Sequence[EnvMaker]) -> list[EnvMaker]:
    if num_workers < 1:
        raise ValueError(f"a batched env needs num_workers >= 1, got {num_workers}")
    if callable(create_env_fn):
        return [create_env_fn] * num_workers
    makers = list(create_env_fn)
    if len(makers) != num_workers:
        raise ValueError(
            f"got {len(makers)} env makers for num_workers={num_workers}; pass one maker or "
            "exactly one per worker"
        )
    return makers


_BATCHED_STEPPING = declare_array_stepping(
    hooks=GYM_HOOKS, neutral=("_set_seed", "_vector_kwargs", "num_workers", "env_imports")
)


@_BATCHED_STEPPING
class SerialEnv(_VectorGymEnv):
    """``num_workers`` envs stepped one after the other in this process (SyncVectorEnv).

    Args:
        num_workers: the batch size.
        create_env_fn: a callable returning a :class:`GymEnv` (or a ``gymnasium.Env``), or
            a list of ``num_workers`` such callables with matching spaces.
        device: where the tensors are put.

    Examples:
        >>> from rlpol import GymEnv, SerialEnv
        >>> env = SerialEnv(3, lambda: GymEnv("CartPole-v1"))
        >>> env.rollout(5, break_when_any_done=False).shape
        torch.Size([3, 5])
    """

    _vector_class = SyncVectorEnv


@_BATCHED_STEPPING
class ParallelEnv(_VectorGymEnv):
    """``num_workers`` envs stepped in worker processes (AsyncVectorEnv).

    ``create_env_fn`` may be a lambda (makers are sent to workers with cloudpickle).
    Same arguments as :class:`SerialEnv`.

    Examples:
        >>> from rlpol import GymEnv, ParallelEnv
        >>> env = ParallelEnv(2, lambda: GymEnv("Pendulum-v1"))
        >>> env.rollout(4).shape
        torch.Size([2, 4])
        >>> env.close()
    """

    _vector_class = AsyncVectorEnv

    def _vector_kwargs(self) -> dict[str, Any]:
        # CUDA cannot be re-initialised in a forked child.
        return {"context": "spawn" if torch.cuda.is_initialized() else None}
