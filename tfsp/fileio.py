"""Atomic file writes: readers see the old file or the new one, never a partial one.

Device-safe: standard library only. Every write goes to a temporary file in the
destination's folder (same file system, so ``os.replace`` is an atomic rename),
which gets normal permissions (``0o666 & ~umask``, not ``mkstemp``'s 0600) and is
removed again when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o666
"""Permissions of a new file before the process umask is applied (what ``open(path, "w")`` uses)."""

TEMP_SUFFIX = ".tmp"


def default_file_mode() -> int:
    """``FILE_MODE`` minus the process umask: the mode ``open`` would give a new file."""
    umask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(umask)
    return FILE_MODE & ~umask


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it over ``path`` when the block succeeds.

    The temporary file exists (empty) when the block starts and keeps ``path``'s suffix
    (``.a.keras.x1y2.tmp.keras``), for writers such as ``keras.Model.save`` that insist on one.
    Parent folders are created. On an exception the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX + path.suffix)
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, default_file_mode())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (see the module docstring); creates parent folders.

    Returns:
        ``path`` as a Path.
    """
    with replacing(path) as temp:
        temp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """``write_atomic`` of ``text`` encoded as UTF-8."""
    return write_atomic(path, text.encode("utf-8"))
