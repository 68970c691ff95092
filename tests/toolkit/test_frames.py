"""CatFrames: frame stacks in an env (resets, partial resets), as a stateful module (bit for
bit the env's), its specs, its exports, and a pixel Q-policy on raw Pong observations."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torch import nn

from rlpol import (
    MLP,
    CatFrames,
    Compose,
    ConvNet,
    GrayScale,
    GymEnv,
    InitTracker,
    QValueActor,
    Resize,
    SerialEnv,
    SpecError,
    StepCounter,
    TensorDictPrimer,
    ToTensorImage,
    TransformedEnv,
    rollout_plan,
)
from rlpol.toolkit.specs import Bounded, Composite, Unbounded

STATE = "cat_frames_frame"


def _pong() -> GymEnv:
    return GymEnv("ALE/Pong-v5", categorical_action_encoding=True)


def _frames() -> list:
    """Raw Pong ``pixels`` -> one ``frame``, f32 [*, 1, 84, 84] (the screen kept as it is)."""
    return [ToTensorImage(out_keys=["frame"]), Resize(84, in_keys=["frame"]),
            GrayScale(in_keys=["frame"])]  # fmt: skip


def _two_pongs() -> SerialEnv:
    """Two Pongs whose episodes last 3 and 5 steps: rows reset at different steps."""
    return SerialEnv(2, [lambda n=n: gym.make("ALE/Pong-v5", max_episode_steps=n) for n in (3, 5)])


def _q_net(env: TransformedEnv) -> QValueActor:
    """A small conv Q-net reading the stacks at ``frame``, f32 [*, 4, 84, 84]."""
    net = nn.Sequential(ConvNet(4, num_cells=[8, 8], kernel_sizes=[8, 4], strides=[4, 2]),
                        MLP(648, 6, num_cells=[32]))  # fmt: skip
    return QValueActor(net, in_keys=["frame"], spec=env.action_spec)


def _reference_stacks(frames: torch.Tensor, is_init: torch.Tensor, n: int) -> torch.Tensor:
    """Stacks [T, n, 84, 84] of one row's frames [T, 1, 84, 84], rebuilt step by step."""
    stacks, window = [], []
    for frame, init in zip(frames, is_init.squeeze(-1).tolist()):
        window = [frame] * n if init else [*window[1:], frame]
        stacks.append(torch.cat(window))
    return torch.stack(stacks)


# -- in an env ----------------------------------------------------------------------------
def test_a_reset_repeats_the_first_frame_and_a_step_shifts_the_root_stack():
    chain = Compose(*_frames(), CatFrames(4, dim=-3, in_keys=["frame"]), InitTracker(), StepCounter(max_steps=4))
    env = TransformedEnv(_pong(), chain)
    env.set_seed(0)
    rollout = env.rollout(10, break_when_any_done=False)
    stacks, nexts = rollout["frame"], rollout["next", "frame"]
    assert stacks.shape == (10, 4, 84, 84) and env.observation_spec["frame"].shape == (4, 84, 84)
    assert env.observation_spec["frame"].is_in(stacks)
    new_frames = Compose(*_frames())(rollout["next"].select("pixels").clone())["frame"]
    assert torch.equal(nexts[:, 3:], new_frames)  # the frame appended is next's frame
    assert torch.equal(nexts[:, :3], stacks[:, 1:])  # after the oldest frame of time t's stack
    is_init = rollout["is_init"].squeeze(-1)
    assert is_init.tolist() == [True, False, False, False] * 2 + [True, False]
    for t in is_init.nonzero().squeeze(-1).tolist():
        assert torch.equal(stacks[t], stacks[t, :1].expand(4, 84, 84))
    for t in (~is_init).nonzero().squeeze(-1).tolist():
        assert torch.equal(stacks[t], nexts[t - 1])


def test_partial_resets_restart_only_their_rows():
    stack = CatFrames(4, dim=-3, in_keys=["frame"], out_keys=["stack"])
    env = TransformedEnv(_two_pongs(), Compose(*_frames(), stack, InitTracker()))
    env.set_seed(1)
    rollout = env.rollout(11, break_when_any_done=False)
    assert env.observation_spec["stack"].shape == (2, 4, 84, 84)
    assert rollout["frame"].shape == (2, 11, 1, 84, 84)  # the in_key keeps its frame
    starts = [rollout["is_init"][row].squeeze(-1).nonzero().squeeze(-1).tolist() for row in (0, 1)]
    assert starts == [[0, 3, 6, 9], [0, 5, 10]]
    for row in (0, 1):
        expected = _reference_stacks(rollout["frame"][row], rollout["is_init"][row], 4)
        assert torch.equal(rollout["stack"][row], expected)


# -- as a module --------------------------------------------------------------------------
def test_the_module_rebuilds_every_env_stack_bit_for_bit():
    env = TransformedEnv(_two_pongs(), Compose(*_frames(), CatFrames(4, dim=-3, in_keys=["frame"]), InitTracker()))
    env.set_seed(2)
    rollout = env.rollout(11, break_when_any_done=False)
    module, state = env.transform, None
    for t in range(11):
        td = rollout[:, t].select("pixels", "is_init").clone()
        if state is not None:
            td[STATE] = state
        out = module(td)
        assert torch.equal(out["frame"], rollout["frame"][:, t]), t
        state = out["next", STATE]
        assert state is out["frame"]


def test_a_q_policy_on_raw_pong_observations_acts_as_on_the_env_stacks():
    chain = Compose(*_frames(), CatFrames(4, dim=-3, in_keys=["frame"]), InitTracker(), StepCounter(max_steps=5))
    env = TransformedEnv(_pong(), chain)
    q_net = _q_net(env)
    env.set_seed(3)
    rollout = env.rollout(8, q_net, break_when_any_done=False)
    policy = TensorDictSequential(env.transform[:-1], q_net)
    assert policy.in_keys == ["pixels", STATE, "is_init"]
    out = policy(rollout[0].select("pixels").clone())  # one raw observation, no state
    assert torch.equal(out["action_value"], rollout[0]["action_value"])
    for t in range(1, 8):
        td = rollout[t].select("pixels", "is_init").clone().set(STATE, out["next", STATE])
        out = policy(td)
        assert torch.equal(out["action_value"], rollout[t]["action_value"]), t
        assert out["action"] == rollout[t]["action"]


def test_forward_resets_where_is_init_over_any_batch_dims():
    cat = CatFrames(3, dim=-1, in_keys=["x"], out_keys=["stack"], state_key="s")
    frame = torch.arange(6.0).reshape(2, 3, 1)
    previous = torch.full((2, 3, 3), -1.0)
    is_init = torch.tensor([[[True], [False], [False]], [[False], [True], [False]]])
    td = cat(TensorDict(x=frame, s=previous, is_init=is_init, batch_size=[2, 3]))
    fresh, shifted = frame.expand(2, 3, 3), torch.cat([previous[..., 1:], frame], -1)
    expected = torch.where(is_init, fresh, shifted)
    assert torch.equal(td["stack"], expected) and torch.equal(td["next", "s"], expected)
    no_init = cat(TensorDict(x=frame, s=previous, batch_size=[2, 3]))
    assert torch.equal(no_init["stack"], shifted)  # no is_init: every row continues
    no_state = cat(TensorDict(x=frame, is_init=torch.zeros_like(is_init), batch_size=[2, 3]))
    assert torch.equal(no_state["stack"], fresh)  # no state: a first step
    assert cat.in_keys == ["x", "s", "is_init"] and cat.out_keys == ["stack", ("next", "s")]


def test_constant_padding_and_a_single_frame():
    frame = torch.tensor([[2.0, 3.0]])
    cat = CatFrames(3, dim=-1, in_keys=["x"], padding="constant", padding_value=-1.0)
    assert cat(TensorDict(x=frame, batch_size=[1]))["x"].tolist() == [[-1, -1, -1, -1, 2, 3]]
    root = cat.on_reset(TensorDict(x=frame, batch_size=[1]))
    stepped = cat.on_step(root, TensorDict(x=frame + 2, batch_size=[1]))
    assert stepped["x"].tolist() == [[-1.0, -1.0, 2.0, 3.0, 4.0, 5.0]]
    single = CatFrames(1, dim=-1, in_keys=["x"])
    assert torch.equal(single(TensorDict(x=frame, batch_size=[1]))["x"], frame)
    assert torch.equal(single(TensorDict(x=frame, cat_frames_x=-frame, batch_size=[1]))["x"], frame)


def test_exports_to_onnx_with_a_dynamic_batch_and_traces(export_module):
    cat = CatFrames(4, dim=-3)

    def inputs(batch):
        init = torch.arange(batch)[:, None] % 2 == 0
        return torch.rand(batch, 1, 6, 5), torch.rand(batch, 4, 6, 5), init

    exported = export_module(cat, cat.in_keys, cat.out_keys, inputs(3))
    for batch in (1, 5):
        args = inputs(batch)
        eager = exported.eager(*args)
        assert torch.equal(eager[0][0], args[0][0].expand(4, 6, 5))  # row 0 starts
        for out in (exported.onnx(*args), exported.traced(*args)):
            assert len(out) == 2
            for got, want in zip(out, eager):
                torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_pixel_policy_on_raw_observations_exports_and_traces(export_module):
    chain = Compose(*_frames(), CatFrames(4, dim=-3, in_keys=["frame"]), InitTracker(), StepCounter())
    env = TransformedEnv(_pong(), chain)
    policy = TensorDictSequential(env.transform[:-1], _q_net(env))

    def inputs(batch):
        observation = torch.randint(0, 256, (batch, 210, 160, 3), dtype=torch.uint8)
        return observation, torch.rand(batch, 4, 84, 84), torch.arange(batch)[:, None] % 2 == 0

    outputs = ["action_value", ("next", STATE)]
    exported = export_module(policy, policy.in_keys, outputs, inputs(3))
    for batch in (1, 5):
        args = inputs(batch)
        eager = exported.eager(*args)
        for got, want in zip(exported.onnx(*args), eager):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        for got, want in zip(exported.traced(*args), eager):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


# -- specs, keys, metadata ----------------------------------------------------------------
def test_stack_and_state_specs_multiply_dim_by_n():
    cat = CatFrames(4, dim=-3)
    frame = Bounded(torch.tensor([0.0, -1.0])[:, None, None], 1.0, (2, 6, 5))
    stack = cat.stack_spec(frame)
    assert stack.shape == (8, 6, 5) and torch.equal(
        stack.low[:, 0, 0], torch.tensor([0.0, -1.0] * 4)
    )
    seen = Composite(pixels=Unbounded((3, 1, 84, 84)), shape=(3,))
    state = cat.state_spec(seen)
    assert state.shape == (3,) and state["cat_frames_pixels"].shape == (3, 4, 84, 84)
    primed = TensorDictPrimer(state).on_reset(TensorDict(batch_size=[3]))
    assert primed["cat_frames_pixels"].shape == (3, 4, 84, 84)
    with pytest.raises(SpecError, match=r"along dim -3, but the frame spec has shape \[5\]"):
        cat.stack_spec(Unbounded((5,)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"N": 0, "dim": -1}, r"number of frames, >= 1; got 0"),
        ({"N": 4, "dim": 0}, r"dim must be < 0"),
        ({"N": 4, "dim": -1, "padding": "zeros"}, r"one of \['same', 'constant'\]"),
        ({"N": 4, "dim": -1, "in_keys": ["a", "b"]}, r"use one CatFrames per entry"),
        ({"N": 4, "dim": -1, "state_key": ("next", "s")}, r"flat string key"),
    ],
)
def test_bad_arguments_say_what_is_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CatFrames(**kwargs)


def test_to_dict_records_n_dim_keys_and_state_key():
    cat = CatFrames(4, dim=-3, in_keys=["pixels"], out_keys=[("agent", "stack")])
    assert cat.to_dict() == {
        "type": "CatFrames", "in_keys": ["pixels"], "out_keys": [("agent", "stack")], "N": 4,
        "dim": -3, "padding": "same", "padding_value": 0.0, "state_key": "cat_frames_agent_stack",
        "init_key": "is_init",
    }  # fmt: skip


def test_rollout_plan_says_which_transform_keeps_the_generic_path():
    chain = Compose(InitTracker(), CatFrames(4, dim=-1, in_keys=["observation"]))
    env = TransformedEnv(GymEnv("CartPole-v1"), chain)
    policy = QValueActor(MLP(16, 2), spec=env.action_spec)
    plan = rollout_plan(env, policy)
    assert plan.path == "generic"
    assert "the transform CatFrames has no array step" in plan.reason
    assert env.rollout(3, policy)["observation"].shape == (3, 16)
