"""Clean up what killed writers leave behind: staging folders on the local disk, open multipart uploads in S3.

Every writer builds its file in a staging folder (``{root}/.staging/`` for the local store, the
``staging_root`` of the S3 store) and moves or uploads it only when finished; a process killed
in between (SIGKILL, out of memory, an evicted pod) leaves its staging folder on the disk, and
an S3 upload killed half-way leaves an open multipart upload whose parts are stored until it is
aborted. A writer that builds its file beside the destination (``atomic.atomic_path`` and the
other hidden, marked names of ``atomic.temporary_path``) and is killed before its move leaves
that temporary file among the finished ones. None of these is ever read, so anything older than a
generous age (longer than any write takes) can go: :func:`clean_stale_writes` does all three,
and the storage resource calls it when it opens the store (``RasterStoreResource.stale_after_hours``).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cube_assets.atomic import is_temporary_name

logger = logging.getLogger(__name__)

#: Default age after which a staging folder or a multipart upload is considered abandoned.
DEFAULT_STALE_AFTER = timedelta(hours=24)

#: How often, at most, the whole local store is walked for writers' temporary files.
TEMPORARIES_SWEEP_INTERVAL = timedelta(hours=1)


@dataclass(frozen=True)
class CleanupReport:
    """What :func:`clean_stale_writes` removed: local staging entries, S3 multipart uploads (object keys),
    and temporary files of killed writers among the store's files."""

    staging_removed: tuple[Path, ...] = ()
    uploads_aborted: tuple[str, ...] = ()
    temporaries_removed: tuple[Path, ...] = ()


def _newest_mtime(entry: Path) -> float:
    """The most recent modification time of ``entry`` and, for a folder, of everything in it (symlinks not followed)."""
    newest = entry.lstat().st_mtime
    if stat.S_ISDIR(entry.lstat().st_mode):
        for folder, dirs, files in os.walk(entry):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except FileNotFoundError:  # removed while we looked: its writer is alive
                    return time.time()
    return newest


def remove_stale_staging(
    staging_root: str | os.PathLike[str], older_than: timedelta, now: float | None = None
) -> list[Path]:
    """Remove the entries of ``staging_root`` in which nothing changed for ``older_than``.

    Each entry (one writer's temporary folder, or a stray file) is judged by the newest
    modification time found in it, so a folder whose writer is still adding or growing files is
    kept. ``now`` is a POSIX timestamp (default: the current time).

    Returns:
        The entries removed, sorted; empty when ``staging_root`` does not exist.

    Raises:
        ValueError: when ``older_than`` is negative.
    """
    if older_than < timedelta(0):
        raise ValueError(f"remove_stale_staging: older_than {older_than} must not be negative")
    root = Path(staging_root)
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - older_than.total_seconds()
    return [entry for entry in sorted(root.iterdir()) if _remove_if_stale(entry, cutoff)]


def remove_stale_temporaries(
    root: str | os.PathLike[str],
    older_than: timedelta,
    now: float | None = None,
    *,
    skip: tuple[str, ...] = (".staging",),
) -> list[Path]:
    """Remove, anywhere under ``root``, the temporary files and folders of writers killed before their move.

    An entry is removed when its name is a writer's temporary name (``atomic.is_temporary_name``:
    hidden and marked, e.g. ``.S2A_B04.3c1cb9412525.tmp.tif``) and nothing in it changed for
    ``older_than``; finished files are never touched. Top-level folders named in ``skip`` (the
    staging root, cleaned by :func:`remove_stale_staging`) are not entered; symlinks are not
    followed. ``now`` is a POSIX timestamp (default: the current time).

    Returns:
        The entries removed, sorted; empty when ``root`` does not exist.

    Raises:
        ValueError: when ``older_than`` is negative.
    """
    if older_than < timedelta(0):
        raise ValueError(f"remove_stale_temporaries: older_than {older_than} must not be negative")
    top = Path(root)
    if not top.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - older_than.total_seconds()
    removed = []
    for folder, dirs, files in os.walk(top):
        here = Path(folder)
        if here == top:
            dirs[:] = [name for name in dirs if name not in skip]
        for name in [*dirs, *files]:
            if is_temporary_name(name) and _remove_if_stale(here / name, cutoff):
                removed.append(here / name)
        dirs[:] = [name for name in dirs if (here / name).is_dir()]
    return sorted(removed)


def _remove_if_stale(entry: Path, cutoff: float) -> bool:
    """Remove ``entry`` (a file, or a folder and its contents) if nothing in it changed since ``cutoff``."""
    try:
        if _newest_mtime(entry) >= cutoff:
            return False
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except FileNotFoundError:  # another process cleaned it first
        return False
    return True


def _sweep_due(root: Path, now: float, every: timedelta | None) -> bool:
    """Whether the walk of ``root`` for temporary files is due, and if so, mark it as done now.

    ``every=None``: always. Otherwise the walk, which visits every file of the store, runs at
    most once per ``every`` for the whole store, whichever process opens it first (the mark is
    the modification time of ``{root}/.temporaries-swept``).
    """
    if every is None:
        return True
    marker = root / ".temporaries-swept"
    try:
        if now - marker.stat().st_mtime < every.total_seconds():
            return False
    except FileNotFoundError:
        pass
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    os.utime(marker, (now, now))
    return True


def clean_stale_writes(
    store: Any,
    older_than: timedelta = DEFAULT_STALE_AFTER,
    now: datetime | None = None,
    *,
    temporaries_every: timedelta | None = None,
) -> CleanupReport:
    """Remove ``store``'s abandoned staging entries and abort its abandoned multipart uploads.

    ``store`` is a ``LocalRasterStore`` (its ``{root}/.staging``, and the temporary files of
    killed writers anywhere under its root, :func:`remove_stale_temporaries`, walked at most once
    per ``temporaries_every`` when given) or an
    ``S3RasterStore`` (its ``staging_root``, when set, and the multipart uploads under its
    prefix). Failures are logged as warnings and skipped: a cleanup never stops the write that
    opened the store.

    Returns:
        The :class:`CleanupReport` of what was removed.
    """
    now = now or datetime.now(UTC)
    staging_root = getattr(store, "staging_root", None)
    if staging_root is None and hasattr(store, "root"):
        staging_root = Path(store.root) / ".staging"
    staging: list[Path] = []
    if staging_root is not None:
        try:
            staging = remove_stale_staging(staging_root, older_than, now=now.timestamp())
        except OSError as exc:
            logger.warning("could not clean stale staging entries in %s: %s", staging_root, exc)
    temporaries: list[Path] = []
    if hasattr(store, "root"):
        try:
            if _sweep_due(Path(store.root), now.timestamp(), temporaries_every):
                temporaries = remove_stale_temporaries(store.root, older_than, now=now.timestamp())
        except OSError as exc:
            logger.warning("could not clean stale temporary files under %s: %s", store.root, exc)
    uploads: list[str] = []
    if hasattr(store, "abort_stale_multipart_uploads"):
        try:
            uploads = store.abort_stale_multipart_uploads(older_than, now=now)
        except OSError as exc:
            logger.warning("could not abort stale multipart uploads of %r: %s", store, exc)
    if staging or uploads or temporaries:
        logger.info(
            "removed %d abandoned staging entries and %d temporary files, aborted %d abandoned multipart uploads "
            "(older than %s): %s",
            len(staging),
            len(temporaries),
            len(uploads),
            older_than,
            [str(p) for p in staging + temporaries] + uploads,
        )
    return CleanupReport(tuple(staging), tuple(uploads), tuple(temporaries))
