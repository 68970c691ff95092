"""``rlpol serve``: load the models, run the app on uvicorn, drain on SIGTERM.

uvicorn handles SIGTERM and SIGINT: it stops accepting connections, lets the requests in
flight finish (within ``DRAIN_TIMEOUT_S``), then the app's shutdown runs every queued batch
and stops the batchers; :func:`serve` then returns, and the CLI exits 0.
"""

from __future__ import annotations

import signal
import sys

from rlpol.serve.app import ServeConfig, create_app
from rlpol.serve.repository import ModelRepository, resolve_sources

__all__ = ["DRAIN_TIMEOUT_S", "serve"]

DRAIN_TIMEOUT_S = 30
"""Seconds a SIGTERM waits for requests in flight before closing their connections."""


def serve(
    arguments: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServeConfig | None = None,
    trust_code: bool = False,
    log_level: str = "warning",
) -> None:
    """Serve the models ``arguments`` name until SIGTERM or SIGINT.

    Args:
        arguments: artifact files, ``name=PATH`` pairs or model repository directories
            (:func:`~rlpol.serve.repository.resolve_sources`).
        host: the address to listen on.
        port: the TCP port.
        config: batching and limits.
        trust_code: allow ``.pt2`` archives (their loader runs code stored in the file).
        log_level: uvicorn's log level.

    Raises:
        ServeError: a bad argument or repository.
        ArtifactError: a file is not a loadable rlpol artifact.
    """
    import uvicorn

    repository = ModelRepository(resolve_sources(arguments), trust_code=trust_code)
    app = create_app(repository, config)
    served = ", ".join(f"{m.name} (v{m.version}, {m.artifact_format})" for m in repository)
    print(f"rlpol serve: {served} on http://{host}:{port}", file=sys.stderr, flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False,
            timeout_graceful_shutdown=DRAIN_TIMEOUT_S, lifespan="on",
        )
    )
    # uvicorn drains on SIGTERM / SIGINT, then raises the signal again for the handler it
    # found: a no-op one, so that a drained server returns (exit 0) instead of dying by it
    previous = {sig: signal.signal(sig, _drained) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if getattr(server, "started", True) is False:
        raise SystemExit(1)  # uvicorn could not bind (it logged why)


def _drained(signum: int, frame: object) -> None:
    """The handler uvicorn re-raises a stop signal to once it has drained: nothing to do."""
