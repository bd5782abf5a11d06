"""The one atomic writer: whole files or none, ordinary permissions, no umask change, unique
temporary names, nothing left behind on failure."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memsim.files import (
    FolderInUse,
    atomic_savefig,
    atomic_write_bytes,
    atomic_write_text,
    folder_lock,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_writes_replace_whole_files_with_ordinary_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "sub" / "a.csv", "x,y\n1,2\n")
        assert path.read_text() == "x,y\n1,2\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 under the umask
        assert _umask() == 0o027  # the writer read or changed no umask
        atomic_write_bytes(path, b"\x00\x01")
        assert path.read_bytes() == b"\x00\x01"
    finally:
        os.umask(old)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.csv"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = atomic_write_text(tmp_path / "report.md", "old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_concurrent_writers_use_their_own_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    texts = [f"{i}\n" * 2000 for i in range(8)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(20):
                atomic_write_text(path, text)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert path.read_text() in texts  # one writer's whole text, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


PNG_END = b"IEND\xaeB`\x82"


def _whole_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(PNG_END)


def test_a_picture_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = atomic_savefig(fig, tmp_path / "a.png", dpi=50)
    svg = atomic_savefig(fig, tmp_path / "a.svg")
    plt.close(fig)
    assert _whole_png(png) and svg.read_text().rstrip().endswith("</svg>")

    class Failing:  # renders half a picture, then fails (a full disk, a bug in a plot)
        def savefig(self, target: Any, **options: Any) -> None:
            target.write(b"\x89PNG\r\n\x1a\n half")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_savefig(Failing(), png)
    assert _whole_png(png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg"]


# Runs `memsim pareto` with every figure's bytes written in two halves: after the first, the
# process says so through a marker file and sleeps, to be killed there by the test.
_SLOW_WRITER = """
import io, pathlib, sys, time
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
original = Figure.savefig
marker = pathlib.Path(sys.argv[1])

def halting_savefig(self, target, **options):
    rendered = io.BytesIO()
    original(self, rendered, **options)
    data = rendered.getvalue()
    sink = open(target, "wb") if isinstance(target, (str, pathlib.Path)) else target
    sink.write(data[: len(data) // 2])
    sink.flush()
    marker.write_text("half written")
    time.sleep(60)
    sink.write(data[len(data) // 2:])

Figure.savefig = halting_savefig
from memsim.cli import main
sys.exit(main(["pareto", sys.argv[2]]))
"""


def test_killing_pareto_mid_write_leaves_no_truncated_picture(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    shutil.copytree(small_sweep[1], out)
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert before and all(_whole_png(out / name) for name in before)
    marker = tmp_path / "marker"
    process = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(marker), str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)  # as a user's kill -9, halfway through a picture
        process.wait()
        if process.stderr:
            process.stderr.close()
    # every picture is the old one, whole; the killed write left at most its hidden temporary
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


_HOLDER = """
import sys, time
from memsim.files import folder_lock
with folder_lock(sys.argv[1], "holder"):
    open(sys.argv[2], "w").close()
    time.sleep(60)
"""


def test_a_folder_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    marker = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(FolderInUse, match=rf"in use by holder \(pid {holder.pid}\)"), \
                folder_lock(tmp_path, "second"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # no handler runs: the kernel drops the lock
        holder.wait()
    with folder_lock(tmp_path, "third"):
        assert (tmp_path / ".memsim.lock").read_text() == f"third (pid {os.getpid()})\n"


def test_a_second_run_on_a_busy_folder_is_refused_before_any_work(
        small_sweep: tuple[Path, Path, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from memsim.cli import main

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, "memsim run elsewhere"):
        status = main(["run", str(small_sweep[0]), "--out", str(out), "--executor",
                       "inprocess", "--no-progress"])
    assert status == 2
    assert capsys.readouterr().err == (
        f"error: {out}: in use by memsim run elsewhere (pid {os.getpid()}); wait for it to "
        "finish or choose another --out\n")
    assert sorted(p.name for p in out.iterdir()) == [".memsim.lock"]  # nothing trained or swept
