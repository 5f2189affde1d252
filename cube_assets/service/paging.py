"""Keyset paging tokens: the sort key and id of the last item of a page, and the filter that starts the next page.

A page is ordered by one sort property (nulls last) and then by id, so the order is total. The
``next`` token holds the last item's sort value and id; the next page is "everything after that
key" (:func:`after_key`), not an offset, so rows upserted between two requests neither repeat nor
shift items already seen: an image added before the key is not in later pages, one added after
it is. Tokens are URL-safe base64 of a small JSON document and name the order they belong to.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from cube_assets.catalog.expressions import Expression, p
from cube_assets.service.queryables import InvalidParameter

#: Longest token accepted, in characters.
MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True)
class SortKey:
    """The order of a search: one catalog property, its direction and whether it may be null; then id ascending."""

    property_name: str
    ascending: bool
    nullable: bool

    @property
    def label(self) -> str:
        """``+acquired`` / ``-cloud_fraction``: how a token names its order."""
        return ("+" if self.ascending else "-") + self.property_name


@dataclass(frozen=True)
class Cursor:
    """The position after which the next page starts: the last item's sort value and id."""

    order: str
    value: Any
    id: str


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"datetime": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"datetime"}:
        return dt.datetime.fromisoformat(value["datetime"])
    if isinstance(value, dict) and set(value) == {"date"}:
        return dt.date.fromisoformat(value["date"])
    if value is None or isinstance(value, str | int | float):
        return value
    raise ValueError("unexpected value in token")


def encode_token(cursor: Cursor) -> str:
    """Return the token of ``cursor``.

    Returns:
        URL-safe base64 text without padding.
    """
    document = json.dumps({"o": cursor.order, "v": _plain(cursor.value), "i": cursor.id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_token(token: str, order: SortKey) -> Cursor:
    """Return the cursor in ``token``, which must belong to ``order``.

    Returns:
        The :class:`Cursor`.

    Raises:
        InvalidParameter: naming ``token`` when it is malformed or belongs to another order.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidParameter("token", f"at most {MAX_TOKEN_LENGTH} characters")
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(str(document["o"]), _restore(document["v"]), str(document["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidParameter("token", "not a paging token of this API") from None
    if cursor.order != order.label:
        raise InvalidParameter("token", f"belongs to the order {cursor.order[:70]!r}, not {order.label!r}")
    return cursor


def after_key(order: SortKey, cursor: Cursor) -> Expression:
    """Return the expression "sorts after ``cursor``" in ``order`` (nulls last, then id ascending).

    Returns:
        The property expression that starts the next page.
    """
    key, last_id = p[order.property_name], cursor.id
    if order.property_name == "id":
        return p.id > last_id if order.ascending else p.id < last_id  # type: ignore[no-any-return]  # builds an expression
    if cursor.value is None:
        return (key == None) & (p.id > last_id)  # noqa: E711 - builds IS NULL
    beyond = key > cursor.value if order.ascending else key < cursor.value
    expression: Expression = beyond | ((key == cursor.value) & (p.id > last_id))
    if order.nullable:
        expression = expression | (key == None)  # noqa: E711 - builds IS NULL
    return expression


__all__ = ["MAX_TOKEN_LENGTH", "Cursor", "SortKey", "after_key", "decode_token", "encode_token"]
