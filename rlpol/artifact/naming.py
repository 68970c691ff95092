"""The reversible mapping between tensordict keys and graph input/output names.

An exported graph names its inputs and outputs with plain strings; a tensordict addresses
entries with nested keys. rlpol maps one to the other with a single documented rule:

* the parts of a nested key are joined with ``"."``: ``("agents", "obs")`` -> ``"agents.obs"``,
  and a plain string key is its own name: ``"action"`` -> ``"action"``;
* inside a part, ``"\\"`` is written ``"\\\\"`` and ``"."`` is written ``"\\."``, so a part
  may contain either character: ``("a.b", "c")`` -> ``"a\\.b.c"``;
* a key needs at least one part and every part must be a non-empty string.

The mapping is injective and :func:`name_to_key` inverts it: ``name_to_key(key_to_name(k))``
is ``k`` for every key, a one-part tuple coming back as the plain string (``("action",)`` and
``"action"`` are the same tensordict key).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping, Sequence

from rlpol.errors import ExportError
from rlpol.toolkit.keys import NestedKey

__all__ = [
    "argument_names",
    "check_distinct_names",
    "key_to_name",
    "name_to_key",
    "unique_names",
]

SEPARATOR = "."
ESCAPE = "\\"
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")
# names TorchScript reserves besides Python's keywords ("self" is the module argument)
_RESERVED = frozenset({"self", "torch", "Tensor", "CONSTANTS"})


def _key_parts(key: NestedKey) -> tuple[str, ...]:
    """The flat tuple of parts of ``key``, nested tuples unravelled (as tensordict does)."""
    if isinstance(key, str):
        return (key,)
    if not isinstance(key, tuple):
        raise ExportError(
            f"cannot name key {key!r} of type {type(key).__name__}; expected a string or a "
            "tuple of strings such as ('agents', 'obs')"
        )
    parts: list[str] = []
    for part in key:
        parts.extend(_key_parts(part))
    return tuple(parts)


def _escape(part: str) -> str:
    return part.replace(ESCAPE, ESCAPE * 2).replace(SEPARATOR, ESCAPE + SEPARATOR)


def key_to_name(key: NestedKey) -> str:
    """The graph name of a tensordict key.

    Args:
        key: a string or a (possibly nested) tuple of strings.

    Returns:
        The parts joined with ``"."``, each with ``"\\"`` and ``"."`` escaped by a backslash.

    Raises:
        ExportError: if ``key`` is empty, has an empty part or a part that is not a string.

    Examples:
        >>> key_to_name("action")
        'action'
        >>> key_to_name(("agents", "obs"))
        'agents.obs'
        >>> print(key_to_name(("a.b", "c")))
        a\\.b.c
    """
    parts = _key_parts(key)
    if not parts:
        raise ExportError(
            f"cannot name the empty key {key!r}; a key needs at least one non-empty string part"
        )
    for index, part in enumerate(parts):
        if not part:
            raise ExportError(
                f"cannot name key {key!r}: part {index} is an empty string; tensordict keys "
                "need non-empty parts, rename the entry"
            )
    return SEPARATOR.join(_escape(part) for part in parts)


def name_to_key(name: str) -> NestedKey:
    """The tensordict key a graph name stands for (the inverse of :func:`key_to_name`).

    Args:
        name: a name produced by :func:`key_to_name`.

    Returns:
        A plain string for a one-part name, else a tuple of strings.

    Raises:
        ExportError: if ``name`` is not a string, has an empty part (``"a..b"``, ``".a"``) or
            a backslash not followed by ``"."`` or ``"\\"``.

    Examples:
        >>> name_to_key("agents.obs")
        ('agents', 'obs')
        >>> name_to_key("action")
        'action'
        >>> name_to_key(key_to_name(("a.b", "c")))
        ('a.b', 'c')
    """
    if not isinstance(name, str):
        raise ExportError(f"expected a graph name as a string, got {type(name).__name__} {name!r}")
    parts = _split(name)
    for index, part in enumerate(parts):
        if not part:
            raise ExportError(
                f"graph name {name!r} has an empty part at position {index}; names made by "
                "key_to_name never do: an unescaped '.' may only separate non-empty parts"
            )
    return parts[0] if len(parts) == 1 else tuple(parts)


def _split(name: str) -> list[str]:
    """Split ``name`` on unescaped separators, resolving escapes."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(enumerate(name))
    for position, char in chars:
        if char == ESCAPE:
            escaped = next(chars, (position, ""))[1]
            if escaped not in (ESCAPE, SEPARATOR):
                found = repr(escaped) if escaped else "the end of the name"
                raise ExportError(
                    f"graph name {name!r} has a malformed escape at position {position}: a "
                    f"backslash followed by {found}; expected '\\\\' or '\\.'"
                )
            current.append(escaped)
        elif char == SEPARATOR:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unique_names(keys: Iterable[NestedKey]) -> list[str]:
    """The graph names of ``keys``, checking that no two keys share a name.

    Args:
        keys: tensordict keys; ``"a"`` and ``("a",)`` are the same key.

    Returns:
        One name per key, in order.

    Raises:
        ExportError: if a key is given twice (or cannot be named), listing the colliding keys.

    Examples:
        >>> unique_names(["observation", ("next", "reward")])
        ['observation', 'next.reward']
    """
    by_name: dict[str, list[NestedKey]] = {}
    names = []
    for key in keys:
        name = key_to_name(key)
        by_name.setdefault(name, []).append(key)
        names.append(name)
    collisions = {name: ks for name, ks in by_name.items() if len(ks) > 1}
    if collisions:
        listed = "; ".join(
            f"{name!r} from keys {', '.join(repr(k) for k in ks)}"
            for name, ks in collisions.items()
        )
        raise ExportError(
            f"several keys map to the same graph name: {listed}; expected each key once, "
            "remove the duplicate keys"
        )
    return names


def check_distinct_names(groups: Mapping[str, Iterable[str]]) -> None:
    """Check that graph names are distinct within and across groups.

    Args:
        groups: names by role, e.g. ``{"input": [...], "noise": [...], "output": [...]}``.

    Raises:
        ExportError: naming every name used more than once and the roles using it.

    Examples:
        >>> check_distinct_names({"input": ["observation"], "output": ["action"]})
        >>> check_distinct_names({"input": ["action"], "output": ["action"]})
        Traceback (most recent call last):
        ...
        rlpol.errors.ExportError: graph names must be distinct, but 'action' is used by input \
and output; rename the clashing keys (or noise/parameter names)
    """
    users: dict[str, list[str]] = {}
    for role, names in groups.items():
        for name in names:
            users.setdefault(name, []).append(role)
    clashes = {name: roles for name, roles in users.items() if len(roles) > 1}
    if clashes:
        listed = "; ".join(
            f"{name!r} is used by {' and '.join(roles)}" for name, roles in clashes.items()
        )
        raise ExportError(
            f"graph names must be distinct, but {listed}; rename the clashing keys "
            "(or noise/parameter names)"
        )


def argument_names(names: Sequence[str]) -> list[str]:
    """The argument names of a TorchScript / ``.pt2`` / AOTInductor ``forward``, one per graph input.

    Those formats store ``forward`` as code, whose arguments must be identifiers; a graph
    name that is one (``"observation"``, ``"is_init"``) is its own argument name. Others are
    made identifiers: every character but ``[A-Za-z0-9_]`` becomes ``"_"``
    (``"noise.1.action"`` -> ``"noise_1_action"``), a leading digit gets a ``"_"`` prefix, a
    Python keyword or a name TorchScript reserves (``self``, ``torch``, ``Tensor``,
    ``CONSTANTS``) a ``"_"`` suffix; a name already taken by an earlier argument gets
    ``"_2"``, ``"_3"``, ... (the first free one).

    Args:
        names: the graph input names in graph order (``ArtifactMetadata.input_names``).

    Returns:
        One distinct identifier per name, in order.

    Examples:
        >>> argument_names(["observation", "noise.1.action", "param.1.eps"])
        ['observation', 'noise_1_action', 'param_1_eps']
        >>> argument_names(["a.b", "a_b", "0", "lambda"])
        ['a_b', 'a_b_2', '_0', 'lambda_']
    """
    taken: set[str] = set()
    arguments = []
    for name in names:
        base = _NOT_IDENTIFIER.sub("_", name) or "_"
        if base[0].isdigit():
            base = f"_{base}"
        if keyword.iskeyword(base) or base in _RESERVED:
            base = f"{base}_"
        argument, count = base, 1
        while argument in taken:
            count += 1
            argument = f"{base}_{count}"
        taken.add(argument)
        arguments.append(argument)
    return arguments
