"""``TensorDictPrimer``: entries an env does not produce but a policy reads, e.g. RNN states.

A recurrent policy reads its state (``recurrent_state_h``, ...) from the root tensordict and
writes the next one under ``("next", ...)``. The primer declares these entries in the
observation spec, writes them (filled with ``default_value``) into every reset root, and
carries them through each step: ``("next", key)`` gets what the policy wrote there, or the
root's value when the policy wrote nothing. :func:`~rlpol.toolkit.envs.step_mdp` then moves
it to the next root, and an auto-reset puts ``default_value`` back in the rows that restart.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from tensordict import TensorDictBase

from rlpol.toolkit.envs.transforms import Transform
from rlpol.toolkit.keys import NestedKey
from rlpol.toolkit.specs import Composite, TensorSpec

__all__ = ["TensorDictPrimer"]


def _key_path(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _key_name(path: tuple[str, ...]) -> NestedKey:
    return path[0] if len(path) == 1 else path


def _row_spec(spec: TensorSpec, batch_dims: int) -> TensorSpec:
    """The per-row spec: ``spec`` with its ``batch_dims`` leading dimensions indexed away."""
    for _ in range(batch_dims):
        spec = spec[0]
    return spec


class TensorDictPrimer(Transform):
    """Add entries the policy needs (recurrent states) to reset tensordicts, as TorchRL does.

    Each primer is a key and a spec of one row's value, e.g. ``Unbounded((num_layers,
    hidden_size))``; in a :class:`~rlpol.toolkit.specs.Composite`, the composite's shape is
    the batch prefix of its children. (TorchRL guesses whether a shape already starts with
    the env's batch size, which is ambiguous when ``num_layers`` equals it; rlpol does not.)
    The transform:

    * declares each entry in the observation spec, with shape ``[*batch_size, *shape]``;
    * on reset, writes it filled with ``default_value`` (dtype and device from the spec and
      the root);
    * on step, carries the root's value to ``("next", key)`` unless the env or the policy
      wrote one (``env.step`` keeps what a recurrent module wrote to ``("next", key)``).

    Args:
        primers: a dict ``{key: spec}`` or a :class:`~rlpol.toolkit.specs.Composite`.
        default_value: the fill value of reset entries, one number for all or a dict
            ``{key: number}``.
        **kwargs: more primers, ``name=spec``.

    Raises:
        TypeError: a primer is not a spec.
        ValueError: no primer was given, or ``default_value`` names a key with no primer.

    Examples:
        >>> from rlpol.toolkit.envs import GymEnv, TensorDictPrimer, TransformedEnv
        >>> from rlpol.toolkit.specs import Unbounded
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), TensorDictPrimer(memory=Unbounded((1, 8))))
        >>> print(env.reset())
        TensorDict(batch_size=[], device=cpu, fields={
            done: bool[1],
            memory: f32[1,8],
            observation: f32[4],
            terminated: bool[1],
            truncated: bool[1]})
    """

    def __init__(
        self,
        primers: Mapping[NestedKey, TensorSpec] | Composite | None = None,
        default_value: float | Mapping[NestedKey, float] = 0.0,
        **kwargs: TensorSpec,
    ) -> None:
        if isinstance(primers, Composite):  # its children start with its (batch) shape
            pairs = [
                (key, _row_spec(spec, len(primers.shape)))
                for key, spec in primers.items(include_nested=True, leaves_only=True)
            ]
        else:
            pairs = list((primers or {}).items())
        super().__init__()
        pairs += list(kwargs.items())
        if not pairs:
            raise ValueError(
                "TensorDictPrimer needs at least one primer: TensorDictPrimer({'key': "
                "Unbounded((num_layers, hidden_size))}) or module.make_tensordict_primer()."
            )
        self.primers: dict[tuple[str, ...], TensorSpec] = {}
        for key, spec in pairs:
            if not isinstance(spec, TensorSpec) or isinstance(spec, Composite):
                raise TypeError(
                    f"TensorDictPrimer takes one leaf spec per key, got {type(spec).__name__} "
                    f"for {key!r}; pass e.g. Unbounded((num_layers, hidden_size))."
                )
            self.primers[_key_path(key)] = spec.clone()
        self.default_value = self._default_values(default_value)

    def _default_values(self, value: float | Mapping[NestedKey, float]) -> dict:
        if not isinstance(value, Mapping):
            return {key: float(value) for key in self.primers}
        values = {_key_path(key): float(v) for key, v in value.items()}
        unknown = [key for key in values if key not in self.primers]
        if unknown:
            raise ValueError(
                f"TensorDictPrimer(default_value=...) names {list(map(_key_name, unknown))}, "
                f"which have no primer; the primers are {list(map(_key_name, self.primers))}."
            )
        return {key: values.get(key, 0.0) for key in self.primers}

    def transform_observation_spec(self, spec: Composite) -> Composite:
        for key, primer in self.primers.items():
            spec[key] = primer.to(spec.device).expand(*spec.shape)
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        for key, primer in self.primers.items():
            shape = (*root.batch_size, *primer.shape)
            value = torch.full(
                shape, self.default_value[key], dtype=primer.dtype, device=root.device
            )
            root.set(key, value)
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        for key in self.primers:
            if next_td.get(key, None) is not None:
                continue  # the env or the policy wrote it
            value = root.get(key, None)
            if value is not None:
                next_td.set(key, value)
        return next_td

    def __repr__(self) -> str:
        shapes = ", ".join(
            f"{'.'.join(key)}: {list(spec.shape)} {spec.dtype}"
            for key, spec in self.primers.items()
        )
        return f"TensorDictPrimer({shapes})"
