"""Files that appear whole or not at all: written beside their place, then renamed.

A reader (another process, napari, a rerun after a crash) sees either the old
file or the complete new one, never half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, durable: bool = False
) -> Path:
    """Write ``path`` through ``write(f)`` (a binary file) into a temporary file, then rename.

    With ``durable`` the file and the rename are flushed to disk before returning
    (for what a user must not lose to a power cut: annotations). Returns ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; ours are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if durable and os.name == "posix":  # the rename reaches the disk only with its folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def write_csv_atomic(frame: object, path: str | os.PathLike[str], *, durable: bool = False) -> Path:
    """Write a pandas data frame as UTF-8 CSV (no index) with :func:`write_atomic`."""
    return write_atomic(
        path, lambda f: f.write(frame.to_csv(index=False).encode("utf-8")), durable=durable
    )
