"""Spend and abuse protection: counters of calls, log-in failures and sign-ups.

Counted in Django's cache, one counter per key per fixed window. With the
default in-process cache each app process counts on its own; with a cache
server (CACHE_URL, e.g. Redis) every process shares the count.

- Calls to the model: per user and across all users, per clock minute. Each
  send, retry or regenerate counts once; the app's own automatic retries of
  a failed call do not.
- Log-in failures: per username and per client address; once either reaches
  its limit, log-ins for it are refused (429) until the window ends.
- Sign-up attempts: per client address, each POST counted, so neither making
  accounts nor asking which usernames are taken is free.

And the caps on how much one call may ask for (`output_caps_problems`): replies
per call and tokens per reply, checked by every form a request is built from.
"""

import contextlib
import hashlib
import ipaddress
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

WINDOW_SECONDS = 60


# Body keys that ask the upstream for more output: replies per call, tokens per reply
# (each schema spells the latter its own way).
CHOICES_KEYS = ("n",)
OUTPUT_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


class RateLimited(ValidationError):
    """Too many calls this minute; the message says when to try again."""


class Throttled(Exception):
    """Too many log-in failures or sign-ups: a message for the person, and the wait."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def upstream_calls_take(*, user_id: int, calls: int = 1) -> None:
    """Count `calls` more calls for the user and for everyone, or raise RateLimited and
    count none."""
    user_limit = settings.UPSTREAM_CALLS_PER_MINUTE
    wait = _take(f"upstream-calls:{user_id}", user_limit, calls, WINDOW_SECONDS)
    if wait is not None:
        raise RateLimited(
            f"You have reached the limit of {user_limit} calls to the model per minute. "
            f"Try again in {_seconds(wait)}."
        )
    # Accounts are free to make, so the operator's bill needs a bound of its own.
    global_limit = settings.UPSTREAM_CALLS_PER_MINUTE_GLOBAL
    wait = _take("upstream-calls:all", global_limit, calls, WINDOW_SECONDS)
    if wait is not None:
        _give_back(f"upstream-calls:{user_id}", user_limit, calls, WINDOW_SECONDS)
        raise RateLimited(
            f"This server has reached its limit of {global_limit} calls to the model per "
            f"minute, across all users. Try again in {_seconds(wait)}."
        )


def output_caps_problems(
    *, model: str, values: dict[str, Any], use_catalogue: bool = True
) -> dict[str, str]:
    """For each key of `values` (body keys) over its cap, the message that says so.

    Replies per call are capped by MAX_CHOICES, tokens per reply by MAX_OUTPUT_TOKENS
    and, with `use_catalogue`, by the model's own output limit when the catalogue
    gives one (reading it may fetch the catalogue: an import, which makes no network
    calls, checks the operator's caps alone). "Send anyway" does not pass them: they
    are the operator's bounds, not the schema's.
    """
    from . import catalogue  # the catalogue needs the app loaded; this module does not

    problems = {}
    for key in CHOICES_KEYS:
        number = _as_number(values.get(key))
        if number is not None and number > settings.MAX_CHOICES:
            problems[key] = (
                f'"{key}" asks for {_show(number)} replies in one call; this server '
                f"allows at most {settings.MAX_CHOICES:,}."
            )
    entry = catalogue.catalogue_model(model) if model and use_catalogue else None
    model_cap = entry.get("output_max") if entry else None
    for key in OUTPUT_TOKEN_KEYS:
        number = _as_number(values.get(key))
        if number is None:
            continue
        if model_cap and model_cap < settings.MAX_OUTPUT_TOKENS and number > model_cap:
            problems[key] = (
                f'"{key}" is {_show(number)}; {model} writes at most {model_cap:,} tokens '
                "per reply (its catalogue entry)."
            )
        elif number > settings.MAX_OUTPUT_TOKENS:
            problems[key] = (
                f'"{key}" is {_show(number)}; this server allows at most '
                f"{settings.MAX_OUTPUT_TOKENS:,} tokens per reply."
            )
    return problems


def _as_number(value: Any) -> float | None:
    """A number, or text an upstream would read as one ("128"); else None (not ours to judge)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def _show(number: float) -> str:
    if math.isinf(number):
        return "too large a number"
    return f"{int(number):,}" if number == int(number) else f"{number:,}"


def login_check(*, request: HttpRequest, username: str) -> None:
    """Raise Throttled when this username or this address has failed too often."""
    window = settings.LOGIN_THROTTLE_MINUTES * 60
    for key, limit, whose in _login_keys(request, username):
        count = cache.get(_window_key(key, window), 0)
        if limit and count >= limit:
            wait = _window_left(window)
            raise Throttled(
                f"Too many failed log-ins {whose}. Try again in {_minutes(wait)}.",
                retry_after=wait,
            )


def login_failed(*, request: HttpRequest, username: str) -> None:
    """Count one failed log-in against the username and the address."""
    window = settings.LOGIN_THROTTLE_MINUTES * 60
    for key, limit, _ in _login_keys(request, username):
        if limit:
            _increment(_window_key(key, window), 1, window)


def signup_take(*, request: HttpRequest) -> None:
    """Count one sign-up attempt from this address, or raise Throttled and count none."""
    limit = settings.SIGNUPS_PER_IP_PER_HOUR
    wait = _take(f"signups:{client_address(request)}", limit, 1, 3600)
    if wait is not None:
        raise Throttled(
            f"Too many sign-up attempts from your network. Try again in {_minutes(wait)}.",
            retry_after=wait,
        )


def client_address(request: HttpRequest) -> str:
    """The client's address as counted: IPv6 by its /64, which one host usually holds whole.

    Behind a proxy REMOTE_ADDR is the proxy's, so CLIENT_IP_HEADER names the header
    the proxy sets; for X-Forwarded-For the last entry is the one it added.
    """
    header = settings.CLIENT_IP_HEADER
    raw = ""
    if header:
        raw = request.META.get("HTTP_" + header.upper().replace("-", "_"), "")
        raw = raw.split(",")[-1].strip()
    raw = raw or request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _login_keys(request: HttpRequest, username: str) -> list[tuple[str, int, str]]:
    # Hashed: a username can be long and hold any character, and cache keys cannot.
    name = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return [
        (f"login-failures:user:{name}", settings.LOGIN_FAILURES_PER_USERNAME, "for this username"),
        (
            f"login-failures:ip:{client_address(request)}",
            settings.LOGIN_FAILURES_PER_IP,
            "from your network",
        ),
    ]


def _take(key: str, limit: int, amount: int, window: int) -> int | None:
    """Count `amount` in this window, or count nothing and return the seconds left in it.

    A limit of 0 turns the counter off.
    """
    if not limit:
        return None
    windowed = _window_key(key, window)
    count = _increment(windowed, amount, window)
    if count <= limit:
        return None
    cache.decr(windowed, amount)
    return _window_left(window)


def _give_back(key: str, limit: int, amount: int, window: int) -> None:
    if limit:
        # ValueError: the window ended in between, and its count with it.
        with contextlib.suppress(ValueError):
            cache.decr(_window_key(key, window), amount)


def _increment(key: str, amount: int, window: int) -> int:
    cache.add(key, 0, timeout=window * 2)
    try:
        # Atomic in the in-process cache and in Redis, so concurrent requests cannot both
        # slip through; Django's database cache reads then writes (docs/deploy.md says so).
        return cache.incr(key, amount)
    except ValueError:  # the key expired between add and incr
        cache.set(key, amount, timeout=window * 2)
        return amount


def _window_key(key: str, window: int) -> str:
    return f"{key}:{window}:{int(time.time() // window)}"


def _window_left(window: int) -> int:
    return max(1, math.ceil(window - time.time() % window))


def _seconds(wait: int) -> str:
    return f"{wait} second{'s' if wait != 1 else ''}"


def _minutes(wait: int) -> str:
    if wait < 60:
        return _seconds(wait)
    minutes = math.ceil(wait / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
