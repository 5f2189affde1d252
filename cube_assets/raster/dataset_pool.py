"""A bounded pool of open, read-only rasterio datasets shared by threads and requests.

Opening a GeoTIFF costs more than reading one block of it (the header, the tile index, the CRS;
over ``/vsis3/`` a request or two), so reads that come back to the same files — the time series
of one point after another, over the same merges — keep their datasets open here instead of
opening them each time. GDAL's block cache belongs to an open dataset, so a block read once is
also not decoded again while its dataset stays in the pool.

* One dataset is used by one thread at a time (a rasterio dataset is not thread-safe); different
  datasets are read in parallel.
* A local file that changed since it was opened (another inode, size or modification time, as
  when an asset is materialized again and its COG replaced atomically) is opened again; a remote
  (``/vsi…``) dataset is reopened after ``remote_ttl_s`` seconds.
* At most ``capacity`` datasets stay open (the least recently used idle ones are closed first),
  bounded by the process's open-file limit.
* A forked child does not use its parent's handles.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import rasterio
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader

from cube_assets.errors import InvalidRaster

#: Most datasets a pool keeps open by default, before the open-file limit is taken into account.
MAX_DEFAULT_CAPACITY = 4096
#: Seconds a remote dataset is trusted before it is opened again.
DEFAULT_REMOTE_TTL_S = 300.0


def default_capacity() -> int:
    """How many datasets a pool keeps open by default: a quarter of the open-file limit, 16 to 4096.

    Returns:
        The capacity.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_DEFAULT_CAPACITY
    return max(16, min(MAX_DEFAULT_CAPACITY, soft // 4))


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    dataset: DatasetReader | None = None
    stamp: tuple[int, int, int] | None = None
    opened_at: float = 0.0


class DatasetPool:
    """Open datasets kept by path, least recently used closed first (see the module's docstring)."""

    def __init__(self, capacity: int | None = None, remote_ttl_s: float = DEFAULT_REMOTE_TTL_S) -> None:
        """A pool keeping at most ``capacity`` datasets open (``default_capacity()`` when None).

        Raises:
            ValueError: when ``capacity`` is below 1 or ``remote_ttl_s`` is negative.
        """
        chosen = default_capacity() if capacity is None else capacity
        if chosen < 1:
            raise ValueError(f"dataset pool capacity: must be at least 1, got {chosen}")
        if remote_ttl_s < 0:
            raise ValueError(f"dataset pool remote_ttl_s: must be >= 0, got {remote_ttl_s}")
        self.capacity = chosen
        self.remote_ttl_s = remote_ttl_s
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        """The number of datasets open in the pool."""
        with self._lock:
            return sum(1 for entry in self._entries.values() if entry.dataset is not None)

    @contextlib.contextmanager
    def dataset(self, path: str) -> Iterator[DatasetReader]:
        """The open dataset of GDAL path ``path``, held by this thread until the block ends.

        Call it inside the ``rasterio.Env`` the reads need (credentials, GDAL options).

        Returns:
            A context manager yielding the dataset.

        Raises:
            InvalidRaster: when ``path`` cannot be opened.
        """
        entry = self._checkout(path)
        try:
            if entry.dataset is None or self._stale(path, entry):
                self._close(entry)
                stamp = _local_stamp(path)  # before opening: a file replaced meanwhile is seen as stale
                entry.dataset = self._open(path)
                entry.stamp, entry.opened_at = stamp, time.monotonic()
            yield entry.dataset
        except BaseException:
            # A failed read may leave the dataset in an unknown state: do not hand it out again.
            self._close(entry)
            raise
        finally:
            with self._lock:
                evicted_meanwhile = self._entries.get(path) is not entry
            if evicted_meanwhile:
                self._close(entry)
            entry.lock.release()
            self._evict()

    # ----------------------------------------------------------------------------- internals

    def _checkout(self, path: str) -> _Entry:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
                self._entries = OrderedDict()
                self._pid = os.getpid()
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = _Entry()
            self._entries.move_to_end(path)
        entry.lock.acquire()
        return entry

    def _stale(self, path: str, entry: _Entry) -> bool:
        if entry.stamp is not None:
            return _local_stamp(path) != entry.stamp
        return time.monotonic() - entry.opened_at > self.remote_ttl_s

    @staticmethod
    def _open(path: str) -> DatasetReader:
        try:
            return rasterio.open(path)
        except RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be read ({error})") from error

    @staticmethod
    def _close(entry: _Entry) -> None:
        if entry.dataset is not None:
            entry.dataset.close()
        entry.dataset, entry.stamp = None, None

    def _evict(self) -> None:
        with self._lock:
            excess = len(self._entries) - self.capacity
            candidates = list(self._entries)[: max(0, excess)] if excess > 0 else []
        for path in candidates:
            self._evict_path(path)

    def _evict_path(self, path: str) -> None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is None or not entry.lock.acquire(blocking=False):
                return  # in use: it stays until a later eviction
            del self._entries[path]
        try:
            self._close(entry)
        finally:
            entry.lock.release()


def _local_stamp(path: str) -> tuple[int, int, int] | None:
    """``(inode, size, mtime_ns)`` of a local file; None for a GDAL virtual path or a missing file."""
    if path.startswith("/vsi"):
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


__all__ = ["DEFAULT_REMOTE_TTL_S", "MAX_DEFAULT_CAPACITY", "DatasetPool", "default_capacity"]
