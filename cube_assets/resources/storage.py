"""The storage resource: which ``RasterStore`` the assets write through (local filesystem or S3)."""

from __future__ import annotations

from datetime import timedelta

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from cube_assets.storage.cleanup import DEFAULT_STALE_AFTER, TEMPORARIES_SWEEP_INTERVAL, clean_stale_writes
from cube_assets.storage.raster_store import LocalRasterStore, RasterStore
from cube_assets.storage.s3_store import DEFAULT_MULTIPART_CHUNKSIZE, DEFAULT_MULTIPART_THRESHOLD, S3RasterStore

BACKENDS = ("local", "s3")


class RasterStoreResource(ConfigurableResource):
    """Rasters, quicklooks and manifests: the local filesystem under ``root``, or an S3 bucket.

    ``backend="local"`` (the embedded default) needs only ``root``. ``backend="s3"`` needs
    ``bucket``; ``endpoint_url`` selects an S3-compatible server (MinIO, Ceph …) instead of AWS.
    Pass secrets as ``EnvVar`` so they never show in the UI; credentials left empty come from
    boto3's default chain (environment, profile, instance or pod role).
    """

    backend: str = Field(default="local", description="local | s3")
    root: str = Field(default="", description="local: the folder everything is stored under")
    bucket: str = Field(default="", description="s3: the bucket")
    prefix: str = Field(default="", description="s3: key prefix inside the bucket (no leading or trailing '/')")
    endpoint_url: str = Field(
        default="", description="s3: http(s)://host:port of an S3-compatible server; empty for AWS"
    )
    region: str = Field(default="", description="s3: the bucket's region")
    access_key_id: str = Field(default="", description="s3: access key id; empty for boto3's default chain")
    secret_access_key: str = Field(default="", description="s3: secret access key")
    session_token: str = Field(default="", description="s3: session token of temporary credentials")
    multipart_threshold: int = Field(
        default=DEFAULT_MULTIPART_THRESHOLD, description="s3: files of at least this many bytes upload in parts"
    )
    multipart_chunksize: int = Field(
        default=DEFAULT_MULTIPART_CHUNKSIZE, description="s3: part size in bytes (at least 5 MiB)"
    )
    staging_root: str = Field(
        default="", description="s3: local folder where files are built before upload; empty for the system's"
    )
    stale_after_hours: float = Field(
        default=DEFAULT_STALE_AFTER.total_seconds() / 3600,
        description=(
            "on opening the store, remove staging folders and abort multipart uploads older than this (0: never)"
        ),
    )

    # One store (and so one boto3 client, ~0.15 s to create) per resource instance.
    _store: RasterStore | None = PrivateAttr(default=None)

    def get_store(self) -> RasterStore:
        """Return the configured store (the same object on every call).

        The first call also cleans up after killed writers (``stale_after_hours``): staging
        folders untouched for that long, and multipart uploads under the prefix started that
        long ago, are removed (failures are logged, never raised).

        Raises:
            ValueError: naming the field, when ``backend`` is unknown or a field it needs is missing or invalid.
        """
        if self._store is None:
            store = self._build_store()
            if self.stale_after_hours > 0:
                # What writers killed earlier left behind (never read; see storage/cleanup.py).
                clean_stale_writes(
                    store, timedelta(hours=self.stale_after_hours), temporaries_every=TEMPORARIES_SWEEP_INTERVAL
                )
            self._store = store
        return self._store

    def _build_store(self) -> RasterStore:
        if self.backend == "local":
            if not self.root:
                raise ValueError("RasterStoreResource: backend 'local' needs 'root' (the folder to store under)")
            return LocalRasterStore(self.root)
        if self.backend == "s3":
            if not self.bucket:
                raise ValueError("RasterStoreResource: backend 's3' needs 'bucket' (e.g. from CUBE_ASSETS_S3_BUCKET)")
            return S3RasterStore(
                self.bucket,
                self.prefix,
                endpoint_url=self.endpoint_url or None,
                region=self.region or None,
                access_key_id=self.access_key_id or None,
                secret_access_key=self.secret_access_key or None,
                session_token=self.session_token or None,
                multipart_threshold=self.multipart_threshold,
                multipart_chunksize=self.multipart_chunksize,
                staging_root=self.staging_root or None,
            )
        raise ValueError(f"RasterStoreResource: backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
