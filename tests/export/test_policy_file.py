"""Loading policy.py files: every accepted form, and one clear error per mistake."""

from __future__ import annotations

import hashlib
import re
import sys
import textwrap

import pytest
import torch
from tensordict.nn import TensorDictModuleBase

from rlpol.errors import PolicyFileError
from rlpol.export.policy_file import LoadedPolicyFile, load_policy_file

HEADER = """\
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential


class Env:
    \"\"\"A stand-in env: what load_policy_file checks is reset/step/action_spec.\"\"\"

    action_spec = None
    closed = False

    def reset(self):
        return None

    def step(self, tensordict):
        return tensordict

    def close(self):
        Env.closed = True


def linear_policy():
    return TensorDictModule(torch.nn.Linear(4, 2), in_keys=["observation"], out_keys=["action"])

"""

AFTER_HEADER = HEADER.count("\n") + 1  # the first line of a body written after HEADER
MAKE_ENV = "def make_env():\n    return Env()\n"
MAKE_POLICY = "def make_policy(env):\n    return linear_policy()\n"
ENV_OBJECT = "env = Env()\n"
POLICY_OBJECT = "policy = linear_policy()\n"


def write(tmp_path, body: str, name: str = "policy.py", *, header: bool = True):
    path = tmp_path / name
    path.write_text((HEADER if header else "") + textwrap.dedent(body))
    return path


GOOD = {
    "factories": MAKE_ENV + MAKE_POLICY,
    "objects": ENV_OBJECT + POLICY_OBJECT,
    "env object, policy factory": ENV_OBJECT + MAKE_POLICY,
    "env factory, policy object": MAKE_ENV + POLICY_OBJECT,
    "objects win over factories": ENV_OBJECT
    + POLICY_OBJECT
    + "def make_env():\n    raise AssertionError\ndef make_policy(env):\n    raise AssertionError\n",
    "non-env `env` falls back to make_env": "env = 'CartPole'\n" + MAKE_ENV + MAKE_POLICY,
    "sequential policy": MAKE_ENV
    + "def make_policy(env):\n    return TensorDictSequential(linear_policy())\n",
}


@pytest.mark.parametrize("body", GOOD.values(), ids=GOOD.keys())
def test_accepted_forms(tmp_path, body):
    path = write(tmp_path, body)
    loaded = load_policy_file(path)
    assert isinstance(loaded, LoadedPolicyFile)
    assert isinstance(loaded.policy, TensorDictModuleBase)
    assert type(loaded.env).__name__ == "Env"
    assert loaded.path == path.resolve()
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.module.__file__ == str(path.resolve())


def test_make_policy_gets_the_env_and_the_file_runs_once(tmp_path):
    counter = tmp_path / "runs.txt"
    body = f"""\
    open({str(counter)!r}, "a").write("x")
    SEEN = []

    def make_env():
        return Env()

    def make_policy(env):
        SEEN.append(env)
        return linear_policy()
    """
    loaded = load_policy_file(write(tmp_path, body))
    assert loaded.module.SEEN == [loaded.env]
    assert counter.read_text() == "x"


def test_imports_its_neighbours_and_restores_sys_path(tmp_path):
    (tmp_path / "my_networks.py").write_text(
        "import torch\n\ndef network():\n    return torch.nn.Linear(4, 2)\n"
    )
    body = """\
    from my_networks import network

    def make_env():
        return Env()

    def make_policy(env):
        import my_networks  # a lazy import in a factory works too
        return TensorDictModule(my_networks.network(), in_keys=["observation"], out_keys=["a"])
    """
    before = list(sys.path)
    try:
        loaded = load_policy_file(write(tmp_path, body))
    finally:
        sys.modules.pop("my_networks", None)
    assert isinstance(loaded.policy.module, type(loaded.module.network()))
    assert sys.path == before


def test_two_loads_are_two_modules(tmp_path):
    path = write(tmp_path, MAKE_ENV + MAKE_POLICY)
    first, second = load_policy_file(path), load_policy_file(path)
    assert first.module is not second.module
    assert first.module.__name__ in sys.modules


def test_env_made_by_make_env_is_closed_when_make_policy_fails(tmp_path):
    marker = tmp_path / "closed.txt"
    body = f"""\
    class ClosingEnv(Env):
        def close(self):
            open({str(marker)!r}, "w").write("closed")

    def make_env():
        return ClosingEnv()

    def make_policy(env):
        return None
    """
    with pytest.raises(PolicyFileError, match="returned None"):
        load_policy_file(write(tmp_path, body))
    assert marker.read_text() == "closed"


@pytest.mark.parametrize("body", ["raise RuntimeError('boom')\n", MAKE_ENV])
def test_failed_loads_are_not_left_in_sys_modules(tmp_path, body):
    names = set(sys.modules)
    with pytest.raises(PolicyFileError):
        load_policy_file(write(tmp_path, body))
    assert not [n for n in set(sys.modules) - names if n.startswith("_rlpol_policy_file_")]


BAD = [
    ("syntax", "def make_env(:\n", False, r"has a syntax error at line 1: .*; fix the file"),
    ("indent", "def make_env():\nreturn 1\n", False, r"syntax error at line 2: expected an indent"),
    (
        "missing module",
        "import not_a_module_xyz\n",
        False,
        r"importing policy file '.*policy\.py' raised ModuleNotFoundError: No module named "
        r"'not_a_module_xyz' \(line 1\); install the missing module or fix the import",
    ),
    (
        "raise",
        "raise RuntimeError('boom')\n",
        True,
        rf"raised RuntimeError: boom \(line {AFTER_HEADER}\)",
    ),
    ("exit", "import sys\nsys.exit(2)\n", False, r"raised SystemExit: 2 \(line 2\); fix the file"),
    (
        "make_env raises",
        "def make_env():\n    raise ValueError('no env')\n" + MAKE_POLICY,
        True,
        r"make_env\(\) in policy file '.*' raised ValueError: no env "
        rf"\(line {AFTER_HEADER + 1}\); fix make_env",
    ),
    (
        "make_policy raises",
        MAKE_ENV + "def make_policy(env):\n    return {}['weights']\n",
        True,
        r"make_policy\(env\) in policy file '.*' raised KeyError: 'weights' "
        rf"\(line {AFTER_HEADER + 3}\); fix make_policy",
    ),
    (
        "nothing",
        "x = 1\n",
        False,
        r"defines neither an environment nor a policy: rlpol looks for a `make_env\(\)` "
        r"function or an `env` object, and a `make_policy\(env\)` function or a `policy` "
        r"object, but the file defines only x",
    ),
    ("empty", "", False, "defines neither an environment nor a policy: .* no public names"),
    (
        "no env",
        "import torch\n" + MAKE_POLICY,
        False,
        r"defines no environment: rlpol looks for a `make_env\(\)` function or an `env` "
        r"object, but the file defines only make_policy$",
    ),
    (
        "no policy",
        MAKE_ENV,
        True,
        r"defines no policy: rlpol looks for a `make_policy\(env\)` function or a `policy` "
        r"object, but the file defines only Env, TensorDictModule, TensorDictSequential, "
        r"linear_policy, make_env",
    ),
    (
        "make_policy returns None",
        MAKE_ENV + "def make_policy(env):\n    linear_policy()\n",
        True,
        r"make_policy\(env\) in policy file '.*' returned None; expected a "
        r"tensordict\.nn\.TensorDictModuleBase \(is a `return` missing\?\)",
    ),
    (
        "make_policy returns nn.Module",
        MAKE_ENV + "def make_policy(env):\n    return torch.nn.Linear(4, 2)\n",
        True,
        r"returned a plain torch\.nn\.Module \(Linear\) that does not read and write "
        r'TensorDicts; .*wrap it as `TensorDictModule\(module, in_keys=\["observation"\], '
        r'out_keys=\["action"\]\)`',
    ),
    (
        "policy object is nn.Module",
        MAKE_ENV + "policy = torch.nn.Linear(4, 2)\n",
        True,
        r"`policy` in policy file '.*' is a plain torch\.nn\.Module \(Linear\)",
    ),
    (
        "make_policy returns a str",
        MAKE_ENV + "def make_policy(env):\n    return 'policy'\n",
        True,
        r"returned a str \('policy'\); expected a tensordict\.nn\.TensorDictModuleBase",
    ),
    (
        "make_env returns an int",
        "def make_env():\n    return 42\n" + MAKE_POLICY,
        True,
        r"make_env\(\) in policy file '.*' returned an int \(42\); expected an rlpol env "
        r"\(with reset, step, action_spec\)",
    ),
    (
        "env object is not an env",
        "env = 'CartPole-v1'\n" + MAKE_POLICY,
        True,
        r"`env` in policy file '.*' is a str \('CartPole-v1'\), not an rlpol env",
    ),
    (
        "make_env not callable",
        "make_env = 3\n" + MAKE_POLICY,
        True,
        r"`make_env` in policy file '.*' is an int \(3\), not a function; define it as "
        r"`def make_env\(\):`",
    ),
    (
        "make_env needs arguments",
        "def make_env(seed):\n    return Env()\n" + MAKE_POLICY,
        True,
        r"`make_env` in policy file '.*' cannot be called as make_env\(\) \(missing a "
        r"required argument: 'seed'\); rlpol calls make_env\(\) with no arguments",
    ),
    (
        "make_policy takes no env",
        MAKE_ENV + "def make_policy():\n    return linear_policy()\n",
        True,
        r"cannot be called as make_policy\(env\) \(too many positional arguments\)",
    ),
]


@pytest.mark.parametrize(("body", "header", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_policy_files(tmp_path, body, header, match):
    path = write(tmp_path, body, header=header)
    with pytest.raises(PolicyFileError, match=match):
        load_policy_file(path)


def test_bad_paths(tmp_path):
    with pytest.raises(PolicyFileError, match=r"'.*missing\.py' does not exist; pass the path"):
        load_policy_file(tmp_path / "missing.py")
    write(tmp_path, MAKE_ENV + MAKE_POLICY)
    with pytest.raises(PolicyFileError, match=r"is a directory; pass the .py file inside it such"):
        load_policy_file(tmp_path)
    text = write(tmp_path, MAKE_ENV + MAKE_POLICY, "policy.txt")
    with pytest.raises(PolicyFileError, match=r"is not a Python file; expected a \.py file"):
        load_policy_file(text)
    artifact = write(tmp_path, "", "policy.onnx", header=False)
    with pytest.raises(PolicyFileError, match="looks like an exported artifact"):
        load_policy_file(artifact)


def test_with_a_real_gym_env(tmp_path):
    pytest.importorskip("gymnasium")
    body = """\
    from rlpol.toolkit.envs import GymEnv

    def make_env():
        return GymEnv("CartPole-v1")

    def make_policy(env):
        return linear_policy()
    """
    loaded = load_policy_file(write(tmp_path, body))
    try:
        assert type(loaded.env).__name__ == "GymEnv"
    finally:
        loaded.env.close()


# ---------------------------------------------------------------------------------------
# Lazy layers: materialised once, deterministically, on the env's (transformed) observation
# ---------------------------------------------------------------------------------------

LAZY_POLICY = """\
import torch

from rlpol.toolkit.envs import GymEnv, IndexSelect, TransformedEnv
from rlpol.toolkit.modules import MLP, QValueActor


def make_env():
    env = GymEnv("CartPole-v1")
    return TransformedEnv(env, IndexSelect([0, 2])) if {masked} else env


def make_policy(env):
    global AFTER_MAKE_POLICY
    if {seeded}:
        torch.manual_seed(0)  # the output layer; the first (lazy) one has no weights yet
    net = MLP(in_features=None, out_features=2, num_cells=[32])
    policy = QValueActor(net, in_keys=[{key!r}], spec=env.action_spec)
    AFTER_MAKE_POLICY = torch.get_rng_state()
    return policy
"""


def write_lazy(
    tmp_path, *, masked: bool = False, key: str = "observation", seeded: bool = True
):
    path = tmp_path / "lazy_policy.py"
    path.write_text(LAZY_POLICY.format(masked=masked, key=key, seeded=seeded))
    return path


def lazy_parameters(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if torch.nn.parameter.is_lazy(p)]


@pytest.mark.parametrize("masked", [False, True], ids=["raw", "transformed"])
def test_lazy_layers_are_materialised_on_the_observation_spec(tmp_path, masked):
    """The first layer's width is the one the policy reads: IndexSelect keeps 2 of 4."""
    loaded = load_policy_file(write_lazy(tmp_path, masked=masked))
    try:
        assert lazy_parameters(loaded.policy) == []
        first = loaded.policy.module[0].module[0]
        assert type(first) is torch.nn.Linear
        assert first.in_features == (2 if masked else 4)
    finally:
        loaded.env.close()


def test_lazy_weights_are_the_same_whatever_the_callers_rng(tmp_path):
    """Even when make_policy does not seed: the lazy layer's weights come from LAZY_INIT_SEED."""
    path = write_lazy(tmp_path, seeded=False)
    first = load_policy_file(path)
    torch.manual_seed(123)
    torch.rand(1000)  # the caller's stream is somewhere else entirely now
    second = load_policy_file(path)
    try:
        layers = [loaded.policy.module[0].module[0] for loaded in (first, second)]
        assert torch.equal(layers[0].weight, layers[1].weight)
        assert torch.equal(layers[0].bias, layers[1].bias)
        assert layers[0].weight.shape == (32, 4)
    finally:
        first.env.close()
        second.env.close()


def test_materialising_leaves_the_callers_rng_where_make_policy_left_it(tmp_path):
    loaded = load_policy_file(write_lazy(tmp_path))
    try:
        assert torch.equal(torch.get_rng_state(), loaded.module.AFTER_MAKE_POLICY)
    finally:
        loaded.env.close()


def test_materialising_runs_in_eval_mode_and_keeps_the_training_flags(tmp_path):
    """A lazy batch norm is sized without updating its running statistics, then trains on."""
    body = """\
    from rlpol.toolkit.envs import GymEnv
    from rlpol.toolkit.modules import QValueActor

    def make_env():
        return GymEnv("CartPole-v1")

    def make_policy(env):
        net = torch.nn.Sequential(torch.nn.LazyBatchNorm1d(), torch.nn.Linear(4, 2))
        return QValueActor(net, spec=env.action_spec)  # left in training mode
    """
    loaded = load_policy_file(write(tmp_path, body))
    try:
        norm = loaded.policy.module[0].module[0]
        assert type(norm) is torch.nn.BatchNorm1d and norm.num_features == 4
        assert int(norm.num_batches_tracked) == 0
        assert torch.equal(norm.running_mean, torch.zeros(4))
        assert all(module.training for module in loaded.policy.modules())
    finally:
        loaded.env.close()


def test_lazy_policy_that_cannot_run_on_the_spec_says_how_to_fix_it(tmp_path):
    path = write_lazy(tmp_path, key="pixels")
    with pytest.raises(PolicyFileError, match=(
        r"policy file '.*lazy_policy\.py' has uninitialised lazy modules \(module\.0\.module\.0: "
        r"LazyLinear\).*zeros of the env's observation spec.*raised.*pixels.*; run the "
        r"policy once on an example observation in make_policy, or give the lazy layers "
        r"their input sizes \(in_features=\.\.\.\)"
    )):  # fmt: skip
        load_policy_file(path)


def test_lazy_layer_the_policy_never_calls_is_named(tmp_path):
    body = """\
    from rlpol.toolkit.envs import GymEnv
    from rlpol.toolkit.modules import QValueActor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = torch.nn.Linear(4, 2)
            self.spare = torch.nn.LazyLinear(2)  # never called by forward

        def forward(self, observation):
            return self.used(observation)

    def make_env():
        return GymEnv("CartPole-v1")

    def make_policy(env):
        return QValueActor(Net(), spec=env.action_spec)
    """
    with pytest.raises(PolicyFileError, match=(
        r"lazy modules \(module\.0\.module\.spare: LazyLinear\) that rlpol materialises with "
        r"one call on zeros of the env's observation spec, but that call did not reach them; "
        r"run the policy once"
    )):  # fmt: skip
        load_policy_file(write(tmp_path, body))


def export_and_check(path, artifact, *, steps: int = 50):
    """``rlpol export PATH -o ARTIFACT`` (must pass), then ``rlpol check``'s result.

    torch is reseeded between the two, as two processes start from two random seeds.
    """
    from click.testing import CliRunner

    from rlpol.cli import main

    exported = CliRunner().invoke(main, ["export", str(path), "-o", str(artifact)])
    assert exported.exit_code == 0, exported.output
    torch.manual_seed(1)
    return CliRunner().invoke(main, ["check", str(path), str(artifact), "--steps", str(steps), "--trust-code"])


def float_diffs(output: str) -> dict[str, float]:
    """``rlpol check``'s max |diff| of each float32 field, and of the replay (``"replay"``)."""
    rows = [row.split("|") for row in output.splitlines() if row.startswith("| ")]
    diffs = {row[1].strip(): float(row[4]) for row in rows if row[2].strip() == "float32"}
    replay = re.search(r"replay on identical inputs: \w+ \(max \|diff\| (\S+)\)", output)
    assert replay is not None, output
    return {**diffs, "replay": float(replay.group(1))}


@pytest.mark.parametrize(("suffix", "worst"), [(".pt", 0.0), (".onnx", 1e-6)])
def test_export_then_check_of_a_lazy_policy_file_match(tmp_path, suffix, worst):
    """``rlpol export`` and ``rlpol check`` each load the file: both must build the same net.

    TorchScript runs torch's own kernels (a difference of exactly 0); onnxruntime's round
    differently by about one float32 ulp. Lazy weights drawn twice differ by ~0.5.
    """
    path = write_lazy(tmp_path)
    checked = export_and_check(path, tmp_path / f"lazy{suffix}")
    assert checked.exit_code == 0, checked.output
    diffs = float_diffs(checked.output)
    assert diffs.keys() >= {"action_value", "chosen_action_value", "observation", "replay"}
    assert max(diffs.values()) <= worst


PONG_DQN = """\
import ale_py
import gymnasium
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential

from rlpol.toolkit.envs import GymEnv
from rlpol.toolkit.modules import ConvNet, QValueActor

gymnasium.register_envs(ale_py)


class Frames(torch.nn.Module):
    \"\"\"uint8 [*B, H, W, 3] -> float32 [*B, 3, H, W] in [0, 1].\"\"\"

    def forward(self, pixels):
        return pixels.movedim(-1, -3).float() / 255


def make_env():
    return GymEnv("ALE/Pong-v5")


def make_policy(env):
    torch.manual_seed(0)
    net = ConvNet.default_atari_dqn(env.action_spec.shape[-1])
    return TensorDictSequential(
        TensorDictModule(Frames(), ["pixels"], ["frames"]),
        QValueActor(net, in_keys=["frames"], spec=env.action_spec),
    )
"""


def test_a_pixel_dqn_policy_file_is_materialised_and_exports_with_parity(tmp_path):
    """Both lazy layers of the Nature DQN (conv and linear) sized on Pong's 210x160 RGB frames."""
    pytest.importorskip("ale_py")
    path = tmp_path / "pong.py"
    path.write_text(PONG_DQN)
    loaded = load_policy_file(path)
    try:
        cnn, mlp = loaded.policy[1].module[0].module
        assert (cnn[0].in_channels, mlp[0].in_features) == (3, 64 * 22 * 16)
        assert lazy_parameters(loaded.policy) == []
    finally:
        loaded.env.close()
    checked = export_and_check(path, tmp_path / "pong.pt", steps=10)
    assert checked.exit_code == 0, checked.output
    assert max(float_diffs(checked.output).values()) <= 1e-6


def test_check_of_a_file_with_random_weights_says_so(tmp_path):
    """The output layer is drawn unseeded: export and check build two different policies."""
    checked = export_and_check(write_lazy(tmp_path, seeded=False), tmp_path / "lazy.pt")
    assert checked.exit_code == 1
    assert float_diffs(checked.output)["replay"] > 1e-3
    assert "parity FAILED" in checked.output
    assert (
        "the eager policy differs from the artifact on identical inputs: if "
        f"'{tmp_path / 'lazy_policy.py'}' draws its weights at random (no trained weights "
        "loaded in make_policy, no torch.manual_seed before building the policy), each load "
        "builds a different policy; load the weights the artifact was exported with"
    ) in checked.output
