"""The environment base class, ``step_mdp`` and ``rollout``: TorchRL's TED data format.

TED (TorchRL Episode Data): after :meth:`EnvBase.step` the root of the tensordict holds
time ``t`` (``observation``, ``action``, ``done``, ...) and ``"next"`` holds what the step
produced (``observation``, ``reward`` [*B, 1] float32, ``done``/``terminated``/``truncated``
[*B, 1] bool). :func:`step_mdp` moves ``"next"`` to the root for the following step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tensordict import TensorDict, TensorDictBase

from rlpol._compat import new_tensordict
from rlpol.errors import EnvClosedError, InputMismatchError
from rlpol.toolkit.envs._arrays import action_validator, any_flag
from rlpol.toolkit.envs.array_loops import ArrayRun
from rlpol.toolkit.envs.plan import ArrayLoop, RolloutPlan
from rlpol.toolkit.envs.rollout import run_rollout
from rlpol.toolkit.keys import ACTION, DONE, DONE_KEYS, NEXT, REWARD, NestedKey
from rlpol.toolkit.specs import Categorical, Composite, TensorSpec, Unbounded

__all__ = [
    "EnvBase", "done_spec_for", "keep_next_preset", "merge_rows", "reward_spec_for", "step_mdp",
]  # fmt: skip

Policy = Callable[[TensorDictBase], TensorDictBase]


def reward_spec_for(batch_size: torch.Size, device: torch.device) -> Unbounded:
    """The TED reward spec: float32 of shape ``[*batch_size, 1]``."""
    return Unbounded(shape=(*batch_size, 1), device=device, dtype=torch.float32)


def done_spec_for(batch_size: torch.Size, device: torch.device) -> Composite:
    """The TED done spec: ``done``, ``terminated``, ``truncated``, bool of shape ``[*B, 1]``."""
    leaf = Categorical(2, shape=(*batch_size, 1), device=device, dtype=torch.bool)
    return Composite(
        {key: leaf.clone() for key in DONE_KEYS}, shape=batch_size, device=device
    )


def step_mdp(
    tensordict: TensorDictBase,
    *,
    keep_other: bool = True,
    exclude_action: bool = True,
    exclude_reward: bool = True,
    action_keys: Sequence[NestedKey] = (ACTION,),
    reward_keys: Sequence[NestedKey] = (REWARD,),
) -> TensorDictBase:
    """Move the ``"next"`` entries of a stepped tensordict to the root of a new one.

    Args:
        tensordict: a TED tensordict as returned by :meth:`EnvBase.step`.
        keep_other: keep the root entries that ``"next"`` does not overwrite (for instance
            what the policy wrote: ``loc``, ``action_value``), as TorchRL does.
        exclude_action: drop the action keys from the result.
        exclude_reward: drop the reward keys from the result.
        action_keys: the action keys to drop.
        reward_keys: the reward keys to drop.

    Returns:
        A new tensordict of the same batch size holding time ``t + 1``; its tensors are the
        input's (no copy).

    Examples:
        >>> from rlpol import GymEnv, step_mdp
        >>> env = GymEnv("Pendulum-v1")
        >>> stepped = env.step(env.rand_action(env.reset()))
        >>> sorted(step_mdp(stepped).keys())
        ['done', 'observation', 'terminated', 'truncated']
    """
    next_td = tensordict.get(NEXT)
    source: dict = {}
    if keep_other:
        for key, value in tensordict.items():
            if key == NEXT or (exclude_action and key in action_keys):
                continue
            source[key] = _detached_node(value)
    for key, value in next_td.items():
        if exclude_reward and key in reward_keys:
            continue
        source[key] = _detached_node(value)
    return new_tensordict(
        source, batch_size=tensordict.batch_size, device=tensordict.device
    )


def _detached_node(value):
    """A nested tensordict is copied (its tensors are not), so that writing into the new
    root never edits the step it came from; a tensor is returned as it is."""
    return value.copy() if isinstance(value, TensorDictBase) else value


class EnvBase:
    """An environment that reads and writes tensordicts in the TED format.

    Subclasses set the specs in ``__init__`` and implement :meth:`_reset` and :meth:`_step`;
    users call the public :meth:`reset`, :meth:`step`, :meth:`rand_action`,
    :meth:`step_and_maybe_reset` and :meth:`rollout`.

    Attributes:
        batch_size: leading batch shape of every tensordict (``[]`` for a single env).
        device: where every tensor lives.
        observation_spec: a :class:`Composite` of the observation entries.
        action_spec: the spec of ``"action"``.
        reward_spec: float32 ``[*batch_size, 1]``.
        done_spec: a :class:`Composite` of ``done``, ``terminated``, ``truncated``.
    """

    observation_spec: Composite
    action_spec: TensorSpec
    reward_spec: TensorSpec
    done_spec: Composite
    action_key: NestedKey = ACTION

    def __init__(self, *, device: torch.device | str = "cpu", batch_size: Sequence[int] = ()):
        self.device = torch.device(device)
        self.batch_size = torch.Size(batch_size)
        self.reward_spec = reward_spec_for(self.batch_size, self.device)
        self.done_spec = done_spec_for(self.batch_size, self.device)
        self._closed = False

    # -- the public TED interface -------------------------------------------------------
    def reset(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Reset every sub-environment and return the first root tensordict.

        Returns:
            a tensordict of batch size :attr:`batch_size` with the observation entries and
            ``done``/``terminated``/``truncated`` (all False).
        """
        self._check_open()
        return self._reset(tensordict)

    def step(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Apply ``tensordict["action"]`` and write the outcome under ``"next"``.

        Args:
            tensordict: the root at time ``t``, holding an action that fits
                :attr:`action_spec`.

        Returns:
            the same tensordict, with ``"next"`` holding the observation entries, ``reward``
            and the done entries at ``t + 1``. Entries the policy already wrote under
            ``"next"`` (as a recurrent module writes its state to ``("next", key)``) are
            kept where the env writes no entry of that key, as in TorchRL, and
            :func:`step_mdp` carries them to the next root.

        Raises:
            InputMismatchError: the action is missing.
            SpecError: the action has the wrong shape or dtype or lies outside its spec.
            EnvClosedError: the env was closed.
        """
        self._check_open()
        action = tensordict.get(self.action_key, None)
        if action is None:
            raise InputMismatchError(
                f"env.step() needs an {self.action_key!r} entry of shape "
                f"{list(self.action_spec.shape)}; the tensordict holds "
                f"{sorted(map(str, tensordict.keys()))}. Write one with a policy or "
                "env.rand_action(td)."
            )
        spec = self._action_check_spec
        cached = self.__dict__.get("_action_validator")
        if cached is None or cached[0] is not spec:
            cached = self._action_validator = (spec, action_validator(spec))
        if not cached[1](action):  # a quick numpy check first; the full one explains errors
            spec.check(action, key=str(self.action_key))
        next_td = self._step(tensordict)
        keep_next_preset(next_td, tensordict)  # what the policy wrote for t + 1
        tensordict.set(NEXT, next_td)
        return tensordict

    @property
    def _action_check_spec(self) -> TensorSpec:
        """The spec actions are checked against before a step.

        Discrete actions must be valid (one-hot rows, indices in range). Continuous actions
        are checked for shape and dtype only: values outside the Box bounds go to gymnasium
        as they are (its envs clip them, as TorchRL relies on), so an unsquashed Gaussian
        policy still runs.
        """
        spec = self.action_spec
        if spec.domain != "continuous":
            return spec
        cached = getattr(self, "_continuous_action_spec", None)
        if cached is None or cached.shape != spec.shape or cached.device != spec.device:
            cached = Unbounded(shape=spec.shape, device=spec.device, dtype=spec.dtype)
            self._continuous_action_spec = cached
        return cached

    def rand_action(self, tensordict: TensorDictBase | None = None) -> TensorDictBase:
        """Write an action drawn uniformly from :attr:`action_spec` (torch's generator)."""
        if tensordict is None:
            tensordict = TensorDict(batch_size=self.batch_size, device=self.device)
        tensordict.set(self.action_key, self.action_spec.rand())
        return tensordict

    def fake_tensordict(self) -> TensorDictBase:
        """A TED tensordict of zeros shaped as one step fills it (TorchRL's ``fake_tensordict``).

        Each entry is its spec's ``zero()``; the root holds the observation entries, the done
        flags and the action, ``"next"`` the observation entries, the reward (float32
        ``[*batch_size, 1]``) and the done flags: the entries of
        ``env.step(env.rand_action(env.reset()))``; the batch size is :attr:`batch_size`.
        Nothing is stepped: it serves as an example input (``export_policy(...,
        example=env.fake_tensordict())``).

        Examples:
            >>> from rlpol import GymEnv
            >>> GymEnv("CartPole-v1").fake_tensordict()
            TensorDict(batch_size=[], device=cpu, fields={
                action: i64[2],
                done: bool[1],
                next: {
                    done: bool[1],
                    observation: f32[4],
                    reward: f32[1],
                    terminated: bool[1],
                    truncated: bool[1]},
                observation: f32[4],
                terminated: bool[1],
                truncated: bool[1]})
        """
        source = {
            **self.observation_spec.zero().to_dict(), **self.done_spec.zero().to_dict(),
            **self.full_action_spec.zero().to_dict(),
        }  # fmt: skip
        source[NEXT] = {  # zeros of their own: writing into "next" leaves the root alone
            **self.observation_spec.zero().to_dict(), REWARD: self.reward_spec.zero(),
            **self.done_spec.zero().to_dict(),
        }  # fmt: skip
        return self._new_tensordict(source)

    def step_and_maybe_reset(
        self, tensordict: TensorDictBase
    ) -> tuple[TensorDictBase, TensorDictBase]:
        """Step, then build the next root, resetting the sub-environments that are done.

        Returns:
            ``(stepped, next_root)``: the TED tensordict of this step, and the root of the
            following one, where done sub-environments carry their reset observation.
        """
        tensordict = self.step(tensordict)
        next_root = step_mdp(tensordict)
        done = next_root.get(DONE)
        if any_flag(done):
            next_root = self._reset_done(next_root, done.reshape(self.batch_size))
        return tensordict, next_root

    def rollout(
        self,
        max_steps: int,
        policy: Policy | None = None,
        *,
        break_when_any_done: bool = True,
        auto_reset: bool = True,
        tensordict: TensorDictBase | None = None,
    ) -> TensorDictBase:
        """Run ``policy`` (random actions when None) for up to ``max_steps`` steps.

        Args:
            max_steps: the number of steps to run.
            policy: a callable reading and writing a tensordict, e.g. a ``TensorDictModule``.
            break_when_any_done: stop after the first step where any sub-environment is
                done; when False, done sub-environments reset and the rollout continues.
            auto_reset: reset the env first; when False, ``tensordict`` is the first root.
            tensordict: the first root when ``auto_reset`` is False.

        Returns:
            the stacked TED tensordict, of batch size ``[*batch_size, T]`` (time last), with
            every entry the policy wrote.

        Which path runs the rollout (a tensordict per step, or numpy buffers filled in place
        with the same result) is decided by :func:`~rlpol.toolkit.envs.plan.rollout_plan`;
        afterwards :attr:`last_rollout_plan` says which path ran and why.
        """
        return run_rollout(
            self, max_steps, policy, break_when_any_done=break_when_any_done,
            auto_reset=auto_reset, tensordict=tensordict,
        )  # fmt: skip

    def set_seed(self, seed: int) -> int:
        """Seed the environment: the next :meth:`reset` starts from ``seed``.

        Together with ``torch.manual_seed(seed)`` (for random actions and stochastic
        policies) this makes a rollout reproducible.
        """
        self._set_seed(int(seed))
        return int(seed)

    def close(self) -> None:
        """Release the underlying environments; any later call raises EnvClosedError."""
        if not self._closed:
            self._close()
        self._closed = True

    def to(self, device: torch.device | str) -> EnvBase:
        """Move the env's outputs and specs to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        for name in ("observation_spec", "action_spec", "reward_spec", "done_spec"):
            setattr(self, name, getattr(self, name).to(self.device))
        self._move_cached(self.device)
        return self

    def _move_cached(self, device: torch.device) -> None:
        """Move tensors a subclass keeps for speed (hook of :meth:`to`)."""

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def single_observation_spec(self) -> Composite:
        """The observation spec of one sub-environment (no batch dims)."""
        return self.observation_spec

    @property
    def single_action_spec(self) -> TensorSpec:
        """The action spec of one sub-environment (no batch dims)."""
        return self.action_spec

    @property
    def full_action_spec(self) -> Composite:
        return Composite(
            {self.action_key: self.action_spec}, shape=self.batch_size, device=self.device
        )

    def __enter__(self) -> EnvBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size}, device={self.device})"

    # -- the array paths (see rlpol.toolkit.envs.plan) -----------------------------------
    last_rollout_plan: RolloutPlan | None = None
    _observation_leaves: list[tuple[NestedKey, TensorSpec]]

    def _array_refusal(self) -> str | None:
        """Why this env instance cannot take an array path now (its class declared one)."""
        if self.device.type != "cpu":
            return f"the env is on {self.device}; array rollouts run on the CPU"
        for key, _ in self._observation_leaves:
            if not isinstance(key, str):
                return f"the observation key {key!r} is nested; array rollouts need flat keys"
        return None

    def _array_loop(self) -> ArrayLoop:
        """The :class:`ArrayLoop` that :meth:`_rollout_on_arrays` runs (declaring classes)."""
        raise NotImplementedError

    def _rollout_on_arrays(self, run: ArrayRun) -> TensorDictBase:
        """Run ``run.kernel`` from ``run.root`` on numpy buffers (see
        :mod:`rlpol.toolkit.envs.array_loops`), returning exactly what the generic loop of
        :meth:`rollout` would; implemented by classes that declare array stepping."""
        raise NotImplementedError

    def _array_state_keys(self) -> frozenset[str]:
        """The root entries an array kernel may write the next value of, as
        ``("next", key)`` (a recurrent state the env carries: a primer's)."""
        return frozenset()

    # -- what subclasses implement ------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None) -> TensorDictBase:
        raise NotImplementedError

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Return the ``"next"`` tensordict for the action in ``tensordict``."""
        raise NotImplementedError

    def _reset_done(self, next_root: TensorDictBase, done: torch.Tensor) -> TensorDictBase:
        """Replace the rows of ``next_root`` where ``done`` (bool, [*batch_size]) by a reset."""
        fresh = self._reset_rows(done)
        if not self.batch_size:
            next_root.update(fresh)
            return next_root
        return merge_rows(next_root, fresh, done)

    def _reset_rows(self, done: torch.Tensor) -> TensorDictBase:
        """A root tensordict whose rows where ``done`` hold a fresh reset (others: anything)."""
        return self.reset()

    def _set_seed(self, seed: int) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise EnvClosedError(
                f"{self!r} was closed; create a new environment instead of reusing a closed one."
            )

    def _new_tensordict(self, source: dict) -> TensorDictBase:
        """A tensordict of this env's batch size and device, built without per-key checks.

        Nested dicts in ``source`` become nested tensordicts.
        """
        return _tensordict_from_dict(source, self.batch_size, self.device)


def merge_rows(
    target: TensorDictBase, fresh: TensorDictBase, rows: torch.Tensor
) -> TensorDictBase:
    """Write ``fresh``'s leaves into ``target`` in the rows where ``rows`` (bool,
    ``[*batch_size]``, on their device) is True; a leaf ``target`` lacks is taken whole.

    Returns:
        ``target``.
    """
    for key in fresh.keys(include_nested=True, leaves_only=True):
        new = fresh.get(key)
        old = target.get(key, None)
        if old is not None:
            mask = rows.reshape(*rows.shape, *([1] * (new.dim() - rows.dim())))
            new = torch.where(mask, new, old)
        target.set(key, new)
    return target


def keep_next_preset(next_td: TensorDictBase, root: TensorDictBase) -> None:
    """Copy into ``next_td`` the leaves the policy wrote under ``root["next"]`` (a recurrent
    state at ``("next", key)``, ...) that ``next_td`` does not hold (TorchRL's TED rule)."""
    preset = root.get(NEXT, None)
    if preset is None:
        return
    for key in preset.keys(include_nested=True, leaves_only=True):
        if next_td.get(key, None) is None:
            next_td.set(key, preset.get(key))


def _tensordict_from_dict(
    source: dict, batch_size: torch.Size, device: torch.device
) -> TensorDictBase:
    source = {
        key: _tensordict_from_dict(value, batch_size, device) if isinstance(value, dict) else value
        for key, value in source.items()
    }
    return new_tensordict(source, batch_size=batch_size, device=device)
