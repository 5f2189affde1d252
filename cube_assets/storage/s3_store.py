"""A ``RasterStore`` on S3 or any S3-compatible server (MinIO, Ceph, moto), through boto3 and GDAL's ``/vsis3/``.

Writes: every file is built locally in ``staging_dir()`` and uploaded only when finished.
``publish`` uploads with boto3's managed transfer (multipart above ``multipart_threshold``
bytes); S3 makes an object visible only when its single PUT or its ``CompleteMultipartUpload``
succeeds, so a reader never sees a partial object under a final key. An upload that is
interrupted (a failure, or a killed process) leaves at most an incomplete multipart upload, which
is invisible to readers and listings; boto3 aborts it on failure, and after killed processes
:meth:`S3RasterStore.abort_stale_multipart_uploads` (run when the storage resource opens the
store, see ``storage/cleanup.py``) or a bucket lifecycle rule (``AbortIncompleteMultipartUpload``)
does.

Reads: GDAL opens ``/vsis3/{bucket}/{key}`` and fetches only the byte ranges it needs (the COG
header, then the blocks of the windows read), under the options of :meth:`S3RasterStore.gdal_environment`:
the endpoint, path-style addressing and plain HTTP for S3-compatible servers, the credentials,
and HTTP settings that avoid directory listings and retry transient errors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from cube_assets.redaction import redact_url

#: Default size above which ``publish`` switches to a multipart upload, and the part size.
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
DEFAULT_MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
#: S3's smallest part (every part but the last must be at least this big).
MIN_MULTIPART_CHUNKSIZE = 5 * 1024 * 1024
#: File types GDAL may open over HTTP; other names (sidecars such as ``.aux.xml``, ``.ovr``) are not requested.
GDAL_ALLOWED_EXTENSIONS = ".tif,.tiff,.png,.json,.geojson"
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3RasterStore:
    """A ``RasterStore`` on ``s3://{bucket}/{prefix}/``.

    ``endpoint_url`` (``http://host:port`` or ``https://…``) selects an S3-compatible server
    instead of AWS; it also switches to path-style addressing (``host/bucket/key``), which such
    servers need. Credentials left ``None`` come from boto3's default chain (environment, shared
    profile, instance or pod role); GDAL then gets the same resolved credentials.

    Raises (constructor):
        ValueError: when ``bucket``, ``prefix``, ``endpoint_url`` or the multipart sizes are invalid.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
        max_concurrency: int = 4,
        staging_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if not bucket or "/" in bucket or bucket != bucket.strip() or not bucket.isascii():
            raise ValueError(f"S3 bucket {bucket!r}: must be a bucket name without '/' or spaces")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix and ".." in PurePosixPath(self.prefix).parts:
            raise ValueError(f"S3 prefix {prefix!r}: must not contain '..'")
        self.endpoint_url = endpoint_url or None
        if self.endpoint_url is not None:
            parts = urlsplit(self.endpoint_url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path not in ("", "/")
                or "@" in parts.netloc
                or parts.query
                or parts.fragment
            ):
                # Keys go in access_key_id/secret_access_key (EnvVar), never in the endpoint, which is shown.
                raise ValueError(
                    f"S3 endpoint_url {redact_url(endpoint_url)[:200]!r}: must be http(s)://host[:port] "
                    "with no user info, path or query"
                )
        if multipart_threshold < 1:
            raise ValueError(f"S3 multipart_threshold {multipart_threshold}: must be at least 1 byte")
        if multipart_chunksize < MIN_MULTIPART_CHUNKSIZE:
            raise ValueError(
                f"S3 multipart_chunksize {multipart_chunksize}: "
                f"S3 parts must be at least {MIN_MULTIPART_CHUNKSIZE} bytes"
            )
        self.region = region or None
        self._credentials = {
            "aws_access_key_id": access_key_id or None,
            "aws_secret_access_key": secret_access_key or None,
            "aws_session_token": session_token or None,
        }
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.max_concurrency = max_concurrency
        self.staging_root = Path(staging_root) if staging_root else None
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3RasterStore(s3://{self.bucket}/{self.prefix}, endpoint_url={redact_url(self.endpoint_url or '')!r})"

    # -- keys and URIs -----------------------------------------------------------------------

    def object_key(self, key: str) -> str:
        """Return the object key of store key ``key`` (``{prefix}/{key}``).

        Raises:
            ValueError: when ``key`` is empty, absolute or contains ``..``.
        """
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or ".." in parts:
            raise ValueError(f"store key {key!r} must be relative and must not contain '..'")
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        """Return ``s3://{bucket}/{prefix}/{key}``."""
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def _split(self, uri: str) -> tuple[str, str]:
        """Return ``(bucket, object key)`` of an ``s3://`` URI.

        Raises:
            ValueError: when ``uri`` is not an ``s3://bucket/key`` URI.
        """
        if not uri.startswith("s3://"):
            raise ValueError(
                f"{redact_url(uri)[:200]!r} is not an s3:// URI (this store is s3://{self.bucket}/{self.prefix})"
            )
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key:
            raise ValueError(f"{redact_url(uri)[:200]!r} is not an s3://bucket/key URI")
        return bucket, key

    def gdal_path(self, uri: str) -> str:
        """Return ``/vsis3/{bucket}/{key}`` for an ``s3://`` URI; open it under :meth:`gdal_environment`.

        Raises:
            ValueError: when ``uri`` is not an ``s3://bucket/key`` URI.
        """
        bucket, key = self._split(uri)
        return f"/vsis3/{bucket}/{key}"

    # -- GDAL --------------------------------------------------------------------------------

    def gdal_options(self) -> dict[str, str]:
        """Return the GDAL configuration options (credentials excluded) for reading this store's objects.

        ``AWS_S3_ENDPOINT`` (``host:port``), ``AWS_VIRTUAL_HOSTING=FALSE`` (path-style) and, for
        ``http://`` endpoints, ``AWS_HTTPS=NO`` are set only with a custom endpoint; the rest
        always: no directory listing on open, only raster/JSON names fetched, retries, cached
        and merged range requests.
        """
        options = {
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": GDAL_ALLOWED_EXTENSIONS,
            "GDAL_HTTP_MAX_RETRY": "5",
            "GDAL_HTTP_RETRY_DELAY": "0.5",
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
            "VSI_CACHE": "TRUE",
        }
        if self.region:
            options["AWS_REGION"] = self.region
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options["AWS_S3_ENDPOINT"] = parts.netloc
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
            options["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
        return options

    def gdal_environment(self) -> contextlib.AbstractContextManager[Any]:
        """Return a ``rasterio.Env`` under which GDAL can open this store's ``/vsis3/`` paths.

        The credentials go through a rasterio ``AWSSession`` (rasterio refuses them as plain
        options); a session without explicit keys resolves them with boto3's default chain.

        Returns:
            A context manager; rasterio calls made inside it (in this thread) see the options.
        """
        import rasterio
        from rasterio.session import AWSSession

        endpoint = self.gdal_options().get("AWS_S3_ENDPOINT")
        session = AWSSession(
            self._boto3_session(),
            endpoint_url=endpoint,
        )
        return rasterio.Env(session=session, **self.gdal_options())

    # -- boto3 -------------------------------------------------------------------------------

    def _boto3_session(self) -> Any:
        import boto3

        return boto3.session.Session(region_name=self.region, **self._credentials)

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first use, with retries and path-style addressing for custom endpoints)."""
        if self._client is None:
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"} if self.endpoint_url else {},
            )
            self._client = self._boto3_session().client("s3", endpoint_url=self.endpoint_url, config=config)
        return self._client

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
        )

    def _head(self, bucket: str, key: str) -> Mapping[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise OSError(f"s3://{bucket}/{key}: {exc}") from exc

    # -- the RasterStore protocol ------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Return whether a complete object is stored under ``key``.

        Raises:
            OSError: when S3 answers with an error other than "not found" (e.g. access denied).
        """
        return self._head(self.bucket, self.object_key(key)) is not None

    def publish(self, local_file: Path, key: str, content_type: str | None = None) -> str:
        """Upload the finished ``local_file`` to ``key`` (multipart when large), then delete the local file.

        The object appears only when the upload completes; a failed multipart upload is aborted.

        Returns:
            The object's ``s3://`` URI.

        Raises:
            FileNotFoundError: when ``local_file`` does not exist.
            OSError: when the upload fails; nothing is then visible under ``key``
                (or the previous object still is).
        """
        uri = self.upload_file(local_file, key, content_type)
        Path(local_file).unlink(missing_ok=True)
        return uri

    def upload_file(self, local_file: Path, key: str, content_type: str | None = None) -> str:
        """Upload a copy of the finished ``local_file`` to ``key`` (multipart when large); keep the local file.

        The object appears only when the upload completes; a failed multipart upload is aborted.

        Returns:
            The object's ``s3://`` URI.

        Raises:
            FileNotFoundError: when ``local_file`` does not exist.
            OSError: when the upload fails; nothing is then visible under ``key``
                (or the previous object still is).
        """
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        local_file = Path(local_file)
        if not local_file.is_file():
            raise FileNotFoundError(f"cannot upload {local_file} to {self.uri(key)}: no such file")
        extra = {"ContentType": content_type} if content_type else {}
        object_key = self.object_key(key)
        try:
            self.client.upload_file(
                str(local_file), self.bucket, object_key, ExtraArgs=extra, Config=self._transfer_config()
            )
        except (S3UploadFailedError, ClientError, BotoCoreError, OSError) as exc:
            raise OSError(f"upload of {local_file} to s3://{self.bucket}/{object_key} failed: {exc}") from exc
        return f"s3://{self.bucket}/{object_key}"

    def download_file(self, key: str, destination: Path) -> Path:
        """Download the object under ``key`` to ``destination`` atomically (a hidden temporary name, then a rename).

        Returns:
            ``destination``.

        Raises:
            FileNotFoundError: when nothing is stored under ``key``.
            OSError: on any other S3 or filesystem error; ``destination`` is then unchanged.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        object_key = self.object_key(key)
        tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:12]}.download")
        try:
            self.client.download_file(self.bucket, object_key, str(tmp), Config=self._transfer_config())
            os.replace(tmp, destination)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise FileNotFoundError(f"s3://{self.bucket}/{object_key} not found") from exc
            raise OSError(f"download of s3://{self.bucket}/{object_key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise OSError(f"download of s3://{self.bucket}/{object_key} failed: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return destination

    def list_keys(self, key_prefix: str) -> list[str]:
        """Return the store keys of every complete object whose key starts with ``key_prefix``, sorted.

        Raises:
            OSError: when S3 refuses the listing.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        strip = f"{self.prefix}/" if self.prefix else ""
        full = f"{strip}{key_prefix}"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            keys = [item["Key"][len(strip) :] for page in pages for item in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"listing s3://{self.bucket}/{full} failed: {exc}") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete the object under ``key`` (nothing happens when there is none).

        Raises:
            OSError: when S3 refuses the deletion.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self.object_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"DELETE s3://{self.bucket}/{object_key} failed: {exc}") from exc

    def _latest_part(self, key: str, upload_id: str) -> datetime | None:
        """When the most recent part of an open multipart upload was sent (``None`` if it has none)."""
        latest = None
        listing: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id}
        while True:
            page = self.client.list_parts(**listing)
            for part in page.get("Parts", []):
                latest = part["LastModified"] if latest is None else max(latest, part["LastModified"])
            if not page.get("IsTruncated"):
                return latest
            listing["PartNumberMarker"] = page["NextPartNumberMarker"]

    def abort_stale_multipart_uploads(self, older_than: timedelta, now: datetime | None = None) -> list[str]:
        """Abort the multipart uploads under this store's prefix that nothing touched for ``older_than`` before ``now``.

        A process killed during an upload leaves its multipart upload open: invisible to
        readers, but its parts are stored (and billed) until it is aborted. An upload is stale
        when it was started, and its last part sent, more than ``older_than`` ago; a younger
        one may still be running and is left alone. (Parts are looked at too because some
        S3-compatible servers, moto among them, report a fixed start time for every upload.)

        Returns:
            The object keys (with the store prefix) of the uploads aborted, sorted.

        Raises:
            ValueError: when ``older_than`` is negative.
            OSError: when S3 refuses the listing or an abort.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        if older_than < timedelta(0):
            raise ValueError(f"abort_stale_multipart_uploads: older_than {older_than} must not be negative")
        cutoff = (now or datetime.now(UTC)) - older_than
        listing: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{self.prefix}/" if self.prefix else ""}
        aborted = []
        try:
            while True:
                page = self.client.list_multipart_uploads(**listing)
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= cutoff:
                        continue
                    latest = self._latest_part(upload["Key"], upload["UploadId"])
                    if latest is not None and latest >= cutoff:
                        continue
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted.append(upload["Key"])
                if not page.get("IsTruncated"):
                    break
                listing["KeyMarker"] = page.get("NextKeyMarker", "")
                listing["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"cleaning up multipart uploads in s3://{self.bucket}/{self.prefix} failed: {exc}") from exc
        return sorted(aborted)

    def read_bytes(self, key: str) -> bytes:
        """Return the object's bytes.

        Raises:
            FileNotFoundError: when nothing is stored under ``key``.
            OSError: on any other S3 error.
        """
        from botocore.exceptions import ClientError

        object_key = self.object_key(key)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"].read()
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise FileNotFoundError(f"s3://{self.bucket}/{object_key} not found") from exc
            raise OSError(f"s3://{self.bucket}/{object_key}: {exc}") from exc

    def write_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store ``data`` under ``key`` with one PUT (atomic: the object appears complete or not at all).

        Returns:
            The object's ``s3://`` URI.

        Raises:
            OSError: when the PUT fails.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        object_key = self.object_key(key)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise OSError(f"PUT s3://{self.bucket}/{object_key} failed: {exc}") from exc
        return f"s3://{self.bucket}/{object_key}"

    def size(self, uri: str) -> int:
        """Return the size in bytes of the object at ``uri`` (an ``s3://`` URI).

        Raises:
            ValueError: when ``uri`` is not an ``s3://`` URI.
            FileNotFoundError: when there is no object at ``uri``.
        """
        bucket, key = self._split(uri)
        head = self._head(bucket, key)
        if head is None:
            raise FileNotFoundError(f"{uri} not found")
        return int(head["ContentLength"])

    def content_type(self, key: str) -> str | None:
        """Return the ``Content-Type`` stored with ``key``'s object.

        Raises:
            FileNotFoundError: when nothing is stored under ``key``.
        """
        head = self._head(self.bucket, self.object_key(key))
        if head is None:
            raise FileNotFoundError(f"{self.uri(key)} not found")
        return head.get("ContentType")

    @contextlib.contextmanager
    def staging_dir(self) -> Iterator[Path]:
        """Yield a local temporary folder for building files before ``publish``.

        The folder is under ``staging_root``, or the system's temporary folder.
        """
        if self.staging_root is not None:
            self.staging_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cube-assets-", dir=self.staging_root) as tmp:
            yield Path(tmp)
