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
from pathlib import Path
from typing import Any

__all__ = ["atomic_savefig", "atomic_write_bytes", "atomic_write_text"]


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
