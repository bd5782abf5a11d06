"""The one atomic writer: whole files or none, ordinary permissions, no umask change, unique
temporary names, nothing left behind on failure."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from memsim.files import atomic_write_bytes, atomic_write_text


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
