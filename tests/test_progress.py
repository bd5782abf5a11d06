"""Progress bars show in a terminal and in a notebook, and hide in logs."""

from __future__ import annotations

import sys

import pytest

from memsim.progress import in_notebook, progress_bar


def test_no_bar_where_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert not in_notebook()
    bar = progress_bar(10, "train", "batch")  # pytest captures stderr: not a terminal
    assert bar.disable
    bar.close()


def test_a_notebook_gets_its_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", object())  # as inside a Jupyter kernel
    assert in_notebook()
    bar = progress_bar(10, "sweep", "eval", leave=False)
    assert not bar.disable and bar.total == 10 and bar.desc.startswith("sweep")
    bar.close()


def test_a_notebook_without_ipywidgets_gets_the_text_bar_without_a_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import warnings

    real = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm.auto would warn "IProgress not found"
        bar = progress_bar(10, "sweep", "eval", leave=False)
    assert not bar.disable and type(bar).__module__ == "tqdm.std"
    bar.close()
