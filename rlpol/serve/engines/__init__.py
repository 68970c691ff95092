"""Where ``rlpol serve --engine`` runs the models: rlpol's own server or an existing engine.

==========  =================================================  ===========================
engine      what serves the v2 endpoints                        module
==========  =================================================  ===========================
embedded    rlpol's server (Starlette on uvicorn, the default)  :mod:`rlpol.serve.server`
triton      Triton Inference Server, bound through PyTriton     :mod:`.triton`
ray         a Ray Serve deployment                              :mod:`.ray`
==========  =================================================  ===========================

Every engine module has ``serve(arguments, *, host, port, config, trust_code, options)``
with the embedded server's meaning of the first five (:func:`rlpol.serve.server.serve`)
and runs until SIGTERM / SIGINT, stopping everything it started.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields

from rlpol.errors import ServeError

__all__ = ["ENGINES", "ENGINE_OPTIONS", "EngineOptions", "check_ports_free", "run_engine",
           "stop_signal"]

ENGINES = {
    "embedded": ("rlpol.serve.server", "serve"),
    "triton": ("rlpol.serve.engines.triton", "triton"),
    "ray": ("rlpol.serve.engines.ray", "ray"),
}
"""Engine name: (the module that serves on it, the rlpol extra that installs it)."""

ENGINE_OPTIONS = {"triton": ("grpc_port", "metrics_port"), "ray": ("replicas", "max_replicas", "address")}
"""The :class:`EngineOptions` fields each engine takes."""


@dataclass(frozen=True)
class EngineOptions:
    """The options only some engines take (None: the engine's default).

    Attributes:
        grpc_port: Triton's gRPC port.
        metrics_port: Triton's Prometheus metrics port.
        replicas: Ray Serve replicas of each model (with ``max_replicas``: the fewest).
        max_replicas: Ray Serve autoscales each model between ``replicas`` and this many.
        address: the Ray cluster to join (None: start a local one).
    """

    grpc_port: int | None = None
    metrics_port: int | None = None
    replicas: int | None = None
    max_replicas: int | None = None
    address: str | None = None


def run_engine(engine: str, arguments: list[str], *, host: str, port: int, config, trust_code: bool,
               options: EngineOptions) -> None:
    """Serve ``arguments`` on ``engine`` until SIGTERM or SIGINT.

    Raises:
        ServeError: an unknown engine, an option it does not take, or its extra is not
            installed.
    """
    if engine not in ENGINES:
        raise ServeError(f"unknown engine {engine!r}; choose one of {sorted(ENGINES)}")
    taken = ENGINE_OPTIONS.get(engine, ())
    for field in fields(options):
        if getattr(options, field.name) is not None and field.name not in taken:
            owner = next(name for name, names in ENGINE_OPTIONS.items() if field.name in names)
            flag = "--" + field.name.replace("_", "-")
            raise ServeError(f"{flag} is an option of --engine {owner}, not of --engine {engine}; "
                             f"drop it or add --engine {owner}")
    module_name, extra = ENGINES[engine]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ServeError(
            f"--engine {engine} needs the {extra} extra ({error}); install it with "
            f"`pip install 'rlpol[{extra}]'`"
        ) from error
    if engine == "embedded":
        module.serve(arguments, host=host, port=port, config=config, trust_code=trust_code)
    else:
        module.serve(arguments, host=host, port=port, config=config, trust_code=trust_code,
                     options=options)


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Refuse at once a port something already listens on, before an engine starts only to
    fail on it (Triton would time out after 2 minutes, Ray after starting a cluster).

    Args:
        host: the address the engine will listen on.
        ports: each port by the option that sets it (``{"--port": 8000}``).

    Raises:
        ServeError: ``host:port`` cannot be bound, naming the option that sets it.
    """
    for option, port in ports.items():
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ServeError(f"{host}:{port} ({option}) is not free ({error.strerror}); stop "
                                 f"what listens there or pass another {option}") from None  # fmt: skip


@contextlib.contextmanager
def stop_signal() -> Iterator[threading.Event]:
    """An event SIGTERM or SIGINT sets while the block runs (an engine waits on it, then
    stops what it started); the previous handlers come back after."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
