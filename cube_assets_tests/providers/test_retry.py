"""The retry policy's backoff."""

from __future__ import annotations

from cube_assets.providers.retry import RetryPolicy


def test_backoff_grows_exponentially_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(backoff_s=1.0, backoff_factor=2.0, backoff_max_s=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert policy.delay(1, retry_after=3.0) == 3.0
