"""Round trips beyond the zoo: nested keys, two inputs, a ConvNet, folded transforms, .pt2."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import onnx
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential

from rlpol import (
    MLP,
    Actor,
    ArtifactError,
    ConvNet,
    DoubleToFloat,
    ExportError,
    GymEnv,
    ObservationNorm,
    TransformedEnv,
    export_policy,
    load_policy,
)
from rlpol.verify import check_artifact, compare_on_inputs


def _assert_matches(policy, path, inputs, **kwargs):
    exported = load_policy(path, trust_code=True)  # .pt2 files made by this test
    for batch in (1, 7, 64):
        report = compare_on_inputs(policy, exported, inputs[:batch], **kwargs)
        assert report.ok, report.rows()
    return exported


class _Concat(torch.nn.Module):
    def forward(self, position, touch):
        return torch.cat([position, touch.float()], dim=-1)


class _DictObsEnv(gym.Env):
    """Dict observation with a nested entry; continuous action."""

    observation_space = gym.spaces.Dict(
        {
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "sensors": gym.spaces.Dict({"touch": gym.spaces.MultiBinary(3)}),
        }
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(np.sum(action)), False, self.t >= 20, {}

    def _obs(self):
        rng = self.np_random
        return {
            "position": rng.uniform(-1, 1, 2).astype(np.float32),
            "sensors": {"touch": rng.integers(0, 2, 3).astype(np.int8)},
        }


def _two_input_policy():
    features = TensorDictModule(
        _Concat(), in_keys=["position", ("sensors", "touch")], out_keys=[("agent", "features")]
    )
    head = TensorDictModule(
        MLP(5, 2, num_cells=[16]), in_keys=[("agent", "features")], out_keys=["action"]
    )
    return TensorDictSequential(features, head)


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".pt2"])
def test_dict_observation_two_inputs_and_nested_keys(tmp_path, suffix):
    env = GymEnv(_DictObsEnv())
    policy = _two_input_policy()
    path = export_policy(policy, tmp_path / f"dict{suffix}", env=env)
    exported = _assert_matches(policy, path, env.observation_spec.rand((64,)))
    names = {info.key: info.name for info in exported.metadata.inputs}
    assert names == {"position": "position", ("sensors", "touch"): "sensors.touch"}
    outputs = {info.key: info.name for info in exported.metadata.outputs}
    assert outputs[("agent", "features")] == "agent.features"
    assert exported.metadata.inputs[1].dtype == "int8"
    if suffix == ".onnx":
        graph_inputs = [value.name for value in onnx.load(path).graph.input]
        assert graph_inputs == ["position", "sensors.touch"]
    report = check_artifact(env, policy, exported, steps=100)
    assert report.ok, report.rows()


def test_key_with_a_dot_is_escaped_and_round_trips(tmp_path):
    policy = TensorDictModule(
        torch.nn.Linear(3, 2), in_keys=[("obs.v1", "x")], out_keys=[("out", "a.b")]
    )
    example = TensorDict({("obs.v1", "x"): torch.randn(4, 3)}, batch_size=[4])
    path = export_policy(policy, tmp_path / "dots.onnx", example=example)
    inputs = TensorDict({("obs.v1", "x"): torch.randn(64, 3)}, batch_size=[64])
    exported = _assert_matches(policy, path, inputs)
    assert exported.metadata.inputs[0].name == "obs\\.v1.x"
    assert exported.in_keys == [("obs.v1", "x")]
    assert exported.out_keys == [("out", "a.b")]


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_convnet_pixel_policy(tmp_path, suffix):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        ConvNet(num_cells=[8, 8], kernel_sizes=3, strides=2), torch.nn.LazyLinear(4)
    )
    policy = Actor(net, in_keys=["pixels"])
    example = TensorDict({"pixels": torch.rand(2, 3, 32, 32)}, batch_size=[2])
    policy(example)  # materialise the lazy layers
    path = export_policy(policy, tmp_path / f"pixels{suffix}", example=example)
    pixels = TensorDict({"pixels": torch.rand(64, 3, 32, 32)}, [64])
    exported = _assert_matches(policy, path, pixels)
    assert exported.metadata.inputs[0].shape == (3, 32, 32)


class _Float64Env(gym.Env):
    observation_space = gym.spaces.Box(-10, 10, (3,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-5, 5, 3)
        return self.state.copy(), {}

    def step(self, action):
        self.state = self.state * 0.9 + float(action[0])
        return self.state.copy(), -float(np.abs(self.state).sum()), False, False, {}


def test_folded_transforms_take_raw_observations(tmp_path):
    loc, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 4.0, 0.25])
    torch.manual_seed(0)
    policy = Actor(MLP(3, 1, num_cells=[16]))
    env = TransformedEnv(GymEnv(_Float64Env()), DoubleToFloat())
    env.append_transform(ObservationNorm(loc, scale, standard_normal=True))
    path = export_policy(policy, tmp_path / "folded.onnx", env=env)
    exported = load_policy(path, trust_code=True)
    # the artifact reads the raw float64 observation and normalises it itself
    assert exported.metadata.inputs[0].dtype == "float64"
    assert [t["type"] for t in exported.metadata.transforms] == ["DoubleToFloat", "ObservationNorm"]
    raw = torch.randn(5, 3, dtype=torch.float64) * 5
    eager = policy(TensorDict({"observation": ((raw.float() - loc) / scale)}, [5]))
    out = exported(TensorDict({"observation": raw}, [5]))
    torch.testing.assert_close(out["action"], eager["action"], atol=1e-5, rtol=1e-5)
    report = check_artifact(env, policy, exported, steps=200)
    assert report.ok, report.rows()
    # without folding, the artifact expects normalised float32 observations
    path = export_policy(policy, tmp_path / "unfolded.onnx", env=env, fold_transforms=False)
    assert load_policy(path, trust_code=True).metadata.inputs[0].dtype == "float32"


def test_batch_axis_serves_1_7_and_4096(tmp_path):
    policy = Actor(MLP(4, 2, num_cells=[8]))  # a float action: no env's spec, an example
    example = TensorDict({"observation": torch.zeros(4)}, [])
    exported = load_policy(export_policy(policy, tmp_path / "b.onnx", example=example), trust_code=True)
    for batch in (1, 7, 4096):
        td = exported(TensorDict({"observation": torch.randn(batch, 4)}, [batch]))
        assert td["action"].shape == (batch, 2)
    td = exported(TensorDict({"observation": torch.randn(2, 3, 4)}, [2, 3]))
    assert td["action"].shape == (2, 3, 2)


def test_pt2_needs_trust_to_load(tmp_path):
    env = GymEnv("CartPole-v1")
    path = export_policy(Actor(MLP(4, 2, num_cells=[8])), tmp_path / "p.pt2",
                         example=env.observation_spec.rand((3,)).select("observation"))
    with pytest.raises(ArtifactError, match=r"torch.export \(.pt2\) archive.*trust_code=True"):
        load_policy(path)
    assert load_policy(path, trust_code=True).metadata.artifact_format == "exported_program"


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"suffix must be one of \['.aoti.pt2', '.onnx', '.pt', '.pt2'\]"):
        export_policy(Actor(MLP(4, 2)), tmp_path / "x.tflite", env=GymEnv("CartPole-v1"))
    assert not (tmp_path / "x.tflite").exists()
