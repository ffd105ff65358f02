"""Spend protection: a per-user cap on calls to the model per minute.

Counted in Django's cache, one counter per user per clock minute. With the
default in-process cache each app process counts on its own; with a cache
server (CACHE_URL, e.g. Redis) every process shares the count. Each send,
retry or regenerate counts once; the app's own automatic retries of a
failed call do not.
"""

import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError

WINDOW_SECONDS = 60


class RateLimited(ValidationError):
    """Too many calls this minute; the message says when to try again."""


def upstream_calls_take(*, user_id: int, calls: int = 1) -> None:
    """Count `calls` more calls for the user, or raise RateLimited and count none."""
    limit = settings.UPSTREAM_CALLS_PER_MINUTE
    if not limit:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"upstream-calls:{user_id}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
    try:
        # Atomic in the in-process cache and in Redis, so concurrent sends cannot both slip
        # through; Django's database cache reads then writes (docs/deploy.md says so).
        count = cache.incr(key, calls)
    except ValueError:  # the key expired between add and incr
        cache.set(key, count := calls, timeout=WINDOW_SECONDS * 2)
    if count <= limit:
        return
    cache.decr(key, calls)
    wait = max(1, round((window + 1) * WINDOW_SECONDS - now))
    raise RateLimited(
        f"You have reached the limit of {limit} calls to the model per minute. "
        f"Try again in {wait} second{'s' if wait != 1 else ''}."
    )
