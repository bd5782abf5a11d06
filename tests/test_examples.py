"""The example notebook runs from top to bottom on a fresh kernel, on the demo's outputs, and
is kept in git without outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "walkthrough.ipynb"


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 8
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_the_notebook_runs_on_the_demos_outputs(demo_outputs: Path, tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    (tmp_path / "memsim-demo").symlink_to(demo_outputs, target_is_directory=True)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # workers and the kernel on one thread each: two cores, no oversubscription
    env = {"OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute()  # a cell that raises fails here, with its traceback
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    texts = []
    images = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")))
            images += "image/png" in output.get("data", {})
    printed = "\n".join(texts)
    (tmp_path / "executed.ipynb").write_text(nbformat.writes(notebook), encoding="utf-8")
    assert images >= 2  # the fault curves and the front
    assert "16 cells" in printed
    assert "no demo results" not in printed
    assert "relative_energy" in printed  # the demo's table was read
    assert (tmp_path / "walkthrough-sweep" / "report.md").is_file()
