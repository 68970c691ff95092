"""``rlpol serve --engine ray``: the v2 endpoints from a Ray Serve deployment.

Starts a local Ray cluster (no dashboard, usage stats off, its logs in a fresh
``rlpol-ray-*`` directory under the temp dir, printed at start), or joins the cluster
``--address`` names. Serve's HTTP proxy, which answers the v2 endpoints, listens on ``host``
only; Ray's own gRPC ports listen on every interface (Ray has no loopback-only mode) and are
guarded by Ray's token authentication, which stays on. It runs
:func:`~rlpol.serve.engines.ray_app.build_application` behind that proxy and blocks until
SIGTERM / SIGINT; then it stops Serve and the local cluster it started (from an
``--address`` cluster it deletes its application and disconnects, leaving the rest running).
"""

from __future__ import annotations

import os
import sys
import tempfile

import ray
from ray import serve as ray_serve

from rlpol.errors import ServeError
from rlpol.serve.app import ServeConfig
from rlpol.serve.engines import EngineOptions, check_ports_free, stop_signal
from rlpol.serve.engines.ray_app import build_application
from rlpol.serve.repository import ModelRepository, resolve_sources

__all__ = ["APPLICATION", "serve"]

APPLICATION = "rlpol"
"""The Serve application's name (``serve status`` lists it)."""


def serve(arguments: list[str], *, host: str, port: int, config: ServeConfig | None,
          trust_code: bool, options: EngineOptions) -> None:  # fmt: skip
    """Serve the models ``arguments`` name from Ray Serve until SIGTERM or SIGINT.

    Args:
        arguments: as :func:`rlpol.serve.server.serve` takes them.
        host: the address Serve's HTTP proxy listens on.
        port: its TCP port.
        config: batching and limits (the replicas batch with ``max_batch`` and
            ``max_delay_ms``).
        trust_code: allow ``.pt2`` archives.
        options: ``replicas`` (default 1), ``max_replicas`` (autoscaling), ``address``.

    Raises:
        ServeError: a bad argument or repository, ``max_replicas`` below ``replicas``, a
            port in use, or an ``address`` no cluster answers at.
        ArtifactError: a file is not a loadable rlpol artifact.
    """
    config = config or ServeConfig()
    sources = resolve_sources(arguments)
    ModelRepository(sources, trust_code=trust_code)  # fail here, with a sentence, not in a replica
    replicas = options.replicas or 1
    if options.max_replicas is not None and options.max_replicas < replicas:
        raise ServeError(f"--max-replicas {options.max_replicas} is below --replicas {replicas}; "
                         "Serve autoscales each model between the two, so give --max-replicas "
                         f"{replicas} or more")  # fmt: skip
    check_ports_free(host, {"--port": port})
    _connect(options.address)
    # after ray.init, which installs handlers of its own: a stop signal ends the wait below
    with stop_signal() as stop:
        try:
            ray_serve.start(http_options={"host": host, "port": port})
            ray_serve.run(build_application(sources, config=config, trust_code=trust_code,
                                            replicas=replicas, max_replicas=options.max_replicas),
                          name=APPLICATION, route_prefix="/")  # fmt: skip
            served = ", ".join(f"{s.name} (v{s.version})" for s in sources)
            print(f"rlpol serve: {served} on http://{host}:{port} (Ray Serve, {replicas} "
                  "replica(s) each)", file=sys.stderr, flush=True)  # fmt: skip
            stop.wait()
        finally:
            if options.address is None:
                ray_serve.shutdown()
            else:
                ray_serve.delete(APPLICATION)
            ray.shutdown()  # a local cluster stops with its driver


def _connect(address: str | None) -> None:
    """Join the cluster at ``address``, or start a local one."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local cluster's processes inherit it
    if address is not None:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as error:
            raise ServeError(
                f"--address {address}: no Ray cluster let this server join "
                f"({str(error).splitlines()[-1][:300]}); pass the address `ray start --head` "
                "printed (with RAY_AUTH_MODE=token where the cluster uses token "
                "authentication), or drop --address to start a local cluster"
            ) from error
        print(f"rlpol serve: joined the Ray cluster at {address}", file=sys.stderr, flush=True)
        return
    temp_dir = tempfile.mkdtemp(prefix="rlpol-ray-")
    context = ray.init(include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    print(f"rlpol serve: started a local Ray cluster at {context.address_info['gcs_address']} "
          f"(logs: {temp_dir})", file=sys.stderr, flush=True)
