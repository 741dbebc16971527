"""File helpers shared by everything that saves: writes are atomic, so a crash never leaves a half file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "ModelFileError"]


class ModelFileError(ValueError):
    """A file that cannot be used: truncated, corrupted, foreign, from another format version, or for other spaces.

    A ``ValueError``, so ``except ValueError`` also catches it.

    Example::

        import tempfile, pathlib
        from dream_envs import EnsembleDynamics, ModelFileError

        bad = pathlib.Path(tempfile.mkdtemp()) / "bad.pt"
        bad.write_bytes(b"not a model")
        try:
            EnsembleDynamics.load(bad)
        except ModelFileError as error:
            print(error)
    """


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary sibling, then rename it over ``path``.

    If ``write`` raises (disk full, interrupted, a bug), the previous content of ``path`` is left untouched
    and the temporary file is removed.

    :param path: destination file
    :param write: callable that writes the whole content to the binary file object it is given
    :return: the destination as a ``Path``
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would (or keep the replaced file's).
        os.chmod(tmp_name, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
