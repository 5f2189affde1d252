"""HTTP for providers: credentials, retries with backoff, and verified, resumable streaming downloads.

Three pieces, used by the ``stac`` driver and usable by any HTTP-based provider:

* :class:`Credentials` and :func:`credentials_from_spec`: a provider's credentials are declared
  as references to environment variables (``{"password": {"env": "CDSE_PASSWORD"}}``) and
  resolved from a mapping the caller passes in (the Dagster resource passes the process
  environment). Secret values live in :class:`Secret` objects whose ``repr``/``str`` are
  ``***`` and which refuse to be pickled, so they cannot end up in logs, metadata or exception
  messages by accident. They are sent only to the hosts the credentials name (by default the
  provider's own host), never to a host a redirect leads to, and only over https: a request
  that would carry them over plain http fails with a :class:`~cube_assets.errors.ProviderError`
  before anything is sent. ``allow_insecure_loopback: true`` in the declaration lets them go
  over http to loopback hosts (127.0.0.0/8, ::1, ``localhost``) only, for local test servers.
* :class:`RetryPolicy`: attempts, exponential backoff (honouring ``Retry-After``) and timeouts.
* :class:`HttpClient`: :meth:`HttpClient.download` streams a file to disk under a hidden
  ``.{name}.part`` name, resumes an interrupted transfer with an HTTP ``Range`` request, checks
  the expected size and the STAC ``file:checksum`` multihash, and only then renames the file
  into place. Failures that may be transient (connection errors, timeouts, HTTP 408/425/429/5xx,
  truncated bodies, checksum or size mismatches) are retried with backoff; the others (HTTP 4xx
  such as 401, 403, 404 or 410, or 202 for a product that is offline) fail at once. Either way
  the caller gets a :class:`DownloadError` (a :class:`~cube_assets.errors.ProviderError`) so a
  provider chain can fall through to the next provider.

URLs in log lines and error messages go through :func:`~cube_assets.redaction.redact_url` (no
user info, query values masked), so signed URLs do not leak their signatures either.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cube_assets.errors import ProviderError
from cube_assets.redaction import redact_url

logger = logging.getLogger(__name__)

#: HTTP statuses worth retrying: the server may answer differently next time.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

CHUNK_SIZE = 1 << 20


# --------------------------------------------------------------------------------------------
# Multihash (the STAC file extension's ``file:checksum``)

def _blake3() -> Any:
    from blake3 import blake3

    return blake3()


#: Multihash codes this module can verify, with their name and hasher constructor (hashlib's,
#: or the ``blake3`` package's, whose objects have the same ``update``/``digest`` interface).
_MULTIHASH_ALGORITHMS: dict[int, tuple[str, Callable[[], Any]]] = {
    0x11: ("sha1", hashlib.sha1),
    0x12: ("sha2-256", hashlib.sha256),
    0x13: ("sha2-512", hashlib.sha512),
    0x14: ("sha3-512", hashlib.sha3_512),
    0x15: ("sha3-384", hashlib.sha3_384),
    0x16: ("sha3-256", hashlib.sha3_256),
    0x17: ("sha3-224", hashlib.sha3_224),
    0xD5: ("md5", hashlib.md5),
    0xB220: ("blake2b-256", lambda: hashlib.blake2b(digest_size=32)),
    0xB240: ("blake2b-512", lambda: hashlib.blake2b(digest_size=64)),
    0xB260: ("blake2s-256", lambda: hashlib.blake2s(digest_size=32)),
    0x1E: ("blake3", _blake3),
}
#: Algorithms with an extendable output: a multihash may hold a digest of any length (BLAKE3's
#: default, and what a length-less ``digest()`` gives, is 32 bytes).
_EXTENDABLE_OUTPUT = frozenset({0x1E})

SHA2_256 = 0x12
BLAKE3 = 0x1E


def _finish(hasher: Any, code: int, length: int | None = None) -> bytes:
    """The digest of ``hasher``, ``length`` bytes long for an extendable-output algorithm."""
    if code in _EXTENDABLE_OUTPUT and length is not None:
        return hasher.digest(length=length)
    return hasher.digest()


def _read_varint(data: bytes, position: int, where: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ProviderError(f"{where}: multihash ends inside a varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ProviderError(f"{where}: multihash varint is too long")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True)
class Multihash:
    """A parsed multihash: the algorithm code, its name (``None`` if unsupported) and the digest."""

    code: int
    digest: bytes
    algorithm: str | None

    @property
    def supported(self) -> bool:
        """Whether this module can compute the algorithm."""
        return self.code in _MULTIHASH_ALGORITHMS

    def new_hasher(self) -> Any:
        """Return a fresh hasher (hashlib or ``blake3``) for the algorithm.

        Raises:
            ProviderError: if the algorithm is not supported.
        """
        if not self.supported:
            raise ProviderError(f"multihash code 0x{self.code:x} is not supported")
        return _MULTIHASH_ALGORITHMS[self.code][1]()

    def matches(self, hasher: Any) -> bool:
        """Whether ``hasher`` (from :meth:`new_hasher`, fed the file's bytes) gives this digest."""
        return _finish(hasher, self.code, len(self.digest)) == self.digest

    def hex(self) -> str:
        """The multihash as hex text, as in ``file:checksum``."""
        return (_varint(self.code) + _varint(len(self.digest)) + self.digest).hex()


def parse_multihash(text: str, where: str = "file:checksum") -> Multihash:
    """Parse a hex-encoded multihash (``1220…`` is SHA2-256).

    Returns:
        The :class:`Multihash`; ``algorithm`` is ``None`` for a well-formed multihash whose
        algorithm this module cannot compute (e.g. Keccak). BLAKE3 (code ``0x1e``) digests
        may have any length.

    Raises:
        ProviderError: naming ``where``, if the text is not hex or the multihash is malformed
            (digest length different from the declared one, or from the algorithm's).
    """
    try:
        data = bytes.fromhex(str(text))
    except ValueError:
        raise ProviderError(f"{where}: {text!r} is not a hex-encoded multihash") from None
    code, position = _read_varint(data, 0, where)
    length, position = _read_varint(data, position, where)
    digest = data[position:]
    if len(digest) != length:
        raise ProviderError(f"{where}: multihash declares a {length}-byte digest but holds {len(digest)} bytes")
    algorithm = _MULTIHASH_ALGORITHMS.get(code)
    if code in _EXTENDABLE_OUTPUT and length == 0:
        raise ProviderError(f"{where}: {algorithm[0] if algorithm else 'multihash'} digest is empty")
    if algorithm is not None and code not in _EXTENDABLE_OUTPUT and algorithm[1]().digest_size != length:
        raise ProviderError(f"{where}: {algorithm[0]} digests are {algorithm[1]().digest_size} bytes, not {length}")
    return Multihash(code=code, digest=digest, algorithm=algorithm[0] if algorithm else None)


def file_multihash(path: str | os.PathLike[str], code: int = SHA2_256, length: int | None = None) -> str:
    """Return the hex multihash of the file at ``path`` with algorithm ``code`` (default SHA2-256).

    ``length`` is the digest length in bytes of an extendable-output algorithm (BLAKE3;
    default 32); other algorithms have one length and ignore it.

    Raises:
        ProviderError: if the algorithm is not supported.
        OSError: if the file cannot be read.
    """
    if code not in _MULTIHASH_ALGORITHMS:
        raise ProviderError(f"multihash code 0x{code:x} is not supported")
    hasher = _MULTIHASH_ALGORITHMS[code][1]()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return Multihash(code=code, digest=_finish(hasher, code, length), algorithm=_MULTIHASH_ALGORITHMS[code][0]).hex()


# --------------------------------------------------------------------------------------------
# Credentials


class Secret:
    """A secret string: shown as ``***``, readable only through :meth:`reveal`, never pickled."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value (for building a request, nothing else)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


CredentialKind = Literal["basic", "bearer", "header", "oauth2_password"]

#: Fields of each credential kind: those that must be ``{"env": NAME}`` and the plain ones.
_CREDENTIAL_FIELDS: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    # kind: (required secret fields, optional secret fields, plain fields)
    "basic": (frozenset({"username", "password"}), frozenset(), frozenset()),
    "bearer": (frozenset({"token"}), frozenset(), frozenset()),
    "header": (frozenset({"value"}), frozenset(), frozenset({"header"})),
    "oauth2_password": (
        frozenset({"username", "password"}),
        frozenset({"client_secret"}),
        frozenset({"token_url", "client_id"}),
    ),
}


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ``::1``).

    Returns:
        True for those hosts only; names that merely resolve to loopback do not count.
    """
    name = (host or "").strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def credentials_may_travel_to(url: str, allow_insecure_loopback: bool) -> bool:
    """Whether credentials may be sent to ``url`` as far as the transport goes (the host list aside).

    Returns:
        True for ``https`` URLs, and for ``http`` URLs to a loopback host when
        ``allow_insecure_loopback``; False for anything else.
    """
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
    except ValueError:  # not a URL requests could send either
        return False
    scheme = parts.scheme.lower()
    if scheme == "https":
        return True
    return scheme == "http" and allow_insecure_loopback and is_loopback_host(host)


def _insecure_transport_message(where: str, url: str) -> str:
    return (
        f"{where}: credentials are sent over https only, not to {redact_url(url)}"
        " (allow_insecure_loopback: true in the credentials permits http to a loopback test server)"
    )


def check_credentials_spec(spec: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Validate a credentials declaration without resolving it.

    The forms (``hosts`` is optional everywhere: the hosts that may receive the credentials,
    by default the host of the provider's URL; ``allow_insecure_loopback`` is optional
    everywhere: ``true`` lets them go over plain http to loopback hosts, for test servers)::

        {}                                                   anonymous
        {"type": "basic", "username": {"env": "U"}, "password": {"env": "P"}}
        {"type": "bearer", "token": {"env": "T"}}
        {"type": "header", "header": "X-Api-Key", "value": {"env": "K"}}
        {"type": "oauth2_password", "token_url": "https://…/token", "client_id": "cdse-public",
         "username": {"env": "U"}, "password": {"env": "P"}}     (optional client_secret)

    Returns:
        The declaration as a plain ``dict`` (``{}`` for ``None``).

    Raises:
        ProviderError: naming ``where`` and the field, if the type is unknown, a field is
            missing or unexpected, a secret field holds a literal value instead of an
            ``{"env": NAME}`` reference (the message never repeats the value), or the
            ``token_url`` is not https (nor http to loopback with ``allow_insecure_loopback``).
    """
    if spec is None or spec == {}:
        return {}
    if not isinstance(spec, Mapping):
        raise ProviderError(f"{where}: credentials must be an object, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _CREDENTIAL_FIELDS:
        raise ProviderError(f"{where}: credentials.type must be one of {sorted(_CREDENTIAL_FIELDS)}, got {kind!r}")
    required, optional_secrets, plain = _CREDENTIAL_FIELDS[kind]
    allowed = required | optional_secrets | plain | {"type", "hosts", "allow_insecure_loopback"}
    unexpected = sorted(set(spec) - allowed)
    if unexpected:
        raise ProviderError(f"{where}: credentials of type {kind!r} do not take {unexpected}")
    missing = sorted((required | plain) - set(spec) - ({"client_id"} if kind == "oauth2_password" else set()))
    if missing:
        raise ProviderError(f"{where}: credentials of type {kind!r} need {missing}")
    for name in required | optional_secrets:
        if name not in spec:
            continue
        reference = spec[name]
        if (
            not isinstance(reference, Mapping)
            or set(reference) != {"env"}
            or not isinstance(reference["env"], str)
            or not reference["env"]
        ):
            raise ProviderError(
                f'{where}: credentials.{name} must be a reference {{"env": "VARIABLE_NAME"}} to an environment '
                "variable; literal secrets are not accepted"
            )
    for name in plain:
        if name in spec and not isinstance(spec[name], str):
            raise ProviderError(f"{where}: credentials.{name} must be a string")
    hosts = spec.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise ProviderError(f"{where}: credentials.hosts must be a list of host names")
    insecure_loopback = spec.get("allow_insecure_loopback", False)
    if not isinstance(insecure_loopback, bool):
        raise ProviderError(f"{where}: credentials.allow_insecure_loopback must be true or false")
    if "token_url" in spec and not credentials_may_travel_to(spec["token_url"], insecure_loopback):
        raise ProviderError(_insecure_transport_message(f"{where}: credentials.token_url", spec["token_url"]))
    return {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in spec.items()}


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials of one provider, the hosts allowed to receive them and over what.

    ``allow_insecure_loopback`` lets them go over plain http to loopback hosts; otherwise they
    travel over https only.
    """

    kind: CredentialKind
    hosts: frozenset[str]
    secrets: Mapping[str, Secret] = field(repr=False)
    settings: Mapping[str, str] = field(default_factory=dict)
    allow_insecure_loopback: bool = False

    def applies_to(self, url: str) -> bool:
        """Whether a request to ``url`` is meant to carry these credentials (its host is one of :attr:`hosts`)."""
        host = (urlsplit(url).hostname or "").lower()
        return host in self.hosts

    def check_transport(self, url: str, where: str) -> None:
        """Refuse to send these credentials to ``url`` unless it is https (or opted-in loopback http).

        Returns:
            None when the credentials may go to ``url``.

        Raises:
            ProviderError: naming ``where`` and the redacted URL, for a plain-http URL (to a
                non-loopback host, or without ``allow_insecure_loopback``) or any other scheme.
        """
        if not credentials_may_travel_to(url, self.allow_insecure_loopback):
            raise ProviderError(_insecure_transport_message(where, url))


def credentials_from_spec(
    spec: Mapping[str, Any] | None, environ: Mapping[str, str], where: str, default_host: str | None
) -> Credentials | None:
    """Resolve a credentials declaration (see :func:`check_credentials_spec`) from ``environ``.

    Returns:
        The :class:`Credentials`, or ``None`` for an anonymous provider.

    Raises:
        ProviderError: if the declaration is invalid or names an environment variable that is
            not set or empty (the message names the variable, never a value).
    """
    checked = check_credentials_spec(spec, where)
    if not checked:
        return None
    kind = checked["type"]
    required, optional_secrets, plain = _CREDENTIAL_FIELDS[kind]
    secrets = {}
    for name in required | optional_secrets:
        if name not in checked:
            continue
        variable = checked[name]["env"]
        value = environ.get(variable)
        if not value:
            raise ProviderError(f"{where}: credentials.{name}: environment variable {variable} is not set")
        secrets[name] = Secret(value)
    hosts = {h.lower() for h in checked.get("hosts", [])}
    if not hosts and default_host:
        hosts.add(default_host.lower())
    settings = {name: checked[name] for name in plain if name in checked}
    if kind == "oauth2_password":
        settings.setdefault("client_id", "")
    return Credentials(
        kind=kind, hosts=frozenset(hosts), secrets=secrets, settings=settings,
        allow_insecure_loopback=checked.get("allow_insecure_loopback", False),
    )


class _TokenCache:
    """An OAuth2 access token obtained with the resource-owner password grant, renewed when it expires."""

    def __init__(self, credentials: Credentials, provider: str, timeout: tuple[float, float]) -> None:
        self._credentials = credentials
        self._provider = provider
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires = 0.0

    def token(self, *, renew: bool = False) -> Secret:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = self._request()
                self._expires = time.monotonic() + max(lifetime - 30.0, 0.0)
            return self._token

    def _request(self) -> tuple[Secret, float]:
        settings, secrets = self._credentials.settings, self._credentials.secrets
        form = {
            "grant_type": "password",
            "client_id": settings.get("client_id", ""),
            "username": secrets["username"].reveal(),
            "password": secrets["password"].reveal(),
        }
        if "client_secret" in secrets:
            form["client_secret"] = secrets["client_secret"].reveal()
        url = settings["token_url"]
        self._credentials.check_transport(url, f"{self._provider}: token request")
        try:
            # No redirects: requests re-posts the form (the password) to wherever a 307/308 points.
            response = requests.post(url, data=form, timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderError(
                f"{self._provider}: token request to {redact_url(url)} failed ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise ProviderError(f"{self._provider}: token request to {redact_url(url)} refused: HTTP {response.status_code}")
        try:
            document = response.json()
            token = document["access_token"]
            lifetime = float(document.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise ProviderError(f"{self._provider}: token response of {redact_url(url)} has no access_token") from None
        return Secret(str(token)), lifetime


class _CredentialAdapter(HTTPAdapter):
    """Adds credentials to requests for the allowed hosts at send time.

    Adding them here rather than in the session's headers or ``auth`` keeps them out of the
    prepared request that clients such as pystac-client log at DEBUG level, and out of any
    request to another host (a redirect to a bucket, a link to another API). A request to an
    allowed host over plain http is refused here, before anything is sent
    (:meth:`Credentials.check_transport`), whether it is the first request or a redirect.
    """

    def __init__(self, credentials: Credentials | None, tokens: _TokenCache | None, provider: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials
        self._tokens = tokens
        self._provider = provider

    def _authorize(self, request: requests.PreparedRequest, *, renew: bool = False) -> None:
        credentials = self._credentials
        assert credentials is not None
        secrets = credentials.secrets
        if credentials.kind == "basic":
            basic = requests.auth.HTTPBasicAuth(secrets["username"].reveal(), secrets["password"].reveal())
            basic(request)
        elif credentials.kind == "bearer":
            request.headers["Authorization"] = f"Bearer {secrets['token'].reveal()}"
        elif credentials.kind == "header":
            request.headers[credentials.settings["header"]] = secrets["value"].reveal()
        else:
            assert self._tokens is not None
            request.headers["Authorization"] = f"Bearer {self._tokens.token(renew=renew).reveal()}"

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send ``request``, with credentials when its host is allowed; renew an OAuth2 token once on 401.

        Raises:
            ProviderError: naming the provider and the redacted URL, when the request is for a
                host of the credentials but not over https (see :meth:`Credentials.check_transport`).
        """
        credentials = self._credentials
        if credentials is None or not credentials.applies_to(request.url or ""):
            return super().send(request, **kwargs)
        credentials.check_transport(request.url or "", self._provider or "request")
        self._authorize(request)
        response = super().send(request, **kwargs)
        if response.status_code == 401 and credentials.kind == "oauth2_password" and request.body is None:
            response.close()
            self._authorize(request, renew=True)
            response = super().send(request, **kwargs)
        return response


# --------------------------------------------------------------------------------------------
# Retries


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one request.

    ``attempts`` counts the first try (1 means no retry). After failed attempt ``n`` the client
    waits ``min(backoff_s * backoff_factor ** (n - 1), backoff_max_s)`` seconds, or the server's
    ``Retry-After`` when that is longer (still capped by ``backoff_max_s``). ``connect_timeout_s``
    bounds connecting; ``read_timeout_s`` bounds every wait for bytes (not the whole transfer).
    """

    attempts: int = 3
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ProviderError(f"retry attempts must be at least 1, got {self.attempts}")
        for name in ("backoff_s", "backoff_max_s"):
            if getattr(self, name) < 0:
                raise ProviderError(f"retry {name} must be non-negative, got {getattr(self, name)}")
        if self.backoff_factor < 1:
            raise ProviderError(f"retry backoff_factor must be at least 1, got {self.backoff_factor}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if getattr(self, name) <= 0:
                raise ProviderError(f"retry {name} must be positive, got {getattr(self, name)}")

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` timeout pair requests takes."""
        return (self.connect_timeout_s, self.read_timeout_s)

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        delay = self.backoff_s * self.backoff_factor ** (failed_attempt - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.backoff_max_s)

    def urllib3_retry(self) -> Retry:
        """The equivalent urllib3 ``Retry`` for plain API requests (searches): any method, same statuses."""
        return Retry(
            total=self.attempts - 1,
            connect=self.attempts - 1,
            read=self.attempts - 1,
            status=self.attempts - 1,
            backoff_factor=self.backoff_s,
            backoff_max=self.backoff_max_s,
            status_forcelist=sorted(RETRYABLE_STATUSES),
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=True,
        )


# --------------------------------------------------------------------------------------------
# Downloads


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


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


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
            _TokenCache(credentials, provider, self.retry.timeout)
            if credentials is not None and credentials.kind == "oauth2_password"
            else None
        )
        self.session = self._session(max_retries=0, user_agent=user_agent)
        self.api_session = self._session(max_retries=self.retry.urllib3_retry(), user_agent=user_agent)

    def _session(self, max_retries: int | Retry, user_agent: str) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = user_agent
        adapter = _CredentialAdapter(self.credentials, self._tokens, self.provider, max_retries=max_retries)
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
                    "%s: attempt %d of %d failed (%s); retrying in %.2f s", where, attempt, self.retry.attempts, exc, delay
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
            raise _Retryable(f"HTTP {status}", _retry_after_seconds(response.headers.get("Retry-After")))
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
