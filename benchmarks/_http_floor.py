"""The HTTP floor of the STAC API benchmark: one pre-encoded page served by a bare ASGI app.

``python -m uvicorn _http_floor:app --app-dir benchmarks`` with ``HTTP_FLOOR_PAGE`` naming a file
of JSON bytes answers every request with those bytes (``/_mgmt/ping`` with a small JSON): no
database, no routing, no encoding. Timed with the same clients as the API, it is what serving a
page of that size costs this machine's clients and network stack alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_PAGE = Path(os.environ["HTTP_FLOOR_PAGE"]).read_bytes() if "HTTP_FLOOR_PAGE" in os.environ else b"{}"
_PING = b'{"message":"PONG"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer an HTTP request with the page (any path but the ping), after reading its whole body."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body", False))
    body = _PING if scope["path"].endswith("/_mgmt/ping") else _PAGE
    headers = [(b"content-type", b"application/geo+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
