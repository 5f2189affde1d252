"""What the web service is started with: one frozen record, built by ``cube-assets serve`` or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of one running service.

    ``catalog_url`` is the catalog database the assets write (SQLite or PostgreSQL). ``presign`` turns
    ``s3://`` asset hrefs into presigned ``https://`` URLs (signed for ``s3_endpoint_url``, or boto3's
    own configuration when None) with the ``s3_*`` keys (boto3's own chain when None; never shown in
    the record's repr). Writes (the Transactions extension) exist only
    with ``allow_writes``, and then only for requests carrying the bearer token read from the environment
    variable named by ``write_token_env``.
    """

    catalog_url: str
    presign: bool = False
    allow_writes: bool = False
    write_token_env: str = "CUBE_ASSETS_API_TOKEN"
    default_limit: int = 10
    max_limit: int = 10_000
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
