"""Where the cube's files live: a key space (``{cube}/{tile}/{date}/{item}_{band}.tif``) on a backend.

Writers never produce a file at its final key directly: they build it in ``staging_dir()``
and call ``publish``, which moves (local) or uploads (S3) the finished file, so a reader
sees either nothing or the complete file under a final key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cube_assets.atomic import atomic_write_bytes


@runtime_checkable
class RasterStore(Protocol):
    """The storage interface that assets write through (local filesystem, S3, …)."""

    def uri(self, key: str) -> str:
        """Return the URI of ``key`` (a filesystem path or ``s3://bucket/prefix/key``)."""
        ...

    def gdal_path(self, uri: str) -> str:
        """Return the path GDAL/rasterio opens for ``uri`` (``/vsis3/…`` for S3)."""
        ...

    def exists(self, key: str) -> bool:
        """Return whether ``key`` holds a complete object."""
        ...

    def publish(self, local_file: Path, key: str, content_type: str | None = None) -> str:
        """Move or upload a finished local file to ``key``; return its URI."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """Return the bytes stored under ``key``; raise ``FileNotFoundError`` when absent."""
        ...

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store ``data`` under ``key`` atomically; return its URI."""
        ...

    def size(self, uri: str) -> int:
        """Return the size in bytes of the object at ``uri``."""
        ...

    def staging_dir(self) -> contextlib.AbstractContextManager[Path]:
        """A temporary folder for building files before ``publish``; removed on exit."""
        ...

    def gdal_environment(self) -> contextlib.AbstractContextManager[Any]:
        """The GDAL environment under which ``gdal_path`` results open (credentials, endpoint …).

        Assets enter it around every step that reads rasters through the store; for the local
        filesystem it changes nothing.
        """
        ...


class LocalRasterStore:
    """A ``RasterStore`` on the local filesystem under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        """Return the filesystem path of ``key``.

        Raises:
            ValueError: when ``key`` is absolute or climbs out of the root with ``..``.
        """
        relative = Path(key)
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"store key {key!r} must be relative and stay inside {self.root}")
        return self.root / relative

    def uri(self, key: str) -> str:
        """Return the absolute filesystem path of ``key`` as a string."""
        return str(self.path(key))

    def gdal_path(self, uri: str) -> str:
        """Return ``uri`` unchanged: GDAL opens local paths directly."""
        return uri

    def exists(self, key: str) -> bool:
        """Return whether a file exists at ``key``."""
        return self.path(key).is_file()

    def publish(self, local_file: Path, key: str, content_type: str | None = None) -> str:
        """Move ``local_file`` onto ``key`` with an atomic rename (copy first across filesystems).

        Returns:
            The final path as a string.

        Raises:
            OSError: if the move fails; the destination is then unchanged.
        """
        destination = self.path(key)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(local_file, destination)
        except OSError:
            staged = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
            shutil.copyfile(local_file, staged)
            os.replace(staged, destination)
        return str(destination)

    def read_bytes(self, key: str) -> bytes:
        """Return the file's bytes.

        Raises:
            FileNotFoundError: when nothing is stored under ``key``.
        """
        return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Write ``data`` to ``key`` atomically and return its path."""
        return str(atomic_write_bytes(self.path(key), data))

    def size(self, uri: str) -> int:
        """Return the size in bytes of the file at ``uri`` (a path this store returned)."""
        return Path(uri).stat().st_size

    def gdal_environment(self) -> contextlib.AbstractContextManager[None]:
        """Return a context that changes nothing: GDAL opens local paths without configuration."""
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def staging_dir(self) -> Iterator[Path]:
        """Yield a temporary folder on the same filesystem as the store (so publish is a rename)."""
        base = self.root / ".staging"
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            yield Path(tmp)
