"""Provider credentials: declarations, resolution from the environment, and where they may travel.

A provider's credentials are declared as references to environment variables
(``{"password": {"env": "CDSE_PASSWORD"}}``; :func:`check_credentials_spec`) and resolved from
a mapping the caller passes in (:func:`credentials_from_spec`; the Dagster resource passes the
process environment). The kinds are ``basic``, ``bearer``, ``header`` and ``oauth2_password``
(a token from the resource-owner password grant, :class:`OAuth2TokenCache`, renewed when it
expires or is refused). Secret values live in :class:`Secret` objects whose ``repr``/``str``
are ``***`` and which refuse to be pickled, so they cannot end up in logs, metadata or
exception messages by accident.

:class:`CredentialAdapter` adds them at send time, only to the hosts the credentials name (by
default the provider's own host), never to a host a redirect leads to, and only over https: a
request that would carry them over plain http fails with a
:class:`~cube_assets.errors.ProviderError` before anything is sent
(:func:`credentials_may_travel_to`). ``allow_insecure_loopback: true`` in the declaration lets
them go over http to loopback hosts (127.0.0.0/8, ::1, ``localhost``) only, for local test
servers.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from cube_assets.errors import ProviderError
from cube_assets.redaction import redact_url


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
        kind=kind,
        hosts=frozenset(hosts),
        secrets=secrets,
        settings=settings,
        allow_insecure_loopback=checked.get("allow_insecure_loopback", False),
    )


class OAuth2TokenCache:
    """An OAuth2 access token obtained with the resource-owner password grant, renewed when it expires."""

    def __init__(self, credentials: Credentials, provider: str, timeout: tuple[float, float]) -> None:
        self._credentials = credentials
        self._provider = provider
        self._timeout = timeout
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._expires = 0.0

    def token(self, *, renew: bool = False) -> Secret:
        """Return the current access token, requesting a new one if it expired or ``renew`` is set.

        Raises:
            ProviderError: naming the provider and the redacted token URL, when the token URL
                is not https (nor opted-in loopback http), the request fails or is refused, or
                the answer holds no ``access_token`` (no message repeats a secret).
        """
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
            raise ProviderError(
                f"{self._provider}: token request to {redact_url(url)} refused: HTTP {response.status_code}"
            )
        try:
            document = response.json()
            token = document["access_token"]
            lifetime = float(document.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise ProviderError(f"{self._provider}: token response of {redact_url(url)} has no access_token") from None
        return Secret(str(token)), lifetime


class CredentialAdapter(HTTPAdapter):
    """Adds credentials to requests for the allowed hosts at send time.

    Adding them here rather than in the session's headers or ``auth`` keeps them out of the
    prepared request that clients such as pystac-client log at DEBUG level, and out of any
    request to another host (a redirect to a bucket, a link to another API). A request to an
    allowed host over plain http is refused here, before anything is sent
    (:meth:`Credentials.check_transport`), whether it is the first request or a redirect.
    """

    def __init__(
        self, credentials: Credentials | None, tokens: OAuth2TokenCache | None, provider: str = "", **kwargs: Any
    ) -> None:
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

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # keyword arguments pass through to requests' own send
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
