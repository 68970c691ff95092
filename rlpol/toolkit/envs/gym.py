"""``GymEnv``: a gymnasium environment that reads and writes TED tensordicts.

Also here: which key a gymnasium observation goes under (:func:`whole_observation_key`:
``"pixels"`` for an image, as in TorchRL), and the packages that register env ids when
imported (:data:`ENV_NAMESPACES`, :func:`import_env_modules`): gymnasium 1.x only knows
``"ALE/Pong-v5"`` once ``ale_py`` is imported, so :class:`GymEnv` imports it on demand and
names it in :attr:`GymEnv.env_imports` for whoever rebuilds the env elsewhere.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import parse_env_id
from gymnasium.wrappers import AddRenderObservation
from tensordict import TensorDictBase

from rlpol.errors import UnknownEnvError
from rlpol.toolkit.envs._arrays import as_flag
from rlpol.toolkit.envs.array_loops import ArrayRun, rollout_gym
from rlpol.toolkit.envs.gym_like import GYM_HOOKS, GymLikeEnv
from rlpol.toolkit.envs.plan import ArrayLoop, declare_array_stepping
from rlpol.toolkit.keys import DONE, OBSERVATION, PIXELS, REWARD, TERMINATED, TRUNCATED
from rlpol.toolkit.specs import Composite, TensorSpec, spec_from_gym_space

__all__ = [
    "ENV_NAMESPACES",
    "EnvPackage",
    "GymEnv",
    "env_imports_for",
    "import_env_modules",
    "is_pixel_space",
    "make_gym_env",
    "observation_spec_from_space",
    "whole_observation_key",
]


# -- env ids that a package registers when it is imported ------------------------------------
@dataclass(frozen=True)
class EnvPackage:
    """A package that registers gymnasium env ids when it is imported.

    Attributes:
        module: the module to import (``"ale_py"``).
        install: the command that installs it, for error messages.
    """

    module: str
    install: str


# env id namespace (``"ALE"`` of ``"ALE/Pong-v5"``) -> the package registering its ids
ENV_NAMESPACES: dict[str, EnvPackage] = {
    "ALE": EnvPackage("ale_py", "pip install ale-py (or rlpol[atari])"),
}


def import_env_modules(modules: Iterable[str]) -> None:
    """Import the modules that register an env's id (see :attr:`GymEnv.env_imports`).

    Args:
        modules: module names, e.g. ``("ale_py",)``.

    Raises:
        UnknownEnvError: a module cannot be imported; the message says what to install.

    Examples:
        >>> import_env_modules(("ale_py",))
        >>> import_env_modules(("no_such_env_package",))
        Traceback (most recent call last):
        ...
        rlpol.errors.UnknownEnvError: the environment needs the module 'no_such_env_package', which cannot be imported (No module named 'no_such_env_package'); install the package that provides it.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            install = next(
                (f"{p.install}." for p in ENV_NAMESPACES.values() if p.module == module),
                "install the package that provides it.",
            )
            raise UnknownEnvError(
                f"the environment needs the module {module!r}, which cannot be imported "
                f"({error}); {install}"
            ) from error


def env_imports_for(env_id: str | None) -> tuple[str, ...]:
    """The modules to import before ``gymnasium.make(env_id)`` in a fresh process.

    In order: the module of gymnasium's ``"module:EnvId"`` syntax; the package of the id's
    namespace in :data:`ENV_NAMESPACES`; else the top-level package of the registered
    entry point, unless it is gymnasium's own (packages register their ids in their
    ``__init__`` by convention).

    Examples:
        >>> env_imports_for("ALE/Pong-v5"), env_imports_for("CartPole-v1")
        (('ale_py',), ())
    """
    if env_id is None:
        return ()
    module, _, name = env_id.rpartition(":")
    if module:
        return (module,)
    namespace = _namespace(name)
    if namespace in ENV_NAMESPACES:
        return (ENV_NAMESPACES[namespace].module,)
    spec = gym.registry.get(name)
    if spec is None:
        return ()
    entry = spec.entry_point
    path = entry.partition(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")
    package = path.partition(".")[0]
    return () if package in ("", "gymnasium", "__main__") else (package,)


def _namespace(env_id: str) -> str | None:
    try:
        return parse_env_id(env_id)[0]
    except gym.error.Error:  # not an id gymnasium can parse: gymnasium.make says so
        return None


def make_gym_env(env_id: str, **make_kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **make_kwargs)``, with a clear error for unknown ids.

    An id that is not registered yet is looked up after importing what registers it: the
    module of the ``"module:EnvId"`` syntax, or the package of its namespace
    (:data:`ENV_NAMESPACES`: ``"ALE/..."`` imports ``ale_py``).

    Raises:
        UnknownEnvError: ``env_id`` is not registered (the message suggests close ids), or
            the package that registers it is not installed (the message says what to install).
    """
    name = env_id.rpartition(":")[2]
    if name not in gym.registry:
        import_env_modules(env_imports_for(env_id))
    try:
        return gym.make(env_id, **make_kwargs)
    except gym.error.Error as error:
        if name in gym.registry:
            raise
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownEnvError(
            f"unknown environment id {env_id!r}: gymnasium has no such registered env.{hint} "
            "Pass a registered id (see gymnasium.pprint_registry()) or a gymnasium.Env instance."
        ) from error


# -- observation keys -------------------------------------------------------------------------
def is_pixel_space(space: gym.Space) -> bool:
    """Whether ``space`` is an image, by TorchRL's rule (``_is_from_pixels``): a 3-D ``Box``
    ``[H, W, 3]`` with bounds 0 and 255 (ALE screens, rendered frames; uint8 in practice,
    though the rule does not look at the dtype)."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[-1] == 3
        and bool(np.all(space.low == 0))
        and bool(np.all(space.high == 255))
    )


def whole_observation_key(space: gym.Space) -> str | None:
    """The key a gymnasium observation of ``space`` goes under whole (it is no dict).

    Returns:
        ``"pixels"`` for an image (:func:`is_pixel_space`), None for a ``Dict`` space (its
        entries keep their own keys), else ``"observation"``.

    Examples:
        >>> import gymnasium as gym
        >>> whole_observation_key(gym.spaces.Box(0, 255, (210, 160, 3), dtype="uint8"))
        'pixels'
        >>> whole_observation_key(gym.spaces.Box(-1.0, 1.0, (4,)))
        'observation'
    """
    if isinstance(space, gym.spaces.Dict):
        return None
    return PIXELS if is_pixel_space(space) else OBSERVATION


def observation_spec_from_space(
    space: gym.Space, *, categorical_action_encoding: bool, device: torch.device
) -> Composite:
    """The observation :class:`Composite` for a gymnasium observation space.

    A ``Dict`` space gives one key per entry (nested where nested); any other space gives
    the single key :func:`whole_observation_key` names (``"pixels"`` for an image, else
    ``"observation"``).
    """
    spec = spec_from_gym_space(
        space, categorical_action_encoding=categorical_action_encoding, device=device
    )
    if isinstance(spec, Composite):
        return spec
    return Composite({whole_observation_key(space): spec}, device=device)


def _rendered(env: gym.Env, *, pixels_only: bool) -> gym.Env:
    """``env`` observed through its rendered frames (``from_pixels``), by gymnasium's
    ``AddRenderObservation``: ``"pixels"`` alone, or ``"observation"`` and ``"pixels"``.
    An env whose observation is an image already is returned as it is (as in TorchRL)."""
    if is_pixel_space(env.observation_space):
        return env
    if env.render_mode in (None, "human"):
        raise ValueError(
            f"from_pixels=True needs an env that renders frames, received render_mode="
            f"{env.render_mode!r}; make it with render_mode='rgb_array' (GymEnv does so for an "
            "env id unless render_mode is passed)"
        )
    return AddRenderObservation(
        env, render_only=pixels_only, render_key=PIXELS, obs_key=OBSERVATION
    )


@declare_array_stepping(
    hooks=(*GYM_HOOKS, "_reset_observation"), neutral=("_set_seed", "env", "env_imports")
)
class GymEnv(GymLikeEnv):
    """A gymnasium environment in the TED format.

    Subclasses adapt it through TorchRL's hooks (``read_obs``, ``read_reward``,
    ``read_action``, ``read_done``: see :class:`~.gym_like.GymLikeEnv`), which every
    rollout path honours; a subclass that overrides other stepping methods (``_step``,
    ``_reset``, ...) rolls out on the generic path (see :func:`~.plan.rollout_plan`).

    Args:
        env: a registered id (``"Pendulum-v1"``) or a ``gymnasium.Env`` instance.
        device: where the tensors are put (``"cpu"`` or ``"cuda"``).
        categorical_action_encoding: discrete actions as ``Categorical`` int64 indices of
            shape ``[]`` instead of the default ``OneHot`` int64 of shape ``[n]``.
        from_pixels: observe the rendered frames, uint8 ``[H, W, 3]`` under ``"pixels"``
            (gymnasium's ``AddRenderObservation``; an env id is made with
            ``render_mode="rgb_array"``). An env whose observation is an image already puts
            it under ``"pixels"`` either way.
        pixels_only: with ``from_pixels``, the frames alone; False adds the env's own
            observation under ``"observation"``.
        **make_kwargs: forwarded to ``gymnasium.make`` (e.g. ``render_mode="rgb_array"``).

    Attributes:
        env_id: the registered id, when known (else None).
        make_kwargs: the keyword arguments that make the env again,
            ``GymEnv(env_id, **make_kwargs)``: those forwarded to ``gymnasium.make``, and
            ``from_pixels``/``pixels_only`` when ``from_pixels`` is set.
        whole_observation_key: the key gymnasium's observation goes under whole:
            ``"pixels"`` for an image, ``"observation"``, or None for a ``Dict`` space.

    Examples:
        >>> from rlpol import GymEnv
        >>> env = GymEnv("CartPole-v1")
        >>> env.action_spec.shape, env.observation_spec["observation"].shape
        (torch.Size([2]), torch.Size([4]))
        >>> td = env.reset()
        >>> sorted(td.keys())
        ['done', 'observation', 'terminated', 'truncated']
        >>> GymEnv("ALE/Pong-v5").reset()
        TensorDict(batch_size=[], device=cpu, fields={
            done: bool[1],
            pixels: u8[210,160,3],
            terminated: bool[1],
            truncated: bool[1]})
        >>> GymEnv("CartPole-v1", from_pixels=True, pixels_only=False).make_kwargs
        {'from_pixels': True, 'pixels_only': False}
    """

    def __init__(
        self,
        env: str | gym.Env,
        *,
        device: torch.device | str = "cpu",
        categorical_action_encoding: bool = False,
        from_pixels: bool = False,
        pixels_only: bool = True,
        **make_kwargs: Any,
    ) -> None:
        super().__init__(device=device)
        if isinstance(env, str):
            self.env_id: str | None = env
            rendering = {"render_mode": "rgb_array"} if from_pixels else {}
            self._env = make_gym_env(env, **{**rendering, **make_kwargs})
        elif isinstance(env, gym.Env):
            self._env = env
            self.env_id = env.spec.id if env.spec is not None else None
        else:
            raise TypeError(
                f"GymEnv expects a registered env id (str) or a gymnasium.Env, got "
                f"{type(env).__name__}"
            )
        if from_pixels:
            self._env = _rendered(self._env, pixels_only=pixels_only)
            make_kwargs.update(from_pixels=True, pixels_only=pixels_only)
        self.make_kwargs = make_kwargs
        self.whole_observation_key = whole_observation_key(self._env.observation_space)
        self.categorical_action_encoding = categorical_action_encoding
        self.observation_spec = observation_spec_from_space(
            self._env.observation_space,
            categorical_action_encoding=categorical_action_encoding,
            device=self.device,
        )
        self.action_spec: TensorSpec = spec_from_gym_space(
            self._env.action_space,
            categorical_action_encoding=categorical_action_encoding,
            device=self.device,
        )
        self._observation_leaves = [
            (key, self.observation_spec[key])
            for key in self.observation_spec.keys(include_nested=True, leaves_only=True)
        ]
        self._seed: int | None = None
        self._false = torch.zeros(1, dtype=torch.bool, device=self.device)
        self._true = torch.ones(1, dtype=torch.bool, device=self.device)

    @property
    def env(self) -> gym.Env:
        """The wrapped gymnasium environment."""
        return self._env

    @property
    def env_imports(self) -> tuple[str, ...]:
        """The modules to import before making this env again in another process
        (``("ale_py",)`` for ``"ALE/Pong-v5"``, ``()`` for ``"CartPole-v1"``): pass them to
        :func:`import_env_modules`. See :func:`env_imports_for`."""
        return env_imports_for(self.env_id)

    def render(self) -> Any:
        """The wrapped env's ``render()`` (make the env with ``render_mode="rgb_array"``)."""
        return self._env.render()

    def _move_cached(self, device: torch.device) -> None:
        self._false = self._false.to(device)
        self._true = self._true.to(device)
        self._observation_leaves = [
            (key, spec.to(device)) for key, spec in self._observation_leaves
        ]

    def _set_seed(self, seed: int) -> None:
        self._seed = seed
        self._env.action_space.seed(seed)

    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        source = self._observation_source(self._reset_observation())
        for key in (DONE, TERMINATED, TRUNCATED):
            source[key] = self._false.clone()
        return self._new_tensordict(source)

    def _reset_observation(self) -> Any:
        """Reset the gymnasium env (with the pending seed, once) and return its observation."""
        observation, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return observation

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = self.read_action(tensordict.get(self.action_key))
        observation, reward, terminated, truncated, _ = self._env.step(action)
        terminated, truncated, done = self._done_flags(terminated, truncated)
        source = self._observation_source(observation)
        source[REWARD] = self._reward_tensor(self.read_reward(reward))
        true, false = self._true, self._false
        source[TERMINATED] = (true if as_flag(terminated) else false).clone()
        source[TRUNCATED] = (true if as_flag(truncated) else false).clone()
        source[DONE] = (true if as_flag(done) else false).clone()
        return self._new_tensordict(source)

    def _reward_tensor(self, reward: Any) -> torch.Tensor:
        """``reward`` as a float32 tensor of shape [1]."""
        if isinstance(reward, (float, int, np.floating, np.integer)):
            return torch.full((1,), reward, dtype=torch.float32, device=self.device)
        return torch.tensor([reward], dtype=torch.float32, device=self.device)

    def _rollout_on_arrays(self, run: ArrayRun) -> TensorDictBase:
        return rollout_gym(
            self, run,
            observation_leaves=self._observation_leaves,
            step=self._env.step,
            reset=self._reset_observation,
            hooks=self._step_hooks(),
        )  # fmt: skip

    def _array_loop(self) -> ArrayLoop:
        return ArrayLoop.GYM

    def _close(self) -> None:
        self._env.close()

    def __repr__(self) -> str:
        name = self.env_id or type(self._env).__name__
        return f"GymEnv(env={name}, batch_size={self.batch_size}, device={self.device})"
