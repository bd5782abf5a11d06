"""Writing files so that a reader, or a crash, never sees half of one.

The one atomic writer of the project: results CSVs, manifests, reports, pictures and checkpoints
all go through `atomic_write_bytes`. The data goes to a temporary file in the same folder (a unique
name, created exclusively, with the permissions an ordinary new file gets under the process's
umask), is fsynced, then renamed over the target; the folder is fsynced so that the rename
survives a power loss. On any failure the temporary file is removed and the target is left as
it was.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memsim.errors import MemsimError

try:  # POSIX; elsewhere folders are not locked
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderInUse", "atomic_savefig", "atomic_write_bytes", "atomic_write_text",
           "folder_lock"]

LOCK_FILENAME = ".memsim.lock"


class FolderInUse(MemsimError):
    """Another process holds an output folder's lock."""


def _create_temporary(target: Path) -> tuple[int, Path]:
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 under the umask, like open(..., "w"): no umask is read or changed here
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target}: no free temporary name next to it")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace `path` with `data`, whole or not at all; creates the folder if needed."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(out)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(out.parent)
    return out


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`atomic_write_bytes` of `text` in UTF-8, newlines as given."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(figure: Any, path: str | os.PathLike[str], **savefig_options: Any) -> Path:
    """Render a matplotlib figure in memory, in the format its suffix names, then
    `atomic_write_bytes` it: a killed or failing run leaves no truncated picture."""
    out = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=out.suffix.lstrip(".").lower() or "png", **savefig_options)
    return atomic_write_bytes(out, buffer.getvalue())


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold `folder`'s lock (an OS lock on `folder/.memsim.lock`) while the block runs, or
    raise `FolderInUse` at once if another process holds it. The kernel releases it when its
    holder exits, however (kill -9 too), so a killed run never leaves the folder locked."""
    path = Path(folder) / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                raise FolderInUse(f"{folder}: in use by {holder or 'another process'}; wait "
                                  "for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
