"""Test vectors for a bundle: graph inputs drawn from the env's spec, outputs from the eager policy.

The reference is the eager policy itself, run through :class:`~rlpol.export.graph.PolicyGraph`
without tracing: the folded transforms and the policy run as PyTorch modules on the graph's
inputs, the noise draws and exploration parameters fed as the graph would be. What an
exported model must reproduce is therefore exactly what the eager policy computes on the same
inputs.

Inputs (see :mod:`rlpol.artifact.bundle` for the data sets they make):

* observation samples: a float entry with bounds is drawn uniformly within them, each bound
  first clipped to ``[-EXTREME, EXTREME]`` (so unbounded and float-max bounds give finite,
  large values); other entries (integers, bools, one-hot) come from the spec's ``rand``;
* extreme rows: every observation element at its (clipped) lower bound, at its upper bound,
  and the two alternations of both; a saturating policy (``2 * tanh(loc)``) hits its limits
  there. State inputs and the reset input keep sampled values in these rows;
* noise draws from their distribution, and parameters at their recorded values.

Every draw comes from one ``torch.Generator`` seeded with ``seed``: the same policy gives the
same vectors, and torch's global generator is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from tensordict.nn import TensorDictModuleBase

from rlpol.artifact.bundle import DataSet
from rlpol.artifact.metadata import ArtifactMetadata
from rlpol.errors import ExportError
from rlpol.export.graph import PolicyGraph, build_signature
from rlpol.toolkit.envs import EnvBase
from rlpol.toolkit.envs.folding import folded_transforms, graph_input_spec
from rlpol.toolkit.modules import ExplorationType
from rlpol.toolkit.noise import NoiseSpec, draw
from rlpol.toolkit.specs import TensorSpec

__all__ = [
    "BATCH",
    "EXTREME",
    "SEQUENCE_BATCH",
    "SEQUENCE_RESET_STEP",
    "SEQUENCE_STEPS",
    "reference_data_sets",
]

BATCH = 8  # the larger batch: BATCH - EXTREME_ROWS spec samples, then the extreme rows
EXTREME_ROWS = 4  # low, high, and the two alternations of low and high
EXTREME = 100.0  # float bounds are clipped to [-EXTREME, EXTREME] before sampling
SEQUENCE_BATCH = 4  # rows of a stateful policy's sequence
SEQUENCE_STEPS = 6  # its steps, one data set each
SEQUENCE_RESET_STEP = 3  # the step at which the even rows start again (is_init True)


def reference_data_sets(
    policy: TensorDictModuleBase,
    env: EnvBase,
    metadata: ArtifactMetadata,
    *,
    seed: int = 0,
) -> list[DataSet]:
    """The data sets of a bundle: inputs and the eager policy's outputs, in graph order.

    Args:
        policy: the eager policy the bundle's models were exported from.
        env: its env (the observation spec, and the transforms the export folded).
        metadata: the metadata of the exported models (graph names and order).
        seed: seeds the generator every input is drawn from.

    Returns:
        batch 1, then batch :data:`BATCH` (with :data:`EXTREME_ROWS` extreme rows), then for
        a stateful policy :data:`SEQUENCE_STEPS` steps at batch :data:`SEQUENCE_BATCH`.

    Raises:
        ExportError: the eager policy's interface is not the metadata's (the metadata belongs
            to another policy or export settings).
    """
    graph = _reference_graph(policy, env, metadata)
    sampler = _Sampler(graph_input_spec(env, True), metadata, torch.Generator().manual_seed(seed))
    data_sets = [
        _call(graph, metadata, sampler, sampler.observations(1)),
        _call(graph, metadata, sampler, sampler.with_extremes(BATCH)),
    ]
    if metadata.states:
        data_sets.extend(_sequence(graph, metadata, sampler))
    return data_sets


def _reference_graph(
    policy: TensorDictModuleBase, env: EnvBase, metadata: ArtifactMetadata
) -> PolicyGraph:
    """The eager policy behind the exported graph's interface (what export traced)."""
    spec = graph_input_spec(env, True)
    with torch.random.fork_rng(devices=[]):  # the probe run draws from the global generator
        signature = build_signature(
            policy, spec.rand((2,)), exploration=ExplorationType(metadata.exploration),
            transforms=folded_transforms(env),
        )  # fmt: skip
    expected = (
        [info.name for info in (*metadata.inputs, *metadata.noise, *metadata.parameters)],
        [info.name for info in metadata.outputs],
    )
    if (signature.input_names, signature.output_names) != expected:
        raise ExportError(
            f"the eager policy's graph interface (inputs {signature.input_names}, outputs "
            f"{signature.output_names}) is not the exported models' ({expected[0]}, "
            f"{expected[1]}); bundle the policy with the env it was exported with"
        )
    return PolicyGraph(policy, signature).eval()


class _Sampler:
    """Draws the observation-side graph inputs (``metadata.inputs``) from the spec."""

    def __init__(
        self, spec: TensorSpec, metadata: ArtifactMetadata, generator: torch.Generator
    ) -> None:
        self.generator = generator
        self._leaves = [(info.name, spec[info.key]) for info in metadata.inputs]
        self._states = {state.input for state in metadata.states}
        self._states |= {state.reset_input for state in metadata.states} - {None}

    def observations(self, rows: int) -> dict[str, torch.Tensor]:
        """One sample of every input, ``[rows, *shape]``, by graph name."""
        return {name: self._sample(leaf, rows) for name, leaf in self._leaves}

    def with_extremes(self, rows: int) -> dict[str, torch.Tensor]:
        """Samples, then the extreme rows of every observation (states keep samples)."""
        values = self.observations(rows)
        for name, leaf in self._leaves:
            box = _box(leaf)
            if name in self._states or box is None:
                continue
            low, high = box
            alternate = (torch.arange(low.numel()) % 2 == 0).reshape(low.shape)
            extremes = torch.stack(
                [low, high, torch.where(alternate, low, high), torch.where(alternate, high, low)]
            )
            values[name][-EXTREME_ROWS:] = extremes.to(leaf.dtype)
        return values

    def _sample(self, leaf: TensorSpec, rows: int) -> torch.Tensor:
        box = _box(leaf)
        if box is None or not leaf.dtype.is_floating_point:
            return leaf.rand((rows,), generator=self.generator)
        low, high = box
        u = torch.rand((rows, *leaf.shape), generator=self.generator, dtype=torch.float64)
        return (low * (1 - u) + high * u).to(leaf.dtype)


def _box(leaf: TensorSpec) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A leaf's bounds as float64, clipped to ``[-EXTREME, EXTREME]`` (None: no bounds)."""
    space = getattr(leaf, "space", None)
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if not isinstance(low, torch.Tensor) or not isinstance(high, torch.Tensor):
        return None
    low = low.double().nan_to_num(neginf=-EXTREME).clamp(-EXTREME, EXTREME)
    high = high.double().nan_to_num(posinf=EXTREME).clamp(-EXTREME, EXTREME)
    shape = torch.broadcast_shapes(low.shape, high.shape, leaf.shape)
    return low.expand(shape), high.expand(shape)


def _call(
    graph: PolicyGraph,
    metadata: ArtifactMetadata,
    sampler: _Sampler,
    observations: dict[str, torch.Tensor],
) -> DataSet:
    """One data set: ``observations`` plus drawn noise and parameters, and the eager outputs."""
    rows = next(iter(observations.values())).shape[0]
    inputs = dict(observations)
    for info in metadata.noise:
        spec = NoiseSpec(info.draw, info.distribution, tuple(info.shape))
        inputs[info.name] = draw(spec, (rows,), generator=sampler.generator)
    for info in metadata.parameters:
        inputs[info.name] = torch.tensor(info.value, dtype=torch.float32)
    device = _device_of(graph)
    with torch.no_grad():
        outputs = graph(*(value.to(device) for value in inputs.values()))
    return DataSet(
        inputs={name: value.numpy() for name, value in inputs.items()},
        outputs={
            info.name: value.detach().cpu().numpy()
            for info, value in zip(metadata.outputs, outputs)
        },
    )


def _sequence(
    graph: PolicyGraph, metadata: ArtifactMetadata, sampler: _Sampler
) -> Iterator[DataSet]:
    """:data:`SEQUENCE_STEPS` steps, each state input fed the state output of the step before."""
    previous: DataSet | None = None
    for step in range(SEQUENCE_STEPS):
        inputs = sampler.observations(SEQUENCE_BATCH)
        starting = torch.zeros((SEQUENCE_BATCH, 1), dtype=torch.bool)
        starting[:] = step == 0
        starting[0::2] |= step == SEQUENCE_RESET_STEP
        for state in metadata.states:
            if previous is None:
                inputs[state.input] = torch.full_like(inputs[state.input], state.initial)
            else:
                inputs[state.input] = torch.from_numpy(previous.outputs[state.output].copy())
            if state.reset_input is not None:
                inputs[state.reset_input] = starting
        previous = _call(graph, metadata, sampler, inputs)
        yield previous


def _device_of(module: torch.nn.Module) -> torch.device:
    parameter = next(iter(module.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
