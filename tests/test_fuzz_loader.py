"""Property tests of the loader on malformed input: loading either gives a device that resolves
at nominal to valid figures, or raises a `MemsimError` whose problems are one line each.
No other exception type may escape."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    Doc,
    all_paths,
    container_paths,
    deleted,
    extra_keys,
    inserted,
    load_or_error,
    minimal_doc,
    replaced,
    rich_doc,
    values,
    write_doc,
    yaml_values,
)

FUZZ = settings(deadline=None, max_examples=200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BASES = {"minimal": minimal_doc(), "rich": rich_doc()}


@contextmanager
def device_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "device.yaml"


def load_doc(doc: Any) -> None:
    with device_file() as path:
        write_doc(path, doc)
        load_or_error(path)


@st.composite
def mutated(draw: st.DrawFn, base: Doc) -> Doc:
    """`base` with one field replaced or deleted, or one key inserted into a mapping."""
    action = draw(st.sampled_from(["replace", "delete", "insert"]))
    if action == "insert":
        where = draw(st.sampled_from(container_paths(base)))
        return inserted(base, where, draw(extra_keys), draw(values))
    path = draw(st.sampled_from(list(all_paths(base))))
    if action == "delete":
        return deleted(base, path)
    return replaced(base, path, draw(values))


@st.composite
def mutated_many(draw: st.DrawFn, base: Doc) -> Doc:
    doc = base
    for _ in range(draw(st.integers(2, 4))):
        doc = draw(mutated(doc))
    return doc


def test_bases_are_valid() -> None:
    for doc in BASES.values():
        with device_file() as path:
            write_doc(path, doc)
            assert load_or_error(path) is not None


# (a) anything YAML can hold, as a whole document


@FUZZ
@given(yaml_values)
def test_arbitrary_document(doc: Any) -> None:
    load_doc(doc)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(minimal_doc())), yaml_values, max_size=9))
def test_arbitrary_values_under_the_top_level_fields(doc: dict[str, Any]) -> None:
    load_doc(doc)


# (b) a valid document with one (or a few) random edits


@settings(FUZZ, max_examples=150)
@pytest.mark.parametrize("base", sorted(BASES))
@given(data=st.data())
def test_one_field_mutated(base: str, data: st.DataObject) -> None:
    load_doc(data.draw(mutated(BASES[base])))


@settings(FUZZ, max_examples=80)
@pytest.mark.parametrize("base", sorted(BASES))
@given(data=st.data())
def test_several_fields_mutated(base: str, data: st.DataObject) -> None:
    load_doc(data.draw(mutated_many(BASES[base])))


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_mutated_child_extending_a_valid_parent(data: st.DataObject) -> None:
    child = data.draw(mutated({"extends": "parent.yaml", "name": "child",
                               "knobs": {"vdd": {"nominal": 0.9}},
                               "faults": [{"name": "undervolt", "failure": {"flip": 0.0}}]}))
    with tempfile.TemporaryDirectory() as folder:
        write_doc(Path(folder) / "parent.yaml", minimal_doc())
        path = write_doc(Path(folder) / "child.yaml", child)
        load_or_error(path)


# (c) random text and bytes as a file

yaml_ish_text = st.text(
    alphabet=st.sampled_from([*"abcdefkmnv_019.-:[]{},'\"!&*#|>%@` \t\n", "\r", "\x00", "\u2028"]),
    max_size=80,
)


@FUZZ
@given(st.one_of(st.text(max_size=200), yaml_ish_text))
def test_random_text(text: str) -> None:
    with device_file() as path:
        path.write_text(text, encoding="utf-8", newline="")
        load_or_error(path)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    with device_file() as path:
        path.write_bytes(data)
        load_or_error(path)


@settings(FUZZ, max_examples=100)
@given(st.data())
def test_valid_text_with_a_random_splice(data: st.DataObject) -> None:
    """The valid document's YAML text with a random slice replaced by random text."""
    text = yaml.safe_dump(minimal_doc(), sort_keys=False)
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 20)))
    text = text[:start] + data.draw(yaml_ish_text) + text[end:]
    with device_file() as path:
        path.write_text(text, encoding="utf-8", newline="")
        load_or_error(path)


@settings(FUZZ, max_examples=60)
@given(st.text(alphabet=st.characters(blacklist_characters="/"), max_size=30))
def test_random_device_names(name: str) -> None:
    """A name that is neither built in nor a file: UnknownDeviceError, never another
    exception (a name can also reach a folder or a file beside the test: a MemsimError)."""
    load_or_error(name)
    with tempfile.TemporaryDirectory() as folder:
        load_or_error(f"{folder}/{name}")
