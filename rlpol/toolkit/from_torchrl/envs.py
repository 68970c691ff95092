"""TorchRL envs as rlpol envs: the same gymnasium env behind the same transforms.

An rlpol export reads an env's specs, its env id and make kwargs (recorded so that ``rlpol
run`` can rebuild it) and its observation transforms (folded into the graph). A TorchRL env
gives these through other attributes, so :func:`rlpol_env` rebuilds the equivalent rlpol env:
``torchrl.envs.GymEnv(name, **kwargs)`` becomes :class:`rlpol.toolkit.envs.GymEnv` with the
id and the make kwargs its gymnasium env was made with (read from the env's ``spec``: TorchRL
changes some, e.g. an ALE env's ``frameskip``; an env from outside the registry is wrapped as
the same object), and a
``TransformedEnv`` keeps its transforms, each mapped onto rlpol's transform of the same name
and arguments (:data:`TRANSFORMS`). Both envs step the same gymnasium env the same way, so a
policy sees the same tensordicts in either (keys, shapes and dtypes).
"""

from __future__ import annotations

from collections.abc import Callable

from rlpol.errors import ExportError
from rlpol.toolkit import envs as ours
from rlpol.toolkit.from_torchrl.specs import rlpol_spec

__all__ = ["TRANSFORMS", "rlpol_env"]

def rlpol_env(env: object) -> ours.EnvBase:
    """The rlpol env equivalent to TorchRL ``env`` (an rlpol env is returned as it is).

    Args:
        env: a ``torchrl.envs.GymEnv`` / ``GymWrapper``, or a ``TransformedEnv`` of one whose
            transforms are in :data:`TRANSFORMS`.

    Returns:
        a :class:`~rlpol.toolkit.envs.GymEnv`, or a :class:`~rlpol.toolkit.envs.TransformedEnv`
        of one.

    Raises:
        ExportError: a TorchRL env rlpol cannot rebuild (not gymnasium-based, batched,
            with ``frame_skip``), or a transform without an rlpol counterpart; the message
            names it and the fix.
    """
    if isinstance(env, ours.EnvBase) or env is None:
        return env
    import torchrl.envs as theirs

    if isinstance(env, theirs.TransformedEnv):
        transforms = env.transform
        children = list(transforms) if isinstance(transforms, theirs.Compose) else [transforms]
        return ours.TransformedEnv(
            rlpol_env(env.base_env), ours.Compose(*(_transform(t) for t in children))
        )
    if isinstance(env, theirs.GymWrapper):
        return _gym_env(env)
    raise ExportError(
        f"rlpol cannot rebuild TorchRL's {type(env).__name__}: it exports from gymnasium envs "
        "(torchrl.envs.GymEnv / GymWrapper, optionally in a TransformedEnv). Pass env= one such "
        "env (for a batched env, one of its sub-envs: its create_env_fn())."
    )


def _gym_env(env) -> ours.GymEnv:
    if env.batch_size:
        raise ExportError(
            f"the TorchRL env has batch size {list(env.batch_size)}; rlpol exports from one "
            "env: pass env= an unbatched GymEnv (the policy's graph gets a dynamic batch axis)."
        )
    if getattr(env, "frame_skip", 1) != 1:
        raise ExportError(
            f"the TorchRL GymEnv repeats each action frame_skip={env.frame_skip} times, which "
            "rlpol's GymEnv does not do; export with frame_skip=1 (the policy is the same)."
        )
    options = {
        "categorical_action_encoding": bool(env._categorical_action_encoding),
        "from_pixels": bool(getattr(env, "from_pixels", False)),
        "pixels_only": bool(getattr(env, "pixels_only", True)),
        "device": env.device or "cpu",
    }
    made = _made_as(env._env)
    if made is None:  # not from gymnasium's registry: wrap the same env object
        return ours.GymEnv(env._env, **options)
    name, make_kwargs = made
    return ours.GymEnv(name, **options, **make_kwargs)


def _made_as(gym_env) -> tuple[str, dict] | None:
    """``(id, kwargs)`` that ``gymnasium.make`` rebuilds ``gym_env`` from, or None.

    The kwargs are those of the env's own spec that differ from the registered ones: what
    TorchRL actually passed (its GymEnv makes an ALE env with ``frameskip=1``, as it skips
    frames itself), not what its user wrote.
    """
    import gymnasium

    spec = getattr(gym_env, "spec", None)
    if spec is None or spec.id not in gymnasium.registry:
        return None
    registered = gymnasium.registry[spec.id]
    kwargs = {k: v for k, v in spec.kwargs.items()
              if k not in registered.kwargs or registered.kwargs[k] != v}  # fmt: skip
    if spec.max_episode_steps != registered.max_episode_steps:
        kwargs["max_episode_steps"] = spec.max_episode_steps
    return spec.id, kwargs


def _keys(transform) -> dict:
    return {"in_keys": list(transform.in_keys), "out_keys": list(transform.out_keys)}


def _observation_norm(t) -> ours.Transform:
    if t.loc is None or t.scale is None or t.loc.numel() == 0:
        raise ExportError(
            "the TorchRL ObservationNorm has no statistics yet; call its init_stats(...) (or "
            "pass loc= and scale=) before export."
        )
    if list(t.out_keys) != list(t.in_keys):
        raise ExportError(
            f"rlpol's ObservationNorm writes in place; the TorchRL one writes {t.out_keys} from "
            f"{t.in_keys}: use out_keys=in_keys, or a RenameTransform-free pipeline."
        )
    return ours.ObservationNorm(t.loc.clone(), t.scale.clone(), list(t.in_keys),
                                standard_normal=bool(t.standard_normal))


def _double_to_float(t) -> ours.Transform:
    in_keys = t.in_keys
    if in_keys is None:  # TorchRL: every float64 entry of the observation spec
        import torch

        spec = t.parent.observation_spec if t.parent is not None else {}
        in_keys = [key for key, leaf in spec.items(True, True) if leaf.dtype == torch.float64]
    return ours.DoubleToFloat(list(in_keys))


def _cat_frames(t) -> ours.Transform:
    if getattr(t, "as_inverse", False) or getattr(t, "future", 0):
        raise ExportError(
            "rlpol's CatFrames stacks past observations only; the TorchRL CatFrames has "
            "as_inverse=True or future>0: build the policy's env with a plain CatFrames."
        )
    return ours.CatFrames(int(t.N), int(t.dim), padding=str(t.padding),
                          padding_value=float(t.padding_value), **_keys(t))


def _reward_sum(t) -> ours.Transform:
    if len(t.in_keys) != 1 or len(t.out_keys) != 1:
        raise ExportError(
            f"rlpol's RewardSum sums one reward; the TorchRL one reads {t.in_keys}: keep one."
        )
    return ours.RewardSum(in_key=t.in_keys[0], out_key=t.out_keys[0])


# TorchRL transform class name -> its rlpol counterpart, built from the TorchRL object
TRANSFORMS: dict[str, Callable[[object], ours.Transform]] = {
    "ObservationNorm": _observation_norm,
    "DoubleToFloat": _double_to_float,
    "CatFrames": _cat_frames,
    "StepCounter": lambda t: ours.StepCounter(t.max_steps, step_count_key=t.step_count_key),
    "RewardSum": _reward_sum,
    "InitTracker": lambda t: ours.InitTracker(init_key=t.init_key),
    "TensorDictPrimer": lambda t: ours.TensorDictPrimer(
        rlpol_spec(t.primers), default_value=t.default_value
    ),
    "ToTensorImage": lambda t: ours.ToTensorImage(t.from_int, dtype=t.dtype, **_keys(t)),
    "Resize": lambda t: ours.Resize(t.w, t.h, str(t.interpolation).split(".")[-1].lower(),
                                    **_keys(t)),
    "CenterCrop": lambda t: ours.CenterCrop(t.w, t.h, **_keys(t)),
    "GrayScale": lambda t: ours.GrayScale(**_keys(t)),
    "UnsqueezeTransform": lambda t: ours.UnsqueezeTransform(t.dim, **_keys(t)),
    "PermuteTransform": lambda t: ours.PermuteTransform(t.dims, **_keys(t)),
}


def _transform(transform) -> ours.Transform:
    build = TRANSFORMS.get(type(transform).__name__)
    if build is None:
        raise ExportError(
            f"rlpol has no counterpart of TorchRL's {type(transform).__name__} transform; the "
            f"ones it rebuilds are {sorted(TRANSFORMS)}. Export with an env without it (the "
            "graph then takes its output as the observation), or write the step into the policy."
        )
    return build(transform)
