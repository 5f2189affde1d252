"""Asset hrefs as a client of the API reaches them: local files by absolute path, S3 objects as ``s3://`` or presigned.

The catalog holds each file's location as the raster store wrote it (a filesystem path or an
``s3://bucket/key`` URI). :class:`AssetHrefs` gives local files as ``file://`` URIs of their
absolute paths: a bare path such as ``/data/x.tif`` in an Item fetched over HTTP is, for pystac
and odc-stac, relative to the Item's URL (``http://host/data/x.tif``), while ``file:///data/x.tif``
stays a local file, and rasterio/GDAL open it. When presigning is on, ``s3://`` URIs become
presigned ``https://`` URLs (boto3, with the credentials and endpoint of the environment, as the
raster store uses them: the keys given, else boto3's own chain) valid for ``expires_s`` seconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote, urlsplit

#: How long a presigned URL stays valid, in seconds.
PRESIGN_EXPIRES_S = 3600
#: An absolute path of segments that URI quoting leaves as they are (no empty segment, no trailing "/").
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_.~-]+)+")
#: A "." or ".." segment, which ``abspath`` would resolve.
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


@dataclass
class AssetHrefs:
    """Rewrites asset hrefs for clients: ``presign`` turns ``s3://`` into presigned https URLs."""

    presign: bool = False
    expires_s: int = PRESIGN_EXPIRES_S
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    _client: Any = field(default=None, init=False, repr=False)

    def href(self, location: str) -> str:
        """Return the href a client uses for the catalogued file ``location``.

        Returns:
            A ``file://`` URI of an absolute path, an ``s3://`` URI, a presigned ``https://`` URL, or
            ``location`` itself for any other URL.

        Raises:
            botocore.exceptions.BotoCoreError: if presigning is on and no credentials are found.
        """
        if location.startswith("/"):  # the common case, without urlsplit and pathlib: as Path(...).as_uri()
            if _PLAIN_PATH.fullmatch(location) and not _DOT_SEGMENT.search(location):
                return "file://" + location  # already normal, and nothing in it to quote
            return "file://" + quote_from_bytes(os.fsencode(os.path.abspath(location)))
        parts = urlsplit(location)
        if parts.scheme == "s3":
            return self._presigned(parts.netloc, parts.path.lstrip("/")) if self.presign else location
        if parts.scheme == "file":
            return Path(os.path.abspath(unquote(parts.path))).as_uri()
        if parts.scheme == "":
            return Path(os.path.abspath(location)).as_uri()
        return location

    def rewrite(self, item: dict[str, Any]) -> dict[str, Any]:
        """Rewrite every asset href of an Item dict in place.

        Returns:
            The same dict.
        """
        for asset in (item.get("assets") or {}).values():
            if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                asset["href"] = self.href(asset["href"])
        return item

    def _presigned(self, bucket: str, key: str) -> str:
        if self._client is None:
            import boto3  # only when presigning: boto3 is slow to import

            # Values left None fall back to boto3's own chain (environment, profile, instance role).
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
            )
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_s
        )
        return url


__all__ = ["PRESIGN_EXPIRES_S", "AssetHrefs"]
