"""Exception hierarchy: every error a user can cause is a `MemsimError` with a one-line message."""

from __future__ import annotations

from collections.abc import Iterable


class MemsimError(Exception):
    """Base class of memsim's errors, each with a one-line message the CLI prints.

    A plain `MemsimError` (and every subclass but `RunFailure`) is the input's fault: the CLI
    exits 2. A `RunFailure` is not: the CLI exits 1.
    """


class SpecProblem:
    """One problem in a spec file: where it is and what was expected."""

    __slots__ = ("file", "message", "path")

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"SpecProblem({self.file!r}, {self.path!r}, {self.message!r})"


class SpecError(MemsimError):
    """One or more problems found while loading or validating a spec file."""

    def __init__(self, problems: Iterable[SpecProblem]) -> None:
        self.problems: tuple[SpecProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("SpecError needs at least one problem")
        super().__init__("; ".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, file: str, path: str, message: str) -> SpecError:
        return cls([SpecProblem(file, path, message)])


class UnknownDeviceError(MemsimError):
    """A device name that is neither a built-in device nor a readable file."""


class KnobError(MemsimError):
    """An operating point names an unknown knob or a value outside its range."""


class RunFailure(MemsimError):
    """A failure while running, not caused by the input: a worker process that died, an output
    that cannot be written."""
