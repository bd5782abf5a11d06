"""Validation helpers: a `Node` walks a loaded YAML document, tracking the field path.

Every check raises or records a `SpecProblem` naming the file, the dotted field path and
what was expected. Containers collect the problems of independent fields so that a user
sees all of them at once.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, TypeVar

from memsim.errors import SpecError, SpecProblem

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class Provenance(StrEnum):
    """How a number was obtained, strongest first."""

    MEASURED = "measured"
    DERIVED = "derived"
    SIMULATED = "simulated"
    ASSUMED = "assumed"
    UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class Param:
    """A numeric parameter with where it came from.

    In YAML either a bare number or ``{value: 0.72, provenance: derived, source: id, note: ...}``.
    """

    value: float
    provenance: Provenance = Provenance.UNSPECIFIED
    source: str | None = None
    note: str | None = None
    default: bool = False  # not in the file: filled in by the schema

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class Origin:
    """Provenance defaults inherited by the parameters below a mapping."""

    provenance: Provenance = Provenance.UNSPECIFIED
    source: str | None = None


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Sequence):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return type(value).__name__


def printable(name: str) -> str:
    """A user-given name as it can appear in a one-line message: as is, or quoted with its
    escapes if it holds line breaks or other unprintable characters."""
    return name if name.isprintable() and name else repr(name)


def name_list(names: Iterable[str]) -> str:
    """User-given names for a one-line message, comma-separated."""
    return ", ".join(printable(n) for n in names)


def nearest_hint(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return ""


class Node:
    """A value inside a document, with the file it came from and its field path."""

    def __init__(self, value: Any, file: str, path: str = "", origin: Origin = Origin()) -> None:
        self.value = value
        self.file = file
        self.path = path
        self.origin = origin

    # -- navigation -------------------------------------------------------------------------
    def child(self, key: str | int, value: Any) -> Node:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            name = printable(key)
            path = f"{self.path}.{name}" if self.path else name
        return Node(value, self.file, path, self.origin)

    def problem(self, message: str) -> SpecProblem:
        return SpecProblem(self.file, self.path, message)

    def fail(self, message: str) -> SpecError:
        return SpecError([self.problem(message)])

    # -- scalar checks ----------------------------------------------------------------------
    def string(self) -> str:
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.fail(f"expected a non-empty string, got {_type_name(self.value)}")
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"expected true or false, got {_type_name(self.value)}")
        return self.value

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"expected an integer, got {_type_name(self.value)}")
        if (low is not None and self.value < low) or (high is not None and self.value > high):
            raise self.fail(f"expected an integer in [{low}, {high}], got {self.value}")
        return self.value

    def number(self) -> float:
        """A finite real number (YAML ints and floats; strings such as '1e-3' too, since
        PyYAML reads exponents without a dot as strings)."""
        v = self.value
        if isinstance(v, bool):
            raise self.fail(f"expected a number, got {_type_name(v)}")
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise self.fail(f"expected a number, got {_type_name(self.value)}") from None
        if not isinstance(v, int | float):
            raise self.fail(f"expected a number, got {_type_name(v)}")
        try:
            f = float(v)
        except OverflowError:  # an integer beyond the float range
            raise self.fail("expected a finite number, got an integer too large for a "
                            "float") from None
        if not math.isfinite(f):
            raise self.fail(f"expected a finite number, got {v!r}")
        return f

    def number_in(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        what: str = "a number",
    ) -> float:
        f = self.number()
        too_low = low is not None and (f <= low if low_open else f < low)
        too_high = high is not None and f > high
        if too_low or too_high:
            lo = "(" if low_open else "["
            lo_s = "-inf" if low is None else f"{low:g}"
            hi_s = "inf" if high is None else f"{high:g}"
            raise self.fail(f"expected {what} in {lo}{lo_s}, {hi_s}], got {f:g}")
        return f

    def enum(self, cls: type[E]) -> E:
        valid = [m.value for m in cls]
        if not isinstance(self.value, str) or self.value not in valid:
            got = _type_name(self.value)
            hint = nearest_hint(self.value, valid) if isinstance(self.value, str) else ""
            raise self.fail(f"expected one of {', '.join(valid)}, got {got}{hint}")
        return cls(self.value)

    def param(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        what: str = "a number",
    ) -> Param:
        """A number, or a mapping with `value` and its provenance."""
        if isinstance(self.value, Mapping):
            with self.fields() as f:
                value = f.required("value", lambda n: n.number_in(low, high, low_open=low_open,
                                                                   what=what))
                prov = f.optional("provenance", lambda n: n.enum(Provenance),
                                  self.origin.provenance)
                source = f.optional("source", Node.string, self.origin.source)
                note = f.optional("note", Node.string, None)
            return Param(value, prov, source, note)
        value = self.number_in(low, high, low_open=low_open, what=what)
        return Param(value, self.origin.provenance, self.origin.source)

    def probability(self) -> Param:
        return self.param(0.0, 1.0, what="a probability")

    def nonnegative(self) -> Param:
        return self.param(0.0, None, what="a non-negative number")

    def positive(self) -> Param:
        return self.param(0.0, None, low_open=True, what="a positive number")

    # -- containers -------------------------------------------------------------------------
    def mapping(self) -> Mapping[str, Any]:
        if not isinstance(self.value, Mapping):
            raise self.fail(f"expected a mapping, got {_type_name(self.value)}")
        for key in self.value:
            if not isinstance(key, str):
                raise self.fail(f"expected string keys, got key {key!r}")
        return self.value

    def sequence(self, min_len: int = 0) -> list[Node]:
        if isinstance(self.value, str | bytes) or not isinstance(self.value, Sequence):
            raise self.fail(f"expected a list, got {_type_name(self.value)}")
        if len(self.value) < min_len:
            raise self.fail(f"expected a list of at least {min_len} item(s), got {len(self.value)}")
        return [self.child(i, v) for i, v in enumerate(self.value)]

    def fields(self, with_origin: bool = False) -> Fields:
        """Read the fields of a mapping; unknown keys are reported when the block closes.

        With `with_origin`, a `provenance`/`source` pair in this mapping becomes the default for
        the parameters below it (consumed here, so it is not an unknown key).
        """
        return Fields(self, with_origin)


class Fields:
    """Context manager reading a mapping's fields and collecting problems.

    Problems from independent fields are gathered and raised together when the block ends;
    a field that was needed but failed yields a placeholder so later fields still get checked.
    """

    def __init__(self, node: Node, with_origin: bool) -> None:
        self.node = node
        self.data = node.mapping()
        self.used: set[str] = set()
        self.problems: list[SpecProblem] = []
        self._known: set[str] = set()
        if with_origin:
            # a failure is recorded and raised when the block ends, like any field's
            prov = self.collect("provenance", lambda n: n.enum(Provenance),
                                node.origin.provenance)
            src = self.collect("source", Node.string, node.origin.source)
            node.origin = Origin(prov, src)

    def __enter__(self) -> Fields:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None and not isinstance(exc, _FieldFailed | SpecError):
            return
        if isinstance(exc, SpecError):
            self.problems.extend(exc.problems)
        unknown = [k for k in self.data if k not in self.used]
        # After a failed required field the later fields were never declared: report unknown
        # keys only when the whole block ran.
        if exc is None:
            valid = sorted(self._known)
            for key in unknown:
                hint = nearest_hint(key, valid)
                listing = f"; valid fields: {', '.join(valid)}" if not hint else ""
                self.problems.append(
                    self.node.child(key, None).problem(f"unknown field{hint}{listing}"))
        if self.problems:
            raise SpecError(self.problems) from None

    def _mark(self, key: str) -> None:
        self.used.add(key)
        self._known.add(key)

    def known(self, *keys: str) -> None:
        """Declare fields this block accepts without reading them here."""
        for k in keys:
            self._mark(k)

    def has(self, key: str) -> bool:
        self._known.add(key)
        return key in self.data

    def node_of(self, key: str) -> Node:
        self._mark(key)
        return self.node.child(key, self.data.get(key))

    def required(self, key: str, read: Callable[[Node], T]) -> T:
        self._mark(key)
        if key not in self.data:
            self.problems.append(self.node.child(key, None).problem("required field is missing"))
            raise _FieldFailed
        return self._read(key, read)

    def optional(self, key: str, read: Callable[[Node], T], default: T) -> T:
        self._mark(key)
        if key not in self.data or self.data[key] is None:
            return default
        return self._read(key, read)

    def _read(self, key: str, read: Callable[[Node], T]) -> T:
        try:
            return read(self.node.child(key, self.data[key]))
        except SpecError as e:
            self.problems.extend(e.problems)
            raise _FieldFailed from None

    def collect(self, key: str, read: Callable[[Node], T], default: T) -> T:
        """Like `optional`, but a failure is recorded and `default` returned so that the
        remaining fields are still checked; the block raises at its end."""
        try:
            return self.optional(key, read, default)
        except _FieldFailed:
            return default

    def collect_required(self, key: str, read: Callable[[Node], T], placeholder: T) -> T:
        try:
            return self.required(key, read)
        except _FieldFailed:
            return placeholder

    def check(self) -> None:
        """Raise now if problems were collected (before cross-field checks that need them)."""
        if self.problems:
            raise _FieldFailed


class _FieldFailed(Exception):
    """Internal: a field failed and its problem is already recorded."""


def entries(node: Node) -> Iterator[tuple[str, Node]]:
    """The (key, child) pairs of a mapping node."""
    for key, value in node.mapping().items():
        yield key, node.child(key, value)


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def safe_name(n: Node) -> str:
    """A name that is also safe as a file or folder name: letters, digits and . _ + -,
    starting with a letter or digit (no path separators, no `..`)."""
    text = n.string()
    if not SAFE_NAME.fullmatch(text):
        raise n.fail("expected a name of letters, digits and . _ + - (starting with a letter "
                     f"or digit), got {printable(text)!r}")
    return text
