"""How a provider's HTTP requests are retried: attempts, exponential backoff, ``Retry-After`` and timeouts."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

from urllib3.util.retry import Retry

from cube_assets.errors import ProviderError

#: HTTP statuses worth retrying: the server may answer differently next time.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


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


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: a number of seconds, or an HTTP date.

    Returns:
        The seconds (0 for a date in the past), or ``None`` for a missing or unreadable header.
    """
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
