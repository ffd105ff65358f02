"""The only module that speaks HTTP to the upstream.

It builds the exact bytes of each request, calls with explicit timeouts, and turns
every failure (refused connection, timeout, non-2xx, bad JSON, empty choices) into
one exception type, `UpstreamError`, whose message is fit to show a user.

Reference: https://docs.aimlapi.com/api-references/text-models-llm (wire contract
summarised in shared/upstream/README.md).
"""

import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

REDACTED = "Bearer [redacted]"
USER_AGENT = "playground/1.0 (+https://github.com/aimlapi)"

_local = threading.local()


def _session() -> requests.Session:
    # One pooled session per thread: keep-alive to the upstream without sharing
    # a Session across threads.
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.headers["User-Agent"] = USER_AGENT
    return _local.session


class UpstreamError(Exception):
    """Any failed upstream call. `message` is specific and safe to show."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        http_status: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        latency_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.headers = headers or {}
        self.body = body
        self.latency_ms = latency_ms

    @property
    def retryable(self) -> bool:
        """Only overload, server errors and refused connections are worth another try."""
        if self.kind == "connect":
            return True
        return self.http_status is not None and (self.http_status == 429 or self.http_status >= 500)

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(header(self.headers, "Retry-After"))


@dataclass(frozen=True)
class PreparedCall:
    """A request ready to send: its exact body bytes and headers."""

    prepared: requests.PreparedRequest

    @property
    def url(self) -> str:
        return self.prepared.url or ""

    @property
    def body(self) -> bytes:
        return self.prepared.body or b""

    def redacted_headers(self) -> dict[str, str]:
        headers = dict(self.prepared.headers)
        if "Authorization" in headers:
            headers["Authorization"] = REDACTED
        return headers


@dataclass(frozen=True)
class Completion:
    """A successful non-streamed reply, raw and parsed."""

    http_status: int
    headers: dict[str, str]
    body: bytes
    latency_ms: int
    content: str
    reasoning: str
    finish_reason: str
    usage: dict[str, Any] = field(default_factory=dict)
    usd_spent: Decimal | None = None


def chat_url() -> str:
    return f"{settings.UPSTREAM_BASE_URL}/chat/completions"


def encode_body(payload: dict[str, Any]) -> bytes:
    """The bytes we send, and store: compact, key order kept, UTF-8 unescaped."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def prepare_chat(payload: dict[str, Any]) -> PreparedCall:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.UPSTREAM_API_KEY:
        headers["Authorization"] = f"Bearer {settings.UPSTREAM_API_KEY}"
    request = requests.Request("POST", chat_url(), headers=headers, data=encode_body(payload))
    return PreparedCall(_session().prepare_request(request))


def send_chat(call: PreparedCall) -> Completion:
    """Send a prepared non-streamed request; raise UpstreamError on any failure."""
    started = time.monotonic()
    response = _send(call.prepared, started)
    latency_ms = _elapsed_ms(started)
    headers = dict(response.headers)
    body = response.content
    if not response.ok:
        raise UpstreamError(
            "http",
            describe_http_error(response.status_code, body),
            http_status=response.status_code,
            headers=headers,
            body=body,
            latency_ms=latency_ms,
        )
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamError(
            "bad_json",
            "The upstream answered 200 but its body is not a JSON object; see the raw response.",
            http_status=response.status_code,
            headers=headers,
            body=body,
            latency_ms=latency_ms,
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError(
            "empty",
            "The upstream answered 200 with no choices, so there is no reply to show.",
            http_status=response.status_code,
            headers=headers,
            body=body,
            latency_ms=latency_ms,
        )
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    return Completion(
        http_status=response.status_code,
        headers=headers,
        body=body,
        latency_ms=latency_ms,
        content=_text(message.get("content")),
        reasoning=_text(message.get("reasoning_content")),
        # Accept values outside the documented enum (Claude answers "end_turn").
        finish_reason=str(choice.get("finish_reason") or ""),
        usage=data.get("usage") if isinstance(data.get("usage"), dict) else {},
        usd_spent=usd_spent(data, headers),
    )


def fetch_models() -> list[dict[str, Any]]:
    """The upstream's chat models, normalised from either catalogue shape.

    Reference: https://docs.aimlapi.com/api-references/model-database — AI/ML API
    returns {data: [{id, type, info: {...}}]}, OpenAI-compatible servers
    {data: [{id, object, owned_by}]}.
    """
    started = time.monotonic()
    request = requests.Request("GET", f"{settings.UPSTREAM_BASE_URL}/models")
    response = _send(_session().prepare_request(request), started)
    if not response.ok:
        raise UpstreamError(
            "http",
            describe_http_error(response.status_code, response.content),
            http_status=response.status_code,
        )
    try:
        items = response.json().get("data")
    except (ValueError, AttributeError):
        items = None
    if not isinstance(items, list):
        raise UpstreamError("bad_json", "The model list is not in a shape we understand.")
    return [normalise_model(item) for item in items if _is_chat_model(item)]


def normalise_model(item: dict[str, Any]) -> dict[str, Any]:
    info = item.get("info") if isinstance(item.get("info"), dict) else {}
    return {
        "id": str(item["id"]),
        "name": str(info.get("name") or item["id"]),
        "developer": str(info.get("developer") or item.get("owned_by") or ""),
        "context_length": info.get("contextLength"),
        "output_max": info.get("outputMax"),
        "aliases": [str(alias) for alias in item.get("aliases") or []],
    }


def _is_chat_model(item: Any) -> bool:
    if not isinstance(item, dict) or not item.get("id"):
        return False
    kind = item.get("type")
    return kind is None or kind in {"chat-completion", "chat", "language-completion"}


def _send(prepared: requests.PreparedRequest, started: float) -> requests.Response:
    """The one place a request leaves the app, with explicit timeouts."""
    host = urlsplit(prepared.url or "").netloc
    timeout = (settings.UPSTREAM_CONNECT_TIMEOUT, settings.UPSTREAM_READ_TIMEOUT)
    try:
        return _session().send(prepared, timeout=timeout)
    except requests.ConnectTimeout:
        raise UpstreamError(
            "timeout",
            f"Timed out after {timeout[0]:g} s connecting to {host}.",
            latency_ms=_elapsed_ms(started),
        ) from None
    except requests.ReadTimeout:
        raise UpstreamError(
            "timeout",
            f"{host} sent nothing for {timeout[1]:g} s (the read timeout), so the call was "
            "abandoned.",
            latency_ms=_elapsed_ms(started),
        ) from None
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as error:
        if isinstance(error, requests.exceptions.ChunkedEncodingError) or _was_cut_off(error):
            # The upstream got the request and may have billed it: not retried.
            raise UpstreamError(
                "broken",
                f"The connection to {host} broke before the reply was complete.",
                latency_ms=_elapsed_ms(started),
            ) from None
        raise UpstreamError(
            "connect",
            f"Could not connect to {host}: the connection was refused or the host is unreachable.",
            latency_ms=_elapsed_ms(started),
        ) from None
    except requests.RequestException:
        raise UpstreamError(
            "connect", f"The request to {host} failed.", latency_ms=_elapsed_ms(started)
        ) from None


def _was_cut_off(error: requests.ConnectionError) -> bool:
    """A connection that was made and then dropped, as opposed to one never made."""
    text = repr(error)
    return any(
        sign in text for sign in ("Connection aborted", "RemoteDisconnected", "reset by peer")
    )


def describe_http_error(status: int, body: bytes) -> str:
    """The provider's own message, verbatim, with the status it came with.

    Reference: https://docs.aimlapi.com/errors-and-messages/errors — the body is
    {message, path, requestId, statusCode, timestamp}, parsed defensively since
    the docs' own example is not valid JSON; OpenAI-style {error: {message}} too.
    """
    provider_message = _provider_message(body)
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    prefix = f"The upstream answered {status}" + (f" ({reason})" if reason else "")
    hint = {
        401: " Check UPSTREAM_API_KEY in your .env file.",
        403: " Check the credits and permissions of your upstream account.",
        429: " Wait a moment, then retry.",
    }.get(status, "")
    if provider_message:
        return f"{prefix}: {provider_message}{hint}"
    return f"{prefix}.{hint}"


def _provider_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode(errors="replace").strip()
        return text[:300] if text and not text.startswith("<") else ""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or "")
    message = data.get("message") or data.get("error") or ""
    return str(message) if not isinstance(message, list) else "; ".join(map(str, message))


def usd_spent(data: dict[str, Any], headers: dict[str, str]) -> Decimal | None:
    """Cost as the provider reported it: body `meta.usage.usd_spent`, else the header."""
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    meta_usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
    for value in (meta_usage.get("usd_spent"), header(headers, "x-aimlapi-usd-spent")):
        if value is None:
            continue
        try:
            return Decimal(str(value))
        except InvalidOperation:
            continue
    return None


def header(headers: dict[str, str], name: str) -> str | None:
    """Look a header up by name, ignoring case (stored headers keep the server's case)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # content parts
        return "".join(part.get("text", "") for part in value if isinstance(part, dict))
    return str(value)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
