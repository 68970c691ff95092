"""The deployment formats of the shipped ``pendulum_normal`` model: ONNX, TorchScript, ``.pt2``
and AOTInductor packages agree with the eager policy where its ``tanh`` saturates, name their
arguments after the graph inputs, and the formats that run stored code need ``trust_code``.

AOTInductor compiles C++ (10-40 s a package on 2 cores): the module compiles two packages,
the deterministic and the stochastic policy, once, in a module-scoped fixture.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from rlpol import export_policy, load_policy
from rlpol.artifact import read_metadata
from rlpol.artifact.constants import AOTI_TARGET_KEY, EXTRA_FILE_NAME
from rlpol.artifact.naming import argument_names
from rlpol.artifact.reader import read_aoti_target
from rlpol.errors import ArtifactError, BackendUnavailableError
from rlpol.toolkit.modules import ExplorationType, set_exploration_type
from rlpol.verify import compare_on_inputs, quick_check

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
import pendulum_normal

SUFFIXES = [".onnx", ".pt", ".pt2", ".aoti.pt2"]
EXPLORATIONS = ["deterministic", "random"]
# the observation (tanh saturates: loc ~ -7.9), a typical one, and extreme ones
OBSERVATIONS = torch.tensor(
    [[0.62669, -0.77927, 6.77648], [0.1, 0.2, 0.3], [1.0, 0.0, 8.0], [-1.0, 0.0, -8.0],
     [0.0, 1.0, 80.0], [0.0, -1.0, -800.0]]
)  # fmt: skip


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    """``(env, policy, {(suffix, exploration): path})`` for every format and exploration."""
    directory = tmp_path_factory.mktemp("deploy")
    env = pendulum_normal.make_env()
    policy = pendulum_normal.make_policy(env)
    paths = {
        (suffix, exploration): export_policy(
            policy, directory / f"pendulum-{exploration}{suffix}", env=env,
            exploration=exploration,
        )
        for exploration in EXPLORATIONS
        for suffix in SUFFIXES
    }  # fmt: skip
    return env, policy, paths


def _rows() -> TensorDict:
    return TensorDict(observation=OBSERVATIONS.clone(), batch_size=[len(OBSERVATIONS)])


def _pre_tanh_log_prob(loc: torch.Tensor, scale: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """The TanhNormal log-density (bounds [-2, 2]) of ``2 tanh(pre)``, in float64 from ``pre``."""
    loc, scale, pre = (t.double() for t in (loc, scale, pre))
    normal = torch.distributions.Normal(loc, scale).log_prob(pre)
    log_det = 2 * (math.log(2) - pre - torch.nn.functional.softplus(-2 * pre)) + math.log(2)
    return (normal - log_det).sum(-1)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_saturated_log_prob_matches_eager_and_the_pre_tanh_value(pendulum, suffix):
    _env, policy, paths = pendulum
    exported = load_policy(paths[suffix, "deterministic"], trust_code=True)
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        eager = policy(_rows())
    got = exported(_rows())
    assert eager["action"][:1].abs().item() > 1.9999  # the first row saturates
    expected = _pre_tanh_log_prob(eager["loc"], eager["scale"], eager["loc"])
    torch.testing.assert_close(eager["action_log_prob"].double(), expected, atol=1e-4, rtol=0)
    # 1e-4, and float32 rounding (rtol) on the extreme rows, whose log-prob is ~1e3
    torch.testing.assert_close(got["action_log_prob"], eager["action_log_prob"], atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(got["action"], eager["action"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_stochastic_saturated_log_prob_matches_eager(pendulum, suffix):
    _env, policy, paths = pendulum
    exported = load_policy(paths[suffix, "random"], trust_code=True)
    report = compare_on_inputs(policy, exported, _rows(), atol=1e-4, seed=3)
    assert report.ok, report.rows()


@pytest.mark.parametrize("exploration", EXPLORATIONS)
def test_aoti_round_trip_equals_eager_and_onnx(pendulum, exploration):
    env, policy, paths = pendulum
    aoti = load_policy(paths[".aoti.pt2", exploration], trust_code=True)
    onnx = load_policy(paths[".onnx", exploration])
    assert aoti.metadata.artifact_format == "aot_inductor"
    assert aoti.backend.name == "aot_inductor"
    rows = env.single_observation_spec.rand((64,)).select("observation")
    assert compare_on_inputs(policy, aoti, rows, seed=5).ok
    torch.manual_seed(5)
    from_onnx = onnx(rows.clone())
    torch.manual_seed(5)
    from_aoti = aoti(rows.clone())
    for key in ("action", "action_log_prob", "loc", "scale"):
        torch.testing.assert_close(from_aoti[key], from_onnx[key], atol=1e-5, rtol=1e-5)
    rollout = env.rollout(20, aoti)  # and it plugs into env.rollout
    assert rollout["action"].shape == (20, 1)


def test_aoti_package_records_metadata_and_target(pendulum):
    _env, _policy, paths = pendulum
    path = paths[".aoti.pt2", "random"]
    artifact_format, metadata = read_metadata(path)
    assert artifact_format == metadata.artifact_format == "aot_inductor"
    assert [info.name for info in metadata.noise] == ["noise.module.1.action"]
    target = read_aoti_target(path)
    assert target["machine"] and target["platform"] == sys.platform
    assert target["device"] == "cpu"
    from rlpol._compat import cpu_isa, runnable_cpu_isas

    assert target["isa"] == cpu_isa() and (not cpu_isa() or cpu_isa() in runnable_cpu_isas())


def test_aoti_package_for_another_cpu_is_refused_before_loading(pendulum, tmp_path):
    _env, _policy, paths = pendulum
    path = _with_target(paths[".aoti.pt2", "deterministic"], tmp_path / "other.aoti.pt2",
                        isa="avx9000")  # fmt: skip
    with pytest.raises(BackendUnavailableError, match=r"'avx9000' instruction set.*export it"):
        load_policy(path, trust_code=True)
    path = _with_target(path, tmp_path / "arm.aoti.pt2", machine="riscv128")
    with pytest.raises(BackendUnavailableError, match=r"machine 'riscv128'.*export it again"):
        load_policy(path, trust_code=True)


def _with_target(source: Path, target_path: Path, **changes: str) -> Path:
    """A copy of the package whose recorded target has ``changes``."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target_path, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("_metadata.json"):
                document = json.loads(data)
                document[AOTI_TARGET_KEY] = json.dumps(
                    {**json.loads(document[AOTI_TARGET_KEY]), **changes}
                )
                data = json.dumps(document).encode()
            copy.writestr(info, data)
    return target_path


@pytest.mark.parametrize("exploration", EXPLORATIONS)
def test_torchscript_and_pt2_arguments_are_the_graph_inputs(pendulum, exploration):
    _env, _policy, paths = pendulum
    _, metadata = read_metadata(paths[".pt", exploration])
    names = list(metadata.input_names)
    schema = torch.jit.load(paths[".pt", exploration]).forward.schema
    assert [argument.name for argument in schema.arguments[1:]] == argument_names(names)
    with open(paths[".pt2", exploration], "rb") as file:
        program = torch.export.load(file)
    assert list(program.graph_signature.user_inputs) == argument_names(names)
    if exploration == "deterministic":
        assert argument_names(names) == names == ["observation"]  # identifiers: the same
    else:
        assert names == ["observation", "noise.module.1.action"]
        assert argument_names(names) == ["observation", "noise_module_1_action"]


@pytest.mark.parametrize("suffix", [".pt", ".pt2", ".aoti.pt2"])
def test_formats_that_run_stored_code_need_trust(pendulum, suffix):
    _env, _policy, paths = pendulum
    with pytest.raises(ArtifactError, match=r"runs? .*trust_code=True.*--trust-code"):
        load_policy(paths[suffix, "deterministic"])
    assert load_policy(paths[".onnx", "deterministic"]).backend.name == "onnxruntime"


def test_a_torchscript_archive_runs_code_that_reads_files(tmp_path):
    """Why TorchScript needs trust: its stored code can read any file the process can."""
    secret = tmp_path / "secret"
    secret.write_bytes(bytes([7, 8, 9, 10]))

    class Reads(torch.nn.Module):
        def __init__(self, secret: str) -> None:
            super().__init__()
            self.secret = secret

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            leaked = torch.from_file(self.secret, shared=False, size=4, dtype=torch.uint8)
            return x + leaked.to(x.dtype)

    path = tmp_path / "reads.pt"
    torch.jit.save(torch.jit.script(Reads(str(secret))), str(path))
    assert torch.jit.load(str(path))(torch.zeros(4)).tolist() == [7.0, 8.0, 9.0, 10.0]


def test_metadata_is_compact_and_records_onnxruntime(pendulum):
    _env, _policy, paths = pendulum
    with zipfile.ZipFile(paths[".pt", "deterministic"]) as archive:
        (entry,) = [n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE_NAME}")]
        text = archive.read(entry).decode()
    assert ", " not in text and '": ' not in text
    import onnxruntime

    assert json.loads(text)["versions"]["onnxruntime"] == onnxruntime.__version__


def test_pt2_export_with_its_check_logs_no_package_warning(pendulum, tmp_path, caplog):
    env, policy, paths = pendulum
    shutil.copy(paths[".pt2", "deterministic"], tmp_path / "renamed.bin")
    with caplog.at_level(logging.WARNING):
        export_policy(policy, tmp_path / "p.pt2", env=env,
                      check=lambda staged: quick_check(policy, staged, env=env))  # fmt: skip
        load_policy(tmp_path / "renamed.bin", trust_code=True)
    assert not [r for r in caplog.records if "Unable to load package" in r.getMessage()]


def test_the_quick_check_catches_a_graph_wrong_only_on_saturated_rows(pendulum, tmp_path):
    """An artifact that agrees on typical rows but not where tanh saturates fails the check."""
    env, policy, _paths = pendulum
    from rlpol.toolkit.modules import distributions

    path = tmp_path / "atanh.onnx"
    squash = distributions.TanhNormal._squash
    try:  # export the graph as before the fix: log-prob recovered through atanh
        distributions.TanhNormal._squash = lambda self, pre: self._mid + self._half * (
            self.transforms[0]._call(pre)
        )
        export_policy(policy, path, env=env)
    finally:
        distributions.TanhNormal._squash = squash
    check = quick_check(policy, path, env=env)
    assert check.reports[1].ok and not check.ok, check.summary()
