"""``CatFrames``: a stack of the last ``N`` frames, in an env and as a policy's state.

In an env, the stack lives in the tensordicts themselves: a reset writes the first frame
repeated ``N`` times, a step drops the oldest frame of the root's stack (time ``t``) and
appends the new one. There is no hidden buffer, so a batched env's partial resets (the rows
reset, then merged into the running root) are right by construction.

Outside an env (``forward``, what an exporter folds into a policy's graph), the stack is a
*state*, as a recurrent module's: it is read at ``state_key``, reset where ``is_init``, and
written back at ``("next", state_key)``. :meth:`CatFrames.state_spec` gives its spec.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from rlpol.errors import SpecError
from rlpol.toolkit.envs.image import map_spec
from rlpol.toolkit.envs.transforms import Transform
from rlpol.toolkit.keys import IS_INIT, NEXT, PIXELS, NestedKey
from rlpol.toolkit.specs import Composite, TensorSpec

__all__ = ["PADDINGS", "CatFrames"]

#: the ``padding`` values of :class:`CatFrames`: how a fresh stack fills its older frames
PADDINGS = ("same", "constant")


class CatFrames(Transform):
    """Concatenate the last ``N`` frames along ``dim`` (``[*, d, ...]`` -> ``[*, N * d, ...]``).

    **In an env** (:meth:`on_reset`, :meth:`on_step`): on reset the stack is the first frame
    repeated ``N`` times (``padding="same"``, TorchRL's default) or ``N - 1`` frames of
    ``padding_value`` then the frame (``"constant"``); on step it is the root's stack (at
    ``out_key``, time ``t``) without its oldest frame, then the new frame (``next[in_key]``,
    as the transforms before this one made it). The spec of ``out_key`` is the frame's with
    ``dim`` multiplied by ``N`` (:meth:`stack_spec`).

    **As a module** (:meth:`forward`) it carries the stack as a state, like a recurrent
    module. It reads ``in_keys = [in_key, state_key, "is_init"]`` and writes
    ``out_keys = [out_key, ("next", state_key)]``, the same stack at both::

        stack = where(is_init, fresh(frame), cat(previous[oldest frame dropped], frame))

    with ``is_init`` bool ``[*B, 1]`` broadcast over the frame dims. A tensordict without
    ``state_key`` is a first step (``is_init`` taken as True), so
    ``TensorDictSequential(env.transform[:-1], policy)`` runs on one raw observation; one
    without ``is_init`` continues every row. The forward has no Python branch on tensor
    values: it traces and exports with a dynamic batch, and gives the env's stacks bit for
    bit. An exporter declares the state with :meth:`state_spec` (a primer's spec; initial
    value irrelevant, as ``is_init`` is True on the first step).

    TorchRL's ``CatFrames.forward`` unfolds a whole trajectory instead (replay buffers); its
    ``as_inverse``, ``reset_key``, ``done_key``, ``future`` and ``mask_key`` are not offered.

    Args:
        N: the number of frames in a stack (>= 1).
        dim: the dim to concatenate along, < 0 so that it means the same for every batch
            size (``-3``: the channels of ``[*, C, H, W]`` images).
        in_keys: the frame entry: one key (default ``["pixels"]``).
        out_keys: where to write the stack: one key (default: the in_key).
        padding: one of :data:`PADDINGS`.
        padding_value: the fill of ``"constant"`` padding.

    Keyword Args:
        state_key: the flat key of the module's state (default ``"cat_frames_<out_key>"``,
            nested out_keys joined with ``_``); flat, as array rollouts need state keys.

    Raises:
        ValueError: ``N < 1``, ``dim >= 0``, an unknown ``padding``, not exactly one in_key
            and one out_key, or a ``state_key`` that is not a flat string.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from rlpol import CatFrames
        >>> cat = CatFrames(3, dim=-1, in_keys=["observation"])
        >>> td = cat(TensorDict(observation=torch.tensor([[1.0], [2.0]]), batch_size=[2]))
        >>> td["observation"].tolist()  # no state: the first frame, repeated
        [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
        >>> td = TensorDict(observation=torch.tensor([[5.0], [6.0]]),
        ...                 cat_frames_observation=td["next", "cat_frames_observation"],
        ...                 is_init=torch.tensor([[False], [True]]), batch_size=[2])
        >>> print(cat(td))
        TensorDict(batch_size=[2], fields={
            cat_frames_observation: f32[3],
            is_init: bool[1],
            next: {cat_frames_observation: f32[3]},
            observation: f32[3]})
        >>> td["observation"].tolist()  # row 0 shifts, row 1 restarts
        [[1.0, 1.0, 5.0], [6.0, 6.0, 6.0]]
    """

    def __init__(
        self,
        N: int,
        dim: int,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        padding: str = "same",
        padding_value: float = 0.0,
        *,
        state_key: str | None = None,
    ) -> None:
        if not isinstance(N, int) or N < 1:
            raise ValueError(f"CatFrames(N=...) takes the number of frames, >= 1; got {N!r}")
        if dim >= 0:
            raise ValueError(
                f"CatFrames(dim={dim}): dim must be < 0 (counted from the end), so that it "
                "means the same for every batch size; e.g. dim=-3 for [*, C, H, W] images."
            )
        if padding not in PADDINGS:
            raise ValueError(
                f"CatFrames(padding=...) takes one of {list(PADDINGS)}, got {padding!r}"
            )
        in_keys = list(in_keys) if in_keys is not None else [PIXELS]
        out_keys = list(out_keys) if out_keys is not None else list(in_keys)
        if len(in_keys) != 1 or len(out_keys) != 1:
            raise ValueError(
                f"CatFrames stacks one entry, got in_keys={in_keys}, out_keys={out_keys}; "
                "use one CatFrames per entry (each has its own state_key)."
            )
        (frame_key,), (stack_key,) = in_keys, out_keys
        if state_key is None:
            path = (stack_key,) if isinstance(stack_key, str) else stack_key
            state_key = "cat_frames_" + "_".join(path)
        if not isinstance(state_key, str):
            raise ValueError(
                f"CatFrames(state_key=...) takes a flat string key (array rollouts carry flat "
                f"state keys), got {state_key!r}"
            )
        super().__init__([frame_key, state_key, IS_INIT], [stack_key, (NEXT, state_key)])
        self.frame_key, self.stack_key, self.state_key = frame_key, stack_key, state_key
        self.N, self.dim, self.padding, self.padding_value = N, dim, padding, float(padding_value)

    # -- the stack ------------------------------------------------------------------------
    def _fresh(self, frame: torch.Tensor) -> torch.Tensor:
        """The stack at a reset: ``N - 1`` padding frames, then ``frame``."""
        pad = frame if self.padding == "same" else torch.full_like(frame, self.padding_value)
        return torch.cat([pad] * (self.N - 1) + [frame], self.dim)

    def _shifted(self, previous: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """The stack after a step: ``previous`` without its oldest frame, then ``frame``."""
        size = frame.shape[self.dim]
        return torch.cat([previous.narrow(self.dim, size, (self.N - 1) * size), frame], self.dim)

    # -- in an env ------------------------------------------------------------------------
    def stack_spec(self, frame_spec: TensorSpec) -> TensorSpec:
        """The spec of the stack given the spec of a frame: ``dim`` multiplied by ``N``.

        Raises:
            SpecError: the frame spec has fewer than ``-dim`` dims, or is not Bounded or
                Unbounded.
        """
        if len(frame_spec.shape) < -self.dim:
            raise SpecError(
                f"CatFrames(dim={self.dim}) concatenates along dim {self.dim}, but the frame "
                f"spec has shape {list(frame_spec.shape)}; pick a dim within its dims."
            )
        return map_spec(frame_spec, self._fresh, "CatFrames")

    def state_spec(self, observation_spec: Composite) -> Composite:
        """The spec of the module's state: ``{state_key: the stack's spec}``.

        What an exporter declares (and a ``TensorDictPrimer`` primes) for this transform.

        Args:
            observation_spec: the observation spec CatFrames sees, i.e. after the
                transforms before it (with the env's batch shape, or none).

        Returns:
            a Composite of ``observation_spec``'s shape holding ``state_key``.

        Examples:
            >>> import torch
            >>> from rlpol import CatFrames
            >>> from rlpol.toolkit.specs import Bounded, Composite
            >>> seen = Composite(pixels=Bounded(0.0, 1.0, (1, 84, 84)))
            >>> CatFrames(4, dim=-3).state_spec(seen)["cat_frames_pixels"].shape
            torch.Size([4, 84, 84])
        """
        stack = self.stack_spec(observation_spec[self.frame_key])
        return Composite(
            {self.state_key: stack}, shape=observation_spec.shape, device=observation_spec.device
        )

    def transform_observation_spec(self, spec: Composite) -> Composite:
        spec[self.stack_key] = self.stack_spec(spec[self.frame_key])
        return spec

    def on_reset(self, root: TensorDictBase) -> TensorDictBase:
        root.set(self.stack_key, self._fresh(root.get(self.frame_key)))
        return root

    def on_step(self, root: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        stack = self._shifted(root.get(self.stack_key), next_td.get(self.frame_key))
        next_td.set(self.stack_key, stack)
        return next_td

    # -- as a module ----------------------------------------------------------------------
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the stack at ``out_key`` and ``("next", state_key)`` (see the class doc)."""
        frame = tensordict.get(self.frame_key)
        previous = tensordict.get(self.state_key, None)
        is_init = tensordict.get(IS_INIT, None)
        if previous is None:  # no state yet: the first step
            stack = self._fresh(frame)
        else:
            stack = self._shifted(previous, frame)
            if is_init is not None:
                mask = is_init[(..., *([None] * (stack.dim() - is_init.dim())))]
                stack = torch.where(mask, self._fresh(frame), stack)
        tensordict.set(self.stack_key, stack)
        tensordict.set((NEXT, self.state_key), stack)
        return tensordict

    def to_dict(self) -> dict:
        """A JSON-serialisable description (for artifact metadata)."""
        return {
            "type": "CatFrames", "in_keys": [self.frame_key], "out_keys": [self.stack_key],
            "N": self.N, "dim": self.dim, "padding": self.padding,
            "padding_value": self.padding_value, "state_key": self.state_key,
            "init_key": IS_INIT,
        }  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"CatFrames(N={self.N}, dim={self.dim}, in_keys={[self.frame_key]}, "
            f"out_keys={[self.stack_key]}, padding={self.padding!r}, "
            f"state_key={self.state_key!r})"
        )
