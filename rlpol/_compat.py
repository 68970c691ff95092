"""The private APIs of rlpol's dependencies, in one module (STYLE habit 14).

rlpol's hot paths call a few private names of tensordict, torch and onnxruntime because the public
call does work that a rollout step cannot afford (key parsing, value validation, a Python
frame per call). Every such name is touched here and nowhere else. Each helper is chosen
once, at import (tensordict) or when a session is wrapped (onnxruntime): the private fast
path where the name exists with the signature rlpol assumes, else a public fallback that
gives the same result more slowly. :data:`ACTIVE` records which path each name takes, and
``tests/test_compat.py`` fails when a release removes or changes one.

Version-specific code has this one home: supporting another tensordict or onnxruntime
release means editing the probes below, not the call sites. tensordict 0.14.3 (TorchRL 0.14's
pin) and 0.15.3 differ in five places, each chosen by feature detection below: where
``interaction_type`` lives, the name of the per-value draw hook, the sequence's
``log_prob_key``, the deprecated ``SAMPLE_LOG_PROB_KEY`` raising RuntimeError, and how a
TensorDict prints (which only the doctests see).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict(observation=torch.zeros(3, 4), batch_size=[3])
    >>> str_getter(td)("observation", None) is td.get("observation")
    True
    >>> ACTIVE["tensordict.TensorDict._get_str"]
    'private'
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable, Iterable
from typing import Any, Literal

import tensordict.nn
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    InteractionType,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn

__all__ = [
    "ACTIVE",
    "DIST_SAMPLE_HOOK",
    "base_dist_sample",
    "bound_runner",
    "entries",
    "has_names",
    "hasattr_safe",
    "interaction_type",
    "new_tensordict",
    "overrides_dist_sample",
    "prints_compact_tensordicts",
    "sequence_log_prob_key",
    "sequence_modules",
    "session_runner",
    "str_getter",
    "str_setter",
]

Path = Literal["private", "public"]
PRIVATE: Path = "private"
PUBLIC: Path = "public"

ACTIVE: dict[str, Path] = {}
"""For each private name: ``"private"`` when its fast path is in use, ``"public"`` when the
installed release lacks it (or changed its signature) and the public fallback is used."""


def _accepts(function: object, *parameters: str) -> bool:
    """Whether ``function`` is a Python callable taking all of ``parameters`` by name."""
    try:
        names = inspect.signature(function).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return all(name in names for name in parameters)


def _choose(name: str, private_ok: bool, private: Any, public: Any) -> Any:
    ACTIVE[name] = PRIVATE if private_ok else PUBLIC
    return private if private_ok else public


# -- tensordict ----------------------------------------------------------------------------


def _str_getter_private(td: TensorDict) -> Callable[[str, Any], Any]:
    """``td._get_str``: a plain TensorDict's entry for a str key, read from its dict without
    parsing the key (about a sixth of ``get``'s cost)."""
    return td._get_str


def _str_getter_public(td: TensorDictBase) -> Callable[[str, Any], Any]:
    """``td.get``: parses the key first (~0.5 us a call more)."""
    return td.get


str_getter: Callable[[TensorDict], Callable[[str, Any], Any]] = _choose(
    "tensordict.TensorDict._get_str",
    _accepts(getattr(TensorDict, "_get_str", None), "key", "default"),
    _str_getter_private,
    _str_getter_public,
)
"""``str_getter(td)(key, default)``: ``td.get(key, default)`` for a str ``key`` of a plain
``TensorDict``; take the getter once per call of a hot path, then call it per entry."""


def _str_setter_private(td: TensorDict) -> Callable[[str, torch.Tensor], Any]:
    """``td._set_str(key, value, inplace=False, validated=True)``: stores ``value`` in the
    dict without checking its batch dims and device; the caller guarantees both. (A closure:
    ``functools.partial`` with keywords costs ~0.25 us a call, the closure ~0.04 us.)"""
    set_str = td._set_str

    def set_entry(key: str, value: torch.Tensor) -> Any:
        return set_str(key, value, inplace=False, validated=True)

    return set_entry


def _str_setter_public(td: TensorDictBase) -> Callable[[str, torch.Tensor], Any]:
    """``td.set``: validates the value's shape and device first (~2 us a call more)."""
    return td.set


str_setter: Callable[[TensorDict], Callable[[str, torch.Tensor], Any]] = _choose(
    "tensordict.TensorDict._set_str",
    _accepts(getattr(TensorDict, "_set_str", None), "key", "value", "inplace", "validated"),
    _str_setter_private,
    _str_setter_public,
)
"""``str_setter(td)(key, value)``: ``td.set(key, value)`` for a str ``key`` of a plain
``TensorDict`` and a ``value`` whose leading dims are ``td``'s batch size, on its device."""


def _new_tensordict_public(
    source: dict, batch_size: torch.Size | None = None, device: torch.device | None = None
) -> TensorDict:
    """``TensorDict(source, batch_size=..., device=...)``: checks every entry's shape and
    device (a few us an entry more)."""
    return TensorDict(source, batch_size=batch_size, device=device)


new_tensordict: Callable[..., TensorDict] = _choose(
    "tensordict.TensorDict._new_unsafe",
    _accepts(getattr(TensorDict, "_new_unsafe", None), "source", "batch_size", "device"),
    getattr(TensorDict, "_new_unsafe", None),
    _new_tensordict_public,
)
"""``new_tensordict(source, batch_size=..., device=...)``: a TensorDict of ``source`` (a dict
whose nested dicts become TensorDicts) without validating entries the caller built to fit
(``TensorDict._new_unsafe``)."""


def _entries_public(td: TensorDictBase) -> dict:
    """``dict(td.items())``: a new dict of the same values (one dict build a call)."""
    return dict(td.items())


entries: Callable[[TensorDict], dict] = _choose(
    "tensordict.TensorDict._tensordict",
    isinstance(getattr(TensorDict(), "_tensordict", None), dict),
    operator.attrgetter("_tensordict"),
    _entries_public,
)
"""``entries(td)``: a plain TensorDict's top-level entries as a dict, key to tensor or nested
TensorDict (the private path returns its own storage dict: read it, never write it)."""


def _has_names_public(td: TensorDictBase) -> bool:
    """Whether any batch dim is named, from ``td.names`` (builds the list of names)."""
    return any(name is not None for name in td.names)


def _has_names_private(td: TensorDictBase) -> bool:
    """``td._has_names()``: reads the stored names without building the list."""
    return td._has_names()


has_names: Callable[[TensorDictBase], bool] = _choose(
    "tensordict.TensorDictBase._has_names",
    _accepts(getattr(TensorDictBase, "_has_names", None), "self"),
    _has_names_private,
    _has_names_public,
)
"""``has_names(td)``: whether ``td`` has names for its batch dims (``td._has_names()``)."""


def prints_compact_tensordicts() -> bool:
    """Whether ``repr(TensorDict)`` is 0.15's compact form (``TensorDict(batch_size=[],
    device=cpu, fields={observation: f32[4]})``) rather than 0.14's long form (``Tensor(shape=
    torch.Size([4]), device=cpu, dtype=torch.float32, is_shared=False)`` per entry).

    rlpol's docstring examples print TensorDicts as the supported release newest at writing
    (0.15) does; the doctest run of the root ``conftest.py`` compares the entries of both forms
    where this is False."""
    return repr(TensorDict(a=torch.zeros(1), batch_size=[])).startswith("TensorDict(batch_size=")


# -- tensordict.nn: public names that moved ------------------------------------------------


def _interaction_type_function() -> Callable[[], InteractionType | None]:
    """``tensordict.nn.interaction_type`` (0.15), else the same function where 0.14 defines it,
    ``tensordict.nn.probabilistic.interaction_type`` (0.14 does not re-export it)."""
    function = getattr(tensordict.nn, "interaction_type", None)
    if function is None:
        from tensordict.nn.probabilistic import interaction_type as function
    return function


interaction_type: Callable[[], InteractionType | None] = _interaction_type_function()
"""``interaction_type()``: the :class:`~tensordict.nn.InteractionType` that
``set_interaction_type`` set, or ``None`` outside of it (each probabilistic module then uses its
``default_interaction_type``)."""



def _sequence_log_prob_key_public(sequence: ProbabilisticTensorDictSequential) -> Any:
    """``ProbabilisticTensorDictSequential.log_prob_key`` (0.15), read through the base class's
    property so that a subclass defining ``log_prob_key`` with this helper does not recurse."""
    return ProbabilisticTensorDictSequential.log_prob_key.fget(sequence)


def _sequence_log_prob_key_from_keys(sequence: ProbabilisticTensorDictSequential) -> Any:
    """The one entry of ``sequence.log_prob_keys``: 0.14's sequence property is the module's,
    which reads an attribute only modules set, so ``log_prob_key`` raises AttributeError."""
    keys = sequence.log_prob_keys
    if len(keys) == 1:
        return keys[0]
    raise AttributeError(
        f"log_prob_key needs exactly one log-probability key, got {keys}. "
        "Use log_prob_keys instead."
    )


def _sequence_log_prob_key_ok() -> bool:
    probe = ProbabilisticTensorDictSequential(
        TensorDictModule(nn.Identity(), ["x"], ["loc"]),
        ProbabilisticTensorDictModule(
            ["loc"], ["y"], distribution_class=torch.distributions.Normal,
            distribution_kwargs={"scale": 1.0}, return_log_prob=True,
        ),
    )
    try:
        return _sequence_log_prob_key_public(probe) == "y_log_prob"
    except (AttributeError, RuntimeError):
        return False


sequence_log_prob_key: Callable[[ProbabilisticTensorDictSequential], Any] = (
    _sequence_log_prob_key_public
    if _sequence_log_prob_key_ok()
    else _sequence_log_prob_key_from_keys
)
"""``sequence_log_prob_key(sequence)``: where a ``ProbabilisticTensorDictSequential`` writes
its log-probability, when it has exactly one such key (else AttributeError: use
``log_prob_keys``)."""



# -- tensordict.nn: the hook drawing a probabilistic module's value -----------------------


def _dist_sample_hook() -> str:
    """The ``ProbabilisticTensorDictModule`` method its ``forward`` calls to draw one value:
    ``_draw_dist_sample`` (0.15, which wraps it in ``_dist_sample`` to repeat deterministic
    values ``num_samples`` times), else ``_dist_sample`` (0.14, the draw itself)."""
    for name in ("_draw_dist_sample", "_dist_sample"):
        hook = getattr(ProbabilisticTensorDictModule, name, None)
        if _accepts(hook, "dist", "interaction_type", "generator"):
            return name
    raise ImportError(
        f"tensordict {tensordict.__version__}'s ProbabilisticTensorDictModule has neither "
        "_draw_dist_sample nor _dist_sample(dist, interaction_type, *, generator): rlpol's "
        "ProbabilisticModule cannot draw its values there. Install tensordict>=0.14.3,<0.16, "
        "or update the probe in rlpol/_compat.py."
    )


DIST_SAMPLE_HOOK: str = _dist_sample_hook()
"""The name of tensordict's per-value draw that :func:`overrides_dist_sample` replaces."""


def overrides_dist_sample(cls: type) -> type:
    """Class decorator: ``cls.draw_dist_sample(dist, interaction_type, *, generator=None)``
    becomes the draw that ``ProbabilisticTensorDictModule.forward`` calls (the
    :data:`DIST_SAMPLE_HOOK` of the installed tensordict)."""
    setattr(cls, DIST_SAMPLE_HOOK, cls.draw_dist_sample)
    return cls


def base_dist_sample(
    module: ProbabilisticTensorDictModule,
    dist: torch.distributions.Distribution,
    interaction_type: InteractionType | None = None,
    *,
    generator: torch.Generator | None = None,
) -> Any:
    """tensordict's own draw of one value from ``dist`` (the mode, mean, a sample, ...), for
    ``module``, past any override :func:`overrides_dist_sample` installed."""
    draw = getattr(ProbabilisticTensorDictModule, DIST_SAMPLE_HOOK)
    return draw(module, dist, interaction_type, generator=generator)



def _raises_runtime_error(name: str) -> bool:
    attribute = vars(ProbabilisticTensorDictModule).get(name)
    if not isinstance(attribute, property):
        return False
    probe = ProbabilisticTensorDictModule(
        ["loc"], ["y"], distribution_class=torch.distributions.Normal,
        distribution_kwargs={"scale": 1.0},
    )
    try:
        attribute.fget(probe)
    except RuntimeError:
        return True
    except Exception:  # any other outcome is no RuntimeError to hide
        return False
    return False


def _runtime_error_properties() -> list[str]:
    """The deprecated properties of ``ProbabilisticTensorDictModule`` that raise RuntimeError
    when read: 0.14's ``SAMPLE_LOG_PROB_KEY`` (0.15 removed it)."""
    return [name for name in ("SAMPLE_LOG_PROB_KEY",) if _raises_runtime_error(name)]


_RUNTIME_ERROR_PROPERTIES: list[str] = _runtime_error_properties()


def _as_attribute_error(name: str) -> property:
    fget = getattr(ProbabilisticTensorDictModule, name).fget

    def read(self: Any) -> Any:
        try:
            return fget(self)
        except RuntimeError as error:
            raise AttributeError(f"{name}: {error}") from error

    return property(read, doc=f"tensordict's ``{name}``, raising AttributeError, not RuntimeError.")


def hasattr_safe(cls: type) -> type:
    """Class decorator for a ``ProbabilisticTensorDictModule`` subclass: the properties the
    installed tensordict makes raise RuntimeError (0.14's deprecated ``SAMPLE_LOG_PROB_KEY``)
    raise AttributeError instead, with the same message, so that ``hasattr`` is False for them
    rather than an error (``torch.jit.trace`` calls it on every name of ``dir(module)``)."""
    for name in _RUNTIME_ERROR_PROPERTIES:
        setattr(cls, name, _as_attribute_error(name))
    return cls


# -- torch / tensordict.nn -----------------------------------------------------------------


def _sequence_modules_private(sequence: TensorDictSequential) -> Iterable[nn.Module]:
    """``sequence._modules["module"]._modules.values()``: the ModuleList that
    ``TensorDictSequential`` keeps under ``"module"``, read from torch's private registry of
    submodules without ``nn.Module.__getattr__`` (~1 us a call)."""
    return sequence._modules["module"]._modules.values()


def _sequence_modules_public(sequence: TensorDictSequential) -> Iterable[nn.Module]:
    """``iter(sequence.module)``: goes through ``nn.Module.__getattr__`` (~1.2 us more)."""
    return iter(sequence.module)


def _sequence_registry_ok() -> bool:
    probe = TensorDictSequential(TensorDictModule(nn.Identity(), ["x"], ["y"]))
    try:
        return list(_sequence_modules_private(probe)) == list(probe.module)
    except (AttributeError, KeyError, TypeError):
        return False


sequence_modules: Callable[[TensorDictSequential], Iterable[nn.Module]] = _choose(
    "torch.nn.Module._modules",
    _sequence_registry_ok(),
    _sequence_modules_private,
    _sequence_modules_public,
)
"""``sequence_modules(sequence)``: the modules a ``TensorDictSequential`` runs, in order."""


# -- onnxruntime ---------------------------------------------------------------------------
# The C session is an attribute of each instance, so the path is chosen (and recorded in
# ACTIVE) when a session is wrapped; onnxruntime is not imported here (a third of a second).


def _session_runner_private(session: Any) -> Callable[[list[str], dict, Any], list]:
    """``session._sess.run``: the C session's call that ``InferenceSession.run`` wraps, with
    the same positional arguments ``(output_names, input_feed, run_options)``."""
    return session._sess.run


def _session_runner_public(session: Any) -> Callable[[list[str], dict, Any], list]:
    """``session.run``: adds a Python frame and re-checks the feed's names per call (~2 us)."""
    return session.run


def session_runner(session: Any) -> Callable[[list[str], dict, Any], list]:
    """``runner(output_names, input_feed, run_options)``: ``session.run`` of an onnxruntime
    ``InferenceSession``, through its C session where it has one (rlpol checks the feed's
    names against the metadata once, at load)."""
    private_ok = callable(getattr(getattr(session, "_sess", None), "run", None))
    choose = _choose("onnxruntime.InferenceSession._sess", private_ok,
                     _session_runner_private, _session_runner_public)
    return choose(session)


def _bound_runner_private(session: Any, binding: Any) -> Callable[[], Any]:
    """``session._sess.run_with_iobinding(binding._iobinding, None)``: the C call that the
    public ``session.run_with_iobinding(binding)`` wraps."""
    return functools.partial(session._sess.run_with_iobinding, binding._iobinding, None)


def _bound_runner_public(session: Any, binding: Any) -> Callable[[], Any]:
    """``session.run_with_iobinding(binding)``: a Python frame more per call (~1 us, a tenth
    of a bound batch-1 run)."""
    return functools.partial(session.run_with_iobinding, binding)


def bound_runner(session: Any, binding: Any) -> Callable[[], Any]:
    """A no-argument call running ``session`` on an ``IOBinding`` of its inputs and outputs
    (``session.io_binding()``), through the C objects where they exist."""
    private_ok = callable(
        getattr(getattr(session, "_sess", None), "run_with_iobinding", None)
    ) and hasattr(binding, "_iobinding")
    choose = _choose("onnxruntime.IOBinding._iobinding", private_ok,
                     _bound_runner_private, _bound_runner_public)
    return choose(session, binding)


# == torch AOTInductor (rlpol.export.aoti, rlpol.runtime.backends) ========================
# Kept in one block at the end of the module (merges with the tensordict/onnxruntime part
# stay apart). AOTInductor's entry points live in torch's private ``torch._inductor``
# package: it has no public fallback, so a torch that lacks them fails the export or load
# with the name of the missing API (``tests/export/test_aoti.py`` exercises every helper).
# ``torch._inductor`` is imported on first use: importing it costs about a second.

__all__ += ["aoti_compile", "aoti_load", "cpu_isa", "runnable_cpu_isas"]


def aoti_compile(
    program: torch.export.ExportedProgram, package_path: str, metadata: dict[str, str]
) -> None:
    """``torch._inductor.aoti_compile_and_package``: compile ``program`` for this machine's
    CPU into the package file ``package_path`` (a name ending ``.pt2``), with ``metadata``
    stored as the ``aot_inductor.metadata`` option (string keys and values)."""
    import torch._inductor

    torch._inductor.aoti_compile_and_package(
        program,
        package_path=package_path,
        inductor_configs={"aot_inductor.metadata": dict(metadata)},
    )


def aoti_load(package_path: str) -> Callable[..., Any]:
    """``torch._inductor.aoti_load_package``: the compiled model of the package at
    ``package_path`` (a name ending ``.pt2``), called with one tensor per graph input."""
    import torch._inductor

    return torch._inductor.aoti_load_package(package_path)


def cpu_isa() -> str:
    """The vector instruction set inductor compiles CPU kernels for on this machine:
    ``"avx512"``, ``"avx2"``, ``"neon"``, ... (``torch._inductor.cpu_vec_isa.pick_vec_isa``),
    or ``""`` when it uses none (scalar code, which any CPU of the architecture runs)."""
    from torch._inductor import cpu_vec_isa

    isa = cpu_vec_isa.pick_vec_isa()
    return str(isa) if isa else ""


def runnable_cpu_isas() -> tuple[str, ...]:
    """The vector instruction sets this machine's CPU runs, as :func:`cpu_isa` names them
    (``torch._inductor.cpu_vec_isa.valid_vec_isa_list``)."""
    from torch._inductor import cpu_vec_isa

    return tuple(str(isa) for isa in cpu_vec_isa.valid_vec_isa_list())
