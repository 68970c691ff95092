"""Pixel observations: ``"pixels"`` for image spaces, ``from_pixels``, ALE ids on demand.

The rollout tests follow :mod:`tests.toolkit.test_fast_rollout`: the same seeded rollout on
the array path and on the generic path (``use_fast_rollout(False)``), the array loop taken
checked first, then every field compared (keys in order, dtype, shape, strides, values).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictSequential
from torch import nn

from rlpol import (
    EGreedyModule,
    ExplorationType,
    GymEnv,
    ParallelEnv,
    QValueActor,
    RolloutPath,
    SerialEnv,
    StepCounter,
    TransformedEnv,
    record_rollout_plans,
    set_exploration_type,
)
from rlpol.errors import UnknownEnvError
from rlpol.testing import assert_same_tensordict
from rlpol.toolkit.envs.fast_rollout import use_fast_rollout
from rlpol.toolkit.envs.gym import env_imports_for, import_env_modules, is_pixel_space

PONG = "ALE/Pong-v5"
# Pong truncated early, so that the rollouts reset mid-way (an episode is ~900 steps)
PONG_KWARGS = {"max_episode_steps": 40}
STEPS = 100


def on_both_paths(env, policy, *, steps=STEPS, **kwargs):
    """``(loops, array, generic)``: the same seeded, exploring rollout on the array path and
    on the generic path, with the array loops that the rollouts ran."""
    results = []
    with record_rollout_plans() as plans:
        for enabled in (True, False):
            env.set_seed(0)
            torch.manual_seed(0)
            with use_fast_rollout(enabled), torch.no_grad():
                with set_exploration_type(ExplorationType.RANDOM):
                    results.append(env.rollout(steps, policy, **kwargs))
    loops = [plan.loop.value for plan in plans if plan.path is not RolloutPath.GENERIC]
    return (loops, *results)


class ScreenQValues(nn.Module):
    """Q-values from every tenth pixel: uint8 ``[*B, H, W, 3]`` -> float32 ``[*B, actions]``."""

    def __init__(self, frame_shape: torch.Size, actions: int) -> None:
        super().__init__()
        height, width, channels = frame_shape
        self.linear = nn.Linear(-(-height // 10) * -(-width // 10) * channels, actions)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.linear(pixels[..., ::10, ::10, :].flatten(-3).float() / 255)


def pixel_policy(env) -> TensorDictSequential:
    """An epsilon-greedy Q-value policy reading ``"pixels"``, seeded weights."""
    torch.manual_seed(0)
    spec = env.single_action_spec
    frame = env.single_observation_spec["pixels"].shape
    actor = QValueActor(ScreenQValues(frame, spec.shape[-1]), in_keys=["pixels"], spec=spec)
    return TensorDictSequential(actor, EGreedyModule(spec, eps_init=0.3))


# -- env ids that a package registers on import ------------------------------------------------


def run_fresh(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new Python process (nothing imported), its output captured."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_ale_id_works_in_a_process_that_never_imported_ale_py():
    result = run_fresh(
        """
        import sys
        import gymnasium as gym
        from rlpol import GymEnv
        assert "ale_py" not in sys.modules and "ALE/Pong-v5" not in gym.registry
        env = GymEnv("ALE/Pong-v5")
        print(env.env_imports, list(env.reset()["pixels"].shape))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "('ale_py',) [210, 160, 3]"


def test_ale_ids_without_ale_py_name_the_package_to_install():
    result = run_fresh(
        """
        import sys
        sys.modules["ale_py"] = None  # what an environment without ale-py installed does
        from rlpol import GymEnv
        from rlpol.errors import UnknownEnvError
        for env_id in ("ALE/Pong-v5", "ALE/NoSuchGame-v5"):  # a known id, an unknown one
            try:
                GymEnv(env_id)
            except UnknownEnvError as error:
                print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    message = (
        "the environment needs the module 'ale_py', which cannot be imported (import of "
        "ale_py halted; None in sys.modules); pip install ale-py (or rlpol[atari])."
    )
    assert result.stdout.splitlines()[-2:] == [message, message]


def test_unknown_id_in_a_known_namespace_suggests_close_ids():
    with pytest.raises(UnknownEnvError, match=r"'ALE/NoSuchGame-v5'.*Did you mean"):
        GymEnv("ALE/NoSuchGame-v5")


ENV_IMPORTS = [
    ("ALE/Pong-v5", ("ale_py",)),  # the namespace table
    ("ale_py:ALE/Pong-v5", ("ale_py",)),  # gymnasium's "module:EnvId"
    ("gymnasium.envs.classic_control:CartPole-v1", ("gymnasium.envs.classic_control",)),
    ("PongNoFrameskip-v4", ("ale_py",)),  # no namespace: the entry point's package
    ("CartPole-v1", ()),  # gymnasium's own
    ("Pendulum-v1", ()),
]


@pytest.mark.parametrize(("env_id", "expected"), ENV_IMPORTS)
def test_env_imports(env_id, expected):
    import_env_modules(("ale_py",))  # PongNoFrameskip-v4 has no namespace to import by
    assert env_imports_for(env_id) == expected
    assert GymEnv(env_id).env_imports == expected


def test_batched_env_imports_are_the_sub_envs():
    env = SerialEnv(2, lambda: GymEnv(PONG))
    try:
        assert env.env_imports == ("ale_py",)
        assert env.whole_observation_key == "pixels"
    finally:
        env.close()


def test_import_env_modules_names_a_missing_module():
    with pytest.raises(UnknownEnvError, match="'no_such_env_package', which cannot be imported"):
        import_env_modules(("no_such_env_package",))


# -- the "pixels" key -------------------------------------------------------------------------

PIXEL_SPACES = [
    (gym.spaces.Box(0, 255, (210, 160, 3), dtype=np.uint8), True),
    (gym.spaces.Box(0.0, 255.0, (8, 8, 3), dtype=np.float32), True),  # TorchRL: no dtype check
    (gym.spaces.Box(0, 255, (8, 8, 4), dtype=np.uint8), False),
    (gym.spaces.Box(0, 255, (8, 8), dtype=np.uint8), False),
    (gym.spaces.Box(0, 255, (2, 8, 8, 3), dtype=np.uint8), False),
    (gym.spaces.Box(0.0, 1.0, (8, 8, 3), dtype=np.float32), False),
    (gym.spaces.Discrete(3), False),
]


@pytest.mark.parametrize(("space", "expected"), PIXEL_SPACES, ids=str)
def test_torchrl_pixel_rule(space, expected):
    assert is_pixel_space(space) is expected


def test_pong_observes_pixels():
    env = GymEnv(PONG)
    spec = env.observation_spec
    assert spec.keys() == ["pixels"]
    assert spec["pixels"].shape == (210, 160, 3) and spec["pixels"].dtype == torch.uint8
    stepped = env.step(env.rand_action(env.reset()))
    assert "observation" not in stepped.keys() and "observation" not in stepped["next"].keys()
    assert stepped["next", "pixels"].dtype == torch.uint8
    assert stepped["next", "pixels"].shape == (210, 160, 3)


def test_classic_control_keeps_observation():
    env = GymEnv("CartPole-v1")
    assert env.observation_spec.keys() == ["observation"]
    assert env.whole_observation_key == "observation"
    assert env.make_kwargs == {}


# -- every rollout path gives the generic path's result on pixels ------------------------------

PIXEL_ENVS = {
    "gym": lambda: GymEnv(PONG, **PONG_KWARGS),
    "sub_envs": lambda: SerialEnv(2, lambda: GymEnv(PONG, **PONG_KWARGS)),
    "vector": lambda: ParallelEnv(2, lambda: GymEnv(PONG, **PONG_KWARGS)),
}


@pytest.mark.parametrize("loop", list(PIXEL_ENVS))
def test_pong_array_loop_equals_generic(loop):
    env = PIXEL_ENVS[loop]()
    try:
        loops, array, generic = on_both_paths(env, pixel_policy(env), break_when_any_done=False)
    finally:
        env.close()
    assert loops == [loop]
    assert_same_tensordict(array, generic)
    assert generic["pixels"].dtype == torch.uint8
    assert generic["next", "truncated"].any()  # the rollouts went through resets
    assert generic["action"].argmax(-1).unique().numel() > 1


def test_dict_observation_of_one_observation_entry_on_the_array_path():
    """A Dict space whose only entry is "observation" is a dict, not a whole observation."""
    made = gym.make("CartPole-v1", render_mode="rgb_array")
    pixels = gym.wrappers.AddRenderObservation(made, render_only=False, obs_key="observation")
    env = GymEnv(gym.wrappers.FilterObservation(pixels, ["observation"]))
    assert env.whole_observation_key is None
    spec = env.single_action_spec
    policy = QValueActor(nn.Linear(4, 2), spec=spec)
    loops, array, generic = on_both_paths(env, policy, steps=30, break_when_any_done=False)
    assert loops == ["gym"]
    assert_same_tensordict(array, generic)


# -- from_pixels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pixels_only", [True, False])
def test_from_pixels_array_loop_equals_generic(pixels_only):
    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=pixels_only)
    loops, array, generic = on_both_paths(env, pixel_policy(env), steps=40,
                                          break_when_any_done=False)  # fmt: skip
    assert loops == ["gym"]
    assert_same_tensordict(array, generic)
    assert ("observation" in generic.keys()) is not pixels_only


def test_from_pixels_frames_are_the_renders():
    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=False)
    env.set_seed(3)
    root = env.reset()
    reference = gym.make("CartPole-v1", render_mode="rgb_array")
    state, _ = reference.reset(seed=3)
    assert np.array_equal(root["observation"].numpy(), state)
    assert np.array_equal(root["pixels"].numpy(), reference.render())
    spec = env.observation_spec["pixels"]
    assert spec.dtype == torch.uint8 and spec.shape == (400, 600, 3)


@pytest.mark.parametrize("pixels_only", [True, False])
def test_from_pixels_env_is_rebuilt_from_env_id_and_make_kwargs(pixels_only):
    env = GymEnv("Pendulum-v1", from_pixels=True, pixels_only=pixels_only, g=9.0)
    assert env.make_kwargs == {"g": 9.0, "from_pixels": True, "pixels_only": pixels_only}
    # as the runtime rebuilds an artifact's env (render=True adds render_mode)
    for extra in ({}, {"render_mode": "rgb_array"}):
        rebuilt = GymEnv(env.env_id, **env.make_kwargs, **extra)
        assert rebuilt.observation_spec == env.observation_spec
        assert rebuilt.env.unwrapped.g == 9.0


def test_from_pixels_wraps_an_env_instance_that_renders():
    env = GymEnv(gym.make("CartPole-v1", render_mode="rgb_array"), from_pixels=True)
    assert env.observation_spec.keys() == ["pixels"]
    assert env.reset()["pixels"].shape == (400, 600, 3)


def test_from_pixels_on_an_env_that_does_not_render_says_how_to_fix():
    fix = r"received render_mode=None; make it with render_mode='rgb_array'"
    with pytest.raises(ValueError, match=fix):
        GymEnv(gym.make("CartPole-v1"), from_pixels=True)


def test_from_pixels_on_pong_changes_nothing():
    """As in TorchRL: an env observing an image already is not wrapped again."""
    env = GymEnv(PONG, from_pixels=True)
    assert env.observation_spec == GymEnv(PONG).observation_spec
    assert not isinstance(env.env, gym.wrappers.AddRenderObservation)


# -- fake_tensordict ---------------------------------------------------------------------------

FAKE_ENVS = {
    "cartpole": lambda: GymEnv("CartPole-v1"),
    "pong": lambda: GymEnv(PONG),
    "from_pixels_and_state": lambda: GymEnv("Pendulum-v1", from_pixels=True, pixels_only=False),
    "serial": lambda: SerialEnv(2, lambda: GymEnv("Pendulum-v1")),
    "transformed": lambda: TransformedEnv(GymEnv("CartPole-v1"), StepCounter()),
}


def layout(tensordict):
    """``[(key, shape, dtype)]`` of every leaf, in order."""
    keys = tensordict.keys(include_nested=True, leaves_only=True)
    return [(key, tensordict.get(key).shape, tensordict.get(key).dtype) for key in keys]


@pytest.mark.parametrize("name", list(FAKE_ENVS))
def test_fake_tensordict_is_a_step_of_zeros(name):
    env = FAKE_ENVS[name]()
    try:
        fake = env.fake_tensordict()
        stepped = env.step(env.rand_action(env.reset()))
    finally:
        env.close()
    assert fake.batch_size == env.batch_size and fake.device == env.device
    assert sorted(layout(fake), key=str) == sorted(layout(stepped), key=str)
    assert all(not value.any() for value in fake.values(include_nested=True, leaves_only=True))
