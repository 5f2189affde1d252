"""Verified, resumable streaming downloads for providers: :class:`HttpClient`.

Used by the ``stac`` driver and usable by any HTTP-based provider. An :class:`HttpClient`
holds a provider's sessions, with its :class:`~cube_assets.providers.credentials.Credentials`
(added only for their hosts, over https; :mod:`cube_assets.providers.credentials`) and its
:class:`~cube_assets.providers.retry.RetryPolicy` (:mod:`cube_assets.providers.retry`).

:meth:`HttpClient.download` streams a file to disk under a hidden ``.{name}.part`` name,
resumes an interrupted transfer with an HTTP ``Range`` request, checks the expected size and
the STAC ``file:checksum`` multihash (:mod:`cube_assets.providers.multihash`), and only then
renames the file into place. Failures that may be transient (connection errors, timeouts, HTTP
408/425/429/5xx, truncated bodies, checksum or size mismatches) are retried with backoff; the
others (HTTP 4xx such as 401, 403, 404 or 410, or 202 for a product that is offline) fail at
once. Either way the caller gets a :class:`DownloadError` (a
:class:`~cube_assets.errors.ProviderError`) so a provider chain can fall through to the next
provider.

URLs in log lines and error messages go through :func:`~cube_assets.redaction.redact_url` (no
user info, query values masked), so signed URLs do not leak their signatures either.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.util.retry import Retry

from cube_assets.errors import ProviderError
from cube_assets.providers.credentials import CredentialAdapter, Credentials, OAuth2TokenCache
from cube_assets.providers.multihash import CHUNK_SIZE, Multihash, parse_multihash
from cube_assets.providers.retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds
from cube_assets.redaction import redact_url

logger = logging.getLogger(__name__)


class DownloadError(ProviderError):
    """A file could not be downloaded (after retries, or at once for a permanent failure)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


@dataclass(frozen=True)
class RemoteFile:
    """A file a provider can download: where, and what it must be (size in bytes, multihash hex).

    ``asset`` is the key of the STAC asset it is, when it is one (recorded by the raw store, so
    that a band's radiometry can be read from its asset later).
    """

    href: str
    size: int | None = None
    checksum: str | None = None
    media_type: str | None = None
    asset: str | None = None


@dataclass(frozen=True)
class DownloadResult:
    """A completed, verified download."""

    path: Path
    size: int
    checksum: str | None
    attempts: int
    resumed_from: int


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` → (100, 1000); ``bytes */1000`` → (None, 1000)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = None if span == "*" else int(span.split("-", 1)[0])
    return start, (None if total in ("", "*") else int(total))


class HttpClient:
    """HTTP sessions of one provider: credentials for its hosts, its retry policy, verified downloads.

    ``sleep`` is called with each backoff delay (tests pass a recorder). Close the client, or use
    it as a context manager, to release its connections.
    """

    def __init__(
        self,
        provider: str,
        credentials: Credentials | None = None,
        retry: RetryPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "cube-assets",
    ) -> None:
        self.provider = provider
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._tokens = (
            OAuth2TokenCache(credentials, provider, self.retry.timeout)
            if credentials is not None and credentials.kind == "oauth2_password"
            else None
        )
        self.session = self._session(max_retries=0, user_agent=user_agent)
        self.api_session = self._session(max_retries=self.retry.urllib3_retry(), user_agent=user_agent)

    def _session(self, max_retries: int | Retry, user_agent: str) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = user_agent
        adapter = CredentialAdapter(self.credentials, self._tokens, self.provider, max_retries=max_retries)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        """Close both sessions."""
        self.session.close()
        self.api_session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = self.credentials.kind if self.credentials else "anonymous"
        return f"HttpClient(provider={self.provider!r}, credentials={kind})"

    def download(self, remote: RemoteFile, destination: str | os.PathLike[str]) -> DownloadResult:
        """Download ``remote`` to ``destination``, verified, resumable, atomically.

        Bytes go to ``.{destination name}.part`` beside the destination. A partial file left by
        an interrupted attempt (or an earlier run) is resumed with ``Range: bytes={size}-``; a
        server that ignores the range (HTTP 200) restarts the file. When the body is complete,
        its length is compared with ``remote.size`` (and with the length the server announced)
        and its digest with ``remote.checksum``; a mismatch deletes the partial file and counts
        as a failed attempt. Only a verified file is renamed onto ``destination``.

        Returns:
            The :class:`DownloadResult`.

        Raises:
            DownloadError: naming the provider and the (redacted) URL, after the retry policy's
                attempts for transient failures, or at once for permanent ones (HTTP 4xx other
                than 408/425/429, HTTP 202 "accepted but not ready", unsupported URL schemes).
            ProviderError: if ``remote.checksum`` is not a valid multihash, or the request would
                carry the credentials over plain http (nothing is sent, no file is written).
        """
        destination = Path(destination)
        partial = destination.with_name(f".{destination.name}.part")
        where = f"{self.provider}: {redact_url(remote.href)}"
        if urlsplit(remote.href).scheme not in ("http", "https"):
            raise DownloadError(f"{where}: only http(s) URLs can be downloaded")
        checksum = parse_multihash(remote.checksum, f"{where}: file:checksum") if remote.checksum else None
        if checksum is not None and not checksum.supported:
            logger.warning("%s: cannot verify multihash code 0x%x; checking the size only", where, checksum.code)
            checksum = None
        destination.parent.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resumed_from, hasher = self._transfer(remote, partial, checksum)
                size = self._verify(partial, remote, checksum, hasher)
                os.replace(partial, destination)
                return DownloadResult(destination, size, remote.checksum, attempt, resumed_from)
            except _Permanent as exc:
                raise DownloadError(f"{where}: {exc}") from None
            except _Retryable as exc:
                errors.append(str(exc))
                if attempt == self.retry.attempts:
                    break
                delay = self.retry.delay(attempt, exc.retry_after)
                logger.warning(
                    "%s: attempt %d of %d failed (%s); retrying in %.2f s",
                    where,
                    attempt,
                    self.retry.attempts,
                    exc,
                    delay,
                )
                self._sleep(delay)
        raise DownloadError(f"{where}: failed after {self.retry.attempts} attempts: {'; '.join(errors)}")

    def _transfer(self, remote: RemoteFile, partial: Path, checksum: Multihash | None) -> tuple[int, Any]:
        """Fetch the missing bytes of ``partial``.

        Returns:
            The offset the transfer started at, and a hasher fed with every byte of the file
            while it was written (``None`` when nothing was transferred or no checksum is due).
        """
        offset = partial.stat().st_size if partial.exists() else 0
        if remote.size is not None and offset > remote.size:
            partial.unlink()
            offset = 0
        if remote.size is not None and offset == remote.size and offset > 0:
            return offset, None  # complete already; verification decides
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self.session.get(remote.href, headers=headers, stream=True, timeout=self.retry.timeout) as response:
                return self._write_body(response, partial, offset, checksum)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(type(exc).__name__) from None
        except requests.RequestException as exc:
            raise _Permanent(type(exc).__name__) from None

    def _write_body(
        self, response: requests.Response, partial: Path, offset: int, checksum: Multihash | None
    ) -> tuple[int, Any]:
        status = response.status_code
        if status == 416 and offset:
            _, total = _content_range(response.headers.get("Content-Range"))
            if total == offset:
                return offset, None
            partial.unlink(missing_ok=True)
            raise _Retryable("HTTP 416: the partial file does not fit the remote file; restarting")
        if status in RETRYABLE_STATUSES:
            raise _Retryable(f"HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
        if status == 202:
            raise _Permanent("HTTP 202: the product is not online yet (offline or being restored)")
        if status >= 400:
            raise _Permanent(f"HTTP {status}")
        if status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                partial.unlink(missing_ok=True)
                raise _Retryable(f"HTTP 206 resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        elif status == 200:
            mode, offset = "wb", 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise _Permanent(f"unexpected HTTP {status}")
        # Hash while writing, so a verified download reads its bytes once (a resumed one
        # hashes the bytes it already had first).
        hasher = checksum.new_hasher() if checksum is not None else None
        if hasher is not None and mode == "ab":
            with open(partial, "rb") as existing:
                for chunk in iter(lambda: existing.read(CHUNK_SIZE), b""):
                    hasher.update(chunk)
        written = 0
        with open(partial, mode) as stream:
            for chunk in response.iter_content(CHUNK_SIZE):
                stream.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                written += len(chunk)
        if total is not None and offset + written != total:
            raise _Retryable(f"body truncated: {offset + written} of {total} bytes")
        return offset, hasher

    def _verify(self, partial: Path, remote: RemoteFile, checksum: Multihash | None, hasher: Any = None) -> int:
        size = partial.stat().st_size
        if remote.size is not None and size != remote.size:
            partial.unlink()
            raise _Retryable(f"size mismatch: {size} bytes, expected {remote.size}")
        if checksum is not None:
            if hasher is None:
                hasher = checksum.new_hasher()
                with open(partial, "rb") as stream:
                    for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                        hasher.update(chunk)
            if not checksum.matches(hasher):
                partial.unlink()
                raise _Retryable(f"checksum mismatch ({checksum.algorithm})")
        return size
