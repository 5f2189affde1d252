"""Uploads as catalog records: :class:`ImageUpload`, run in a background thread and found again by search.

``image.upload_ndarray(...)`` and ``image.upload(...)`` return an :class:`ImageUpload` at once:
a row of ``image_uploads`` (status ``pending``) whose work, the synchronous
:func:`~cube_assets.client.upload.upload_ndarray` / :func:`~cube_assets.client.upload.upload_files`,
runs in the client's upload thread (:func:`upload_executor`, one worker, so uploads run one at a
time in submission order). The worker moves the row to ``running`` only if it is still ``pending``
(one conditional UPDATE), so :meth:`ImageUpload.cancel`, the same conditional UPDATE to
``canceled``, wins or loses cleanly. The row ends ``success`` or ``failure`` with its ``events``
(``queued``, ``running``, ``complete`` or ``error``, each with its UTC time) and ``errors``
(``{"error_type", "message"}``).

:meth:`ImageUpload.wait_for_completion` polls the row until it ends, raising
``concurrent.futures.TimeoutError`` after ``timeout`` seconds; ``reload`` re-reads it and, on
success, reloads the uploading :class:`~cube_assets.client.image.Image` object too.
``ImageUpload.search()`` and ``image.image_uploads()`` are searches of these rows.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.client import coercers
from cube_assets.client.attributes import Attribute
from cube_assets.client.base import CatalogObject, ConflictError, class_or_instance_method
from cube_assets.client.connection import Catalog
from cube_assets.client.enums import ImageUploadStatus, OverviewResampler
from cube_assets.client.upload import Upload, UploadStatus
from cube_assets.errors import CatalogError

#: Seconds between two reads of an upload's row while waiting for it.
POLL_SECONDS = 0.05
_FINISHED = (ImageUploadStatus.SUCCESS, ImageUploadStatus.FAILURE, ImageUploadStatus.CANCELED)


@dataclass(frozen=True)
class ImageUploadOptions:
    """How an upload builds its files: ``overviews`` (decimation factors such as ``[2, 4]``) and their resampler.

    ``upload_type`` is ``"ndarray"`` or ``"file"`` (set by the upload).

    Raises:
        CatalogError: if ``overview_resampler`` is not an :class:`~cube_assets.client.enums.OverviewResampler`.
    """

    overviews: tuple[int, ...] | None = None
    overview_resampler: str | None = None
    upload_type: str | None = None

    def __post_init__(self) -> None:
        if self.overviews is not None:
            object.__setattr__(self, "overviews", tuple(self.overviews))
        if self.overview_resampler is not None:
            try:
                object.__setattr__(self, "overview_resampler", OverviewResampler(self.overview_resampler).value)
            except ValueError:
                raise CatalogError(
                    f"overview_resampler must be one of {[r.value for r in OverviewResampler]},"
                    f" got {self.overview_resampler!r}"
                ) from None


@functools.lru_cache(maxsize=1)
def upload_executor() -> concurrent.futures.ThreadPoolExecutor:
    """Return the client's upload thread pool (one worker, created on first use)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cube-assets-upload")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _event(event_type: str, message: str) -> dict[str, Any]:
    return {"event_type": event_type, "event_datetime": _now(), "message": message}


def _json_list(what: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise CatalogError(f"{what} must be a list, got {value!r}")
    return value


class ImageUpload(CatalogObject):
    """The record of one upload: ``id``, ``image_id``, ``product_id``, ``status``, ``events``, ``errors``.

    Every attribute is set by the upload; ``save`` and ``delete`` are not supported.
    """

    _model = models.ImageUpload
    _what = "image upload"
    _default_order = (("created", True),)

    id = Attribute(coercers.identifier, kind="string", readonly=True, doc="Unique id of the upload.")
    product_id = Attribute(coercers.identifier, kind="string", readonly=True, doc="The image's product.")
    image_id = Attribute(coercers.identifier, kind="string", readonly=True, doc="The uploaded image's id.")
    status = Attribute(coercers.identifier, kind="string", readonly=True, doc="An ImageUploadStatus value.")
    image_upload_options = Attribute(coercers.properties, kind="json", readonly=True, doc="The upload's options.")
    events = Attribute(_json_list, readonly=True, doc="``{event_type, event_datetime, message}`` in order.")
    errors = Attribute(_json_list, readonly=True, doc="``{error_type, message}`` of a failed upload.")
    created = Attribute(coercers.aware_datetime, kind="datetime", readonly=True, doc="When it was queued (UTC).")
    modified = Attribute(coercers.aware_datetime, kind="datetime", readonly=True, doc="When it last changed (UTC).")

    def __init__(self, *, catalog: Catalog | None = None, **attributes: Any) -> None:
        raise CatalogError("ImageUpload records are created by Image.upload and Image.upload_ndarray")

    @property
    def error(self) -> str | None:
        """The first error's message, or None."""
        return self.errors[0]["message"] if self.errors else None

    @property
    def image(self) -> Any:
        """The uploaded :class:`~cube_assets.client.image.Image` (the uploading object itself when known)."""
        uploading = getattr(self, "_image", None)
        if uploading is not None:
            return uploading
        return self.catalog.images.get(self.image_id)

    def reload(self) -> ImageUpload:
        """Re-read the record; on ``success``, also reload the uploading image object.

        Returns:
            The upload itself.

        Raises:
            NotFoundError: if the record is gone.
        """
        self._refresh(self.catalog)
        uploading = getattr(self, "_image", None)
        if self.status == ImageUploadStatus.SUCCESS and uploading is not None and uploading._snapshot is None:
            uploading._catalog = self.catalog
            uploading._refresh(self.catalog)
        return self

    def wait_for_completion(self, timeout: float | None = None, warn_transient_errors: bool = True) -> None:
        """Wait until the upload has succeeded, failed or been canceled (then reloaded).

        Raises:
            concurrent.futures.TimeoutError: if it has not ended after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reload()
            if self.status in _FINISHED:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise concurrent.futures.TimeoutError(
                    f"upload {self.id!r} of image {self.image_id!r} is still {self.status} after {timeout} s"
                )
            time.sleep(POLL_SECONDS)

    def cancel(self) -> None:
        """Cancel the upload if it has not started running.

        Raises:
            ConflictError: if it is already running or finished.
        """
        with self.catalog.transaction() as session:
            changed = _move(session, self.id, ImageUploadStatus.PENDING, ImageUploadStatus.CANCELED, "canceled")
        self.reload()
        if not changed:
            raise ConflictError(f"upload {self.id!r} is {self.status}; only a pending upload can be canceled")

    @classmethod
    def _no_delete(cls, id: str, catalog: Catalog | None = None) -> bool:
        """ImageUploads cannot be deleted.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("image uploads cannot be deleted")

    def _no_delete_self(self) -> None:
        raise NotImplementedError("image uploads cannot be deleted")

    delete = class_or_instance_method("_no_delete", "_no_delete_self")

    def _records(self) -> Any:
        raise CatalogError("image uploads are written by the upload itself")


def _move(session: Session, upload_id: str, old: str, new: str, event: str, **values: Any) -> bool:
    """Move the record from ``old`` to ``new`` status (only if it is ``old``); return whether it moved."""
    row = session.get(models.ImageUpload, upload_id)
    if row is None or row.status != old:
        return False
    result = session.execute(
        update(models.ImageUpload)
        .where(models.ImageUpload.id == upload_id, models.ImageUpload.status == old)
        .values(status=new, events=[*row.events, _event(event, f"{old} -> {new}")], **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult, which has rowcount


def start_upload(
    catalog: Catalog,
    image: Any,
    options: ImageUploadOptions,
    work: Callable[[], Upload],
) -> ImageUpload:
    """Record a ``pending`` upload of ``image`` and run ``work`` in the upload thread.

    ``work`` is the synchronous upload; its :class:`~cube_assets.client.upload.Upload` decides
    ``success`` or ``failure``.

    Returns:
        The :class:`ImageUpload`, bound to the uploading ``image`` object.
    """
    upload_id = uuid.uuid4().hex
    with catalog.transaction() as session:
        session.execute(
            insert(models.ImageUpload).values(
                id=upload_id,
                product_id=image.product_id,
                image_id=image.id,
                status=ImageUploadStatus.PENDING.value,
                image_upload_options={k: v for k, v in asdict(options).items() if v is not None},
                events=[_event("queued", "upload queued")],
                errors=[],
            )
        )
    record = ImageUpload.get(upload_id, catalog=catalog)
    assert record is not None
    object.__setattr__(record, "_image", image)
    upload_executor().submit(_run, catalog, upload_id, work)
    return record


def _run(catalog: Catalog, upload_id: str, work: Callable[[], Upload]) -> None:
    """The worker: start the upload unless it was canceled, run it, record how it ended."""
    with catalog.transaction() as session:
        if not _move(session, upload_id, ImageUploadStatus.PENDING, ImageUploadStatus.RUNNING, "running"):
            return
    try:
        outcome = work()
        failed = outcome.status != UploadStatus.SUCCESS
        message = outcome.error or ""
        error_type = type(outcome.exception).__name__ if outcome.exception is not None else "UploadError"
    except Exception as error:
        failed, message, error_type = True, f"upload {upload_id!r}: {error}", type(error).__name__
    with catalog.transaction() as session:
        if failed:
            _move(
                session,
                upload_id,
                ImageUploadStatus.RUNNING,
                ImageUploadStatus.FAILURE,
                "error",
                errors=[{"error_type": error_type, "message": message}],
            )
        else:
            _move(session, upload_id, ImageUploadStatus.RUNNING, ImageUploadStatus.SUCCESS, "complete")


__all__ = ["ImageUpload", "ImageUploadOptions", "start_upload", "upload_executor"]
