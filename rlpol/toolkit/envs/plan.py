"""Which path ``env.rollout`` takes, and why: the rollout engine's declared contract.

A rollout runs on one of three paths (:class:`RolloutPath`):

* ``GENERIC``: the policy is called on a tensordict, :meth:`EnvBase.step_and_maybe_reset`
  builds ``"next"`` and the next root, and the steps are stacked at the end. Every env and
  every policy can take it.
* ``ARRAY_POLICY``: the policy implements :class:`~.fast_rollout.ArrayPolicy` (a loaded
  artifact does) and runs on numpy buffers from the first step; no tensordict per step.
* ``EAGER_MODULE``: an eager tensordict module is called on a root built from buffer
  views; decided after its first call (see :mod:`.module_kernel`).

The two array paths need an env class that *declares* array stepping with
:func:`declare_array_stepping`: the declaration says which loop replaces its stepping
(:class:`ArrayLoop`) and which hooks that loop still calls. A subclass does not inherit the
declaration silently: :func:`array_stepping_refusal` looks at every class between the env's
own type and the declaring class, and any method they override that the array loop does not
call sends the rollout down the generic path (a subclass that scales observations in
``_step`` gets what its ``_step`` computes), unless the subclass declares array stepping
itself. Hooks a loop calls (``read_obs``, ``read_reward``, ...) may be overridden freely.

:func:`rollout_plan` answers before a rollout; after one, ``env.last_rollout_plan`` holds
the plan it took, with the reason when a check made during the rollout sent it down the
generic path; :func:`record_rollout_plans` collects the plans of every rollout in a block.

Examples:
    >>> from rlpol import GymEnv, rollout_plan
    >>> env = GymEnv("CartPole-v1")
    >>> rollout_plan(env, None)
    RolloutPlan(path=<RolloutPath.GENERIC: 'generic'>, loop=None, reason='random actions (no policy) take the generic path')
    >>> class Scaled(GymEnv):
    ...     def _step(self, tensordict):
    ...         return super()._step(tensordict)
    >>> rollout_plan(Scaled("CartPole-v1"), lambda td: td).reason
    "Scaled overrides GymEnv._step, which GymEnv's array rollout does not call; the generic path runs it (declare_array_stepping on Scaled, if its array rollout honours it)"
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from rlpol.toolkit.envs.fast_rollout import ArrayPolicy, fast_rollout_enabled

__all__ = [
    "ArrayLoop",
    "ArrayStepping",
    "RolloutPath",
    "RolloutPlan",
    "array_stepping_refusal",
    "declare_array_stepping",
    "overridden_hooks",
    "record_rollout_plans",
    "rollout_plan",
]


class RolloutPath(str, enum.Enum):
    """How ``env.rollout`` runs the policy (see the module docstring)."""

    GENERIC = "generic"
    ARRAY_POLICY = "array_policy"
    EAGER_MODULE = "eager_module"


class ArrayLoop(str, enum.Enum):
    """Which array loop steps the env on the array paths."""

    GYM = "gym"  # one gymnasium env: env.step, env.reset
    VECTOR = "vector"  # a gymnasium.vector env's batched step (SAME_STEP autoreset)
    SUB_ENVS = "sub_envs"  # a SyncVectorEnv's sub-envs stepped one by one, rows written in place


@dataclass(frozen=True)
class RolloutPlan:
    """The path of a rollout and why it was chosen.

    Attributes:
        path: the :class:`RolloutPath`.
        loop: the :class:`ArrayLoop` of an array path; None on the generic path.
        reason: one sentence: why this path (and, on the generic path, what to change to
            take an array path).
    """

    path: RolloutPath
    loop: ArrayLoop | None
    reason: str

    @classmethod
    def generic(cls, reason: str) -> RolloutPlan:
        return cls(RolloutPath.GENERIC, None, reason)


@dataclass(frozen=True)
class ArrayStepping:
    """An env class's declaration that ``env.rollout`` may step it on numpy arrays.

    Attributes:
        owner: the declaring class.
        hooks: the methods its array loops call, as the generic path does; subclasses may
            override these and stay on the array paths.
        neutral: methods its array loops do not call and that do not change a rollout's
            result either way (``__init__``, ``__repr__``, ``render``, ...).
    """

    owner: type
    hooks: frozenset[str]
    neutral: frozenset[str]


_ALWAYS_NEUTRAL = frozenset(
    {
        "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__annotations__",
        "__firstlineno__", "__static_attributes__", "__orig_bases__", "__parameters__",
        "__array_stepping__", "__init__", "__repr__", "render", "close", "_close", "to",
        "_move_cached", "set_seed", "__enter__", "__exit__",
    }
)  # fmt: skip

EnvClass = TypeVar("EnvClass", bound=type)


def declare_array_stepping(
    *, hooks: tuple[str, ...] = (), neutral: tuple[str, ...] = ()
) -> Callable[[EnvClass], EnvClass]:
    """Class decorator: the class's ``_rollout_on_arrays`` reproduces its generic stepping.

    Args:
        hooks: the methods the array loop calls where the generic path calls them, so a
            subclass may override them (e.g. ``("read_obs", "read_reward")``).
        neutral: more methods that no rollout path depends on.

    Returns:
        the class, with ``__array_stepping__`` set in its own ``__dict__``.
    """

    def declare(cls: EnvClass) -> EnvClass:
        cls.__array_stepping__ = ArrayStepping(
            owner=cls, hooks=frozenset(hooks), neutral=_ALWAYS_NEUTRAL | frozenset(neutral)
        )
        return cls

    return declare


def _declaration(cls: type) -> ArrayStepping | None:
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__array_stepping__")
        if declared is not None:
            return declared
    return None


def array_stepping_refusal(cls: type) -> str | None:
    """Why instances of ``cls`` cannot take an array path, or None when they can.

    The nearest class in ``cls``'s MRO that declared array stepping owns the contract; every
    class below it must leave alone each attribute the owner has, except the declared hooks
    and neutral methods.
    """
    declared = _declaration(cls)
    if declared is None:
        return f"{cls.__name__} declares no array stepping"
    owner = declared.owner
    allowed = declared.hooks | declared.neutral
    for klass in cls.__mro__[: cls.__mro__.index(owner)]:
        for name in klass.__dict__:
            if name not in allowed and hasattr(owner, name):
                return (
                    f"{klass.__name__} overrides {owner.__name__}.{name}, which "
                    f"{owner.__name__}'s array rollout does not call; the generic path runs it "
                    f"(declare_array_stepping on {klass.__name__}, if its array rollout "
                    "honours it)"
                )
    return None


def overridden_hooks(cls: type) -> frozenset[str]:
    """The declared hooks that ``cls`` (or a class between it and the owner) overrides."""
    declared = _declaration(cls)
    if declared is None:
        return frozenset()
    owner = declared.owner
    below = cls.__mro__[: cls.__mro__.index(owner)]
    return frozenset(name for name in declared.hooks if any(name in k.__dict__ for k in below))


def rollout_plan(env: Any, policy: Any) -> RolloutPlan:
    """The path ``env.rollout(n, policy)`` takes, decided from what is known before it runs.

    The rollout makes more checks as it goes (the first root's entries, the kernel the
    policy offers, what an eager module writes at its first call); when one fails the
    rollout takes the generic path and ``env.last_rollout_plan`` says why.

    Args:
        env: an :class:`~rlpol.toolkit.envs.common.EnvBase`.
        policy: the policy to roll out, or None for random actions.

    Returns:
        a :class:`RolloutPlan`.
    """
    from tensordict.nn import TensorDictModuleBase

    if policy is None:
        return RolloutPlan.generic("random actions (no policy) take the generic path")
    if not fast_rollout_enabled():
        return RolloutPlan.generic("use_fast_rollout(False) is in effect")
    refusal = array_stepping_refusal(type(env))
    if refusal is None:
        refusal = env._array_refusal()
    if refusal is not None:
        return RolloutPlan.generic(refusal)
    loop = env._array_loop()
    if isinstance(policy, ArrayPolicy):
        return RolloutPlan(
            RolloutPath.ARRAY_POLICY, loop, f"{type(policy).__name__} runs on numpy arrays"
        )
    if isinstance(policy, TensorDictModuleBase):
        return RolloutPlan(
            RolloutPath.EAGER_MODULE, loop,
            f"{type(policy).__name__} is called on buffer views if its first call writes "
            "plain CPU tensors that need no gradient",
        )  # fmt: skip
    return RolloutPlan.generic(
        f"{type(policy).__name__} is neither an ArrayPolicy nor a tensordict module"
    )


_RECORDERS: contextvars.ContextVar[tuple[list[RolloutPlan], ...]] = contextvars.ContextVar(
    "rlpol_rollout_plan_recorders", default=()
)


@contextlib.contextmanager
def record_rollout_plans() -> Iterator[list[RolloutPlan]]:
    """Within the block, the plan each ``env.rollout`` took is appended to the yielded list.

    Examples:
        >>> from rlpol import GymEnv, record_rollout_plans
        >>> with record_rollout_plans() as plans:
        ...     _ = GymEnv("CartPole-v1").rollout(3)
        >>> [plan.path.value for plan in plans]
        ['generic']
    """
    plans: list[RolloutPlan] = []
    token = _RECORDERS.set((*_RECORDERS.get(), plans))
    try:
        yield plans
    finally:
        _RECORDERS.reset(token)


def taken(env: Any, plan: RolloutPlan) -> None:
    """Record that a rollout of ``env`` took ``plan`` (called by the engine)."""
    env.last_rollout_plan = plan
    for plans in _RECORDERS.get():
        plans.append(plan)
