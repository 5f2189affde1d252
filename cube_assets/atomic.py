"""Atomic file writes: build the output under a temporary name beside it, then move it into place.

Temporary names are hidden and marked: ``.{stem}.{12 hex digits}.{marker}{suffixes}``
(:func:`temporary_path`), so a writer killed before its move leaves a file that
:func:`is_temporary_name` recognizes and the stale-write cleanup (``storage/cleanup.py``) removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_MARKERS = ("tmp", "staging", "download", "pull")
"""Markers of temporary names: ``tmp`` (atomic writes), ``staging`` (merge outputs awaiting their COG),
``download`` (S3 downloads), ``pull`` (raw scenes pulled from S3)."""
_TEMPORARY_NAME = re.compile(
    r"^\.[^/]+\.(?:[0-9a-f]{12}|[0-9]+)\.(?:" + "|".join(TEMPORARY_MARKERS) + r")(?:[.-][^/]*)?$"
)


def temporary_path(destination: str | os.PathLike[str], marker: str = "tmp") -> Path:
    """A fresh hidden temporary path beside ``destination``: ``.{stem}.{12 hex}.{marker}{suffixes}``.

    GDAL picks the format by the suffix, so the destination's suffixes are kept at the end.

    Returns:
        The temporary path (nothing is created).

    Raises:
        ValueError: if ``marker`` is not one of :data:`TEMPORARY_MARKERS`.
    """
    if marker not in TEMPORARY_MARKERS:
        raise ValueError(f"temporary marker {marker!r} is not one of {TEMPORARY_MARKERS}")
    destination = Path(destination)
    suffix = "".join(destination.suffixes)
    return destination.with_name(f".{destination.stem}.{uuid.uuid4().hex[:12]}.{marker}{suffix}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a temporary name a writer of this package gives (or a GDAL sidecar of one).

    Recognizes :func:`temporary_path`'s names, their ``.aux.xml``/``.ovr`` sidecars, and the
    ``.{name}.{pid}.tmp`` of a publish across filesystems.

    Returns:
        True for such a name.
    """
    return bool(_TEMPORARY_NAME.match(name))


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; on success move it onto ``destination``.

    The temporary file lives in the destination's folder so the final ``os.replace`` is an
    atomic rename on the same filesystem: readers see either the old file or the complete new
    one, never a partial file. On any exception the temporary file is removed and the
    exception propagates; ``destination`` is left untouched.

    Returns:
        A context manager yielding the temporary ``Path`` to write to.

    Raises:
        Whatever the body raises; ``OSError`` if the move fails.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(destination)
    try:
        yield tmp
        os.replace(tmp, destination)
    finally:
        # Sidecar files (.aux.xml, .ovr) that GDAL may leave beside the temporary name.
        for leftover in tmp.parent.glob(tmp.name + "*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def atomic_write_bytes(destination: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``destination`` atomically.

    Returns:
        The destination path.

    Raises:
        OSError: if the file cannot be written or moved.
    """
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def atomic_write_text(destination: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``destination`` atomically.

    Returns:
        The destination path.

    Raises:
        OSError: if the file cannot be written or moved.
    """
    return atomic_write_bytes(destination, text.encode("utf-8"))


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the ``with`` block.

    ``flock`` serializes processes and threads alike (each call opens its own handle).

    Raises:
        OSError: if the lock file cannot be created or opened.
    """
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
