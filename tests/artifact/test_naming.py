"""The key <-> graph-name mapping: documented examples, errors, and its round-trip property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlpol.artifact.naming import check_distinct_names, key_to_name, name_to_key, unique_names
from rlpol.errors import ExportError

# Parts biased towards the characters the escaping is about.
parts = st.text(alphabet=st.sampled_from("ab.\\_é0 "), min_size=1, max_size=6) | st.text(
    min_size=1, max_size=8
)
keys = parts | st.lists(parts, min_size=1, max_size=4).map(tuple)


def normalise(key):
    """A one-part tuple is the same tensordict key as the plain string."""
    return key[0] if isinstance(key, tuple) and len(key) == 1 else key


EXAMPLES = [
    ("action", "action"),
    (("agents", "obs"), "agents.obs"),
    (("next", "reward"), "next.reward"),
    (("a.b", "c"), "a\\.b.c"),
    ("back\\slash", "back\\\\slash"),
    (("x.", "\\", "."), "x\\..\\\\.\\."),
]


@pytest.mark.parametrize(("key", "name"), EXAMPLES)
def test_documented_examples(key, name):
    assert key_to_name(key) == name
    assert name_to_key(name) == key


def test_one_part_tuple_is_the_string_key():
    assert key_to_name(("action",)) == "action"
    assert key_to_name(("a", ("b", "c"))) == "a.b.c"


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ((), "empty key"),
        ("", "part 0 is an empty string"),
        (("agents", ""), "part 1 is an empty string"),
        (("agents", 3), "type int"),
        (None, "expected a string or a tuple"),
    ],
)
def test_key_to_name_refuses_bad_keys(key, match):
    with pytest.raises(ExportError, match=match):
        key_to_name(key)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("", "empty part at position 0"),
        ("a..b", "empty part at position 1"),
        (".a", "empty part at position 0"),
        ("a.", "empty part at position 1"),
        ("a\\b", "malformed escape at position 1"),
        ("a\\", "the end of the name"),
    ],
)
def test_name_to_key_refuses_malformed_names(name, match):
    with pytest.raises(ExportError, match=match):
        name_to_key(name)


@given(keys)
def test_round_trip(key):
    assert name_to_key(key_to_name(key)) == normalise(key)


@given(keys, keys)
def test_injective(first, second):
    if normalise(first) != normalise(second):
        assert key_to_name(first) != key_to_name(second)


@given(st.text(max_size=12))
def test_name_to_key_raises_only_export_error(name):
    try:
        key = name_to_key(name)
    except ExportError:
        return
    assert key_to_name(key) == name


def test_unique_names_lists_colliding_keys():
    assert unique_names(["observation", ("next", "reward")]) == ["observation", "next.reward"]
    with pytest.raises(ExportError, match=r"'action' from keys 'action', \('action',\)"):
        unique_names(["action", "observation", ("action",)])


def test_check_distinct_names_names_the_roles():
    check_distinct_names({"input": ["observation"], "noise": ["noise.0.x"], "output": ["action"]})
    with pytest.raises(ExportError, match=r"'noise\.0\.x' is used by input and noise"):
        check_distinct_names({"input": ["noise.0.x"], "noise": ["noise.0.x"], "output": []})
    with pytest.raises(ExportError, match="'a' is used by output and output"):
        check_distinct_names({"output": ["a", "a"]})
