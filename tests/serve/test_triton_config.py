"""The one Triton model config builder: every target parses with model_config.proto."""

from __future__ import annotations

import pytest

from rlpol.serve.model import ServedModel
from rlpol.serve.triton_config import ConfigTarget, model_config

pytest.importorskip("grpc")  # tritonclient.grpc raises RuntimeError without grpcio

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

BATCHING = {"max_batch": 16, "max_delay_ms": 1.5, "sequence_timeout_s": 3.0}


@pytest.mark.parametrize("target", list(ConfigTarget))
def test_every_target_of_every_zoo_kind_fits_model_config_proto(zoo, target):
    for name, path in zoo.items():
        model = ServedModel(name, "1", path)
        config = model_config(model, target=target, **BATCHING)
        json_format.ParseDict(config, model_config_pb2.ModelConfig())  # raises on a bad field
        assert config["max_batch_size"] == 16
        # Triton refuses a model with both batchers
        assert ("sequence_batching" in config) == model.stateful
        assert ("dynamic_batching" in config) == (not model.stateful)


def test_a_stateless_model_batches_dynamically_with_preferred_sizes(zoo):
    config = model_config(ServedModel("actor", "1", zoo["actor"]), target=ConfigTarget.EMBEDDED,
                          **BATCHING)  # fmt: skip
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 1500,
                                          "preferred_batch_size": [8, 16]}  # fmt: skip


def test_pytriton_sequences_hide_the_state_and_take_control_tensors(zoo):
    model = ServedModel("lstm", "1", zoo["lstm"])
    config = model_config(model, target=ConfigTarget.PYTRITON, **BATCHING)
    names = [entry["name"] for entry in config["input"]]
    assert names == ["observation", "noise.module.3.explore", "noise.module.3.action"]
    assert [entry["dims"] for entry in config["input"]] == [[4], [1], [1]]  # scalars: [1]
    controls = config["sequence_batching"]["control_input"]
    assert [c["control"][0]["kind"] for c in controls] == [
        "CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"]
    assert config["sequence_batching"]["max_sequence_idle_microseconds"] == 3_000_000
