"""File helpers shared by everything that saves: writes are atomic, so a crash never leaves a half file."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_text", "load_torch_file", "save_figure", "save_torch_file", "ModelFileError"]


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


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The first of ``path``'s folders that exists but is not a folder (a regular file where a folder should be), or
    None: what a failed write or ``mkdir`` below it should name."""
    return next((folder for folder in Path(path).parents if folder.exists() and not folder.is_dir()), None)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(fileobj)`` into a temporary sibling, then rename it over ``path``.

    If ``write`` raises (disk full, interrupted, a bug), the previous content of ``path`` is left untouched
    and the temporary file is removed.

    :param path: destination file
    :param write: callable that writes the whole content to the binary file object it is given
    :return: the destination as a ``Path``
    :raises ValueError: ``path`` is a folder, or a file stands where one of its folders should be
    """
    if isinstance(path, str) and path.endswith(("/", os.sep)):  # Path() would drop the slash and write a file there
        raise ValueError(f"cannot write {path!r}: it ends with a path separator, as a folder does; give a file path")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: it is a folder; give a file path inside it")
    blocking = file_in_the_way(path)
    if blocking is not None:
        raise ValueError(f"cannot write {str(path)!r}: {str(blocking)!r} is a file, not a folder")
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


def atomic_write_text(path: str | os.PathLike, text: str | bytes) -> Path:
    """Write a whole text (or bytes) file atomically (see :func:`atomic_write`)."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    return atomic_write(path, lambda handle: handle.write(data))


def save_figure(figure: Any, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it if pyplot manages it.

    A bare ``matplotlib.figure.Figure`` (what the library draws) renders to PNG without any backend, so saving never
    switches the user's backend (``matplotlib.use``) nor imports pyplot.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    if getattr(figure.canvas, "manager", None) is not None:  # a pyplot figure: free it from pyplot's registry
        import matplotlib.pyplot as plt

        plt.close(figure)
    return atomic_write_text(path, buffer.getvalue())


def save_torch_file(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` of a payload of tensors and plain Python values, atomically (see :func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_torch_file(
    path: str | os.PathLike, file_format: str, version: int | tuple[int, ...], what: str
) -> dict[str, Any]:
    """Load a file written by :func:`save_torch_file` safely (``weights_only=True``: no code runs) and check its
    ``format`` marker and ``format_version``.

    :param path: the file
    :param file_format: the marker the payload must carry, e.g. ``"dream-envs/ensemble"``
    :param version: the format version this code reads (or a tuple of the versions it reads)
    :param what: how an error names the file's kind, e.g. ``"dream-envs model"``
    :raises FileNotFoundError: no file at ``path``
    :raises ModelFileError: truncated, corrupted or foreign file, or another format version
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {str(path)!r}")
    # One read serves the check and the load, so the bytes checked are the bytes loaded.
    data = path.read_bytes()
    _check_zip(path, data, what)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad zip/pickle; all mean "unreadable"
        raise ModelFileError(
            f"{str(path)!r} could not be read as a {what} file: it is truncated, corrupted or not a "
            f"torch file ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ModelFileError(
            f"{str(path)!r} is a torch file but not a {what} (no format marker {file_format!r}); "
            "it may be a plain state_dict or another library's checkpoint"
        )
    versions = version if isinstance(version, tuple) else (version,)
    if payload.get("format_version") not in versions:
        readable = " or ".join(str(v) for v in versions)
        raise ModelFileError(
            f"{str(path)!r} has format version {payload.get('format_version')!r}; this dream-envs "
            f"reads version {readable}. Re-create it with this version."
        )
    return payload


def _check_zip(path: Path, data: bytes, what: str) -> None:
    """Check that ``data`` is a whole zip archive (torch.save's format) whose every member matches its CRC-32.

    ``torch.load`` reads a tensor record without checking its CRC, so a flipped byte inside the weights would load
    as a changed weight (by up to 1e28) without a word; Python's zipfile checks every member.

    :raises ModelFileError: naming the file and what is wrong with it
    """
    problem = None
    if not data:
        problem = "it is empty, 0 bytes: was its write interrupted?"
    else:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                damaged = archive.testzip()  # the first member whose CRC-32 does not match, or None
                # torch.save writes no folders; torch's reader skips a record flagged as one (MS-DOS attribute 0x10)
                # and hands back an uninitialised tensor, so a flipped attribute bit is damage too.
                folders = [info.filename for info in archive.infolist() if info.is_dir() or info.external_attr & 0x10]
            if damaged is not None:
                problem = f"its record {damaged!r} fails its CRC-32 check: bytes changed on disk or in transfer"
            elif folders:
                problem = f"its record {folders[0]!r} is marked as a folder, which torch.save never writes"
        except zipfile.BadZipFile as error:
            problem = f"not a whole zip archive, as torch.save writes: {error}"
        except Exception as error:  # a damaged header makes zipfile raise other types (EOFError, NotImplementedError)
            problem = f"its zip structure is damaged: {type(error).__name__}: {error}"
    if problem is not None:
        raise ModelFileError(
            f"{str(path)!r} could not be read as a {what} file: it is truncated, corrupted or not a "
            f"torch file ({problem})"
        )


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
