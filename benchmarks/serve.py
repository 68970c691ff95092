"""``rlpol serve`` on loopback: latency and throughput against the unbatched server and a bare one.

Exports the benchmarks' CartPole policy (a 64x64 tanh MLP Q-value actor) to ONNX, then for
each server (started in a subprocess, stopped at the end) runs C concurrent tritonclient
clients (threads), each sending a bounded number of batch-1 requests, and reports p50 / p99
latency and throughput:

* ``rlpol serve`` with dynamic batching (``--max-batch 64 --max-delay-ms 2``);
* ``rlpol serve --max-batch 1`` (no batching);
* a bare uvicorn endpoint that decodes the same v2 JSON request, calls ``session.run``
  and answers (the latency floor of any Python HTTP server);
* the in-process ``ExportedPolicy`` call, the floor of all;
* the same v2 endpoint on the engines of ``rlpol serve --engine``: Triton Inference Server
  (PyTriton's dynamic batcher) and Ray Serve (2 replicas, ``@serve.batch``), each where its
  extra is installed (``rlpol[triton]``, ``rlpol[ray]``), else left out with a note.

Goals: batching >= 3x the unbatched throughput at 64 clients; p50 at 1 client <= 2x the bare
endpoint's (both with JSON tensors, which the bare endpoint speaks). Ratios are from one run:
the machine is shared, absolute numbers move between runs.

Usage: ``python benchmarks/serve.py [--requests 2000]`` (requests per concurrency level).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE_APP = '''
import json, sys
import numpy as np
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from rlpol._ort import open_session

session = open_session(sys.argv[1])
names = [o.name for o in session.get_outputs()]

async def infer(request):
    body = json.loads(await request.body())
    feed = {t["name"]: np.asarray(t["data"], np.float32).reshape(t["shape"]) for t in body["inputs"]}
    outputs = session.run(names, feed)
    return Response(json.dumps({"model_name": "bare", "outputs": [
        {"name": n, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel().tolist()}
        for n, a in zip(names, outputs)]}), media_type="application/json")

async def ready(request):
    return Response()

app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"]),
                        Route("/v2/health/ready", ready)])
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
'''


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server subprocess, ready on entry (with each of ``models`` loaded: Triton is ready
    before its models are), stopped (SIGTERM, then kill) on exit."""

    def __init__(self, command: list[str], port: int, models: tuple[str, ...] = ()) -> None:
        self.port = port
        self.models = models
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)

    def __enter__(self) -> Server:
        import tritonclient.http as httpclient

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                client = httpclient.InferenceServerClient(f"127.0.0.1:{self.port}")
                if client.is_server_ready() and all(map(client.is_model_ready, self.models)):
                    return self
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not start within 120 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _clients(port: int, model: str, clients: int, requests: int, *, binary: bool) -> dict:
    """Run ``clients`` threads sending ``requests`` batch-1 requests in all; the stats."""
    import tritonclient.http as httpclient

    latencies: list[float] = []
    lock = threading.Lock()
    per_client = max(1, requests // clients)
    obs = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    barrier = threading.Barrier(clients + 1)

    def client_thread() -> None:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
        tensor = httpclient.InferInput("observation", [1, 4], "FP32")
        tensor.set_data_from_numpy(obs, binary_data=binary)
        outputs = None if binary else [httpclient.InferRequestedOutput("action", binary_data=False)]
        for _ in range(3):  # warm-up, not timed
            client.infer(model, [tensor], outputs=outputs)
        mine = []
        barrier.wait()
        for _ in range(per_client):
            start = time.perf_counter()
            client.infer(model, [tensor], outputs=outputs)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "p50": statistics.median(latencies) * 1e3,
        "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
        "throughput": len(latencies) / wall,
    }


def _in_process(path: Path, calls: int = 2000) -> float:
    """The in-process ExportedPolicy batch-1 call's median, in ms."""
    import torch
    from tensordict import TensorDict

    from rlpol import load_policy

    policy = load_policy(path)
    td = TensorDict(observation=torch.zeros(1, 4), batch_size=[1])
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        policy(td)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


EMBEDDED_BATCHING = "rlpol serve (batching: --max-batch 64 --max-delay-ms 2)"
EMBEDDED_UNBATCHED = "rlpol serve --max-batch 1 (no batching)"


def _servers() -> list[tuple[str, Callable[[], list[str]]]]:
    """``(row label, a function giving its extra rlpol serve options)`` of each server to measure: the
    embedded server batching and not, then each engine whose extra is installed."""
    servers = [
        (EMBEDDED_BATCHING, lambda: ["--max-batch", "64"]),
        (EMBEDDED_UNBATCHED, lambda: ["--max-batch", "1"]),
    ]
    engines = [
        ("pytriton", "rlpol serve --engine triton (Triton's dynamic batcher, max batch 64)",
         lambda: ["--engine", "triton", "--grpc-port", str(_port()),
                       "--metrics-port", str(_port())]),
        ("ray", "rlpol serve --engine ray --replicas 2 (@serve.batch, max batch 64)",
         lambda: ["--engine", "ray", "--replicas", "2"]),
    ]  # fmt: skip
    for module, label, options in engines:
        if importlib.util.find_spec(module) is None:
            print(f"(left out: {label}; its extra is not installed, no {module})")
        else:
            servers.append((label, options))
    return servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per concurrency level (bounded: the run stops by itself)")
    args = parser.parse_args()
    from benchmarks._harness import q_value_policy
    from rlpol import GymEnv, export_policy

    workdir = Path(tempfile.mkdtemp(prefix="rlpol-serve-bench-"))
    env = GymEnv("CartPole-v1")
    path = export_policy(q_value_policy(env)[1], workdir / "cartpole.onnx", env=env)
    floor = _in_process(path)
    # a graph that dominates the HTTP cost (4 x 2048 MLP, ~13M weights): where batching pays
    import torch

    from rlpol import MLP, QValueActor

    torch.manual_seed(0)
    wide = QValueActor(MLP(4, 2, num_cells=[2048] * 4), spec=env.single_action_spec).eval()
    wide_path = export_policy(wide, workdir / "wide.onnx", env=env)
    python = sys.executable
    levels = (1, 16, 64)
    rows = []  # (server, clients, tensors, stats)
    for label, options in _servers():
        port = _port()
        command = [python, "-m", "rlpol", "serve", f"cartpole={path}", f"wide={wide_path}",
                   "--port", str(port), *options()]  # fmt: skip
        with Server(command, port, models=("cartpole", "wide")):
            for clients in levels:
                stats = _clients(port, "cartpole", clients, args.requests, binary=True)
                rows.append((label, clients, "binary", stats))
            for clients in (1, 64):
                stats = _clients(port, "wide", clients, args.requests // 2, binary=True)
                rows.append((label + ", 4x2048 MLP", clients, "binary", stats))
            if label == EMBEDDED_BATCHING:
                rows.append((label, 1, "JSON",
                             _clients(port, "cartpole", 1, args.requests, binary=False)))
    port = _port()
    (workdir / "bare.py").write_text(BARE_APP)
    with Server([python, str(workdir / "bare.py"), str(path), str(port)], port):
        bare = _clients(port, "bare", 1, args.requests, binary=False)
    rows.append(("bare uvicorn endpoint calling session.run (reference)", 1, "JSON", bare))

    print("| server | clients | tensors | p50 (ms) | p99 (ms) | throughput (req/s) |")
    print("|---|---:|---|---:|---:|---:|")
    for label, clients, tensors, stats in rows:
        print(f"| {label} | {clients} | {tensors} | {stats['p50']:.2f} | {stats['p99']:.2f} | "
              f"{stats['throughput']:.0f} |")
    print(f"| in-process ExportedPolicy call, batch 1 (floor) | - | - | {floor:.3f} | - | "
          f"{1e3 / floor:.0f} |")
    def at(clients: int, batching: bool, wide: bool) -> dict:
        label = (EMBEDDED_BATCHING if batching else EMBEDDED_UNBATCHED) + (", 4x2048 MLP" if wide else "")
        return next(s for name, c, t, s in rows if c == clients and t == "binary" and name == label)

    wide_speedup = at(64, True, True)["throughput"] / at(64, False, True)["throughput"]
    batched, unbatched = at(64, True, False), at(64, False, False)
    json_p50 = next(s for label, c, t, s in rows if t == "JSON" and label == EMBEDDED_BATCHING)["p50"]
    speedup = batched["throughput"] / unbatched["throughput"]
    latency = json_p50 / bare["p50"]
    print()
    print(f"64 clients: batching gives {speedup:.2f}x the unbatched throughput (goal >= 3): "
          f"{'pass' if speedup >= 3 else 'FAIL'}")
    print(f"64 clients, 4x2048 MLP: batching gives {wide_speedup:.2f}x the unbatched "
          f"throughput (goal >= 3): {'pass' if wide_speedup >= 3 else 'FAIL'}")
    print(f"1 client, JSON: p50 is {latency:.2f}x the bare endpoint's (goal <= 2): "
          f"{'pass' if latency <= 2 else 'FAIL'}")
    print(f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {args.requests} "
          "requests per level, clients are tritonclient threads on the same machine)")
    return 0 if speedup >= 3 and latency <= 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
