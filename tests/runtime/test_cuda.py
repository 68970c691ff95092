"""CUDA: onnxruntime (CUDAExecutionProvider + IO binding) and TorchScript parity on a GPU.

Marked ``cuda``: skipped on machines without a GPU. The no-GPU error path runs everywhere.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from rlpol import BackendUnavailableError, load_policy
from rlpol.verify import check_artifact

CASES = ["qvalue_onehot_egreedy", "tanh_normal", "actor_gaussian_noise"]


@pytest.mark.cuda
@pytest.mark.parametrize("exploration", ["deterministic", "random"])
@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize("case_name", CASES)
def test_cuda_rollout_parity(artifacts, case_name, suffix, exploration):
    if suffix == ".onnx" and "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (no CUDAExecutionProvider)")
    env, policy, path = artifacts.get(case_name, suffix, exploration)
    exported = load_policy(path, device="cuda", trust_code=True)
    cuda_env = type(env)(env.env_id, device="cuda", **env.make_kwargs,
                         categorical_action_encoding=env.categorical_action_encoding)
    cuda_policy = policy.to("cuda")
    try:
        report = check_artifact(cuda_env, cuda_policy, exported, steps=500, seed=0)
    finally:
        policy.to("cpu")
    assert report.ok, report.rows()
    td = cuda_env.reset()
    assert exported(td)["action"].device.type == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine w/o GPU")
def test_cuda_without_gpu_is_a_clear_error(artifacts):
    _, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    with pytest.raises(BackendUnavailableError, match=r"no CUDA GPU.*--device cpu"):
        load_policy(path, device="cuda", trust_code=True)
