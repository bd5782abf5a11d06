"""What `pip install .` puts in site-packages: only `memsim` (the torch layer as
`memsim.workloads`, the catalogue as `memsim.builtin_devices`), never a generic top-level name
that a user's own `workloads` module would collide with."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a build reads; the rest of the checkout (tests, docs, runs) is not packaged
_SOURCES = ("pyproject.toml", "README.md", "memsim", "workloads", "devices", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in _SOURCES:
        path = ROOT / name
        if path.is_dir():
            # symlinks=True keeps memsim/workloads the link it is in the repository
            shutil.copytree(path, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(source)],
                   check=True, capture_output=True)
    (found,) = out.glob("memsim-*.whl")
    return found


def test_the_wheel_holds_only_memsim(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"memsim", next(t for t in top if t.endswith(".dist-info"))}
    for module in ("memsim/workloads/__init__.py", "memsim/workloads/training.py",
                   "memsim/builtin_devices/sram-14nm.yaml",
                   "memsim/builtin_configs/quickstart.yaml"):
        assert module in names


def test_every_package_of_the_checkout_is_in_the_wheel(wheel: Path) -> None:
    # pyproject lists packages one by one: a new subpackage left out would vanish from wheels
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(str((Path(folder) / "__init__.py").relative_to(ROOT))
                      for folder, _, files in os.walk(ROOT / "memsim", followlinks=True)
                      if "__init__.py" in files)
    assert "memsim/workloads/data/__init__.py" in packages  # the walk follows the link
    assert [p for p in packages if p not in names] == []


def test_installed_memsim_has_workloads_and_no_top_level_workloads(wheel: Path,
                                                                    tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no site-packages of this environment; cwd elsewhere: not the checkout's workloads/
    probe = ("import sys, importlib.util as u; sys.path.insert(0, sys.argv[1]); "
             "print(u.find_spec('workloads') is None, u.find_spec('memsim.workloads') is not None)")
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(site)], cwd=tmp_path,
                          check=True, capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True"]


def test_the_checkout_links_memsim_workloads_to_the_top_level_folder() -> None:
    link = ROOT / "memsim" / "workloads"
    if not (ROOT / "workloads").is_dir():
        pytest.skip("not a source checkout")
    assert link.is_symlink() and link.resolve() == (ROOT / "workloads").resolve()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_nothing_imports_the_top_level_name() -> None:
    if not (ROOT / "workloads").is_dir():
        pytest.skip("not a source checkout")
    offenders = []
    for folder in ("memsim", "workloads", "tests", "scripts", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(m == "workloads" or m.startswith("workloads.") for m in _imports(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
