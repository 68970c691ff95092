"""Load a ``policy.py`` file: the environment and the policy it defines.

A policy file is plain Python that defines

* ``make_env()``, returning an rlpol environment (e.g. ``GymEnv("CartPole-v1")``), and
* ``make_policy(env)``, returning a ``tensordict.nn.TensorDictModuleBase`` with its weights
  loaded.

Module-level objects named ``env`` and ``policy`` are accepted in their place, and the two
styles mix (an ``env`` object with ``make_policy(env)``, or ``make_env()`` with a ``policy``
object). As in Flask's ``find_best_app``, the objects are tried first, then the factories,
and when neither is there the error lists what was looked for and what the file defines.

The file is executed exactly once, as a fresh module with a unique name (registered in
``sys.modules`` once loading succeeds, so its classes can be pickled or scripted); its directory
is on ``sys.path`` while it is imported and its factories run, so it can import its neighbours.
An env made by ``make_env()`` is closed again if the policy then cannot be found.

Lazy layers (``nn.LazyLinear``, ``nn.LazyConv2d``: an ``MLP`` or ``ConvNet`` without
``in_features``, as in ``ConvNet.default_atari_dqn``) have no weights until their first call,
which draws them from torch's global generator. ``rlpol export`` and ``rlpol check`` each load
the file and would make that first call at different points of the random stream (the export
on sampled observations, the check inside its seeded rollout), so they would compare two
different policies. The loader therefore materialises them itself, right after the policy is
found: one forward on a batch of zeros of the env's observation spec (after its transforms,
what the policy reads) under the fixed seed :data:`LAZY_INIT_SEED`, with the caller's random
state restored afterwards; every load of the file then builds the same weights. A policy that
cannot run on that example is refused with the fix: run it once in ``make_policy``, or pass
``in_features``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from tensordict.nn import TensorDictModuleBase

from rlpol.errors import PolicyFileError

__all__ = ["ENV_ATTRIBUTES", "LAZY_INIT_SEED", "LoadedPolicyFile", "load_policy_file"]

ENV_ATTRIBUTES = ("reset", "step", "action_spec")
LAZY_INIT_SEED = 0  # torch seed under which a policy's lazy layers draw their weights
ARTIFACT_SUFFIXES = (".onnx", ".pt", ".pt2")
_MAX_LISTED_NAMES = 15
_counter = itertools.count()
_MISSING: Any = object()


@dataclass(frozen=True)
class LoadedPolicyFile:
    """What :func:`load_policy_file` found.

    Attributes:
        path: the policy file, resolved to an absolute path.
        module: the module the file was executed as.
        env: the environment (from ``env`` or ``make_env()``).
        policy: the policy (from ``policy`` or ``make_policy(env)``).
        sha256: the SHA-256 (hex) of the file's bytes, exactly those that were executed.
    """

    path: Path
    module: ModuleType
    env: Any
    policy: TensorDictModuleBase
    sha256: str


def load_policy_file(path: str | os.PathLike[str]) -> LoadedPolicyFile:
    """Execute a policy file and return its environment and policy.

    Args:
        path: the ``.py`` file.

    Returns:
        The loaded file: its module, env, policy and SHA-256.

    Raises:
        PolicyFileError: with one sentence naming the problem: the file is missing, a
            directory or not ``.py``; it has a syntax error; importing it raised; ``make_env``
            or ``make_policy`` raised or returned the wrong thing; or it defines neither.

    Examples:
        >>> import pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "policy.py"
        >>> _ = file.write_text("x = 1\\n")
        >>> load_policy_file(file)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        rlpol.errors.PolicyFileError: policy file '...policy.py' defines neither an environment ...
    """
    given = Path(path)
    resolved = _check_path(given)
    source = _read(given, resolved)
    with _on_sys_path(resolved.parent):
        module = _import(given, resolved, source)
        try:
            env, policy = _find_env_and_policy(given, module)
        except BaseException:
            sys.modules.pop(module.__name__, None)
            raise
    return LoadedPolicyFile(
        path=resolved,
        module=module,
        env=env,
        policy=policy,
        sha256=hashlib.sha256(source).hexdigest(),
    )


def _find_env_and_policy(given: Path, module: ModuleType) -> tuple[Any, TensorDictModuleBase]:
    env, made_env = _find_env(given, module)
    try:
        policy = _find_policy(given, module, env)
        _materialize_lazy(given, policy, env)
        return env, policy
    except BaseException:
        if made_env:
            _close_quietly(env)
        raise


def _materialize_lazy(given: Path, policy: TensorDictModuleBase, env: Any) -> None:
    """Give ``policy``'s lazy layers their weights, the same on every load of the file.

    Runs ``policy`` once in eval mode without gradients on
    ``env.single_observation_spec.zero((1,))`` (one row of zeros of the transformed spec) with
    torch's generators (CPU, and CUDA where the lazy tensors live) seeded with
    :data:`LAZY_INIT_SEED` and restored afterwards. A policy without lazy tensors is not run.

    Raises:
        PolicyFileError: the policy raised on that example, or left lazy layers unset (a
            branch the example does not reach); the message names the lazy modules.
    """
    lazy = _lazy_modules(policy)
    if not lazy:
        return
    training = [(module, module.training) for module in policy.modules()]
    cuda = sorted({t.device.index for t in _lazy_tensors(policy) if t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda, device_type="cuda"), torch.no_grad():
            torch.default_generator.manual_seed(LAZY_INIT_SEED)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(LAZY_INIT_SEED)
            example = env.single_observation_spec.zero((1,))
            policy.eval()(example.to(next(_lazy_tensors(policy)).device))
    except Exception as exc:
        why = f"but that raised {_exception_text(exc, given.resolve())}"
        raise _lazy_error(given, lazy, why) from exc
    finally:
        for module, mode in training:
            module.training = mode
    if _lazy_modules(policy):
        raise _lazy_error(given, _lazy_modules(policy), "but that call did not reach them")


def _lazy_tensors(module: torch.nn.Module, *, recurse: bool = True) -> Iterator[torch.Tensor]:
    """The uninitialised parameters and buffers of ``module``."""
    tensors = itertools.chain(module.parameters(recurse), module.buffers(recurse))
    return (tensor for tensor in tensors if torch.nn.parameter.is_lazy(tensor))


def _lazy_modules(policy: torch.nn.Module) -> list[str]:
    """``"name: Type"`` for each submodule that holds an uninitialised tensor itself."""
    return [
        f"{name or 'the policy'}: {type(module).__name__}"
        for name, module in policy.named_modules()
        if next(_lazy_tensors(module, recurse=False), None) is not None
    ]


def _lazy_error(given: Path, lazy: Sequence[str], why: str) -> PolicyFileError:
    return PolicyFileError(
        f"policy file '{given}' has uninitialised lazy modules ({', '.join(lazy)}) that rlpol "
        f"materialises with one call on zeros of the env's observation spec, {why}; run the "
        "policy once on an example observation in make_policy, or give the lazy layers their "
        "input sizes (in_features=...)"
    )


def _check_path(path: Path) -> Path:
    if not path.exists():
        raise PolicyFileError(
            f"policy file '{path}' does not exist; pass the path of a .py file that defines "
            "make_env() and make_policy(env)"
        )
    if path.is_dir():
        inside = path / "policy.py"
        hint = f" such as '{inside}'" if inside.is_file() else ""
        raise PolicyFileError(
            f"policy file '{path}' is a directory; pass the .py file inside it{hint}"
        )
    if path.suffix != ".py":
        hint = (
            " (it looks like an exported artifact: run it with the runtime instead)"
            if path.suffix in ARTIFACT_SUFFIXES
            else ""
        )
        raise PolicyFileError(
            f"policy file '{path}' is not a Python file{hint}; expected a .py file that "
            "defines make_env() and make_policy(env)"
        )
    return path.resolve()


def _read(given: Path, resolved: Path) -> bytes:
    try:
        return resolved.read_bytes()
    except OSError as exc:
        raise PolicyFileError(
            f"policy file '{given}' cannot be read ({exc.strerror}); check its permissions"
        ) from None


@contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    """Put ``directory`` first on ``sys.path`` for the block, then take it off again."""
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(entry)


def _import(given: Path, resolved: Path, source: bytes) -> ModuleType:
    """Execute ``source`` once as a new module registered under a unique name."""
    try:
        code = compile(source, str(resolved), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        line = f" at line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        message = getattr(exc, "msg", None) or str(exc)
        raise PolicyFileError(
            f"policy file '{given}' has a syntax error{line}: {message}; fix the file and retry"
        ) from None
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"_rlpol_policy_file_{next(_counter)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        hint = "install the missing module or fix the import"
        if not isinstance(exc, ImportError):
            hint = "fix the file"
        raise PolicyFileError(
            f"importing policy file '{given}' raised {_exception_text(exc, resolved)}; {hint}"
        ) from exc
    return module


def _exception_text(exc: BaseException, resolved: Path) -> str:
    """``"Type: message at line N"``, N being the innermost line in the policy file."""
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    lines = [
        frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == str(resolved)
    ]  # fmt: skip
    return f"{text} (line {lines[-1]})" if lines else text


def _call(given: Path, module: ModuleType, name: str, args: tuple[Any, ...]) -> Any:
    """Call the factory ``name`` of ``module`` with ``args``, turning failures into errors."""
    factory = module.__dict__[name]
    call = f"{name}({'env' if args else ''})"
    if not callable(factory):
        raise PolicyFileError(
            f"`{name}` in policy file '{given}' is {_describe(factory)}, not a function; "
            f"define it as `def {call}:`"
        )
    try:
        inspect.signature(factory).bind(*args)
    except TypeError as exc:
        raise PolicyFileError(
            f"`{name}` in policy file '{given}' cannot be called as {call} ({exc}); rlpol "
            "calls make_env() with no arguments and make_policy(env) with the environment"
        ) from None
    except ValueError:  # no signature available (a builtin): just call it
        pass
    try:
        return factory(*args)
    except (Exception, SystemExit) as exc:
        raise PolicyFileError(
            f"{call} in policy file '{given}' raised "
            f"{_exception_text(exc, given.resolve())}; fix {name}"
        ) from exc


def _looks_like_env(obj: object) -> bool:
    try:
        return all(hasattr(obj, attribute) for attribute in ENV_ATTRIBUTES) and all(
            callable(getattr(obj, method)) for method in ("reset", "step")
        )
    except Exception:  # a property that raises: not a usable env
        return False


def _find_env(given: Path, module: ModuleType) -> tuple[Any, bool]:
    """The env and whether we created it (with ``make_env()``)."""
    namespace = module.__dict__
    obj = namespace.get("env", _MISSING)
    if obj is not _MISSING and _looks_like_env(obj):
        return obj, False
    if "make_env" in namespace:
        env = _call(given, module, "make_env", ())
        if not _looks_like_env(env):
            raise PolicyFileError(
                f"make_env() in policy file '{given}' returned {_describe(env)}; expected an "
                f"rlpol env (with {', '.join(ENV_ATTRIBUTES)}) such as GymEnv('CartPole-v1')"
            )
        return env, True
    if obj is not _MISSING:
        raise PolicyFileError(
            f"`env` in policy file '{given}' is {_describe(obj)}, not an rlpol env (it lacks "
            f"{', '.join(ENV_ATTRIBUTES)}); assign an env such as GymEnv('CartPole-v1')"
        )
    has_policy = "make_policy" in namespace or "policy" in namespace
    raise _nothing_found(given, module, "an environment" if has_policy else "neither")


def _find_policy(given: Path, module: ModuleType, env: Any) -> TensorDictModuleBase:
    namespace = module.__dict__
    obj = namespace.get("policy", _MISSING)
    if isinstance(obj, TensorDictModuleBase):
        return obj
    if "make_policy" in namespace:
        made = _call(given, module, "make_policy", (env,))
        return _check_policy(made, f"make_policy(env) in policy file '{given}' returned")
    if obj is not _MISSING:
        return _check_policy(obj, f"`policy` in policy file '{given}' is")
    raise _nothing_found(given, module, "a policy")


def _check_policy(policy: object, origin: str) -> TensorDictModuleBase:
    if isinstance(policy, TensorDictModuleBase):
        return policy
    expected = "expected a tensordict.nn.TensorDictModuleBase"
    if policy is None:
        raise PolicyFileError(f"{origin} None; {expected} (is a `return` missing?)")
    if isinstance(policy, torch.nn.Module):
        raise PolicyFileError(
            f"{origin} a plain torch.nn.Module ({type(policy).__name__}) that does not read "
            f"and write TensorDicts; {expected}: wrap it as `TensorDictModule(module, "
            'in_keys=["observation"], out_keys=["action"])`'
        )
    raise PolicyFileError(f"{origin} {_describe(policy)}; {expected}")


_LOOKED_FOR = {
    "an environment": "a `make_env()` function or an `env` object",
    "a policy": "a `make_policy(env)` function or a `policy` object",
}


def _nothing_found(given: Path, module: ModuleType, missing: str) -> PolicyFileError:
    if missing == "neither":
        what = "neither an environment nor a policy"
        looked = f"{_LOOKED_FOR['an environment']}, and {_LOOKED_FOR['a policy']}"
    else:
        what, looked = f"no {missing.split(' ', 1)[1]}", _LOOKED_FOR[missing]
    return PolicyFileError(
        f"policy file '{given}' defines {what}: rlpol looks for {looked}, but the file "
        f"defines {_public_names(module)}"
    )


def _public_names(module: ModuleType) -> str:
    names = sorted(
        name
        for name, value in module.__dict__.items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    )
    if not names:
        return "no public names"
    listed = ", ".join(names[:_MAX_LISTED_NAMES])
    more = len(names) - _MAX_LISTED_NAMES
    return f"only {listed}" + (f" and {more} more" if more > 0 else "")


def _describe(obj: object) -> str:
    if obj is None:
        return "None"
    name = type(obj).__name__
    kind = "a function" if inspect.isfunction(obj) else f"a{'n' * (name[0] in 'AEIOUaeiou')} {name}"
    return kind if callable(obj) else f"{kind} ({_short_repr(obj)})"


def _short_repr(obj: object) -> str:
    try:
        text = repr(obj)
    except Exception:
        return "unprintable"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _close_quietly(env: Any) -> None:
    close = getattr(env, "close", None)
    if callable(close):
        with suppress(Exception):
            close()
