"""Every module says what it is for; signatures live in the code, not in module docstrings
(a "Public API" block restating them drifts from the code)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

import pytest

import memsim

# Extras a lean install lacks (pyproject's optional dependencies): a module that needs one is
# skipped, any other import failure fails.
_OPTIONAL = frozenset({"ray"})


def _missing_optional(error: BaseException | None) -> bool:
    return (isinstance(error, ModuleNotFoundError)
            and (error.name or "").split(".")[0] in _OPTIONAL)


def _package_failed(name: str) -> None:
    # called by walk_packages while the import error is being handled
    error = sys.exc_info()[1]
    if not _missing_optional(error):
        raise ImportError(f"cannot import package {name}") from error


def _module_names() -> list[str]:
    names: list[str] = []
    names.append(memsim.__name__)
    names.extend(m.name for m in pkgutil.walk_packages(
        memsim.__path__, "memsim.", onerror=_package_failed))
    return sorted(names)


MODULES = _module_names()


def _docstring(name: str) -> str | None:
    if name.rsplit(".", 1)[-1] == "__main__":
        # importing it would run the command line: read the docstring from the source
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if _missing_optional(e):
            pytest.skip(f"{name} needs {e.name}, which is not installed")
        raise
    return module.__doc__


def test_the_walk_finds_the_modules() -> None:
    # guards the tests below against passing on an empty walk
    for name in ("memsim.__main__", "memsim.experiments.stats", "memsim.spec.experiment",
                 "memsim.workloads.bridge"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_has_a_docstring(name: str) -> None:
    doc = _docstring(name)
    assert doc is not None and doc.strip(), f"{name} has no module docstring"


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_lists_no_signatures(name: str) -> None:
    doc = _docstring(name) or ""
    assert "Public API" not in doc, (
        f"{name}: the module docstring restates signatures; they live in the code")
