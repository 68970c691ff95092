"""Bad inputs to a loaded ``ExportedPolicy``, non-finite observations, and calls from threads.

Inputs are checked before the graph runs: a missing key, a wrong trailing shape, dtype or
device is an :class:`InputMismatchError` naming the key, what was expected and what was
received. NaN and infinity are not checked: they pass through the graph like any float, as the
eager policy would compute them (``docs/errors.md``). One loaded policy serves several threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from tensordict import TensorDict

from rlpol.errors import InputMismatchError
from rlpol.runtime import load_policy

FORMATS = [".onnx", ".pt"]
CASE = "qvalue_onehot"  # CartPole: observation float32 [4] -> one-hot action + float values

BAD_INPUTS = [
    (
        "missing-key",
        lambda: TensorDict({"obs": torch.zeros(2, 4)}, [2]),
        r"the policy reads 'observation' \(float32 of shape \[\*B, 4\]\) but the tensordict has "
        r"no such entry; it holds \['obs'\]",
    ),
    (
        "wrong-trailing-shape",
        lambda: TensorDict({"observation": torch.zeros(2, 5)}, [2]),
        r"'observation': expected float32 of shape \[\*B, 4\], received float32 of shape "
        r"\[2, 5\] \(batch dims \[2\]\)",
    ),
    (
        "batch-dims-eat-the-feature-axis",
        lambda: TensorDict({"observation": torch.zeros(2, 4)}, [2, 4]),
        r"'observation': expected float32 of shape \[\*B, 4\], received float32 of shape "
        r"\[2, 4\] \(batch dims \[2, 4\]\)",
    ),
    (
        "wrong-dtype",
        lambda: TensorDict({"observation": torch.zeros(2, 4, dtype=torch.float64)}, [2]),
        r"'observation': expected float32 of shape \[\*B, 4\], received float64 of shape "
        r"\[2, 4\]",
    ),
    (
        "integer-observation",
        lambda: TensorDict({"observation": torch.zeros(3, 4, dtype=torch.int64)}, [3]),
        r"'observation': expected float32 of shape \[\*B, 4\], received int64 of shape \[3, 4\]",
    ),
    pytest.param(
        "wrong-device",
        lambda: TensorDict({"observation": torch.zeros(2, 4, device="cuda")}, [2]),
        r"'observation' is on cuda:0 but the policy was loaded on cpu; load it with "
        r"device='cuda:0' or move the env to cpu",
        marks=pytest.mark.cuda,
    ),
]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize(("name", "make", "message"), BAD_INPUTS, ids=lambda v: v)
def test_bad_inputs_are_named(artifacts, suffix, name, make, message):
    _, _, path = artifacts.get(CASE, suffix, "deterministic")
    policy = load_policy(path, trust_code=True)
    td = make()
    before = td.clone()
    with pytest.raises(InputMismatchError, match=f"^{message}"):
        policy(td)
    assert (td == before).all(), "a refused call must not write into the tensordict"
    assert set(td.keys()) == set(before.keys())


@pytest.mark.parametrize("suffix", FORMATS)
def test_an_observation_that_requires_grad_is_accepted(artifacts, suffix):
    _, _, path = artifacts.get(CASE, suffix, "deterministic")
    observation = torch.randn(2, 4, requires_grad=True)
    td = load_policy(path, trust_code=True)(TensorDict({"observation": observation}, [2]))
    assert td["action"].shape == (2, 2)
    assert not td["action_value"].requires_grad


# --- non-finite observations: documented pass-through ----------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("case", ["actor", "qvalue_onehot", "tanh_normal"])
def test_nan_and_inf_pass_through(artifacts, suffix, case):
    env, eager, path = artifacts.get(case, suffix, "deterministic")
    policy = load_policy(path, trust_code=True)
    features = env.single_observation_spec["observation"].shape[-1]
    observation = torch.randn(5, features)
    observation[0, 0], observation[1, 0], observation[2, 0] = NAN, INF, -INF
    got = policy(TensorDict({"observation": observation.clone()}, [5]))
    with torch.no_grad():
        expected = eager(TensorDict({"observation": observation.clone()}, [5]))
    for key in policy.out_keys:
        value = got[key]
        if not value.dtype.is_floating_point:
            continue  # a discrete choice made from NaN scores is unspecified (argmax of NaN)
        assert value[0].isnan().all(), f"{key}: NaN in the observation must give NaN"
        assert value[3:].isfinite().all(), f"{key}: a NaN row must not leak into other rows"
        torch.testing.assert_close(value, expected[key], atol=1e-5, rtol=1e-5, equal_nan=True)
    finite = policy(TensorDict({"observation": observation[3:].clone()}, [2]))
    for key in policy.out_keys:
        torch.testing.assert_close(got[key][3:], finite[key], atol=1e-6, rtol=1e-6)


# --- one policy, four threads ---------------------------------------------------------------

THREADS, CALLS, BATCH = 4, 200, 8


@pytest.mark.parametrize("suffix", FORMATS)
def test_threads_get_the_serial_results(artifacts, suffix):
    _, _, path = artifacts.get(CASE, suffix, "deterministic")
    policy = load_policy(path, trust_code=True)
    generator = torch.Generator().manual_seed(1)
    inputs = [
        TensorDict({"observation": torch.randn(BATCH, 4, generator=generator)}, [BATCH])
        for _ in range(CALLS)
    ]
    serial = [policy(td.clone()).select(*policy.out_keys) for td in inputs]

    def worker(offset: int) -> list:
        order = [(offset * 50 + i) % CALLS for i in range(CALLS)]  # each thread its own order
        return [(i, policy(inputs[i].clone()).select(*policy.out_keys)) for i in order]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    for thread in results:
        assert len(thread) == CALLS
        for i, td in thread:
            for key in policy.out_keys:
                assert torch.equal(td[key], serial[i][key]), (i, key)
