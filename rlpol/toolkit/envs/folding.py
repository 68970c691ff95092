"""Which of an env's transforms export runs inside the policy graph, and the graph's input spec.

Export *folds* an env's observation transforms into the artifact so that it takes raw env
observations (the screen, not the preprocessed stack): the transforms run in the graph, as
tensordict modules, before the policy. Foldable are the pure observation maps
(:class:`~.transforms.ObservationTransform`: ``ToTensorImage``, ``Resize``, ``ObservationNorm``,
...) and :class:`~.frames.CatFrames`, whose stack becomes a state pair (the previous stack in,
the new one out, reset by ``is_init``) like a recurrent module's state. Other transforms
(``StepCounter``, ``InitTracker``, primers, ...) stay in the env the artifact acts in.
"""

from __future__ import annotations

from rlpol.toolkit.envs.common import EnvBase
from rlpol.toolkit.envs.frames import CatFrames
from rlpol.toolkit.envs.transformed import TransformedEnv
from rlpol.toolkit.envs.transforms import Compose, InitTracker, ObservationTransform, Transform
from rlpol.toolkit.specs import Composite

__all__ = ["foldable", "folded_transforms", "graph_input_spec", "without_folded"]


def foldable(transform: Transform) -> bool:
    """Whether export can run ``transform`` inside the graph: an observation map, or a
    ``CatFrames`` (its stack becomes a state pair, reset by ``is_init``)."""
    return isinstance(transform, (ObservationTransform, CatFrames))


def folded_transforms(env: EnvBase | None) -> tuple[Transform, ...]:
    """The transforms of ``env`` (at every ``TransformedEnv`` layer, inner first) that export
    folds into the graph, in the order the env applies them."""
    if not isinstance(env, TransformedEnv):
        return ()
    return (*folded_transforms(env.base_env), *filter(foldable, env.transforms))


def graph_input_spec(env: EnvBase, fold_transforms: bool) -> Composite:
    """One sub-env's observation spec as the graph's inputs see it.

    With ``fold_transforms``, that is the spec before the folded transforms (raw
    observations), plus the state the folded ``CatFrames`` read: their previous stack
    (``state_key``, the spec of the stack) and ``is_init``.
    """
    if not (fold_transforms and isinstance(env, TransformedEnv)):
        return env.single_observation_spec
    inputs = graph_input_spec(env.base_env, fold_transforms).clone()
    seen = env.base_env.single_observation_spec.clone()  # what each transform is handed
    for transform in env.transforms:
        if not foldable(transform):
            inputs = transform.transform_observation_spec(inputs)
        elif isinstance(transform, CatFrames):
            state = transform.state_spec(seen)
            for key in state.keys():
                inputs[key] = state[key]
            inputs = InitTracker().transform_observation_spec(inputs)  # its reset input
        seen = transform.transform_observation_spec(seen)
    return inputs


def without_folded(env: EnvBase) -> EnvBase:
    """``env`` with the transforms :func:`folded_transforms` lists taken out (the env an
    artifact that folded them acts in, before its state is threaded)."""
    if not isinstance(env, TransformedEnv):
        return env
    kept = [t for t in env.transforms if not foldable(t)]
    return TransformedEnv(without_folded(env.base_env), Compose(*kept))
