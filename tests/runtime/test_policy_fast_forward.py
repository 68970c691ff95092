"""``ExportedPolicy`` on the CPU with onnxruntime: forward on numpy arrays.

There forward checks inputs and outputs as numpy dtypes and shapes. An input that
``Tensor.numpy()`` refuses (a missing entry, a nested tensordict, a dtype numpy lacks, one
that requires grad) takes the tensor path's checks instead: these tests hold the ONNX
policy to the TorchScript one's errors, and to the eager policy's values on every kind of
tensordict and batch shape.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import LazyStackedTensorDict, TensorDict

from rlpol.errors import InputMismatchError
from rlpol.runtime import load_policy

CASE = "qvalue_onehot"  # CartPole: observation float32 [4] -> one-hot action + float values


class _Subclass(TensorDict):
    """A tensordict that is not a plain TensorDict (forward reads it through ``get``)."""


REFUSED_BY_NUMPY = [
    (
        "bfloat16",
        lambda: TensorDict({"observation": torch.zeros(2, 4, dtype=torch.bfloat16)}, [2]),
        r"^'observation': expected float32 of shape \[\*B, 4\], received bfloat16 of shape "
        r"\[2, 4\] \(batch dims \[2\]\)$",
    ),
    (
        "nested-tensordict",
        lambda: TensorDict({"observation": TensorDict({"x": torch.zeros(2, 4)}, [2])}, [2]),
        r"^'observation': expected float32 of shape \[\*B, 4\], received float32 of shape "
        r"\[2\] \(batch dims \[2\]\)$",
    ),
    (
        "missing-key-in-a-subclass",
        lambda: _Subclass({"obs": torch.zeros(2, 4)}, [2]),
        r"^the policy reads 'observation' \(float32 of shape \[\*B, 4\]\) but the tensordict "
        r"has no such entry; it holds \['obs'\]$",
    ),
    (
        "requires-grad-and-wrong-shape",
        lambda: TensorDict({"observation": torch.zeros(2, 3, requires_grad=True)}, [2]),
        r"^'observation': expected float32 of shape \[\*B, 4\], received float32 of shape "
        r"\[2, 3\] \(batch dims \[2\]\)$",
    ),
]


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
@pytest.mark.parametrize(("name", "make", "message"), REFUSED_BY_NUMPY, ids=lambda v: v)
def test_inputs_numpy_refuses_get_the_tensor_path_errors(artifacts, suffix, name, make, message):
    _, _, path = artifacts.get(CASE, suffix, "deterministic")
    td = make()
    keys = set(td.keys())
    with pytest.raises(InputMismatchError, match=message):
        load_policy(path, trust_code=True)(td)
    assert set(td.keys()) == keys, "a refused call must not write into the tensordict"


def _observation(batch: tuple[int, ...], **kwargs) -> torch.Tensor:
    return torch.randn(*batch, 4, generator=torch.Generator().manual_seed(1), **kwargs)


def _plain(batch: tuple[int, ...], **kwargs) -> TensorDict:
    return TensorDict({"observation": _observation(batch, **kwargs)}, list(batch))


def _lazy_stack() -> LazyStackedTensorDict:
    rows = [TensorDict({"observation": row}, []) for row in _observation((3,))]
    return LazyStackedTensorDict.lazy_stack(rows)


TENSORDICTS = [
    ("batch-5", lambda: _plain((5,))),
    ("batch-2x3", lambda: _plain((2, 3))),
    ("no-batch-dims", lambda: _plain(())),
    ("requires-grad", lambda: _plain((5,), requires_grad=True)),
    ("non-contiguous", lambda: TensorDict({"observation": _observation((5,)).T.clone().T}, [5])),
    ("on-cpu", lambda: TensorDict({"observation": _observation((5,))}, [5], device="cpu")),
    ("subclass", lambda: _Subclass({"observation": _observation((5,))}, [5])),
    ("lazy-stack", _lazy_stack),
]


@pytest.mark.parametrize(("name", "make"), TENSORDICTS, ids=lambda v: v)
def test_every_tensordict_kind_gets_the_eager_values(artifacts, name, make):
    _, eager, path = artifacts.get(CASE, ".onnx", "deterministic")
    td = make()
    observation = td["observation"].detach()
    got = load_policy(path, trust_code=True)(td)
    assert got is td
    with torch.no_grad():
        expected = eager(TensorDict({"observation": observation}, observation.shape[:-1]))
    for key in ("action", "action_value", "chosen_action_value"):
        value = got[key]
        assert value.shape == expected[key].shape and value.dtype == expected[key].dtype, key
        assert not value.requires_grad
        torch.testing.assert_close(value, expected[key], atol=1e-5, rtol=1e-5)


def test_noise_and_parameters_reach_the_graph_as_on_torchscript(artifacts):
    """Seeded draws and ``set_parameter`` give the ONNX and TorchScript policies one result."""
    results = {}
    for suffix in (".onnx", ".pt"):
        _, _, path = artifacts.get("qvalue_onehot_egreedy", suffix, "random")
        policy = load_policy(path, generator=torch.Generator().manual_seed(7), trust_code=True)
        (eps,) = policy.parameters_by_name
        actions = []
        for value in (1.0, 0.0):  # every action random, then every action greedy
            policy.set_parameter(eps, value)
            actions.append(policy(_plain((2, 3)))["action"])
        results[suffix] = actions
    _, _, greedy = artifacts.get("qvalue_onehot_egreedy", ".onnx", "deterministic")
    td = load_policy(greedy, trust_code=True)(_plain((2, 3)))
    assert torch.equal(results[".onnx"][0], results[".pt"][0])
    assert torch.equal(results[".onnx"][1], td["action"])
    assert torch.equal(results[".pt"][1], td["action"])


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_a_policy_loaded_on_cpu_0_takes_cpu_tensors(artifacts, suffix):
    """CPU tensors report device "cpu", without an index: "cpu:0" means the same device."""
    _, _, path = artifacts.get(CASE, suffix, "deterministic")
    policy = load_policy(path, device="cpu:0", trust_code=True)
    assert policy.device == torch.device("cpu")
    expected = load_policy(path, trust_code=True)(_plain((5,)))["action_value"]
    assert torch.equal(policy(_plain((5,)))["action_value"], expected)
