"""Helpers shared by the actors and the exploration modules: input checks and spec kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from tensordict import TensorDictBase

from rlpol.errors import InputMismatchError, SpecError
from rlpol.toolkit.keys import NestedKey

__all__ = [
    "check_in_keys",
    "discrete_kind",
    "format_shape",
    "normalize_action_space",
    "one_hot",
]

# The spellings of the discrete action spaces, normalised to the first of each tuple.
_ACTION_SPACE_ALIASES = {
    "one_hot": "one_hot",
    "one-hot": "one_hot",
    "onehot": "one_hot",
    "categorical": "categorical",
}


def format_shape(trailing: Sequence[int] | None) -> str:
    """``[*B, 3]`` for a trailing shape ``(3,)``, ``"unknown"`` for ``None``."""
    if trailing is None:
        return "unknown"
    return "[" + ", ".join(["*B", *(str(int(d)) for d in trailing)]) + "]"


def _missing(tensordict: TensorDictBase, keys: Sequence[NestedKey]) -> list[NestedKey]:
    root = tensordict.keys()  # the common case, string keys, without listing nested keys
    for key in keys:  # a loop: cheaper than all() over a generator, per call
        if type(key) is not str or key not in root:
            break
    else:
        return []
    present = tensordict.keys(include_nested=True)
    return [key for key in keys if key not in present]


def _present_keys(tensordict: TensorDictBase) -> list[str]:
    return sorted(str(k) for k in tensordict.keys(include_nested=True, leaves_only=True))


Shapes = Mapping[NestedKey, Sequence[int] | None]


def check_in_keys(
    owner: str,
    tensordict: TensorDictBase,
    keys: Sequence[NestedKey],
    shapes: Shapes | Callable[[], Shapes] | None = None,
) -> None:
    """Raise :class:`InputMismatchError` if ``tensordict`` lacks one of ``keys``.

    Modules call this on every forward, so passing is cheap: string keys are looked up
    among the root keys only, and ``shapes`` may be a function, called only for the error.

    Args:
        owner: the module's name, for the message.
        tensordict: the module's input.
        keys: the entries the module reads.
        shapes: the trailing (per-row) shape expected for some keys, where known (or a
            function returning them).

    Raises:
        InputMismatchError: naming the missing keys with their expected shapes, and the keys
            the tensordict holds.
    """
    if not isinstance(tensordict, TensorDictBase):
        raise InputMismatchError(
            f"{owner} takes a TensorDict, got {type(tensordict).__name__}. Wrap the tensors: "
            "TensorDict(observation=obs, batch_size=obs.shape[:-1])."
        )
    missing = _missing(tensordict, keys)
    if not missing:
        return
    shapes = (shapes() if callable(shapes) else shapes) or {}
    described = ", ".join(f"{key!r} (shape {format_shape(shapes.get(key))})" for key in missing)
    raise InputMismatchError(
        f"{owner} needs the entr{'y' if len(missing) == 1 else 'ies'} {described}, "
        f"but the tensordict holds {_present_keys(tensordict)}. Write the missing "
        "entries before calling the module (for instance with an env's reset() or the "
        "module that produces them), or pass in_keys= that name the entries you have."
    )


def discrete_kind(spec: object) -> str | None:
    """``"one_hot"`` for a ``OneHot`` spec, ``"categorical"`` for a ``Categorical`` one, else None."""
    from rlpol.toolkit.specs import Categorical, OneHot

    if isinstance(spec, OneHot):
        return "one_hot"
    if isinstance(spec, Categorical):
        return "categorical"
    return None


def normalize_action_space(action_space: object, spec: object, *, owner: str) -> tuple[str, object]:
    """Resolve ``action_space`` (a spec or a string) and ``spec`` into ``(kind, spec)``.

    ``kind`` is ``"one_hot"`` or ``"categorical"``; ``spec`` may stay ``None`` when only a
    string was given.

    Raises:
        SpecError: the action space is not a supported discrete space, or the two disagree.
    """
    supported = "'one_hot' (a OneHot spec) or 'categorical' (a Categorical spec)"
    if action_space is None and spec is None:
        raise SpecError(
            f"{owner} needs the action space: pass action_space=env.action_spec, "
            "action_space='one_hot' / 'categorical', or spec=env.action_spec."
        )
    if action_space is not None and not isinstance(action_space, str):
        if spec is not None and spec is not action_space:
            raise SpecError(
                f"{owner} got two specs, action_space={action_space!r} and spec={spec!r}; "
                "pass only one of them."
            )
        spec, action_space = action_space, None
    spec_kind = discrete_kind(spec) if spec is not None else None
    if spec is not None and spec_kind is None:
        raise SpecError(
            f"{owner} supports {supported} action spaces, got {type(spec).__name__}. "
            "For continuous actions use an Actor (with AdditiveGaussianModule to explore)."
        )
    if action_space is None:
        return spec_kind, spec
    kind = _ACTION_SPACE_ALIASES.get(action_space.lower())
    if kind is None:
        raise SpecError(f"{owner} supports action_space {supported}, got {action_space!r}.")
    if spec_kind is not None and spec_kind != kind:
        raise SpecError(
            f"{owner} got action_space={action_space!r} but a {type(spec).__name__} spec "
            f"({spec_kind!r}); pass one of them, or make them agree."
        )
    return kind, spec


def one_hot(index: torch.Tensor, n: int) -> torch.Tensor:
    """int64 one-hot ``[*R, n]`` of ``index`` ``[*R]``, with no data-dependent check.

    ``torch.nn.functional.one_hot`` checks the index range on the data, which
    ``torch.export`` cannot trace; a comparison with ``arange(n)`` has no such check.
    """
    return (index.unsqueeze(-1) == torch.arange(n, device=index.device)).to(torch.int64)
