"""The ``rlpol`` command line: export, bundle, verify, check, run, inspect, bench, serve,
triton-repo.

Commands only parse options and call library functions. Exit codes: 0 success; 1 a clear
error (bad file, bad artifact, ...) or, for ``check`` and ``verify``, a parity mismatch;
2 bad usage.

Every :class:`~rlpol.errors.RlpolError` a command raises becomes ``Error: <message>`` and its
exit code (1) in one place, :class:`RlpolGroup`. Commands import the library inside their
bodies, so ``rlpol --help`` and ``rlpol inspect`` (metadata only) never import torch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from rlpol.artifact.constants import EXPLORATION_TYPES
from rlpol.errors import RlpolError

__all__ = ["RlpolGroup", "main"]

EXPLORATIONS = list(EXPLORATION_TYPES)
DEVICES = ["cpu", "cuda"]
# commands that never touch torch: the group does not import it to set its threads
TORCH_FREE_COMMANDS = frozenset({"inspect", "serve", "triton-repo"})


def _table(headers: list[str], rows: list[tuple]) -> str:
    """A markdown-style table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _io_rows(metadata) -> list[tuple]:
    rows = []
    for role, infos in (("input", metadata.inputs), ("output", metadata.outputs)):
        for info in infos:
            key = info.key if isinstance(info.key, str) else str(tuple(info.key))
            rows.append((role, key, info.name, info.dtype, str(["batch", *info.shape])))
    for info in metadata.noise:
        rows.append(("noise", f"{info.module}:{info.draw}", info.name, "float32",
                     str(["batch", *info.shape]) + f" {info.distribution}"))
    for info in metadata.parameters:
        rows.append(("param", f"{info.module}:{info.parameter}", info.name, "float32",
                     f"[] = {info.value:g}"))
    for state in metadata.states:
        reset = f", reset by {state.reset_input}" if state.reset_input else ""
        rows.append(("state", f"{state.output} -> {state.input}", state.input, state.dtype,
                     str(["batch", *state.shape]) + f" initial {state.initial:g}{reset}"))
    return rows


class RlpolGroup(click.Group):
    """The ``rlpol`` group: turns an :class:`RlpolError` from any command into a CLI error.

    The user sees ``Error: <message>`` on stderr, no traceback, and the process exits with the
    error's ``exit_code`` (1), as click does for its own :class:`click.ClickException`.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RlpolError as error:
            failure = click.ClickException(error.message)
            failure.exit_code = error.exit_code
            raise failure from error


# the opt-in to formats whose loading runs code stored in the file (rlpol.artifact.trust)
TRUST_CODE = click.option(
    "--trust-code", "--trust-pt2", "trust_code", is_flag=True,
    help="Allow a .pt, .pt2 or .aoti.pt2 artifact: loading one runs code stored in the file "
         "(--trust-pt2 is the old name).",
)


# the batching options `rlpol serve` and `rlpol triton-repo` share
MAX_BATCH = click.option("--max-batch", type=click.IntRange(min=1), default=64, show_default=True,
                         help="Rows per batched graph call at most (1: no dynamic batching).")
MAX_DELAY_MS = click.option("--max-delay-ms", type=click.FloatRange(min=0), default=2.0,
                            show_default=True, help="How long a batch waits for more rows, at most.")
SEQUENCE_TIMEOUT_S = click.option("--sequence-timeout-s", type=click.FloatRange(min=0, min_open=True),
                                  default=60.0, show_default=True,
                                  help="Idle sequences (of stateful models) are dropped after this.")


@click.group(cls=RlpolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlpol")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch intra-op threads (1 is fastest for the small batches of a rollout).")
@click.pass_context
def main(ctx: click.Context, threads: int) -> None:
    """rlpol: export TorchRL-style policies to ONNX / TorchScript and replay them."""
    if ctx.invoked_subcommand not in TORCH_FREE_COMMANDS:
        import torch

        torch.set_num_threads(threads)


@main.command()
@click.argument("policy_file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Artifact path; the suffix picks the format (.onnx, .pt, .pt2, .aoti.pt2). "
                   "Default: POLICY_FILE with .onnx.")
@click.option("--exploration", type=click.Choice(EXPLORATIONS), default="deterministic",
              show_default=True, help="Exploration type the graph computes.")
@click.option("--opset", type=int, default=None, help="ONNX opset (>= 18).")
@click.option("--no-fold", is_flag=True, help="Do not fold observation transforms in.")
@click.option("--no-check", is_flag=True, help="Skip the quick eager-vs-exported check.")
def export(policy_file: Path, output: Path | None, exploration: str, opset: int | None,
           no_fold: bool, no_check: bool) -> None:
    """Export the policy defined in POLICY_FILE to an artifact.

    The artifact replaces OUTPUT only once it is complete and, unless --no-check, has passed
    the quick check; on any failure an existing OUTPUT is left as it was.
    """
    from rlpol.artifact import read_metadata
    from rlpol.errors import ExportError
    from rlpol.export import export_policy, load_policy_file
    from rlpol.verify import quick_check

    loaded = load_policy_file(policy_file)
    output = output if output is not None else policy_file.with_suffix(".onnx")
    summaries = []

    def check_before_replacing(staged: Path) -> None:
        report = quick_check(loaded.policy, staged, env=loaded.env)
        summaries.append(report.summary())
        if not report.ok:
            raise ExportError(
                f"the exported artifact does not match the eager policy ({report.summary()}), "
                f"so '{output}' was left as it was; make the policy's forward a pure function of "
                "its inputs (no Python-side state, no data-dependent branches), or pass "
                "--no-check to write the artifact anyway"
            )

    path = export_policy(
        loaded.policy, output, env=loaded.env, exploration=exploration, opset=opset,
        fold_transforms=not no_fold, policy_file=policy_file,
        check=None if no_check else check_before_replacing,
    )
    _, metadata = read_metadata(path)
    click.echo(f"wrote {path} ({metadata.artifact_format}, exploration {metadata.exploration})")
    click.echo(_table(["role", "key", "name", "dtype", "shape"], _io_rows(metadata)))
    for summary in summaries:
        click.echo(summary)


def _bundle_table(report) -> str:
    """A :class:`~rlpol.runtime.bundle.BundleReport` as a table, and the models it skipped."""
    lines = [_table(["model", "backend", "output", "dtype", "max |diff|", "worst data set",
                     "status"], report.rows())]
    lines += [f"skipped {model}: {why}" for model, why in report.skipped]
    return "\n".join(lines)


@main.command()
@click.argument("policy_file", type=click.Path(path_type=Path))
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--exploration", type=click.Choice(EXPLORATIONS), default="deterministic",
              show_default=True, help="Exploration type the models compute.")
@click.option("--aoti", is_flag=True,
              help="Also write model.aoti.pt2 (AOTInductor; compiles C++, takes a minute).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the test vectors' inputs.")
@click.option("--no-check", is_flag=True,
              help="Skip replaying the vectors through the models before writing DIR.")
def bundle(policy_file: Path, directory: Path, exploration: str, aoti: bool, seed: int,
           no_check: bool) -> None:
    """Write a deployable bundle of POLICY_FILE's policy to DIR.

    DIR gets model.onnx, model.pt (TorchScript), model.aoti.pt2 with --aoti, rlpol.json (the
    metadata) and test vectors (test_data_set_N/input_i.pb, output_j.pb) whose outputs are
    the eager policy's. DIR replaces an earlier bundle only once complete and, unless
    --no-check, verified (as `rlpol verify DIR` does); on any failure nothing is written.
    """
    from rlpol.errors import ExportError
    from rlpol.export import load_policy_file
    from rlpol.export.bundle import write_bundle
    from rlpol.runtime.bundle import verify_bundle

    loaded = load_policy_file(policy_file)
    reports = []

    def verify_before_replacing(staging: Path) -> None:
        report = verify_bundle(staging, trust_code=True)  # files this process just wrote
        reports.append(report)
        if not report.ok:
            click.echo(_bundle_table(report))
            raise ExportError(
                f"the bundle's models do not reproduce the eager policy's test vectors (see "
                f"the table), so '{directory}' was left as it was; make the policy's forward a "
                "pure function of its inputs, or pass --no-check to write the bundle anyway"
            )

    path = write_bundle(
        loaded.policy, directory, env=loaded.env, exploration=exploration,
        policy_file=policy_file, aoti=aoti, seed=seed,
        check=None if no_check else verify_before_replacing,
    )
    files = sorted(p.name for p in path.iterdir() if p.is_file())
    data_sets = sum(1 for p in path.iterdir() if p.is_dir())
    click.echo(f"wrote {path}: {', '.join(files)} and {data_sets} test data sets "
               f"(exploration {exploration})")
    for report in reports:
        click.echo(_bundle_table(report))


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--atol", type=float, default=1e-4, show_default=True,
              help="Absolute tolerance for float outputs (integers must match exactly).")
@click.option("--rtol", type=float, default=1e-5, show_default=True,
              help="Relative tolerance for float outputs.")
@click.option("--trust-code", "--trust-pt2", "trust_code", is_flag=True,
              help="Also run model.pt and model.aoti.pt2: loading them runs code stored in "
                   "them (--trust-pt2 is the old name).")
def verify(directory: Path, atol: float, rtol: float, trust_code: bool) -> None:
    """Replay the test vectors of the bundle DIRECTORY through every model in it.

    Prints the largest |diff| of each output of each model over all data sets. Exits 0 when
    every output matches (|diff| <= atol + rtol * |expected|; exact for integers), 1 if not.
    """
    from rlpol.runtime.bundle import verify_bundle

    report = verify_bundle(directory, atol=atol, rtol=rtol, trust_code=trust_code)
    click.echo(_bundle_table(report))
    models = len({check.model for check in report.checks})
    if not report.ok:
        bad = [f"{c.model}:{c.output}" for c in report.checks if not c.ok]
        click.echo(f"bundle FAILED for {len(bad)} output(s): {', '.join(bad)}", err=True)
        raise SystemExit(1)
    click.echo(f"bundle ok: {len(report.checks)} outputs of {models} models over "
               f"{report.data_sets} data sets (atol {atol:g}, rtol {rtol:g})")


@main.command()
@click.argument("policy_file", type=click.Path(path_type=Path))
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Auto-resetting env steps to compare.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the env and of torch for both rollouts.")
@click.option("--exploration", type=click.Choice(EXPLORATIONS), default=None,
              help="Default: the artifact's exploration type.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--atol", type=float, default=1e-5, show_default=True)
@TRUST_CODE
def check(policy_file: Path, artifact: Path, steps: int, seed: int, exploration: str | None,
          device: str, atol: float, trust_code: bool) -> None:
    """Compare ARTIFACT with the eager policy of POLICY_FILE over a seeded rollout.

    Prints the closed-loop table (every TED field) and the replay result (the eager policy
    on the artifact's own inputs). Exits 0 when they match, 1 when not; a closed loop that
    drifted only after its inputs already differed by float rounding is reported and
    accepted when the replay matches.
    """
    from rlpol.export import load_policy_file
    from rlpol.runtime import load_policy
    from rlpol.verify import check_artifact

    loaded = load_policy_file(policy_file)
    exported = load_policy(artifact, device=device, trust_code=trust_code)
    env, policy = loaded.env.to(device), loaded.policy.to(device)
    report = check_artifact(env, policy, exported, steps=steps, seed=seed, atol=atol,
                            exploration=exploration)
    click.echo(_table(["key", "dtype", "shape", "max |diff|", "first diverging step", "status"],
                      report.closed_loop.rows()))
    replay_worst = max((f.max_abs_diff for f in report.replay.fields), default=0.0)
    click.echo(f"replay on identical inputs: {'ok' if report.replay.ok else 'MISMATCH'} "
               f"(max |diff| {replay_worst:.3g})")
    if report.replaced_draws:
        modules = ", ".join(f"{s.original} ({s.path or 'the policy'})" for s in report.replaced_draws)
        click.echo(
            f"exact seeded replay of TorchRL's own random draws is impossible for {modules} "
            "(TorchRL draws with other ops, in another order): the rollouts above compare the "
            "artifact with rlpol's "
            "equivalent modules, and the exploration statistics below compare TorchRL's policy "
            f"with the artifact on the artifact's {report.exploration.steps} inputs"
        )
        click.echo(_table(["statistic", "TorchRL", "artifact", "tolerance", "status"],
                          report.exploration.rows()))
    if report.drifted:
        click.echo(
            f"closed loop drifted: inputs first differed (float rounding) at step "
            f"{report.first_input_difference}, outputs diverged no earlier; accepted since "
            "the artifact matches on identical inputs"
        )
    if not report.ok:
        bad = [row[0] for row in report.closed_loop.rows() if row[-1] != "ok"]
        bad += [f"replay:{row[0]}" for row in report.replay.rows() if row[-1] != "ok"]
        if report.exploration is not None:
            bad += [f"exploration:{row[0]}" for row in report.exploration.rows()
                    if row[-1] != "ok"]
        click.echo(f"parity FAILED for {len(bad)} field(s): {', '.join(bad)}", err=True)
        if not report.replay.ok:
            click.echo(
                "the eager policy differs from the artifact on identical inputs: if "
                f"'{policy_file}' draws its weights at random (no trained weights loaded in "
                "make_policy, no torch.manual_seed before building the policy), each load "
                "builds a different policy; load the weights the artifact was exported with",
                err=True,
            )
        raise SystemExit(1)
    click.echo(f"parity ok: {len(report.closed_loop.fields)} fields over {steps} steps "
               f"(atol {atol:g})")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--env", "env_id", default=None, help="Env id (default: the artifact's).")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Write the rendered frames to a GIF (or .mp4) file.")
@TRUST_CODE
def run(artifact: Path, env_id: str | None, episodes: int, seed: int, device: str,
        record: Path | None, trust_code: bool) -> None:
    """Run ARTIFACT for whole episodes and print their returns."""
    from rlpol.runtime import load_policy, make_artifact_env, run_episodes, summarize
    from rlpol.runtime.recording import FrameRecorder

    policy = load_policy(artifact, device=device, trust_code=trust_code)
    recorder = FrameRecorder(record) if record is not None else None
    env = make_artifact_env(policy.metadata, env_id=env_id, device=device,
                            render=recorder is not None)
    results = []
    hidden = not sys.stdout.isatty()  # progress is for a person at a terminal, not a log
    with click.progressbar(length=episodes, label="episodes", hidden=hidden) as bar:
        for result in run_episodes(env, policy, episodes=episodes, seed=seed,
                                   exploration=policy.exploration,
                                   on_frame=recorder.add if recorder else None):
            results.append(result)
            bar.update(1)
    env.close()
    mean, std = summarize(results)
    rows = [(r.episode, f"{r.episode_return:.2f}", r.length) for r in results]
    click.echo(_table(["episode", "return", "length"], rows))
    click.echo(f"mean return {mean:.2f} +- {std:.2f} over {len(results)} episodes")
    if recorder is not None:
        click.echo(f"recorded {recorder.save()}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def inspect(artifact: Path, as_json: bool) -> None:
    """Describe ARTIFACT: format, versions, inputs and outputs, specs, exploration."""
    from rlpol.artifact import read_metadata  # json + zipfile/onnx only: no torch

    artifact_format, metadata = read_metadata(artifact)
    if as_json:
        click.echo(json.dumps(json.loads(metadata.to_json()), indent=2, sort_keys=True))
        return
    click.echo(f"artifact     {artifact} ({artifact_format}, format v{metadata.format_version})")
    click.echo(f"exploration  {metadata.exploration}")
    click.echo(f"env          {metadata.env_id} {metadata.env_kwargs or ''}".rstrip())
    versions = ", ".join(f"{k} {v}" for k, v in sorted(metadata.versions.items()))
    click.echo(f"made with    rlpol {metadata.rlpol_version}, {versions}, opset {metadata.opset}")
    if metadata.policy_file:
        click.echo(f"policy       {metadata.policy_file} sha256 {metadata.policy_sha256}")
    folded = ", ".join(t.get("type", "?") for t in metadata.transforms) or "none"
    click.echo(f"folded       {folded}")
    click.echo(_table(["role", "key", "name", "dtype", "shape"], _io_rows(metadata)))
    for name, spec in (("observation", metadata.observation_spec),
                       ("action", metadata.action_spec)):
        if spec is not None:
            click.echo(f"{name} spec: {json.dumps(spec, sort_keys=True)}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True,
              default=(1, 64, 1024), show_default=True,
              help="Batch size to time; repeat the option for several.")
@click.option("--repeats", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@TRUST_CODE
def bench(artifact: Path, batches: tuple[int, ...], repeats: int, device: str,
          trust_code: bool) -> None:
    """Time ARTIFACT's inference at several batch sizes (median of REPEATS calls)."""
    import statistics

    from rlpol.runtime import load_policy

    policy = load_policy(artifact, device=device, trust_code=trust_code)
    rows = []
    for batch in batches:
        td = policy.sample_inputs(batch)
        policy(td)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            policy(td)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append((batch, f"{median * 1e6:.1f}", f"{median * 1e6 / batch:.2f}"))
    click.echo(_table(["batch", "median us/call", "us/row"], rows))


@main.command()
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@MAX_BATCH
@MAX_DELAY_MS
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches of one model that may run at once (threads per model).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=8 * 2**20,
              show_default=True, help="Largest request body accepted (413 above).")
@click.option("--body-timeout-s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Time a client has to send its request body (408 after).")
@SEQUENCE_TIMEOUT_S
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the server's noise generator (default: fresh entropy).")
@click.option("--engine", type=click.Choice(["embedded", "triton", "ray"]), default="embedded",
              show_default=True, help="What serves: rlpol's own server, Triton (PyTriton) or "
              "Ray Serve.")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=None,
              help="--engine triton: the gRPC port (default 8001).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="--engine triton: the Prometheus metrics port (default 8002).")
@click.option("--replicas", type=click.IntRange(min=1), default=None,
              help="--engine ray: replicas of each model (default 1; with --max-replicas, "
              "the fewest).")
@click.option("--max-replicas", type=click.IntRange(min=1), default=None,
              help="--engine ray: autoscale each model up to this many replicas.")
@click.option("--address", default=None,
              help="--engine ray: the Ray cluster to join (default: start a local one).")
@TRUST_CODE
def serve(artifacts: tuple[str, ...], host: str, port: int, max_batch: int,
          max_delay_ms: float, workers: int, max_body_bytes: int, body_timeout_s: float,
          sequence_timeout_s: float, seed: int | None, engine: str, grpc_port: int | None,
          metrics_port: int | None, replicas: int | None, max_replicas: int | None,
          address: str | None, trust_code: bool) -> None:
    """Serve ARTIFACTS over the KServe v2 / Open Inference Protocol (HTTP, tritonclient).

    Each ARTIFACT is a file (model name: its stem), NAME=PATH, or a model repository
    directory (DIR/<name>/<version>/model.onnx). Runs until SIGTERM or Ctrl-C, which
    finish the requests in flight; needs `pip install rlpol[serve]` (and `rlpol[triton]`
    or `rlpol[ray]` for those engines).
    """
    try:
        from rlpol.serve.app import ServeConfig
        from rlpol.serve.engines import EngineOptions, run_engine
    except ImportError as error:
        raise click.ClickException(
            f"rlpol serve needs the serve extra ({error}); install it with "
            "`pip install 'rlpol[serve]'`"
        ) from error

    config = ServeConfig(max_batch=max_batch, max_delay_ms=max_delay_ms, workers=workers,
                         max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s,
                         sequence_timeout_s=sequence_timeout_s, seed=seed)  # fmt: skip
    options = EngineOptions(grpc_port=grpc_port, metrics_port=metrics_port, replicas=replicas,
                            max_replicas=max_replicas, address=address)  # fmt: skip
    run_engine(engine, list(artifacts), host=host, port=port, config=config,
               trust_code=trust_code, options=options)  # fmt: skip


@main.command("triton-repo")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The model repository directory to write (missing or empty).")
@MAX_BATCH
@MAX_DELAY_MS
@SEQUENCE_TIMEOUT_S
@click.option("--force", is_flag=True, help="Replace OUTPUT even when it is not empty.")
def triton_repo(artifacts: tuple[str, ...], output: Path, max_batch: int, max_delay_ms: float,
                sequence_timeout_s: float, force: bool) -> None:
    """Write a Triton model repository of ONNX ARTIFACTS for the onnxruntime backend.

    Each ARTIFACT is a file (model name: its stem), NAME=PATH or an rlpol model repository.
    OUTPUT gets <name>/config.pbtxt (validated against Triton's model_config.proto) and
    <name>/1/model.onnx; it replaces OUTPUT only once complete. Exits 0 on success, 1 on an
    error (OUTPUT is left as it was).
    """
    from rlpol.serve.triton_repo import write_triton_repo

    names = write_triton_repo(list(artifacts), output, max_batch=max_batch,
                              max_delay_ms=max_delay_ms, sequence_timeout_s=sequence_timeout_s,
                              force=force)  # fmt: skip
    click.echo(f"wrote {output}: {', '.join(f'{name}/config.pbtxt, {name}/1/model.onnx' for name in names)}")


if __name__ == "__main__":
    main()
