"""The ASGI app (Starlette) speaking the KServe v2 / Open Inference Protocol over HTTP.

=======================================================  =========================================
route                                                    answer
=======================================================  =========================================
``GET /v2/health/live``, ``/v2/health/ready``            200 (ready: 503 while shutting down)
``GET /v2``                                              server metadata (name, version, extensions)
``GET /v2/models/{name}[/versions/{v}]``                 model metadata (:func:`model_metadata`)
``GET /v2/models/{name}[/versions/{v}]/ready``           200, or 404 for an unknown model
``GET /v2/models/{name}[/versions/{v}]/config``          a Triton-style model configuration
``POST /v2/models/{name}[/versions/{v}]/infer``          inference (JSON or binary tensors)
``GET /metrics``                                         Prometheus text (:mod:`.metrics`)
=======================================================  =========================================

Every refusal is a 4xx with the body ``{"error": "..."}`` (what tritonclient reads); a body is
read with a size limit and a time limit, so no client can exhaust memory or hold a request
forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rlpol.errors import RequestError
from rlpol.serve import triton_config
from rlpol.serve.feeds import build_job
from rlpol.serve.metrics import CONTENT_TYPE_LATEST, Metrics, ModelMetrics
from rlpol.serve.protocol import (
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_response,
    model_metadata,
)
from rlpol.serve.repository import ModelRepository
from rlpol.serve.runner import BatchingRunner, ModelKey, Runner
from rlpol.serve.sequences import DEFAULT_IDLE_TIMEOUT_S, SequenceStore

__all__ = ["ServeConfig", "create_app"]

EXTENSIONS = ["binary_tensor_data", "parameters", "sequence", "model_configuration"]
_EXPIRY_PERIOD_S = 1.0


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what it accepts.

    Attributes:
        max_batch: rows per batched graph call at most (1: no batching).
        max_delay_ms: how long a batch waits for more rows, at most.
        workers: batches of one model that may run at once (Triton's instance count).
        max_body_bytes: the largest request body accepted (413 above).
        body_timeout_s: the time a client has to send a request body (408 after).
        sequence_timeout_s: seconds after which an idle sequence's state is dropped.
        seed: seeds the server's noise generator (None: fresh entropy).
    """

    max_batch: int = 64
    max_delay_ms: float = 2.0
    workers: int = 1
    max_body_bytes: int = 8 * 2**20
    body_timeout_s: float = 30.0
    sequence_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    seed: int | None = None


def _error(message: str, status: int) -> Response:
    return Response(json.dumps({"error": message}), status, media_type="application/json")


def _json(value: Any) -> Response:
    return Response(json.dumps(value), media_type="application/json")


async def _read_body(request: Request, config: ServeConfig) -> bytes:
    """The request body, refusing it past ``max_body_bytes`` or ``body_timeout_s``."""
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(f"the request body is {declared[:30]} bytes; this server accepts at "
                           f"most {limit} (--max-body-bytes)", status=413)  # fmt: skip

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"the request body exceeds {limit} bytes, the most this "
                                   "server accepts (--max-body-bytes)", status=413)  # fmt: skip
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), config.body_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(f"the request body did not arrive within {config.body_timeout_s:g} "
                           "s; send it at once", status=408) from None  # fmt: skip
    except ClientDisconnect:
        raise RequestError("the client disconnected before sending the whole body") from None


class _Server:
    """The app's state: models, their sequence stores and metrics, the runner of their jobs."""

    def __init__(self, repository: ModelRepository, config: ServeConfig, runner: Runner) -> None:
        self.repository = repository
        self.config = config
        self.runner = runner
        self.metrics = Metrics()
        self.rng = np.random.default_rng(config.seed)
        self.model_metrics: dict[ModelKey, ModelMetrics] = {}
        self.sequences: dict[ModelKey, SequenceStore] = {}
        self.ready = False
        self._expiry: asyncio.Task | None = None

    async def start(self) -> None:
        models = list(self.repository)
        for model in models:
            key = model.name, model.version
            self.model_metrics[key] = self.metrics.model(model.name, model.version)
            if model.stateful:
                self.sequences[key] = SequenceStore(
                    model, idle_timeout_s=self.config.sequence_timeout_s
                )
        await self.runner.start(models, sequences=self.sequences, metrics=self.model_metrics)
        self._expiry = asyncio.create_task(self._expire())
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        if self._expiry is not None:
            self._expiry.cancel()
        await self.runner.close()

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(min(_EXPIRY_PERIOD_S, self.config.sequence_timeout_s / 4))
            for key, sequences in self.sequences.items():
                if sequences.expire():
                    self.model_metrics[key].live_sequences.set(len(sequences))

    async def infer(self, request: Request) -> Response:
        params = request.path_params
        model = self.repository.get(params["name"], params.get("version"))
        metrics = self.model_metrics[model.name, model.version]
        start, status = time.perf_counter(), 500
        try:
            with self.runner.arriving(model):
                body = await _read_body(request, self.config)
                decoded = decode_infer_request(body, request.headers.get(HEADER_LENGTH), model)
                job = build_job(model, decoded, self.rng)
            result = await self.runner.run(model, job)
            content, headers = encode_infer_response(model, decoded, result.outputs,
                                                     parameters=result.parameters)  # fmt: skip
            status = 200
            return Response(content, headers=headers)
        except RequestError as error:
            status = error.status
            raise
        finally:
            metrics.count(status)
            metrics.latency.observe(time.perf_counter() - start)


def create_app(repository: ModelRepository, config: ServeConfig | None = None, *,
               runner: Runner | None = None) -> Starlette:  # fmt: skip
    """The ASGI app serving ``repository``'s models (run it with uvicorn, or in Ray Serve).

    Args:
        repository: the loaded models.
        config: batching and limits (default :class:`ServeConfig`).
        runner: what runs the jobs (default: the dynamic batcher, :class:`BatchingRunner`
            with ``config``'s batching).
    """
    from rlpol import __version__

    config = config or ServeConfig()
    if runner is None:
        runner = BatchingRunner(max_batch=config.max_batch, max_delay_s=config.max_delay_ms / 1000,
                                workers=config.workers)  # fmt: skip
    server = _Server(repository, config, runner)

    def model_of(request: Request):
        return repository.get(request.path_params["name"], request.path_params.get("version"))

    async def live(request: Request) -> Response:
        return Response(status_code=200)

    async def ready(request: Request) -> Response:
        if server.ready:
            return Response(status_code=200)
        return _error("the server is starting or shutting down", 503)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "rlpol", "version": __version__, "extensions": EXTENSIONS})

    async def metadata(request: Request) -> Response:
        model = model_of(request)
        return _json(model_metadata(model, repository.versions(model.name)))

    async def model_ready(request: Request) -> Response:
        model_of(request)
        return Response(status_code=200)

    async def model_config(request: Request) -> Response:
        return _json(triton_config.model_config(
            model_of(request), target=triton_config.ConfigTarget.EMBEDDED,
            max_batch=config.max_batch, max_delay_ms=config.max_delay_ms,
            sequence_timeout_s=config.sequence_timeout_s,
        ))  # fmt: skip

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.text(), media_type=CONTENT_TYPE_LATEST)

    prefixes = ("/v2/models/{name}", "/v2/models/{name}/versions/{version}")
    # Starlette tries routes in order: inference, the route on every hot path, comes first.
    routes = [Route(prefix + "/infer", server.infer, methods=["POST"]) for prefix in prefixes]
    routes += [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/metrics", metrics),
    ]
    for prefix in prefixes:
        routes += [
            Route(prefix, metadata),
            Route(prefix + "/ready", model_ready),
            Route(prefix + "/config", model_config),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await server.start()
        yield
        await server.close()

    async def refused(request: Request, error: RequestError) -> Response:
        return _error(error.message, error.status)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return _error(f"{request.method} {request.url.path[:200]}: {error.detail}",
                      error.status_code)  # fmt: skip

    async def failed(request: Request, error: Exception) -> Response:
        return _error(f"the server failed on this request ({type(error).__name__}: "
                      f"{str(error)[:300]})", 500)  # fmt: skip

    return Starlette(
        routes=routes, lifespan=lifespan,
        exception_handlers={RequestError: refused, HTTPException: http_error, Exception: failed},
    )  # fmt: skip

