"""Checks for untrusted JSON documents, each raising :class:`ArtifactError` on failure.

Private helpers of :mod:`rlpol.artifact.metadata`. A *path* names the checked field in the
messages (``"inputs[0].dtype"``); every failure says what was found and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar

from rlpol.errors import ArtifactError

__all__ = [
    "MISSING",
    "check_choice",
    "check_entries",
    "check_fields",
    "check_float",
    "check_int",
    "check_json_object",
    "check_key",
    "check_list",
    "check_optional",
    "check_sha256",
    "check_shape",
    "check_str",
    "check_string_map",
    "check_timestamp",
    "check_unique",
    "decode_json",
    "describe",
    "fail",
    "field_path",
]

T = TypeVar("T")

FIX = "the artifact is corrupt or was edited; re-export the policy with `rlpol export`"
MAX_DIM = 2**63 - 1
MAX_RANK = 64


class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()


def describe(value: object) -> str:
    """A short description of a JSON value for an error message."""
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else f"a {len(text)}-digit number"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{value[:57]!r}... ({len(value)} chars)"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object with {len(value)} field{'' if len(value) == 1 else 's'}"
    return f"a {type(value).__name__}"


def fail(path: str, value: object, expected: str) -> NoReturn:
    """Raise the standard message for field ``path`` holding ``value``."""
    raise ArtifactError(
        f"invalid rlpol metadata: field '{path}' is {describe(value)}; expected {expected} ({FIX})"
    )


def field_path(path: str, name: str) -> str:
    """The path of field ``name`` inside the object at ``path``."""
    return f"{path}.{name}" if path else name


def _reject_constant(text: str) -> NoReturn:
    raise ArtifactError(
        f"invalid rlpol metadata: it contains the non-standard JSON number {text}; expected "
        f"finite numbers only ({FIX})"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _reject_constant(text if len(text) <= 40 else f"{text[:37]}...")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise ArtifactError(
                f"invalid rlpol metadata: an object has the field {describe(name)} twice; "
                f"expected each field once ({FIX})"
            )
        result[name] = value
    return result


def decode_json(text: str | bytes, *, max_bytes: int) -> Any:
    """Decode a bounded JSON document (``json.loads`` only: nothing is executed).

    Raises:
        ArtifactError: if it is larger than ``max_bytes``, not UTF-8, not JSON, nested too
            deeply, or holds NaN/infinity or a duplicate field.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text)
        size = len(text)
    elif isinstance(text, str):
        size = len(text) if len(text) > max_bytes else len(text.encode("utf-8", "surrogatepass"))
    else:
        raise ArtifactError(
            f"invalid rlpol metadata: got a {type(text).__name__}; expected JSON as str or bytes"
        )
    if size > max_bytes:
        raise ArtifactError(
            f"invalid rlpol metadata: it is {size} bytes; expected at most {max_bytes} ({FIX})"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(
                f"invalid rlpol metadata: it is not UTF-8 text ({exc.reason} at byte "
                f"{exc.start}); expected a UTF-8 JSON document ({FIX})"
            ) from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object_without_duplicates,
        )
    except ArtifactError:
        raise
    except RecursionError:
        reason = "it is nested too deeply"
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        reason = f"it is not valid JSON ({exc})"
    raise ArtifactError(f"invalid rlpol metadata: {reason}; expected a JSON object ({FIX})")


def check_fields(value: object, path: str, fields: Sequence[str]) -> dict[str, Any]:
    """Check ``value`` is an object with exactly ``fields``; return it."""
    where = path or "the metadata document"
    if not isinstance(value, dict):
        fail(path or "(document)", value, f"an object with fields {', '.join(fields)}")
    missing = [name for name in fields if name not in value]
    if missing:
        fail(field_path(path, missing[0]), MISSING, f"a value: {where} needs {', '.join(fields)}")
    unknown = sorted(name for name in value if name not in fields)
    if unknown:
        raise ArtifactError(
            f"invalid rlpol metadata: {where} has the unknown field {describe(unknown[0])}; "
            f"expected only {', '.join(fields)} ({FIX})"
        )
    return value


def check_str(value: object, path: str, *, nonempty: bool = False) -> str:
    """Check ``value`` is a string (non-empty if asked)."""
    if not isinstance(value, str) or (nonempty and not value):
        fail(path, value, "a non-empty string" if nonempty else "a string")
    return value


def check_optional(value: object, path: str, check: Callable[[object, str], T]) -> T | None:
    """``None`` for JSON null, else ``check(value, path)``."""
    return None if value is None else check(value, path)


def check_int(value: object, path: str, *, minimum: int = 0) -> int:
    """Check ``value`` is an integer (not a boolean) of at least ``minimum``."""
    if type(value) is not int or not minimum <= value <= MAX_DIM:
        fail(path, value, f"an integer from {minimum} to {MAX_DIM}")
    return value


def check_float(value: object, path: str) -> float:
    """Check ``value`` is a finite number (not a boolean); return it as a float."""
    if type(value) not in (int, float) or not math.isfinite(value):
        fail(path, value, "a finite number")
    try:
        return float(value)
    except OverflowError:
        fail(path, value, "a number within the float range")


def check_choice(value: object, path: str, choices: Sequence[str]) -> str:
    """Check ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        fail(path, value, f"one of {', '.join(repr(c) for c in choices)}")
    return value


def check_list(value: object, path: str) -> list[Any]:
    """Check ``value`` is a list."""
    if not isinstance(value, list):
        fail(path, value, "a list")
    return value


def check_json_object(value: object, path: str) -> dict[str, Any]:
    """Check ``value`` is a JSON object (a dict with string keys)."""
    if not isinstance(value, dict):
        fail(path, value, "an object")
    return value


def check_shape(value: object, path: str) -> tuple[int, ...]:
    """Check ``value`` is a list of non-negative integers; return it as a tuple."""
    dims = check_list(value, path)
    if len(dims) > MAX_RANK:
        fail(path, value, f"at most {MAX_RANK} dimensions")
    return tuple(check_int(dim, f"{path}[{index}]") for index, dim in enumerate(dims))


def check_key(value: object, path: str) -> str | tuple[str, ...]:
    """Check ``value`` is a non-empty list of non-empty strings; return it as a nested key."""
    parts = check_list(value, path)
    if not parts:
        fail(path, value, 'a non-empty list of strings such as ["agents", "obs"]')
    for index, part in enumerate(parts):
        check_str(part, f"{path}[{index}]", nonempty=True)
    return parts[0] if len(parts) == 1 else tuple(parts)


def check_unique(entries: Iterable[tuple[str, object]], *, what: str) -> None:
    """Check the values of ``(path, value)`` pairs are distinct (values compared as JSON)."""
    seen: dict[str, str] = {}
    for path, value in entries:
        token = json.dumps(value)
        if token in seen:
            raise ArtifactError(
                f"invalid rlpol metadata: {what} {token[:80]} is used by both "
                f"'{seen[token]}' and '{path}'; expected each {what} once ({FIX})"
            )
        seen[token] = path


def check_entries(value: object, path: str, parse: Callable[[object, str], T]) -> tuple[T, ...]:
    """Check ``value`` is a list and parse each item with ``parse(item, "path[i]")``."""
    items = check_list(value, path)
    return tuple(parse(item, f"{path}[{index}]") for index, item in enumerate(items))


def check_string_map(value: object, path: str) -> dict[str, str]:
    """Check ``value`` is an object whose values are strings."""
    mapping = check_json_object(value, path)
    for name, item in mapping.items():
        check_str(item, field_path(path, name))
    return mapping


def check_sha256(value: object, path: str) -> str:
    """Check ``value`` is a SHA-256 hex digest (64 lowercase hexadecimal digits)."""
    text = check_str(value, path)
    if len(text) != 64 or any(char not in "0123456789abcdef" for char in text):
        fail(path, value, "64 lowercase hexadecimal digits (a SHA-256 digest)")
    return text


def check_timestamp(value: object, path: str) -> str:
    """Check ``value`` is an ISO 8601 timestamp string."""
    text = check_str(value, path)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        fail(path, value, "an ISO 8601 timestamp such as '2025-01-31T12:00:00+00:00'")
    return text
