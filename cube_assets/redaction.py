"""The one way a URL is shown: in log lines, error messages, metadata, ``repr`` and ``Catalog.url``.

:func:`redact_url` takes a URL string (or a SQLAlchemy ``URL``, rendered first with
``render_as_string(hide_password=True)``) and returns it without its secrets:

* web URLs (``http``, ``https``, ``s3``, ``gs`` …): no user info at all, every query value
  replaced by ``***`` (a signed URL may call its signature anything), no fragment;
* other URLs (database URLs such as ``postgresql+psycopg://…``): the user name kept, the
  password replaced by ``***``, the values of secret query parameters (:func:`is_secret_query_key`)
  replaced by ``***``, no fragment. User info runs to the last ``@`` before the query, so a
  password holding an unencoded ``@`` or ``/`` is hidden whole.

:func:`redact_urls_in_text` applies the same rule to every URL inside a text (the message of a
third-party exception). This module imports nothing but the standard library, so anything may
import it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

#: Query parameters whose value is a secret, compared case-insensitively.
SECRET_QUERY_KEYS = frozenset(
    {
        "password",
        "pass",
        "passwd",
        "pwd",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "sig",
        "signature",
        "client_secret",
        "sslpassword",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
#: Any query parameter whose name contains one of these is a secret too (``db_password``, ``auth_token``).
_SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "signature", "credential", "apikey", "api_key")

#: Schemes whose URLs are redacted as web URLs (user info dropped, every query value masked).
WEB_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "ws", "wss", "s3", "gs", "gcs", "az", "abfs", "abfss", "file"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
#: A URL inside free text: a scheme, ``://`` and everything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def is_secret_query_key(name: str) -> bool:
    """Whether a query parameter called ``name`` holds a secret (case-insensitive, percent-decoded).

    Returns:
        True for the names in :data:`SECRET_QUERY_KEYS` and names containing ``password``,
        ``secret``, ``token``, ``signature``, ``credential`` or ``api_key``.
    """
    lowered = unquote(name).strip().lower()
    return lowered in SECRET_QUERY_KEYS or any(part in lowered for part in _SECRET_KEY_PARTS)


def redact_url(url: Any) -> str:
    """Return ``url`` (a string, or anything with SQLAlchemy's ``render_as_string``) without its secrets.

    See the module docstring for the rules. Text without ``scheme://`` is returned unchanged.

    Returns:
        The URL safe to log, e.g. ``https://host/a.tif?sig=***`` or
        ``postgresql+psycopg://cube:***@db:5432/catalog?password=***&sslmode=require``.

    Raises:
        Nothing: a URL that cannot be split is returned as ``<unparseable URL>``.
    """
    text = url.render_as_string(hide_password=True) if hasattr(url, "render_as_string") else str(url)
    scheme, separator, rest = text.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return text
    if scheme.lower() in WEB_SCHEMES:
        return _redact_web_url(text)
    return _redact_other_url(scheme, rest)


def redact_urls_in_text(text: str) -> str:
    """Return ``text`` with every ``scheme://…`` URL in it passed through :func:`redact_url`.

    Returns:
        The text, safe to log or put in an error message as far as URLs go.

    Raises:
        Nothing.
    """
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), str(text))


def _redact_web_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_query(parts.query, every_value=True), ""))


def _redact_other_url(scheme: str, rest: str) -> str:
    body = rest.partition("#")[0]
    before_query, question, query = body.partition("?")
    at = before_query.rfind("@")
    if at >= 0 and not before_query.startswith("/"):
        userinfo, location = before_query[:at], before_query[at + 1 :]
        username, colon, _password = userinfo.partition(":")
        before_query = f"{username}:{MASK}@{location}" if colon else f"{username}@{location}"
    redacted = f"{scheme}://{before_query}"
    if question:
        redacted += "?" + _redact_query(query, every_value=False)
    return redacted


def _redact_query(query: str, *, every_value: bool) -> str:
    pairs = []
    for pair in query.split("&"):
        key, equals, _value = pair.partition("=")
        if every_value and not equals:
            pairs.append(MASK if key else pair)  # a bare value may be the token itself
        elif every_value:
            pairs.append(f"{key}={MASK}")
        elif equals and is_secret_query_key(key):
            pairs.append(f"{key}={MASK}")
        else:
            pairs.append(pair)
    return "&".join(pairs)
