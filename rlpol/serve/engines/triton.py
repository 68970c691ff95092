"""``rlpol serve --engine triton``: the artifacts on Triton Inference Server, bound by PyTriton.

PyTriton starts a real ``tritonserver`` (HTTP, gRPC and metrics on ``host``) and binds each
model's infer callable (:class:`~rlpol.serve.engines.triton_binding.TritonKernel`, the same
array kernel the embedded server runs) behind Triton's dynamic batcher (``max_batch_size``,
preferred sizes, queue delay) or, for a stateful artifact, its sequence batcher
(:mod:`._pytriton_compat`). :func:`serve` blocks until SIGTERM or SIGINT, then stops Triton,
its python-backend stubs and PyTriton's workspace.

Differences from the embedded server: a per-row scalar tensor is sent as ``[batch, 1]``;
sequence ids are integers; a stateful model takes requests in a sequence only; one version per
model.
"""

from __future__ import annotations

import os
import sys
import sysconfig

import numpy as np
from pytriton.client.exceptions import PyTritonClientError
from pytriton.exceptions import PyTritonError
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from rlpol.errors import ServeError
from rlpol.serve.app import ServeConfig
from rlpol.serve.engines import EngineOptions, check_ports_free, stop_signal
from rlpol.serve.engines._pytriton_compat import use_sequence_batching
from rlpol.serve.engines.triton_binding import TritonKernel, binding
from rlpol.serve.model import ServedModel
from rlpol.serve.repository import ModelRepository, resolve_sources
from rlpol.serve.server import DRAIN_TIMEOUT_S

__all__ = ["DEFAULT_GRPC_PORT", "DEFAULT_METRICS_PORT", "serve"]

DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
_MONITOR_PERIOD_S = 1.0


def _tensors(entries: list[dict], model: ServedModel) -> list[Tensor]:
    """PyTriton tensors of config ``input`` / ``output`` entries, dtypes from the slots."""
    dtypes = {**{name: slot.dtype for name, slot in model.slots.items()},
              **{slot.name: slot.dtype for slot in model.outputs}}  # fmt: skip
    return [Tensor(name=entry["name"], dtype=dtypes[entry["name"]], shape=tuple(entry["dims"]),
                   optional=entry.get("optional", False)) for entry in entries]  # fmt: skip


def _bind(triton: Triton, model: ServedModel, config: ServeConfig, index: int) -> None:
    """Bind ``model`` with ``config.workers`` instances, each its own kernel."""
    bound = binding(model, max_batch=config.max_batch, max_delay_ms=config.max_delay_ms,
                    sequence_timeout_s=config.sequence_timeout_s)  # fmt: skip
    kernels = [TritonKernel(model, rng=np.random.default_rng(
                   None if config.seed is None else [config.seed, index, instance]),
                   sequence_timeout_s=config.sequence_timeout_s)
               for instance in range(config.workers)]  # fmt: skip
    batcher = DynamicBatcher()
    if "dynamic_batching" in bound.config:
        dynamic = bound.config["dynamic_batching"]
        batcher = DynamicBatcher(max_queue_delay_microseconds=dynamic["max_queue_delay_microseconds"],
                                 preferred_batch_size=dynamic["preferred_batch_size"])  # fmt: skip
    triton.bind(model_name=model.name, infer_func=kernels, inputs=_tensors(bound.inputs, model),
                outputs=_tensors(bound.outputs, model),
                config=ModelConfig(max_batch_size=config.max_batch, batcher=batcher))  # fmt: skip
    if model.stateful:
        use_sequence_batching(triton, model.name, bound.config["sequence_batching"],
                              bound.controls)  # fmt: skip


def _one_version_each(repository: ModelRepository) -> None:
    for name, versions in repository.models.items():
        if len(versions) > 1:
            raise ServeError(f"model {name!r} has versions {list(versions)}; --engine triton "
                             "serves one version per model: name the others with name=PATH or "
                             "use --engine embedded")  # fmt: skip


def serve(arguments: list[str], *, host: str, port: int, config: ServeConfig | None,
          trust_code: bool, options: EngineOptions) -> None:  # fmt: skip
    """Serve the models ``arguments`` name on Triton until SIGTERM or SIGINT.

    Args:
        arguments: artifact files, ``name=PATH`` pairs or model repositories.
        host: the address of Triton's HTTP, gRPC and metrics endpoints.
        port: the HTTP port.
        config: batching (``max_batch``, ``max_delay_ms``, ``workers``: instances per model,
            ``sequence_timeout_s``, ``seed``); the body limits are Triton's own.
        trust_code: allow ``.pt2`` archives.
        options: ``grpc_port`` (default 8001) and ``metrics_port`` (default 8002).

    Raises:
        ServeError: a bad argument, two versions of one model, a port that is taken, or
            Triton did not start or stopped on its own.
        ArtifactError: a file is not a loadable rlpol artifact.
    """
    config = config or ServeConfig()
    repository = ModelRepository(resolve_sources(arguments), trust_code=trust_code)
    _one_version_each(repository)
    grpc_port = options.grpc_port if options.grpc_port is not None else DEFAULT_GRPC_PORT
    metrics_port = options.metrics_port if options.metrics_port is not None else DEFAULT_METRICS_PORT
    check_ports_free(host, {"--port": port, "--grpc-port": grpc_port,
                             "--metrics-port": metrics_port})  # fmt: skip
    # Triton's python-backend stub links libpython: let the server process find it
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        part for part in (libdir, os.environ.get("LD_LIBRARY_PATH")) if part)
    triton = Triton(config=TritonConfig(
        http_address=host, http_port=port, grpc_address=host, grpc_port=grpc_port,
        metrics_address=host, metrics_port=metrics_port, log_verbose=0,
        exit_timeout_secs=DRAIN_TIMEOUT_S,
    ))  # fmt: skip
    for index, model in enumerate(repository):
        _bind(triton, model, config, index)
    with stop_signal() as stop:
        try:
            try:
                triton.run()
            except (PyTritonError, PyTritonClientError) as error:
                raise ServeError(f"Triton did not start ({error}); its log is above") from error
            served = ", ".join(f"{m.name} ({m.artifact_format})" for m in repository)
            print(f"rlpol serve --engine triton: {served} on http://{host}:{port}, grpc "
                  f"{host}:{grpc_port}, metrics http://{host}:{metrics_port}/metrics",
                  file=sys.stderr, flush=True)  # fmt: skip
            while not stop.wait(_MONITOR_PERIOD_S):
                if not triton.is_alive():
                    raise ServeError("Triton stopped on its own (its log is above); restart "
                                     "rlpol serve")  # fmt: skip
        finally:
            triton.stop()
