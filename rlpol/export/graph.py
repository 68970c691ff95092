"""The thin module that exporters trace: named tensors in, a TensorDict inside, a tuple out.

Exporting a ``TensorDictModule`` directly freezes the batch size and names outputs after
internal nodes; tracing :class:`PolicyGraph` instead gives one graph input per in_key, one
per random draw and one per exploration parameter, and one output per key the policy writes.

Graph inputs, in order:

1. the keys the folded transforms and the policy read before anything in the graph writes
   them (the graph takes raw env observations: the env's foldable transforms run first,
   inside it; a folded ``CatFrames`` reads its previous stack and ``is_init`` like a
   recurrent state), each ``[batch, *shape]``, in the order first read;
2. the draws of the stochastic modules that explore under the export's exploration type, in
   the order :mod:`rlpol.toolkit.noise` documents, each ``[batch, *shape]`` float32;
3. their exploration parameters (``eps``, ``sigma``, ...), each a 0-d float32 tensor.

Its ``forward`` takes one positional argument per graph input, named after the input by
:func:`rlpol.artifact.naming.argument_names` (the graph name itself where it is an
identifier), so the TorchScript schema and the torch.export signature show those names.

Graph outputs: every key the policy writes, in the order of ``policy.out_keys`` (keys it
writes beyond those follow, sorted), then the next states the folded transforms write
(``("next", state_key)``), sorted.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase

from rlpol.artifact.naming import argument_names, key_to_name
from rlpol.errors import ExportError, RlpolError
from rlpol.toolkit.envs.transforms import Transform
from rlpol.toolkit.keys import NEXT, NestedKey
from rlpol.toolkit.modules import ExplorationType, set_exploration_type, set_recurrent_mode
from rlpol.toolkit.noise import (
    NoiseSpec,
    StochasticModule,
    draw,
    noise_source,
    stochastic_modules,
)

__all__ = ["GraphSignature", "NoisePlan", "PolicyGraph", "build_signature"]


@dataclass(frozen=True)
class NoisePlan:
    """The graph inputs that stand in for one stochastic module's draws and parameters."""

    module_name: str
    module: StochasticModule
    draws: tuple[NoiseSpec, ...]
    parameters: tuple[tuple[str, float], ...]

    def draw_names(self) -> list[str]:
        return [f"noise.{self.module_name}.{spec.name}" for spec in self.draws]

    def parameter_names(self) -> list[str]:
        return [f"param.{self.module_name}.{name}" for name, _ in self.parameters]


@dataclass(frozen=True)
class TensorSlot:
    """One named tensor crossing the graph boundary: its key, name, dtype and trailing shape."""

    key: NestedKey
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class GraphSignature:
    """Everything about the graph's interface that the metadata records."""

    inputs: tuple[TensorSlot, ...]
    noise: tuple[NoisePlan, ...]
    outputs: tuple[TensorSlot, ...]
    transforms: tuple[Transform, ...]
    exploration: ExplorationType

    @property
    def input_names(self) -> list[str]:
        names = [slot.name for slot in self.inputs]
        for plan in self.noise:
            names += plan.draw_names()
        for plan in self.noise:
            names += plan.parameter_names()
        return names

    @property
    def output_names(self) -> list[str]:
        return [slot.name for slot in self.outputs]


@contextlib.contextmanager
def _tracing_context(exploration: ExplorationType) -> Iterator[None]:
    """Exploration type set, recurrent modules in step mode, distribution checks off.

    Step mode (one step, the state reset inside) is what a deployed policy computes; the
    distribution argument checks are data-dependent and cannot be traced.
    """
    validate = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        with set_exploration_type(exploration), set_recurrent_mode(False):
            yield
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)


@contextlib.contextmanager
def tracer_errors(tracer: str, graph: PolicyGraph) -> Iterator[None]:
    """Silence the tracer's warnings; turn its failures into one-sentence ExportErrors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except ExportError:
        raise
    except Exception as error:  # tracers raise many types; name the one raised
        raise ExportError(
            f"{tracer} failed on {type(graph.policy).__name__}: "
            f"{type(error).__name__}: {str(error).strip().splitlines()[0][:500]}"
        ) from error


class _GraphNoise:
    """A noise source that hands each planned module its graph-input tensors."""

    def __init__(self, plans: Sequence[NoisePlan], draws: Sequence[torch.Tensor],
                 parameters: Sequence[torch.Tensor]) -> None:
        self._draws: dict[int, list[torch.Tensor]] = {}
        self._parameters: dict[int, dict[str, torch.Tensor]] = {}
        self.used: list[str] = []
        draws, parameters = list(draws), list(parameters)
        for plan in plans:
            self._draws[id(plan.module)] = [draws.pop(0) for _ in plan.draws]
            self._parameters[id(plan.module)] = {
                name: parameters.pop(0) for name, _ in plan.parameters
            }

    def draws(self, module: StochasticModule, batch_shape: torch.Size, device: torch.device):
        if id(module) not in self._draws:
            raise ExportError(
                f"{type(module).__name__} drew random numbers that the export did not plan "
                "for; it must report is_exploring() truthfully under the exploration type."
            )
        self.used.append(type(module).__name__)
        return self._draws[id(module)]

    def parameters(self, module: StochasticModule) -> dict[str, torch.Tensor]:
        return self._parameters.get(id(module), {})


class _RecordingNoise:
    """A noise source that draws from torch's generator and records who drew."""

    def __init__(self) -> None:
        self.modules: list[int] = []

    def draws(self, module: StochasticModule, batch_shape: torch.Size, device: torch.device):
        self.modules.append(id(module))
        return [draw(spec, batch_shape, device=device) for spec in module.noise_specs]

    def parameters(self, module: StochasticModule) -> dict[str, torch.Tensor]:
        return module.exploration_parameters()


class PolicyGraph(torch.nn.Module):
    """Wraps a policy so that it takes and returns plain tensors (see the module docstring).

    Args:
        policy: the tensordict policy.
        signature: the interface, from :func:`build_signature`.
    """

    def __init__(self, policy: TensorDictModuleBase, signature: GraphSignature) -> None:
        super().__init__()
        self.policy = policy
        self.signature = signature
        # The tracers name the traced arguments after forward's signature (torch.jit.trace's
        # schema, torch.export's placeholders): this instance's forward declares one
        # positional parameter per graph input, named by argument_names.
        bound = types.MethodType(type(self).forward, self)
        self.forward = _named(bound, argument_names(signature.input_names))

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        signature = self.signature
        n_inputs = len(signature.inputs)
        n_draws = sum(len(plan.draws) for plan in signature.noise)
        observations = tensors[:n_inputs]
        source = _GraphNoise(
            signature.noise, tensors[n_inputs : n_inputs + n_draws], tensors[n_inputs + n_draws :]
        )
        td = TensorDict(
            {slot.key: value for slot, value in zip(signature.inputs, observations)},
            batch_size=observations[0].shape[:1],
        )
        for transform in signature.transforms:
            td = transform(td)
        with _tracing_context(signature.exploration), noise_source(source):
            td = self.policy(td)
        return tuple(td.get(slot.key) for slot in signature.outputs)


def _named(function, names: Sequence[str]):
    """A wrapper of ``function(*tensors)`` whose signature has one parameter per name."""

    def forward(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return function(*tensors)

    forward.__signature__ = inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in names]
    )
    return forward


def build_signature(
    policy: TensorDictModuleBase,
    example: TensorDictBase,
    *,
    exploration: ExplorationType,
    transforms: Sequence[Transform] = (),
) -> GraphSignature:
    """Run ``transforms`` then ``policy`` once on ``example`` to learn the graph's interface.

    Args:
        policy: the tensordict policy to export.
        example: raw observations (before ``transforms``) with one leading batch dim, and
            the state entries the transforms read (a folded ``CatFrames``'s previous stack
            and ``is_init``).
        exploration: the exploration type the graph is traced under.
        transforms: the env's transforms to fold into the graph, in env order (tensordict
            modules whose ``forward`` does to a tensordict what they do to the env's).

    Raises:
        ExportError: an entry the graph reads is missing from ``example``, or the policy
            writes nothing.
    """
    if example.batch_dims != 1:
        raise ExportError(
            f"the export example must have exactly one batch dim, got batch_size "
            f"{list(example.batch_size)}"
        )
    in_keys = _read_before_written([*transforms, policy])
    missing = [key for key in in_keys if key not in example.keys(include_nested=True)]
    if missing:
        raise ExportError(
            f"the policy reads {missing}, which the env's observation spec (or the example) "
            f"does not provide; it provides {sorted(map(str, example.keys(True, True)))}. "
            "Export with an `example` TensorDict holding these keys."
        )
    inputs = tuple(_slot(key, example.get(key)) for key in in_keys)
    td = example.select(*in_keys).clone()
    for transform in transforms:
        td = transform(td)
    states = sorted(
        (key for key in td.keys(include_nested=True, leaves_only=True)
         if isinstance(key, tuple) and key[0] == NEXT),
        key=key_to_name,
    )  # fmt: skip
    recorder = _RecordingNoise()
    with _tracing_context(exploration), noise_source(recorder):
        out = _probe(policy, td, inputs)
    plans = _noise_plans(policy, recorder.modules)
    written = _written_keys(policy, td, out) + states
    outputs = tuple(_slot(key, out.get(key)) for key in written)
    if not outputs:
        raise ExportError("the policy wrote no key; a policy must write at least an action")
    return GraphSignature(inputs, plans, outputs, tuple(transforms), exploration)


def _read_before_written(modules: Sequence[TensorDictModuleBase]) -> list[NestedKey]:
    """The keys ``modules``, run in order, read before any of them writes them (first-read order)."""
    read: dict[NestedKey, None] = {}
    written: set[NestedKey] = set()
    for module in modules:
        for key in module.in_keys:
            key = _canonical(key)
            if key not in written:
                read.setdefault(key)
        written.update(_canonical(key) for key in module.out_keys)
    return list(read)


def _canonical(key: NestedKey) -> NestedKey:
    """``("a",)`` and ``"a"`` are one key."""
    return key[0] if isinstance(key, tuple) and len(key) == 1 else key


def _probe(
    policy: TensorDictModuleBase, td: TensorDictBase, inputs: Sequence[TensorSlot]
) -> TensorDictBase:
    """Run the policy once on the example; its own failure becomes a clear ExportError."""
    try:
        out = policy(td)
    except RlpolError:
        raise  # already a sentence for the user (a spec or input mismatch)
    except Exception as error:  # a policy's forward can raise anything; name what it raised
        fed = ", ".join(
            f"{slot.key!r} {str(slot.dtype).removeprefix('torch.')} "
            f"[{', '.join(map(str, (td.batch_size[0], *slot.shape)))}]"
            for slot in inputs
        )
        message = str(error).strip().splitlines()
        raise ExportError(
            f"the policy raised {type(error).__name__}"
            f"{': ' + message[0][:300] if message else ''} when run on example observations "
            f"({fed}, from the env's observation spec); fix the policy so that it accepts them "
            "(layer sizes, dtypes, in_keys)"
        ) from error
    if not isinstance(out, TensorDictBase):
        raise ExportError(
            f"the policy returned {type(out).__name__}, not a TensorDict; its forward must "
            "return the tensordict it was given, with its out_keys written"
        )
    return out


def _slot(key: NestedKey, value: torch.Tensor) -> TensorSlot:
    if not isinstance(value, torch.Tensor):
        raise ExportError(
            f"entry {key!r} is a {type(value).__name__}; only tensors can cross a graph boundary"
        )
    return TensorSlot(key, key_to_name(key), value.dtype, tuple(value.shape[1:]))


def _noise_plans(policy: torch.nn.Module, drawn: list[int]) -> tuple[NoisePlan, ...]:
    if len(set(drawn)) != len(drawn):
        raise ExportError(
            "a stochastic module drew twice in one call; export supports one draw per module"
        )
    modules = dict(stochastic_modules(policy))
    by_id = {id(module): name for name, module in modules.items()}
    plans = []
    for module_id in drawn:
        name = by_id.get(module_id)
        if name is None:
            raise ExportError("a stochastic module outside the policy drew random numbers")
        module = modules[name]
        if module.export_refusal is not None:
            raise ExportError(
                f"cannot export {name or 'the policy'} ({type(module).__name__}) while it "
                f"explores: {module.export_refusal}"
            )
        parameters = tuple(
            (key, float(value)) for key, value in module.exploration_parameters().items()
        )
        plans.append(NoisePlan(name or "policy", module, tuple(module.noise_specs), parameters))
    return tuple(plans)


def _written_keys(
    policy: TensorDictModuleBase, before: TensorDictBase, after: TensorDictBase
) -> list[NestedKey]:
    present = set(after.keys(include_nested=True, leaves_only=True))
    inputs = set(before.keys(include_nested=True, leaves_only=True))
    declared = [key for key in dict.fromkeys(policy.out_keys) if key in present]
    extra = sorted(
        (key for key in present - inputs - set(declared)), key=lambda k: key_to_name(k)
    )
    return declared + extra
