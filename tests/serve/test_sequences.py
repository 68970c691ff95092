"""Stateful sequences: ``sequence_id`` / ``sequence_start`` / ``sequence_end`` thread the state."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import ZOO_SEQUENCE_TIMEOUT_S, session_steps, torch_noise


def _step(client, inputs: dict[str, np.ndarray], **sequence):
    tensors = []
    for name, array in inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer("lstm", tensors, **sequence)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def test_sequence_across_two_resets_equals_the_session(zoo_server, zoo_policies):
    policy = zoo_policies["lstm"]
    client = zoo_server.client()
    other = zoo_server.client()
    starts = {0, 4, 9}  # the first step and two resets
    for step, obs, noise, expected in session_steps(policy, 13, starts):
        served = _step(client, {"observation": obs, **noise}, sequence_id=42,
                       sequence_start=step in starts, sequence_end=step == 8)  # fmt: skip
        # another sequence, batched with it, never disturbs its state
        _step(other, {"observation": -obs}, sequence_id="other", sequence_start=step == 0)
        for name, want in expected.items():
            np.testing.assert_allclose(served[name], want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} at step {step}")  # fmt: skip
    assert "rlpol_live_sequences{" in zoo_server.metrics()


def test_sequence_errors(zoo_server):
    client = zoo_server.client()
    obs = {"observation": np.zeros((1, 4), np.float32)}
    with pytest.raises(InferenceServerException, match="no live sequence 7"):
        _step(client, obs, sequence_id=7)
    _step(client, obs, sequence_id=7, sequence_start=True)
    with pytest.raises(InferenceServerException, match="has 1 rows but this request has 2"):
        _step(client, {"observation": np.zeros((2, 4), np.float32)}, sequence_id=7)
    state = np.zeros((1, 1, 8), np.float32)
    with pytest.raises(InferenceServerException, match="the server feeds the state"):
        _step(client, {**obs, "recurrent_state_h": state}, sequence_id=7)
    _step(client, obs, sequence_id=7, sequence_end=True)
    with pytest.raises(InferenceServerException, match="no live sequence 7"):
        _step(client, obs, sequence_id=7)


def test_idle_sequence_expires(zoo_server):
    client = zoo_server.client()
    obs = {"observation": np.ones((1, 4), np.float32)}
    _step(client, obs, sequence_id=99, sequence_start=True)
    _step(client, obs, sequence_id=99)
    time.sleep(ZOO_SEQUENCE_TIMEOUT_S * 2)
    with pytest.raises(InferenceServerException, match="idle longer than 2 s"):
        _step(client, obs, sequence_id=99)


def test_stateless_request_to_a_stateful_model_starts_fresh_or_takes_the_state(
    zoo_server, zoo_policies
):
    policy = zoo_policies["lstm"]
    client = zoo_server.client()
    obs = np.full((2, 4), 0.5, np.float32)
    noise = torch_noise(policy.metadata, 2, seed=5)
    fresh = _step(client, {"observation": obs, **noise})
    torch.manual_seed(5)
    session = policy.session(batch=2)
    np.testing.assert_allclose(fresh["action_value"], session.step({"observation": obs})["action_value"],
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    # threading the state by hand, as the README's plain onnxruntime loop does
    state = {"recurrent_state_h": fresh["next.recurrent_state_h"],
             "recurrent_state_c": fresh["next.recurrent_state_c"]}  # fmt: skip
    noise = torch_noise(policy.metadata, 2, seed=6)
    threaded = _step(client, {"observation": obs, **noise, **state})
    torch.manual_seed(6)
    np.testing.assert_allclose(threaded["action_value"],
                               session.step({"observation": obs})["action_value"],
                               rtol=1e-5, atol=1e-5)  # fmt: skip
