"""TorchRL's own policies, exported by rlpol and replayed in TorchRL's and rlpol's rollouts.

Runs in the interop job (``.ci/run``: torchrl 0.14.1 and tensordict 0.14.3, then rlpol);
skipped where torchrl is not installed. Each TorchRL module of the interop issue is exported
with a TorchRL env (ONNX and TorchScript), loaded with ``load_policy``, and rolled out:

- in TorchRL's ``env.rollout``, against the eager TorchRL policy in the same env;
- in the rlpol env rebuilt from it, against the same eager TorchRL rollout;

compared field by field (floats 1e-5, ints exactly). Policies that explore (``RANDOM``) are
checked on their statistics over 3,000 steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

torchrl = pytest.importorskip("torchrl")

from tensordict.nn import TensorDictModule, TensorDictSequential  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributions import Normal  # noqa: E402
from torchrl import envs as trl_envs  # noqa: E402
from torchrl import modules as trl  # noqa: E402
from torchrl.data import Unbounded  # noqa: E402

from rlpol import export_policy, load_policy  # noqa: E402
from rlpol.errors import ExportError  # noqa: E402
from rlpol.toolkit.from_torchrl import rlpol_env  # noqa: E402
from rlpol.toolkit.modules import ExplorationType, set_exploration_type  # noqa: E402
from rlpol.verify import check_artifact  # noqa: E402
from rlpol.verify.parity import compare_rollouts  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
STEPS = 120
STATISTICS_STEPS = 3000
FORMATS = [".onnx", ".pt"]


def cartpole() -> trl_envs.EnvBase:
    return trl_envs.GymEnv("CartPole-v1")


def pendulum() -> trl_envs.EnvBase:
    return trl_envs.GymEnv("Pendulum-v1")


def normalized_pendulum() -> trl_envs.EnvBase:
    """Pendulum behind an ObservationNorm, which the export folds into the graph."""
    norm = trl_envs.ObservationNorm(loc=torch.tensor([0.0, 0.0, 0.5]),
                                    scale=torch.tensor([1.0, 1.0, 4.0]), in_keys=["observation"])
    return trl_envs.TransformedEnv(pendulum(), norm)


def raw_pong() -> trl_envs.EnvBase:
    import ale_py  # noqa: F401  (registers the ALE/ ids)

    return trl_envs.GymEnv("ALE/Pong-v5", frameskip=4)


def pong() -> trl_envs.EnvBase:
    """Pong's screens as TorchRL preprocesses them (no Resize here: it needs torchvision)."""
    return trl_envs.TransformedEnv(
        raw_pong(),
        trl_envs.Compose(trl_envs.ToTensorImage(in_keys=["pixels"]),
                         trl_envs.GrayScale(in_keys=["pixels"]),
                         trl_envs.CatFrames(2, dim=-3, in_keys=["pixels"])),
    )  # fmt: skip


def with_state(env: trl_envs.EnvBase, module) -> trl_envs.EnvBase:
    """``env`` with ``InitTracker`` and the recurrent module's primer, as TorchRL requires."""
    return trl_envs.TransformedEnv(
        env, trl_envs.Compose(trl_envs.InitTracker(), module.make_tensordict_primer())
    )


def mlp(out: int, cells: int = 32) -> nn.Module:
    return trl.MLP(out_features=out, num_cells=[cells, cells])


def gaussian_params(env) -> TensorDictModule:
    net = nn.Sequential(mlp(2 * env.action_spec.shape[-1]), trl.NormalParamExtractor())
    return TensorDictModule(net, ["observation"], ["loc", "scale"])


def probabilistic(env, distribution_class, **kwargs) -> trl.ProbabilisticActor:
    return trl.ProbabilisticActor(gaussian_params(env), in_keys=["loc", "scale"],
                                  distribution_class=distribution_class, spec=env.action_spec,
                                  return_log_prob=True, **kwargs)  # fmt: skip


def recurrent_qvalue(rnn_class, env_maker):
    def make():
        rnn = rnn_class(input_size=4, hidden_size=16, in_key="observation", out_key="embed")
        env = with_state(env_maker(), rnn)
        head = TensorDictModule(trl.MLP(in_features=16, out_features=2, num_cells=[16]),
                                ["embed"], ["action_value"])  # fmt: skip
        return env, TensorDictSequential(rnn, head, trl.QValueModule(spec=env.action_spec))

    return make


def convnet_qvalue():
    env = pong()
    net = nn.Sequential(
        trl.ConvNet(num_cells=[8, 8], kernel_sizes=[8, 4], strides=[4, 2]),
        trl.MLP(out_features=env.action_spec.shape[-1], num_cells=[32]),
    )
    return env, trl.QValueActor(net, in_keys=["pixels"], spec=env.action_spec)


def pong_with_stack_state(_env) -> trl_envs.EnvBase:
    """Raw Pong, and what the folded CatFrames reads: is_init and its previous stack."""
    stack = Unbounded(shape=(2, 210, 160))
    return trl_envs.TransformedEnv(raw_pong(), trl_envs.Compose(
        trl_envs.InitTracker(), trl_envs.TensorDictPrimer(cat_frames_pixels=stack)))


@dataclass(frozen=True)
class Case:
    """A TorchRL policy and its TorchRL env. An artifact that folded the env's transforms
    takes raw observations: ``raw_env(env)`` is the TorchRL env it runs in then."""

    name: str
    make: Callable[[], tuple[trl_envs.EnvBase, nn.Module]]
    steps: int = STEPS
    raw_env: Callable[[trl_envs.EnvBase], trl_envs.EnvBase] | None = None


def _pair(env_maker, policy_maker):
    def make():
        env = env_maker()
        return env, policy_maker(env)

    return make


CASES = [
    Case("mlp_actor", _pair(pendulum, lambda env: trl.Actor(mlp(1), spec=env.action_spec))),
    Case("folded_observation_norm", _pair(normalized_pendulum,
                                          lambda env: trl.Actor(mlp(1), spec=env.action_spec)),
         raw_env=lambda env: env.base_env),
    Case("qvalue_actor", _pair(cartpole, lambda env: trl.QValueActor(
        mlp(2), in_keys=["observation"], spec=env.action_spec))),
    Case("qvalue_module", _pair(cartpole, lambda env: TensorDictSequential(
        TensorDictModule(mlp(2), ["observation"], ["action_value"]),
        trl.QValueModule(spec=env.action_spec)))),
    Case("convnet_qvalue", convnet_qvalue, steps=40, raw_env=pong_with_stack_state),
    Case("normal", _pair(pendulum, lambda env: probabilistic(env, Normal))),
    Case("tanh_normal", _pair(pendulum, lambda env: probabilistic(
        env, trl.TanhNormal, distribution_kwargs={"low": -2.0, "high": 2.0}))),
    Case("one_hot_categorical", _pair(cartpole, lambda env: trl.ProbabilisticActor(
        TensorDictModule(mlp(2), ["observation"], ["logits"]), in_keys=["logits"],
        distribution_class=trl.OneHotCategorical, spec=env.action_spec, return_log_prob=True))),
    Case("lstm", recurrent_qvalue(trl.LSTMModule, cartpole)),
    Case("gru", recurrent_qvalue(trl.GRUModule, cartpole)),
    Case("egreedy", _pair(cartpole, lambda env: TensorDictSequential(
        trl.QValueActor(mlp(2), in_keys=["observation"], spec=env.action_spec),
        trl.EGreedyModule(env.action_spec, eps_init=0.3, eps_end=0.3)))),
    Case("additive_gaussian", _pair(pendulum, lambda env: TensorDictSequential(
        trl.Actor(mlp(1), spec=env.action_spec),
        trl.AdditiveGaussianModule(env.action_spec, sigma_init=0.4, sigma_end=0.4)))),
    Case("ornstein_uhlenbeck", _pair(lambda: trl_envs.TransformedEnv(
        pendulum(), trl_envs.InitTracker()), lambda env: TensorDictSequential(
        trl.Actor(mlp(1), spec=env.action_spec),
        trl.OrnsteinUhlenbeckProcessModule(env.action_spec)))),
]
CASE_BY_NAME = {case.name: case for case in CASES}


class Exports:
    """Builds each case once per session (seeded), and exports it once per format/exploration."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._built: dict[str, tuple] = {}
        self._paths: dict[tuple, Path] = {}

    def built(self, name: str):
        if name not in self._built:
            torch.manual_seed(0)
            env, policy = CASE_BY_NAME[name].make()
            with torch.no_grad():
                policy(env.reset())  # initialises TorchRL's lazy layers
            self._built[name] = env, policy
        return self._built[name]

    def path(self, name: str, suffix: str, exploration: str = "deterministic") -> Path:
        key = (name, suffix, exploration)
        if key not in self._paths:
            env, policy = self.built(name)
            self._paths[key] = export_policy(
                policy, self.directory / f"{name}-{exploration}{suffix}", env=env,
                exploration=exploration,
            )  # fmt: skip
        return self._paths[key]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("torchrl-exports"))


def torchrl_rollout(env, policy, steps: int, exploration=ExplorationType.DETERMINISTIC):
    env.set_seed(0)  # TorchRL resets here (seed 0); the rollout's reset is the second
    torch.manual_seed(0)
    with torch.no_grad(), set_exploration_type(exploration):
        return env.rollout(steps, policy, break_when_any_done=False)


def rlpol_rollout(env, policy, steps: int):
    env.set_seed(0)  # rlpol seeds the next reset: one reset, then the rollout's (the second)
    env.reset()
    torch.manual_seed(0)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        return env.rollout(steps, policy, break_when_any_done=False)


def assert_same(expected, actual, keys) -> None:
    report = compare_rollouts(expected, actual, atol=1e-5, rtol=1e-5, keys=keys)
    assert report.ok, report.rows()


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_torchrl_module_replays_in_torchrls_rollout_and_in_rlpols(exports, case, suffix):
    env, policy = exports.built(case.name)
    artifact = load_policy(exports.path(case.name, suffix), trust_code=True)
    expected = torchrl_rollout(env, policy, case.steps)
    keys = list(expected.keys(True, True))
    raw = env
    if case.raw_env is not None:  # raw observations differ: compare the policy's outputs
        raw = case.raw_env(env)
        written = {*artifact.out_keys, ("next", "reward"), ("next", "done")}
        keys = [key for key in keys if key in written]
    in_torchrl = torchrl_rollout(raw, artifact, case.steps)
    assert_same(expected, in_torchrl, keys)
    in_rlpol = rlpol_rollout(rlpol_env(raw), artifact, case.steps)
    assert_same(expected, in_rlpol, keys)


def test_the_export_records_the_torchrl_env_and_its_folded_transform(exports):
    metadata = load_policy(exports.path("folded_observation_norm", ".onnx")).metadata
    assert metadata.env_id == "Pendulum-v1"
    assert [t["type"] for t in metadata.transforms] == ["ObservationNorm"]
    assert metadata.transforms[0]["scale"] == [1.0, 1.0, 4.0]
    assert metadata.policy_class == "Actor"
    assert [i.name for i in metadata.inputs] == ["observation"]


def test_a_recurrent_torchrl_module_exports_its_state_pairs(exports):
    metadata = load_policy(exports.path("lstm", ".onnx")).metadata
    assert sorted((s.input, s.output, s.reset_input) for s in metadata.states) == [
        ("recurrent_state_c", "next.recurrent_state_c", "is_init"),
        ("recurrent_state_h", "next.recurrent_state_h", "is_init"),
    ]


def explored_rate(rollout) -> float:
    """The fraction of steps whose action is not the greedy one (argmax of action_value)."""
    greedy = rollout["action_value"].argmax(-1)
    return (rollout["action"].argmax(-1) != greedy).double().mean().item()


def test_egreedy_explores_at_eps_over_3000_steps(exports):
    env, policy = exports.built("egreedy")
    artifact = load_policy(exports.path("egreedy", ".onnx", "random"))
    expected_rate = 0.3 * (1 - 1 / 2)  # a random action is the greedy one half the time
    tolerance = 4 * (expected_rate * (1 - expected_rate) / STATISTICS_STEPS) ** 0.5
    for explorer in (policy, artifact):  # TorchRL's own module, and the artifact
        rollout = torchrl_rollout(env, explorer, STATISTICS_STEPS, ExplorationType.RANDOM)
        assert explored_rate(rollout) == pytest.approx(expected_rate, abs=tolerance)
    report = check_artifact(env, policy, artifact, steps=STATISTICS_STEPS)
    assert report.ok and report.exploration is not None  # not replayable: statistics
    assert [s.original for s in report.replaced_draws] == ["EGreedyModule"]
    (rate,) = report.exploration.statistics
    assert rate.original == pytest.approx(expected_rate, abs=tolerance)
    assert rate.artifact == pytest.approx(expected_rate, abs=tolerance)


@pytest.mark.parametrize("name", ["additive_gaussian", "normal", "tanh_normal"])
def test_gaussian_exploration_replays_torchrls_own_draws_over_3000_steps(exports, name):
    # torch.normal (TorchRL) and torch.randn (rlpol's noise protocol) draw the same numbers
    env, policy = exports.built(name)
    artifact = load_policy(exports.path(name, ".onnx", "random"))
    report = check_artifact(env, policy, artifact, steps=STATISTICS_STEPS)
    assert report.ok and report.exploration is None, report.rows()
    rollout = torchrl_rollout(env, artifact, STATISTICS_STEPS, ExplorationType.RANDOM)
    if name == "additive_gaussian":
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            mean_action = policy[0](rollout.select("observation").clone())["action"]
        noise = (rollout["action"] - mean_action)[rollout["action"].abs() < 1.99]
        assert noise.std().item() == pytest.approx(0.4, rel=0.06)
    else:
        pre = rollout["action"] if name == "normal" else torch.atanh(
            (rollout["action"] / 2).clamp(-0.999, 0.999))  # fmt: skip
        z = (pre - rollout["loc"]) / rollout["scale"]
        assert z.mean().item() == pytest.approx(0.0, abs=0.1)
        assert z.std().item() == pytest.approx(1.0, abs=0.1)


def test_categorical_sampling_matches_torchrls_frequencies_over_3000_steps(exports):
    env, policy = exports.built("one_hot_categorical")
    artifact = load_policy(exports.path("one_hot_categorical", ".onnx", "random"))
    report = check_artifact(env, policy, artifact, steps=STATISTICS_STEPS)
    assert report.ok and report.exploration is not None, report.rows()
    rollout = torchrl_rollout(env, artifact, STATISTICS_STEPS, ExplorationType.RANDOM)
    probabilities = rollout["logits"].softmax(-1)[:, 1].mean().item()
    chosen = rollout["action"][:, 1].double().mean().item()
    assert chosen == pytest.approx(probabilities, abs=4 * (0.25 / STATISTICS_STEPS) ** 0.5)


def test_exploring_ornstein_uhlenbeck_is_an_export_error_with_the_fix(exports, tmp_path):
    env, policy = exports.built("ornstein_uhlenbeck")
    with pytest.raises(ExportError, match=r"OrnsteinUhlenbeckProcessModule.*deterministic"):
        export_policy(policy, tmp_path / "ou.onnx", env=env, exploration="random")
    assert not list(tmp_path.iterdir())


def test_the_tanh_normal_torchscript_export_needs_no_torchrl_autograd_function(exports):
    module = torch.jit.load(exports.path("tanh_normal", ".pt"))
    assert "_SafeTanh" not in module.code


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "rlpol", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600, check=False)  # fmt: skip


def test_the_torchrl_policy_file_exports_and_checks_with_the_cli(tmp_path):
    policy_file = ROOT / "models" / "torchrl_policies" / "pendulum_sac.py"
    artifact = tmp_path / "pendulum_sac.onnx"
    exported = _cli("export", str(policy_file), "-o", str(artifact))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    checked = _cli("check", str(policy_file), str(artifact), "--steps", "300")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "parity ok" in checked.stdout
    # the artifact records the rebuilt env: a fresh process runs it with no policy file
    ran = _cli("run", str(artifact), "--episodes", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    mean_return = float(ran.stdout.split("mean return")[1].split()[0])
    assert mean_return > -300  # the trained weights swing up (untrained: about -1,200)
    explored = tmp_path / "pendulum_sac_random.onnx"
    assert _cli("export", str(policy_file), "-o", str(explored), "--exploration", "random"
                ).returncode == 0  # fmt: skip
    checked = _cli("check", str(policy_file), str(explored), "--steps", "300")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rlpol_imports_torchrl_only_for_torchrl_objects():
    snippet = (
        "import sys, json\n"
        "from rlpol import Actor, GymEnv, MLP, export_policy, load_policy\n"
        "env = GymEnv('Pendulum-v1')\n"
        "path = export_policy(Actor(MLP(3, 1, num_cells=[8])), '/tmp/rlpol-no-torchrl.onnx',"
        " env=env)\n"
        "load_policy(path)\n"
        "print(json.dumps('torchrl' in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True,
                            env=env, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) is False
