"""``GymLikeEnv``: TorchRL's documented subclass hooks for envs that wrap gymnasium.

A gymnasium env speaks numpy; the TED speaks tensordicts. Between the two sit four hooks,
as in TorchRL's ``GymLikeEnv``, that a subclass overrides to adapt an env without
rewriting its stepping:

* :meth:`~GymLikeEnv.read_action`: the action tensor -> what gymnasium's ``step`` takes;
* :meth:`~GymLikeEnv.read_obs`: gymnasium's observation -> ``{key: value}`` for the
  observation spec's keys;
* :meth:`~GymLikeEnv.read_reward`: gymnasium's reward -> the reward the TED stores;
* :meth:`~GymLikeEnv.read_done`: gymnasium's ``terminated``/``truncated`` -> the TED's
  ``terminated``, ``truncated``, ``done`` (and TorchRL's ``do_break``, unused here).

Every rollout path calls them where the generic path does (see :mod:`.plan`), so a
subclass that overrides them gets the same rollout on every path.

Examples:
    >>> import numpy as np
    >>> from rlpol import GymEnv
    >>> class Scaled(GymEnv):
    ...     def read_obs(self, observations):
    ...         return {"observation": np.asarray(observations) * 100}
    >>> env = Scaled("CartPole-v1")
    >>> env.set_seed(0)
    0
    >>> env.reset()["observation"]
    tensor([ 1.3696, -2.3021, -4.5903, -4.8347])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rlpol.toolkit.envs._arrays import lookup_observation
from rlpol.toolkit.envs.array_loops import StepHooks
from rlpol.toolkit.envs.common import EnvBase
from rlpol.toolkit.envs.plan import overridden_hooks
from rlpol.toolkit.keys import OBSERVATION, NestedKey
from rlpol.toolkit.specs import TensorSpec

__all__ = ["GYM_HOOKS", "GymLikeEnv", "observation_source"]

GYM_HOOKS = ("read_action", "read_obs", "read_reward", "read_done")


class GymLikeEnv(EnvBase):
    """An :class:`EnvBase` stepping a gymnasium-style env through the four hooks.

    Subclasses (:class:`~.gym.GymEnv`, the batched envs) keep ``_observation_leaves``: the
    observation spec's leaf keys and specs, in order.

    Attributes:
        whole_observation_key: the observation-spec key that a gymnasium observation which
            is no dict goes under: ``"observation"`` (the default), ``"pixels"`` for an
            image (see :func:`~.gym.whole_observation_key`), None for a ``Dict`` space.
    """

    _observation_leaves: list[tuple[NestedKey, TensorSpec]]
    whole_observation_key: str | None = OBSERVATION

    def read_action(self, action: torch.Tensor) -> Any:
        """The action handed to gymnasium's ``step``: ``action_spec.to_numpy(action)``.

        Args:
            action: the tensordict's action, ``[*batch_size, *action_spec.shape]``, checked
                against the action spec.
        """
        return self.action_spec.to_numpy(action)

    def read_obs(self, observations: Any) -> Mapping[str, Any]:
        """The observation entries for a gymnasium observation, by observation-spec key.

        Args:
            observations: what gymnasium's ``reset``/``step`` returned (an array, or a dict
                for a ``Dict`` space; batched for a batched env).

        Returns:
            ``{whole_observation_key: observations}`` (``"observation"``, or ``"pixels"``
            for an image), or the dict itself for a ``Dict`` space; each value is converted
            with its spec's ``from_numpy``.
        """
        key = self.whole_observation_key
        if key is None or isinstance(observations, Mapping):
            return observations
        return {key: observations}

    def read_reward(self, reward: Any) -> Any:
        """The reward the TED stores (as float32 ``[*batch_size, 1]``); default: as it is."""
        return reward

    def read_done(
        self, terminated: Any = None, truncated: Any = None, done: Any = None
    ) -> tuple[Any, Any, Any, bool]:
        """The TED's done flags from gymnasium's (TorchRL's signature).

        Returns:
            ``(terminated, truncated, done, do_break)``, where ``done`` defaults to
            ``terminated or truncated``; ``do_break`` is returned for TorchRL compatibility
            and ignored (rlpol has no frame skip).
        """
        if done is None:
            done = terminated if truncated is None else (terminated | truncated)
        return terminated, truncated, done, bool(np.any(done))

    def _step_hooks(self) -> StepHooks:
        """The hooks this env's class overrides, bound, for the array loops."""
        overridden = overridden_hooks(type(self))
        return StepHooks(**{name: getattr(self, name) for name in GYM_HOOKS if name in overridden})

    def _observation_source(self, observation: Any) -> dict:
        """Tensordict entries (nested dicts for nested keys) for a gymnasium observation."""
        return observation_source(self._observation_leaves, self.read_obs(observation))

    def _done_flags(self, terminated: Any, truncated: Any) -> tuple[Any, Any, Any]:
        """``read_done``'s first three results."""
        flags = self.read_done(terminated=terminated, truncated=truncated)
        return flags[0], flags[1], flags[2]


def observation_source(
    leaves: list[tuple[NestedKey, TensorSpec]], observations: Mapping[str, Any]
) -> dict:
    """Tensordict entries (nested dicts for nested keys) for what ``read_obs`` returned.

    Args:
        leaves: the observation spec's leaf keys and specs, in order.
        observations: ``{key: value}`` (nested dicts for nested keys).
    """
    source: dict = {}
    for key, spec in leaves:
        path = (key,) if isinstance(key, str) else key
        value = observations
        for part in path:
            value = lookup_observation(value, part)
        node = source
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = spec.from_numpy(value)
    return source
