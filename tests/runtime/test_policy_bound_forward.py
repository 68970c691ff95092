"""``ExportedPolicy.forward`` bound to the graph from a batch shape's second call.

On onnxruntime/CPU, forward binds the graph's inputs and outputs to reused buffers (per
thread and batch shape) once a shape comes back, and writes copies of the outputs. These
tests hold bound calls to unbound ones: the same values and draws, outputs that later calls
never overwrite, parameters and generators changed after binding, concurrent threads, and
the same errors (with nothing drawn or written) for inputs the bound call refuses.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
from tensordict import TensorDict

from rlpol.errors import InputMismatchError
from rlpol.runtime import load_policy
from rlpol.testing import POLICY_CASES

BATCHES = [(5,), (2, 3), (), (2, 0)]


def _inputs(env, batch: tuple[int, ...], seed: int) -> TensorDict:
    """Observations drawn from the env's spec (a generator of its own: no global draws)."""
    torch.manual_seed(seed)
    observation = env.observation_spec["observation"].rand(batch)
    return TensorDict({"observation": observation}, list(batch))


def _bound_shapes(policy) -> list[torch.Size]:
    return [shape for (_, shape), bound in policy._bound_forwards.items() if bound is not None]


def _assert_same_entries(got: TensorDict, expected: TensorDict) -> None:
    assert list(got.keys()) == list(expected.keys())
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert got[key].stride() == value.stride(), key
        assert torch.equal(got[key], value), key


def _assert_bound_equals_unbound(path, inputs, calling=contextlib.nullcontext) -> None:
    """One policy called on each of ``inputs`` (within ``calling()``), bound from the third
    call, gives what fresh policies give: a fresh policy's first call is never bound, and
    one shared generator carries the draws on from policy to policy."""
    policy = load_policy(path, generator=torch.Generator().manual_seed(11), trust_code=True)
    with calling():
        got = [policy(td.clone()) for td in inputs]
    assert _bound_shapes(policy) == [inputs[0].batch_size], "calls 3 and 4 must be bound"
    generator = torch.Generator().manual_seed(11)
    for td, result in zip(inputs, got):
        _assert_same_entries(result, load_policy(path, generator=generator, trust_code=True)(td.clone()))


EXPLORED_CASES = [
    (case.name, exploration)
    for case in POLICY_CASES
    for exploration in (["deterministic", "random"] if case.stochastic else ["deterministic"])
]


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize(("case", "exploration"), EXPLORED_CASES, ids="-".join)
def test_bound_calls_equal_unbound_calls(artifacts, case, exploration, batch):
    env, _, path = artifacts.get(case, ".onnx", exploration)
    _assert_bound_equals_unbound(path, [_inputs(env, batch, seed) for seed in range(4)])


def test_outputs_of_earlier_calls_are_never_overwritten(artifacts):
    env, _, path = artifacts.get("normal", ".onnx", "random")
    policy = load_policy(path, trust_code=True)
    results = [policy(_inputs(env, (3,), seed)) for seed in range(5)]
    snapshots = [result.clone() for result in results]
    for _ in range(3):
        policy(_inputs(env, (3,), 9))
    for result, snapshot in zip(results, snapshots):
        _assert_same_entries(result, snapshot)
    assert len({result["action"].data_ptr() for result in results}) == len(results)


def _bound_egreedy(artifacts, eps_value: float):
    """A bound e-greedy policy at ``eps_value``, its eps name and its (batch 64) inputs."""
    env, _, path = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    td = _inputs(env, (64,), 0)
    policy = load_policy(path, generator=torch.Generator().manual_seed(1), trust_code=True)
    (eps,) = policy.parameters_by_name
    policy.set_parameter(eps, eps_value)
    for _ in range(3):
        policy(td.clone())
    assert _bound_shapes(policy) == [torch.Size([64])]
    return policy, eps, td, path


def test_set_parameter_after_binding_reaches_the_graph(artifacts):
    policy, eps, td, path = _bound_egreedy(artifacts, 0.0)
    greedy = load_policy(path, trust_code=True)
    greedy.set_parameter(eps, 0.0)
    policy.set_parameter(eps, 1.0)
    assert not torch.equal(policy(td.clone())["action"], greedy(td.clone())["action"]), (
        "eps=1 draws every action at random"
    )
    policy.set_parameter(eps, 0.0)
    assert torch.equal(policy(td.clone())["action"], greedy(td.clone())["action"])


def test_a_generator_set_after_binding_draws_the_noise(artifacts):
    policy, eps, td, path = _bound_egreedy(artifacts, 1.0)
    policy.generator = torch.Generator().manual_seed(5)
    reference = load_policy(path, generator=torch.Generator().manual_seed(5), trust_code=True)
    reference.set_parameter(eps, 1.0)
    for _ in range(3):
        assert torch.equal(policy(td.clone())["action"], reference(td.clone())["action"])


def test_more_batch_shapes_than_are_kept_still_give_the_unbound_values(artifacts):
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    for _ in range(3):
        for rows in range(1, 21):
            td = _inputs(env, (rows,), rows)
            _assert_same_entries(policy(td.clone()), load_policy(path, trust_code=True)(td.clone()))
    assert 0 < len(policy._bound_forwards) <= 16


def test_a_shape_called_every_time_stays_bound_among_one_off_shapes(artifacts):
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    td = _inputs(env, (1,), 0)
    policy(td.clone())
    for rows in range(2, 40):
        policy(td.clone())
        policy(_inputs(env, (rows,), rows))
        assert torch.Size([1]) in _bound_shapes(policy), f"evicted after {rows - 1} one-offs"


def test_large_batches_are_not_bound(artifacts):
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    td = _inputs(env, (4097,), 0)
    for _ in range(3):
        policy(td)
    assert policy._bound_forwards == {}


def test_bound_calls_draw_on_the_cpu_whatever_the_default_device(artifacts):
    """torch.set_default_device must not reach a CPU policy's buffers, dtypes or draws."""
    env, _, path = artifacts.get("normal", ".onnx", "random")
    inputs = [_inputs(env, (3,), seed) for seed in range(4)]
    _assert_bound_equals_unbound(path, inputs, calling=lambda: torch.device("meta"))


def test_threads_calling_one_policy_get_their_own_results(artifacts):
    env, _, path = artifacts.get("qvalue_onehot", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    inputs = [_inputs(env, (8,), seed) for seed in range(4)]
    expected = [load_policy(path, trust_code=True)(td.clone()) for td in inputs]
    failures = []
    start = threading.Barrier(len(inputs))

    def call_many(index: int) -> None:
        start.wait()
        for _ in range(200):
            got = policy(inputs[index].clone())
            if not torch.equal(got["action_value"], expected[index]["action_value"]):
                failures.append(index)
                return

    threads = [threading.Thread(target=call_many, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(_bound_shapes(policy)) == len(inputs), "one binding per thread"


REFUSED = [
    ("float64", lambda td: td.set("observation", td["observation"].double()),
     r"^'observation': expected float32 of shape \[\*B, 4\], received float64"),
    ("wrong-shape", lambda td: td.set("observation", td["observation"][:, :3]),
     r"^'observation': expected float32 of shape \[\*B, 4\], received float32 of shape \[2, 3\]"),
    ("missing", lambda td: td.rename_key_("observation", "obs"),
     r"^the policy reads 'observation' .* it holds \['obs'\]$"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spoil", "message"), REFUSED, ids=lambda v: v)
def test_a_bound_shape_refuses_bad_inputs_with_the_unbound_errors(artifacts, name, spoil, message):
    env, _, path = artifacts.get("qvalue_onehot_egreedy", ".onnx", "random")
    policy = load_policy(path, trust_code=True)  # draws from torch's global generator
    for seed in range(3):
        policy(_inputs(env, (2,), seed))
    assert _bound_shapes(policy) == [torch.Size([2])]
    td = spoil(_inputs(env, (2,), 7))
    keys = list(td.keys())
    state = torch.get_rng_state()
    with pytest.raises(InputMismatchError, match=message):
        policy(td)
    assert list(td.keys()) == keys, "a refused call must not write into the tensordict"
    assert torch.equal(torch.get_rng_state(), state), "a refused call must not draw noise"


def test_inputs_that_need_detaching_on_a_bound_shape_give_the_unbound_values(artifacts):
    env, _, path = artifacts.get("actor", ".onnx", "deterministic")
    policy = load_policy(path, trust_code=True)
    for seed in range(3):
        policy(_inputs(env, (4,), seed))
    td = _inputs(env, (4,), 8)
    expected = load_policy(path, trust_code=True)(td.clone())
    td.set("observation", td["observation"].requires_grad_())
    got = policy(td)
    assert not got["action"].requires_grad
    assert torch.equal(got["action"], expected["action"])
