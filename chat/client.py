"""The only module that speaks HTTP to the upstream.

It builds the exact bytes of each request, calls with explicit timeouts, and turns
every failure (refused connection, timeout, non-2xx, bad JSON, empty choices) into
one exception type, `UpstreamError`, whose message is fit to show a user.

Reference: https://docs.aimlapi.com/api-references/text-models-llm (wire contract
summarised in shared/upstream/README.md).
"""

import asyncio
import json
import logging
import math
import re
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import cache
from http import HTTPStatus
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
import urllib3
from django.conf import settings

from . import storable

logger = logging.getLogger(__name__)

REDACTED = "Bearer [redacted]"
USER_AGENT = "playground/1.0 (+https://github.com/aimlapi)"

_local = threading.local()

# The clients serve every user's calls: a cookie that one answer sets (a CDN in
# front of an upstream may set them) would go out with the next call, another
# user's perhaps, in a header the call's record would not show.
NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])


def _session() -> requests.Session:
    # One pooled session per thread: keep-alive to the upstream without sharing
    # a Session across threads.
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
        _local.session.headers["User-Agent"] = USER_AGENT
        _local.session.cookies.set_policy(NO_COOKIES)
    return _local.session


def _prepare(request: requests.Request) -> requests.PreparedRequest:
    """`request` with the session's headers, and nothing else a session would add.

    Not Session.prepare_request, which also merges the session's cookie jar (kept
    empty) and looks for credentials in ~/.netrc: 0.1 ms more before every call.
    """
    request.headers = {**_session().headers, **request.headers}
    return request.prepare()


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


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MB"


class BoundedDecoder:
    """Undoes a response's Content-Encoding without ever holding more than `limit` bytes.

    Neither urllib3 nor httpx bounds decompression: a 100 KB gzip body becomes
    100 MB in one call. zlib's `max_length` stops the output at the limit,
    whatever the input, so a bomb costs no more memory than an honest reply.
    `feed` hands back what fits and sets `exceeded` once the body passes the
    limit (a stream keeps the events that fit). Used by every read of an
    upstream body, streamed or not.
    """

    def __init__(self, encoding: str | None, *, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.total = 0  # decoded bytes handed back so far
        self.exceeded = False
        self._name = name = (encoding or "identity").strip().lower()
        self._zlib: Any = None
        if name in {"gzip", "x-gzip"}:
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        elif name not in {"", "identity"}:
            raise UpstreamError(
                "bad_encoding",
                f"{what} came with Content-Encoding {storable.text(name[:40])!r}, which is not "
                "decoded here (only gzip and deflate are asked for).",
            )
        # Some servers send deflate without the zlib header (urllib3 accepts it too).
        self._may_be_raw_deflate = name == "deflate"

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes `data` adds, as far as they fit under the limit."""
        if self.exceeded:
            return b""
        if self._zlib is None:
            return self._keep(data)
        pieces = []
        while data and not self._zlib.eof and not self.exceeded:
            try:
                # One byte more than there is room for: enough to know the limit was passed.
                out = self._zlib.decompress(data, self.limit - self.total + 1)
            except zlib.error:
                if self._may_be_raw_deflate and self.total == 0:
                    self._may_be_raw_deflate = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise UpstreamError(
                    "bad_encoding", f"{self.what} is not valid {self._name} data."
                ) from None
            self._may_be_raw_deflate = False
            pieces.append(self._keep(out))
            data = self._zlib.unconsumed_tail
        return b"".join(pieces)

    def _keep(self, data: bytes) -> bytes:
        room = self.limit - self.total
        if len(data) > room:
            self.exceeded = True
            data = data[:room]
        self.total += len(data)
        return data

    def too_big(self) -> UpstreamError:
        return UpstreamError(
            "too_big",
            f"{self.what} passed the {_megabytes(self.limit)} limit, so it was not read further.",
        )


def read_limited(
    response: requests.Response, *, limit: int, deadline: float | None, what: str
) -> bytes:
    """The whole body of `response` (sent with stream=True), decoded, at most `limit` bytes.

    `deadline` (a time.monotonic() value) bounds the whole read, not each socket
    read as the read timeout does: a body sent a byte at a time must end too.
    Raises UpstreamError ("too_big", "timeout", "bad_encoding", "broken"), with
    `what` (e.g. "The reply") naming the body in its message; the response is
    closed then, since its connection still holds unread bytes.
    """
    pieces = []
    try:
        decoder = BoundedDecoder(response.headers.get("Content-Encoding"), limit=limit, what=what)
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise UpstreamError(
                    "timeout", f"{what} took too long to arrive, so it was not read further."
                )
            # read1: what has arrived (up to the size), so the deadline is checked often.
            data = response.raw.read1(65536, decode_content=False)
            if not data:
                break
            pieces.append(decoder.feed(data))
            if decoder.exceeded:
                raise decoder.too_big()
    except UpstreamError:
        response.close()
        raise
    except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
        response.close()
        raise UpstreamError(
            "timeout",
            f"{what} stalled: nothing arrived for {settings.UPSTREAM_READ_TIMEOUT:g} s "
            "(the read timeout).",
        ) from None
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        response.close()
        host = urlsplit(str(response.url)).netloc
        named = what[:1].lower() + what[1:]
        raise UpstreamError(
            "broken", f"The connection to {host} broke before {named} was complete."
        ) from None
    return b"".join(pieces)


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
        return redact_headers(self.prepared.headers)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with any Authorization value replaced: a key never reaches a record."""
    return {
        name: REDACTED if name.lower() == "authorization" else value
        for name, value in headers.items()
    }


@dataclass(frozen=True)
class Completion:
    """A successful non-streamed reply, raw and parsed.

    `choices` holds every choice the reply had, checked and in the shape of a
    chat.completion's (see _Choice.assembled), sorted by index; `content`,
    `reasoning` and `finish_reason` are choice 0's.
    """

    http_status: int
    headers: dict[str, str]
    body: bytes
    latency_ms: int
    content: str
    reasoning: str
    finish_reason: str
    usage: dict[str, Any] = field(default_factory=dict)
    usd_spent: Decimal | None = None
    # Values dropped (a NaN cost, 10**20 tokens, a choice index out of range), and said.
    notes: tuple[str, ...] = ()
    choices: tuple[dict[str, Any], ...] = ()


def chat_url() -> str:
    return f"{settings.UPSTREAM_BASE_URL}/chat/completions"


def encode_body(payload: dict[str, Any]) -> bytes:
    """The bytes we send, and store: compact, key order kept, UTF-8 unescaped."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def prepare_chat(payload: dict[str, Any], *, body: bytes | None = None) -> PreparedCall:
    """The request for `payload`, sent as `body` when given (the exact bytes: a raw
    body as typed, or one with its attachments put in), else as encode_body's."""
    accept = "text/event-stream" if payload.get("stream") is True else "application/json"
    headers = {"Content-Type": "application/json", "Accept": accept, **_key_header()}
    data = encode_body(payload) if body is None else body
    request = requests.Request("POST", chat_url(), headers=headers, data=data)
    return PreparedCall(_prepare(request))


def _key_header() -> dict[str, str]:
    """The key, for a request to the configured upstream's own endpoints, and only those.

    Never for a URL the upstream hands us (a schema link may name another host), and
    never after a redirect: none is followed (see _failed)."""
    if settings.UPSTREAM_API_KEY:
        return {"Authorization": f"Bearer {settings.UPSTREAM_API_KEY}"}
    return {}


def send_chat(call: PreparedCall) -> Completion:
    """Send a prepared non-streamed request; raise UpstreamError on any failure."""
    started = time.monotonic()
    response = _send(call.prepared, started, stream=True)
    headers = response_headers(response.headers.items())
    deadline = started + settings.UPSTREAM_MAX_STREAM_SECONDS
    try:
        body = read_limited(
            response, limit=settings.UPSTREAM_MAX_REPLY_BYTES, deadline=deadline, what="The reply"
        )
    except UpstreamError as error:
        if error.kind == "timeout" and time.monotonic() > deadline:
            error.message = (
                f"The reply passed the {settings.UPSTREAM_MAX_STREAM_SECONDS:g} s limit "
                "before it was complete."
            )
        raise _answered(error, response.status_code, headers, b"", started) from None
    latency_ms = _elapsed_ms(started)

    def failure(kind: str, message: str) -> UpstreamError:
        return UpstreamError(
            kind,
            message,
            http_status=response.status_code,
            headers=headers,
            body=body,
            latency_ms=latency_ms,
        )

    if _failed(response.status_code):
        raise failure("http", describe_http_error(response.status_code, body))
    try:
        data = loads_bounded(body)
    except ValueError as error:
        if "nested" not in str(error):
            data = None
        else:
            raise failure(
                "bad_json",
                f"The upstream answered 200 but its body is {error}, so it was not read; "
                "see the raw response.",
            ) from None
    if not isinstance(data, dict):
        raise failure(
            "bad_json",
            "The upstream answered 200 but its body is not a JSON object; see the raw response.",
        )
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise failure(
            "empty", "The upstream answered 200 with no choices, so there is no reply to show."
        )
    choice_notes: list[str] = []
    try:
        replies = _reply_choices(choices, choice_notes)
    except BadValue as error:
        raise failure("bad_reply", f"{error}, so there is no reply to show.") from None
    if not replies:
        raise failure(
            "empty",
            "The upstream answered 200 with no message in its choices, so there is no reply "
            "to show.",
        )
    first = replies.get(0) or _Choice(0)
    usage, usage_notes = clean_usage(data.get("usage"))
    cost, cost_notes = cost_reported(data, headers)
    return Completion(
        http_status=response.status_code,
        headers=headers,
        body=body,
        latency_ms=latency_ms,
        content=first.content,
        reasoning=first.reasoning,
        finish_reason=first.finish_reason,
        usage=usage,
        usd_spent=cost,
        notes=(*usage_notes, *cost_notes, *choice_notes),
        choices=tuple(replies[index].assembled() for index in sorted(replies)),
    )


def _reply_choices(choices: list[Any], notes: list[str]) -> dict[int, "_Choice"]:
    """The choices of a non-streamed reply that hold a message, by index; BadValue for
    text that is not text. What is ignored (a bad or repeated index) goes to `notes`."""
    replies: dict[int, _Choice] = {}
    most = settings.MAX_CHOICES
    for position, entry in enumerate(choices):
        if position >= most:
            _note(notes, _too_many_choices())
            break
        index = _choice_index(entry, position, most, notes)
        if index is None:
            continue
        if index in replies:
            _note(notes, f"The upstream sent choice {index} twice; the second was ignored.")
            continue
        if not isinstance(entry.get("message"), dict):
            continue
        reply = _Choice(index)
        reply.add(entry["message"], entry.get("logprobs"), notes, whole=True)
        reply.finish(entry.get("finish_reason"))
        replies[index] = reply
    return replies


def response_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response headers as stored: storable, in the case the server sent."""
    return {storable.text(name): storable.text(value) for name, value in items}


def _answered(
    error: UpstreamError, status: int, headers: dict[str, str], body: bytes, started: float
) -> UpstreamError:
    """`error`, raised while reading an answer, with what is known of that answer."""
    error.http_status = status
    error.headers = headers
    error.body = body
    error.latency_ms = _elapsed_ms(started)
    return error


@dataclass(frozen=True)
class StreamEvent:
    """What one server-sent event added to one choice of the reply (an event that adds to
    two choices gives two), each value checked as _Choice.add checks it.

    `tool_calls` are the event's fragments, {"index", "id"?, "type"?, "function":
    {"name"?, "arguments"?}}, joined by their index into the choice's calls;
    `logprobs` its logprobs.content entries.
    """

    raw: str
    at_ms: int  # since the request was sent
    content: str = ""
    reasoning: str = ""
    choice: int = 0
    refusal: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    logprobs: tuple[dict[str, Any], ...] = ()


class ChatStream:
    """An open streamed reply. Iterate `events()`; `close()` hangs up on the upstream.

    Reference: https://docs.aimlapi.com/capabilities/streaming-mode — chunks are
    `data: {json}` events; the end is `data: [DONE]` or the connection closing
    after a chunk with a finish_reason (Claude sends no [DONE]). Anything else
    that ends the stream is a broken stream, never a finished answer. With several
    choices (n > 1) each chunk names the one it adds to by its index; the stream is
    finished once each choice seen has its finish_reason.

    Bounded as it is read: UPSTREAM_MAX_REPLY_BYTES of decoded bytes (gzip
    undone by BoundedDecoder, never more than that), UPSTREAM_MAX_STREAM_SECONDS
    from the request; past either the stream ends with UpstreamError, the events
    that fit kept. Linear in the bytes received: only new bytes are searched for
    the end of an event, and text is kept in pieces, joined when asked for.
    """

    def __init__(self, response: requests.Response, started: float) -> None:
        self.response = response
        self.started = started
        self.http_status = response.status_code
        self.headers = response_headers(response.headers.items())
        self.host = urlsplit(str(response.url)).netloc
        self.done = False  # [DONE] arrived
        self.raw_events: list[dict[str, Any]] = []
        self._choices: dict[int, _Choice] = {}
        self._choice_notes: list[str] = []  # values ignored in the choices (see _Choice)
        self.usage: dict[str, Any] = {}
        self.usd_spent: Decimal | None = None
        # Accounting values dropped (see clean_usage, cost_reported), for the call record.
        self._usage_notes: list[str] = []
        self._cost_notes: list[str] = []
        self._queued_error: UpstreamError | None = None  # the limit passed, once read
        self.first_token_ms: int | None = None
        self._last_chunk: dict[str, Any] = {}
        # The event being received, in pieces; whether its last piece ended in "\n",
        # and whether a "\r" was held back from the end of the last read.
        self._pending: list[bytes] = []
        self._pending_newline = False
        self._held_cr = False
        self._decoder = BoundedDecoder(
            response.headers.get("Content-Encoding"),
            limit=settings.UPSTREAM_MAX_REPLY_BYTES,
            what="The reply",
        )

    @property
    def content(self) -> str:
        return self._first.content

    @property
    def reasoning(self) -> str:
        return self._first.reasoning

    @property
    def finish_reason(self) -> str:
        return self._first.finish_reason

    @property
    def _first(self) -> "_Choice":
        return self._choices.get(0) or _Choice(0)

    def choices(self) -> list[dict[str, Any]]:
        """Each choice seen, assembled as in a non-streamed reply, sorted by index."""
        return [self._choices[index].assembled() for index in sorted(self._choices)]

    @property
    def notes(self) -> list[str]:
        return self._usage_notes + self._cost_notes + self._choice_notes

    def events(self) -> Iterator[StreamEvent]:
        yield from self._received(self._raw_events())
        if not self.done:
            self._check_finished()

    def _received(self, raws: Iterable[str]) -> Iterator[StreamEvent]:
        """The events among `raws`, each recorded as received; nothing after [DONE]."""
        for raw in raws:
            events = self._receive(raw)
            if self.done:
                return
            yield from events

    def _receive(self, raw: str) -> list[StreamEvent]:
        """Record one event as received; what it adds to each choice (nothing for [DONE])."""
        self.raw_events.append({"at_ms": _elapsed_ms(self.started), "data": raw})
        if raw.strip() == "[DONE]":
            self.done = True
            return []
        return self._apply(raw)

    def _check_finished(self) -> None:
        """The connection closed: each choice's finish_reason must have come first."""
        unfinished = [index for index, choice in self._choices.items() if not choice.finish_reason]
        if unfinished and len(unfinished) < len(self._choices):
            raise self._error(
                "broken",
                f"The stream ended without a finish_reason for choice {min(unfinished)} or "
                "[DONE], so the reply is incomplete.",
            )
        if unfinished or not self._choices:
            raise self._error(
                "broken",
                "The stream ended without a finish_reason or [DONE], so the reply is incomplete.",
            )

    def close(self) -> None:
        self.response.close()

    @property
    def body(self) -> bytes:
        """The stream as received: every event, in the provider's own framing."""
        return "".join(f"data: {event['data']}\n\n" for event in self.raw_events).encode()

    def assembled(self) -> dict[str, Any]:
        """The chunks folded into the shape of a non-streamed chat.completion."""
        result = {
            "id": self._last_chunk.get("id"),
            "object": "chat.completion",
            "model": self._last_chunk.get("model"),
            # A stream that added to no choice is still recorded with its (empty) reply.
            "choices": self.choices() or [self._first.assembled()],
            "usage": self.usage or None,
        }
        if self.usd_spent is not None:
            result["meta"] = {"usage": {"usd_spent": str(self.usd_spent)}}
        return result

    def _apply(self, raw: str) -> list[StreamEvent]:
        try:
            chunk = loads_bounded(raw)
        except ValueError as error:
            reason = "a malformed chunk" if "nested" not in str(error) else f"a chunk {error}"
            raise self._error("bad_json", f"The upstream sent {reason} mid-stream.") from None
        if not isinstance(chunk, dict):
            raise self._error("bad_json", "The upstream sent a malformed chunk mid-stream.")
        if chunk.get("error"):
            error = chunk["error"]
            message = _message_text(error.get("message") if isinstance(error, dict) else error)
            raise self._error(
                "stream_error", f"The upstream reported an error mid-stream: {message}"
            )
        for key in ("id", "model"):
            if value := _bounded_str(chunk.get(key), ID_CHARS):
                self._last_chunk[key] = value
        if chunk.get("usage") is not None:
            self.usage, self._usage_notes = clean_usage(chunk["usage"])
        # The body only: a stream's headers go out before its cost is known.
        cost, cost_notes = cost_reported(chunk, {})
        if cost is not None:
            self.usd_spent = cost
        self._cost_notes += [note for note in cost_notes if note not in self._cost_notes]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return []
        at_ms = _elapsed_ms(self.started)
        events = []
        most = settings.MAX_CHOICES
        for position, entry in enumerate(choices):
            if position >= most:
                _note(self._choice_notes, _too_many_choices())
                break
            index = _choice_index(entry, position, most, self._choice_notes)
            if index is None:
                continue
            choice = self._choices.get(index)
            if choice is None:
                choice = self._choices[index] = _Choice(index)
            delta = entry.get("delta") if isinstance(entry.get("delta"), dict) else {}
            try:
                added = choice.add(delta, entry.get("logprobs"), self._choice_notes, whole=False)
            except BadValue as error:
                raise self._error(
                    "bad_reply", f"{error}; the text received so far is kept."
                ) from None
            choice.finish(entry.get("finish_reason"))
            if any(added.values()):
                events.append(StreamEvent(raw=raw, at_ms=at_ms, choice=index, **added))
        if events and self.first_token_ms is None:
            self.first_token_ms = at_ms
        return events

    def _raw_events(self) -> Iterator[str]:
        """The data of each event, as bytes arrive (read1 does not wait for a full buffer)."""
        while chunk := self._read():
            yield from self._bounded(chunk)
        yield from self._rest()

    def _bounded(self, raw: bytes) -> list[str]:
        """The events `raw` completes, decoded within the size limit; then the time limit."""
        events = self._split(self._decoder.feed(raw))
        if self._decoder.exceeded:
            # The events that fit are kept; the rest is not read.
            self._queued_error = self._error(
                "too_big",
                f"The reply passed the {_megabytes(settings.UPSTREAM_MAX_REPLY_BYTES)} limit; "
                "the text received so far is kept.",
            )
        elif time.monotonic() - self.started > settings.UPSTREAM_MAX_STREAM_SECONDS:
            self._queued_error = self._error(
                "too_long",
                f"The stream passed the {settings.UPSTREAM_MAX_STREAM_SECONDS:g} s limit; "
                "the text received so far is kept.",
            )
        return events

    def _split(self, chunk: bytes) -> list[str]:
        """The data of the events that `chunk` completes; the rest waits in `_pending`.

        Only `chunk` is searched, never what came before it: a 20 MB event line
        arriving in 64 KB reads costs 20 MB of work, not 320 times that.
        """
        if self._held_cr:
            chunk = b"\r" + chunk
        # A "\r" at the end may be half of a "\r\n": it waits for the next read.
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        chunk = chunk.replace(b"\r\n", b"\n")
        blocks = []
        start = 0
        if self._pending_newline and chunk.startswith(b"\n"):
            # The blank line that ends an event, split across two reads.
            blocks.append(b"".join(self._pending))
            self._pending = []
            start = 1
        while (end := chunk.find(b"\n\n", start)) != -1:
            self._pending.append(chunk[start:end])
            blocks.append(b"".join(self._pending))
            self._pending = []
            start = end + 2
        if start < len(chunk):
            self._pending.append(chunk[start:])
            self._pending_newline = chunk.endswith(b"\n")
        elif start:
            self._pending_newline = False
        return [data for block in blocks if (data := _event_data(block)) is not None]

    def _rest(self) -> list[str]:
        """The connection closed: an event left unterminated still counts."""
        block = b"".join(self._pending) + (b"\r" if self._held_cr else b"")
        self._pending, self._held_cr = [], False
        data = _event_data(block.replace(b"\r\n", b"\n"))
        return [data] if data is not None else []

    def _read(self) -> bytes:
        if self._queued_error is not None:
            raise self._queued_error
        try:
            return self.response.raw.read1(65536, decode_content=False)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            raise self._stalled() from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            # ValueError: the response was closed (Stop) while a read was waiting.
            raise self._broken() from None

    def _stalled(self) -> UpstreamError:
        return self._error(
            "timeout",
            f"The stream stalled: nothing arrived for {settings.UPSTREAM_READ_TIMEOUT:g} s "
            "(the read timeout).",
        )

    def _broken(self) -> UpstreamError:
        return self._error("broken", f"The connection to {self.host} broke mid-stream.")

    def _error(self, kind: str, message: str) -> UpstreamError:
        return UpstreamError(
            kind,
            message,
            http_status=self.http_status,
            headers=self.headers,
            body=self.body,
            latency_ms=_elapsed_ms(self.started),
        )


class AsyncChatStream(ChatStream):
    """A ChatStream read on an event loop: a waiting stream costs a socket, not a thread."""

    def __init__(self, response: httpx.Response, started: float) -> None:
        super().__init__(response, started)  # type: ignore[arg-type]
        self.headers = response_headers(_raw_headers(response).items())

    async def aevents(self) -> AsyncIterator[StreamEvent]:
        async for chunk in self._aread():
            for event in self._received(self._bounded(chunk)):
                yield event
            if self.done:
                return
        for event in self._received(self._rest()):
            yield event
        if not self.done:
            self._check_finished()

    async def aclose(self) -> None:
        await self.response.aclose()

    async def _aread(self) -> AsyncIterator[bytes]:
        # Raw bytes: httpx's own decoding (aiter_bytes) has no bound on what
        # one gzip chunk expands to. BoundedDecoder undoes it within the limit.
        try:
            async for chunk in self.response.aiter_raw():
                if self._queued_error is not None:
                    break
                yield chunk
        except httpx.ReadTimeout:
            raise self._stalled() from None
        except (httpx.HTTPError, httpx.StreamError, OSError):
            raise self._broken() from None
        if self._queued_error is not None:
            raise self._queued_error


def _joined(pieces: list[str]) -> str:
    """The pieces as one string, kept as one piece (each join costs the text once)."""
    if len(pieces) > 1:
        pieces[:] = ["".join(pieces)]
    return pieces[0] if pieces else ""


def _event_data(block: bytes) -> str | None:
    """The joined `data:` lines of one event, storable; None for comments and empty blocks."""
    lines = block.decode(errors="replace").split("\n")
    data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
    return storable.text("\n".join(data)) if data else None


def open_chat_stream(call: PreparedCall) -> ChatStream:
    """Send a streamed request. Failures before the first event raise UpstreamError."""
    started = time.monotonic()
    response = _send(call.prepared, started, stream=True)
    headers = response_headers(response.headers.items())
    if _failed(response.status_code) or "text/event-stream" not in response.headers.get(
        "Content-Type", ""
    ):
        try:
            body = read_limited(
                response,
                limit=settings.UPSTREAM_MAX_REPLY_BYTES,
                deadline=started + settings.UPSTREAM_MAX_STREAM_SECONDS,
                what="The answer",
            )
        except UpstreamError as error:
            raise _answered(error, response.status_code, headers, b"", started) from None
        raise _not_a_stream(response.status_code, headers, body, started)
    try:
        return ChatStream(response, started)
    except UpstreamError as error:  # an encoding we do not decode
        response.close()
        raise _answered(error, response.status_code, headers, b"", started) from None


def _not_a_stream(
    status: int, headers: dict[str, str], body: bytes, started: float
) -> UpstreamError:
    if _failed(status):
        kind, message = "http", describe_http_error(status, body)
    else:
        # Some servers ignore "stream": true and answer with one JSON body.
        kind = "bad_json"
        message = (
            "Asked for a stream, the upstream answered with something else; see the raw response."
        )
    return UpstreamError(
        kind,
        message,
        http_status=status,
        headers=headers,
        body=body,
        latency_ms=_elapsed_ms(started),
    )


async def aopen_chat_stream(
    call: PreparedCall, *, sent: asyncio.Event | None = None
) -> AsyncChatStream:
    """`open_chat_stream` on an event loop: the same request bytes, the same errors.

    `sent`, if given, is set once the request is written, or has failed.
    """
    started = time.monotonic()
    prepared = call.prepared
    client = _async_client()
    request = client.build_request(
        prepared.method or "POST",
        call.url,
        headers=dict(prepared.headers),
        content=call.body,
        timeout=httpx.Timeout(
            settings.UPSTREAM_READ_TIMEOUT, connect=settings.UPSTREAM_CONNECT_TIMEOUT
        ),
    )
    host = urlsplit(call.url).netloc
    if sent is not None:
        request.extensions["trace"] = _set_once_sent(request, sent)
    try:
        response = await client.send(request, stream=True)
    except httpx.ConnectTimeout:
        raise _connect_timeout(host, started) from None
    except httpx.ReadTimeout:
        raise _read_timeout(host, started) from None
    except httpx.ConnectError:
        raise _refused(host, started) from None
    except (httpx.HTTPError, OSError):
        # The request reached the upstream, which may have billed it: not retried.
        raise _cut_off(host, started) from None
    finally:
        if sent is not None:
            sent.set()
    headers = response_headers(_raw_headers(response).items())
    if _failed(response.status_code) or "text/event-stream" not in response.headers.get(
        "Content-Type", ""
    ):
        try:
            body = await _aread_limited(response, started)
        except UpstreamError as error:
            raise _answered(error, response.status_code, headers, b"", started) from None
        finally:
            await response.aclose()
        raise _not_a_stream(response.status_code, headers, body, started)
    try:
        return AsyncChatStream(response, started)
    except UpstreamError as error:  # an encoding we do not decode
        await response.aclose()
        raise _answered(error, response.status_code, headers, b"", started) from None


async def _aread_limited(response: httpx.Response, started: float) -> bytes:
    """read_limited for an httpx response: the same bounds, the same decoder."""
    decoder = BoundedDecoder(
        response.headers.get("Content-Encoding"),
        limit=settings.UPSTREAM_MAX_REPLY_BYTES,
        what="The answer",
    )
    deadline = started + settings.UPSTREAM_MAX_STREAM_SECONDS
    pieces = []
    try:
        async for data in response.aiter_raw():
            pieces.append(decoder.feed(data))
            if decoder.exceeded:
                raise decoder.too_big()
            if time.monotonic() > deadline:
                raise UpstreamError(
                    "timeout", "The answer took too long to arrive, so it was not read further."
                )
    except (httpx.HTTPError, httpx.StreamError, OSError):
        return b"".join(pieces)
    return b"".join(pieces)


def _set_once_sent(request: httpx.Request, sent: asyncio.Event) -> Callable:
    """An httpcore trace hook: sets `sent` when the request body is written, then detaches
    (it would otherwise be called twice for every chunk of the reply)."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_body.complete"):
            sent.set()
            request.extensions.pop("trace", None)

    return trace


# One client per event loop (its connections belong to that loop), dropped with the loop.
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = (
    weakref.WeakKeyDictionary()
)


def _async_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = httpx.AsyncClient(
            verify=tls_context(),
            cookies=CookieJar(policy=NO_COOKIES),
            # Every concurrent stream holds a connection: no pool limit to queue behind.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
    return client


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS setup, built once per process: loading the certificate
    authorities takes 30-60 ms, which every new client would otherwise repeat."""
    return httpx.create_ssl_context()


def _raw_headers(response: httpx.Response) -> dict[str, str]:
    """The headers with the case the server sent (httpx lower-cases its own view)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers.raw}


@dataclass(frozen=True)
class CatalogueResponse:
    """The catalogue as fetched: None models means 304 Not Modified (keep the cached copy)."""

    models: list[dict[str, Any]] | None
    etag: str | None


def fetch_catalogue(*, etag: str | None) -> CatalogueResponse:
    """The upstream's chat models, normalised from either catalogue shape, honouring ETag.

    Reference: https://docs.aimlapi.com/api-references/model-database — AI/ML API
    returns {data: [{id, type, info: {...}, pricing?}]} and enriches it with
    `?include=pricing,capabilities`; OpenAI-compatible servers return
    {data: [{id, object, owned_by}]} and ignore the unknown query parameter.

    The list is untrusted input: it is read within UPSTREAM_FETCH_SECONDS and
    UPSTREAM_MAX_CATALOGUE_BYTES, an entry that cannot be trusted is skipped and
    logged (BadModelEntry), and at most UPSTREAM_MAX_MODELS models are kept. A
    list that cannot be read at all, or of which no entry can, is an UpstreamError:
    the caller keeps its last good copy.
    """
    what = "The model list"
    started = time.monotonic()
    # OpenAI, LiteLLM and vLLM (--api-key) list their models only to a caller with the key.
    headers = {"Accept": "application/json", **_key_header()}
    if etag:
        headers["If-None-Match"] = etag
    request = requests.Request(
        "GET",
        f"{settings.UPSTREAM_BASE_URL}/models",
        params={"include": "pricing,capabilities"},
        headers=headers,
    )
    with _fetch_time_limit(what, started) as deadline:
        response = _send(_prepare(request), started, stream=True, timeout=_fetch_timeout())
        if response.status_code == 304:
            response.close()
            return CatalogueResponse(models=None, etag=_etag(response) or etag)
        _refuse_failed_fetch(response, deadline, what)
        body = read_limited(
            response, limit=settings.UPSTREAM_MAX_CATALOGUE_BYTES, deadline=deadline, what=what
        )
    document = _parse_document(body, what)
    items = document.get("data")
    if not isinstance(items, list):
        raise UpstreamError("bad_json", "The model list is not in a shape we understand.")
    return CatalogueResponse(models=_chat_models(items), etag=_etag(response))


def _chat_models(items: list[Any]) -> list[dict[str, Any]]:
    """The chat models among the catalogue's entries, each checked; see fetch_catalogue."""
    limit = settings.UPSTREAM_MAX_MODELS
    models: list[dict[str, Any]] = []
    skipped = 0
    for index, item in enumerate(items):
        if len(models) >= limit:
            logger.warning(
                "The model list has more models than UPSTREAM_MAX_MODELS (%d): "
                "%d more were dropped.",
                limit,
                len(items) - index,
            )
            break
        try:
            if _is_chat_model(item):
                models.append(normalise_model(item))
        except BadModelEntry as error:
            skipped += 1
            model_id = item.get("id") if isinstance(item, dict) else None
            # ascii(): the id may hold a lone surrogate or a control character.
            label = ascii(model_id)[:80] if isinstance(model_id, str) else "without an id"
            logger.warning("Model list entry %d (%s) skipped: %s.", index, label, error)
    if skipped and not models:
        raise UpstreamError(
            "bad_json", f"None of the {skipped} models in the model list could be read."
        )
    return models


def fetch_json_document(url: str) -> dict[str, Any]:
    """A model's OpenAPI document, from the catalogue's `info.docsJson` link.

    Only URLs on the operator-configured upstream's own origin are fetched: the
    link comes from the upstream, never from a user, and even so a catalogue
    entry must not make the server call arbitrary hosts (SSRF). A page waits on
    this fetch, so it is bounded by UPSTREAM_FETCH_SECONDS as a whole, however
    slowly the bytes come, and by UPSTREAM_MAX_SCHEMA_BYTES. It carries no key: the
    URL is the catalogue's word, not the operator's.
    """
    if not is_upstream_url(url):
        raise UpstreamError("refused", "The schema link is not on the configured upstream.")
    what = "The schema document"
    started = time.monotonic()
    request = requests.Request("GET", url, headers={"Accept": "application/json"})
    with _fetch_time_limit(what, started) as deadline:
        response = _send(_prepare(request), started, stream=True, timeout=_fetch_timeout())
        _refuse_failed_fetch(response, deadline, what)
        body = read_limited(
            response, limit=settings.UPSTREAM_MAX_SCHEMA_BYTES, deadline=deadline, what=what
        )
    return _parse_document(body, what)


def _fetch_timeout() -> tuple[float, float]:
    # Each socket operation waits at most the whole fetch's time; read_limited checks
    # the total between reads.
    bound = settings.UPSTREAM_FETCH_SECONDS
    return (
        min(settings.UPSTREAM_CONNECT_TIMEOUT, bound),
        min(settings.UPSTREAM_READ_TIMEOUT, bound),
    )


@contextmanager
def _fetch_time_limit(what: str, started: float) -> Iterator[float]:
    """The deadline of a catalogue or schema fetch; any timeout in it gets one message."""
    try:
        yield started + settings.UPSTREAM_FETCH_SECONDS
    except UpstreamError as error:
        if error.kind != "timeout":
            raise
        raise UpstreamError(
            "timeout",
            f"{what} took too long to arrive (the limit is "
            f"{settings.UPSTREAM_FETCH_SECONDS:g} s), so it was not used.",
            latency_ms=_elapsed_ms(started),
        ) from None


def _refuse_failed_fetch(response: requests.Response, deadline: float, what: str) -> None:
    if not _failed(response.status_code):
        return
    try:
        body = read_limited(response, limit=MAX_ERROR_BODY_BYTES, deadline=deadline, what=what)
    except UpstreamError:
        body = b""
    response.close()
    raise UpstreamError(
        "http",
        describe_http_error(response.status_code, body),
        http_status=response.status_code,
    )


def _parse_document(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        # Not a ValueError: deep enough nesting exhausts the parser's stack.
        raise UpstreamError("bad_json", f"{what} nests too deeply to read.") from None
    except ValueError:
        raise UpstreamError("bad_json", f"{what} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamError("bad_json", f"{what} is not a JSON object.")
    return data


def _etag(response: requests.Response) -> str | None:
    """The ETag to send back, if it is one we can send (it goes into a request header)."""
    etag = response.headers.get("ETag")
    if etag and len(etag) <= MAX_ETAG_CHARS and etag.isascii() and etag.isprintable():
        return etag
    return None


def is_upstream_url(url: str) -> bool:
    """True for http(s) URLs on the same scheme, host and port as UPSTREAM_BASE_URL."""
    wanted = urlsplit(settings.UPSTREAM_BASE_URL)
    candidate = urlsplit(url)
    return (
        candidate.scheme in {"http", "https"}
        and (candidate.scheme, candidate.netloc.lower()) == (wanted.scheme, wanted.netloc.lower())
        and not candidate.username
    )


# --- Catalogue entries -------------------------------------------------------
# Values of an entry end up on every page (and a model id in the database), so each
# is checked where it enters. Its model field holds 200 characters.
MAX_MODEL_ID_CHARS = 200
MAX_LABEL_CHARS = 200  # a model's name or developer: longer ones are cut
MAX_ALIASES = 50
MAX_CAPABILITIES = 50
MAX_CAPABILITY_CHARS = 100
MAX_URL_CHARS = 2_000
MAX_ERROR_BODY_BYTES = 65_536
MAX_ETAG_CHARS = 200
# No model costs a dollar a token: a larger rate is a broken price, not a quote.
MAX_USD_PER_TOKEN = Decimal(1)
MAX_PRICE_CHARS = 40
MAX_TOKENS_VALUE = 2**31 - 1  # the largest a positive-integer column holds everywhere
CHAT_TYPES = frozenset({"chat-completion", "chat", "language-completion"})
# No lone surrogates (they have no UTF-8, so a page holding one cannot be sent) and no
# NUL or other control characters (PostgreSQL refuses NUL in text).
UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class BadModelEntry(ValueError):
    """A catalogue entry that cannot be trusted; the message names the value at fault."""


def normalise_model(item: Any) -> dict[str, Any]:
    """One catalogue entry in the shape pages use, or BadModelEntry.

    An entry whose id, aliases, names, links or prices are present but of the wrong
    type, out of range or hold unsafe text is refused as a whole: pages would show
    it, or a conversation would store it. Context and output lengths that are not
    positive integers are only left unknown, as an OpenAI-style list has none.
    """
    if not isinstance(item, dict):
        raise BadModelEntry("it is not a JSON object")
    model_id = _entry_text(item.get("id"), "id", limit=MAX_MODEL_ID_CHARS)
    if not model_id:
        raise BadModelEntry("it has no id")
    info = item.get("info")
    if info is None:
        info = {}
    elif not isinstance(info, dict):
        raise BadModelEntry("its info is not an object")
    developer = _entry_label(info.get("developer"), "info.developer") or _entry_label(
        item.get("owned_by"), "owned_by"
    )
    return {
        "id": model_id,
        "name": _entry_label(info.get("name"), "info.name") or model_id,
        "developer": developer,
        "context_length": _positive_int(info.get("contextLength")),
        "output_max": _positive_int(info.get("outputMax")),
        "aliases": _entry_texts(item.get("aliases"), "aliases", MAX_ALIASES, MAX_MODEL_ID_CHARS),
        "docs_json": _entry_text(info.get("docsJson"), "info.docsJson", limit=MAX_URL_CHARS)
        or None,
        "pricing": token_prices(item.get("pricing")),
        "capabilities": _entry_texts(
            item.get("capabilities"), "capabilities", MAX_CAPABILITIES, MAX_CAPABILITY_CHARS
        ),
    }


def _entry_text(value: Any, name: str, *, limit: int) -> str:
    """A string value of an entry ("" when absent), refused when unsafe or too long."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadModelEntry(f"its {name} is not a string")
    if len(value) > limit:
        raise BadModelEntry(f"its {name} is longer than {limit} characters")
    if UNSAFE_TEXT.search(value):
        raise BadModelEntry(f"its {name} holds a control character or a lone surrogate")
    return value


def _entry_label(value: Any, name: str) -> str:
    """A name shown on pages: like _entry_text, but a long one is cut, not refused."""
    if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
        value = value[: MAX_LABEL_CHARS - 1] + "…"
    return _entry_text(value, name, limit=MAX_LABEL_CHARS)


def _entry_texts(value: Any, name: str, most: int, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadModelEntry(f"its {name} is not a list")
    if len(value) > most:
        raise BadModelEntry(f"it has more than {most} {name}")
    return [_entry_text(item, name, limit=limit) for item in value]


def token_prices(pricing: Any) -> dict[str, str] | None:
    """USD per token for input and output, from a `fixed` catalogue price; else None.

    Reference: https://docs.aimlapi.com/api-references/model-database — "read
    `price` together with `per`": each unit is {unit, price, per}, so the rate
    per token is price / per. Variant and variable prices cannot be quoted ahead.
    Returned as decimal strings, so the cached catalogue stays JSON-friendly.
    A fixed price that is not a number, not finite, negative or absurdly large is
    BadModelEntry: a cost estimate would be made from it.
    """
    if not isinstance(pricing, dict) or pricing.get("kind", "fixed") != "fixed":
        return None
    currency = pricing.get("currency")
    if currency is not None and (not isinstance(currency, str) or currency.upper() != "USD"):
        return None
    units = pricing.get("units")
    if units is None:
        return None
    if not isinstance(units, list):
        raise BadModelEntry("its pricing units are not a list")
    rates: dict[str, str] = {}
    for unit in units:
        if not isinstance(unit, dict):
            raise BadModelEntry("a pricing unit is not an object")
        labels = (unit.get("unit"), unit.get("name"), unit.get("type"))
        name = next((label for label in labels if isinstance(label, str) and label), "").lower()
        side = (
            "input"
            if ("input" in name or "prompt" in name) and "cache" not in name
            else "output"
            if "output" in name or "completion" in name
            else None
        )
        price, per = _price_number(unit.get("price")), _price_number(unit.get("per") or 1)
        if price is None or per is None or per <= 0:
            raise BadModelEntry("a price is not a positive finite number")
        try:
            rate = price / per
        except ArithmeticError:
            raise BadModelEntry("a price is out of range") from None
        if not 0 <= rate <= MAX_USD_PER_TOKEN:
            raise BadModelEntry("a price is negative or out of range")
        if side and side not in rates:
            rates[side] = str(rate)
    return rates if {"input", "output"} <= rates.keys() else None


def _price_number(value: Any) -> Decimal | None:
    """A finite Decimal from a JSON number or numeric string; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > MAX_PRICE_CHARS:
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_TOKENS_VALUE else None


def _is_chat_model(item: Any) -> bool:
    if not isinstance(item, dict):
        raise BadModelEntry("it is not a JSON object")
    kind = item.get("type")
    if kind is not None and not isinstance(kind, str):
        raise BadModelEntry("its type is not a string")
    return kind is None or kind in CHAT_TYPES


def _failed(status: int) -> bool:
    """A redirect fails too: no client follows one. The record shows the one request
    there was, and the body goes nowhere it was not sent (httpx's way; requests' is not)."""
    return status >= 300


def _send(
    prepared: requests.PreparedRequest,
    started: float,
    *,
    stream: bool = False,
    timeout: tuple[float, float] | None = None,
) -> requests.Response:
    """The one place a request leaves the app, with explicit timeouts.

    `timeout` (connect, read) replaces the configured ones: the catalogue and schema
    fetches, which pages wait on, use shorter ones."""
    host = urlsplit(prepared.url or "").netloc
    timeout = timeout or (settings.UPSTREAM_CONNECT_TIMEOUT, settings.UPSTREAM_READ_TIMEOUT)
    try:
        return _session().send(prepared, timeout=timeout, stream=stream, allow_redirects=False)
    except requests.ConnectTimeout:
        raise _connect_timeout(host, started) from None
    except requests.ReadTimeout:
        raise _read_timeout(host, started) from None
    except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as error:
        if isinstance(error, requests.exceptions.ChunkedEncodingError) or _was_cut_off(error):
            # The upstream got the request and may have billed it: not retried.
            raise _cut_off(host, started) from None
        raise _refused(host, started) from None
    except requests.RequestException:
        raise UpstreamError(
            "connect", f"The request to {host} failed.", latency_ms=_elapsed_ms(started)
        ) from None


def _connect_timeout(host: str, started: float) -> UpstreamError:
    return UpstreamError(
        "timeout",
        f"Timed out after {settings.UPSTREAM_CONNECT_TIMEOUT:g} s connecting to {host}.",
        latency_ms=_elapsed_ms(started),
    )


def _read_timeout(host: str, started: float) -> UpstreamError:
    return UpstreamError(
        "timeout",
        f"{host} sent nothing for {settings.UPSTREAM_READ_TIMEOUT:g} s (the read timeout), "
        "so the call was abandoned.",
        latency_ms=_elapsed_ms(started),
    )


def _refused(host: str, started: float) -> UpstreamError:
    return UpstreamError(
        "connect",
        f"Could not connect to {host}: the connection was refused or the host is unreachable.",
        latency_ms=_elapsed_ms(started),
    )


def _cut_off(host: str, started: float) -> UpstreamError:
    return UpstreamError(
        "broken",
        f"The connection to {host} broke before the reply was complete.",
        latency_ms=_elapsed_ms(started),
    )


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
    if 300 <= status < 400:
        hint = (
            " Redirects are not followed: check UPSTREAM_BASE_URL"
            " (the raw response's Location header says where it points)."
        )
    if provider_message:
        return f"{prefix}: {provider_message}{hint}"
    return f"{prefix}.{hint}"


def _provider_message(body: bytes) -> str:
    """The provider's message from an error body: text only, bounded, storable."""
    try:
        data = loads_bounded(body)
    except ValueError:
        text = body[: PROVIDER_MESSAGE_CHARS * 4].decode(errors="replace").strip()
        return _bounded_text(text) if text and not text.startswith("<") else ""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("error"), dict):
        return _message_text(data["error"].get("message"))
    return _message_text(data.get("message") or data.get("error"))


def _message_text(value: Any) -> str:
    """A message the provider sent (a string, a number, or a list of strings), bounded."""
    if isinstance(value, list):
        value = "; ".join(str(item) for item in value[:10] if isinstance(item, str | int | float))
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return _bounded_text(str(value))


def _bounded_text(text: str) -> str:
    if len(text) > PROVIDER_MESSAGE_CHARS:
        text = text[:PROVIDER_MESSAGE_CHARS] + "…"
    return storable.text(text)


# --- Reply values: validated where they enter --------------------------------

PROVIDER_MESSAGE_CHARS = 300
# Deeper than any reply a model sends, shallow enough for every parser and page after us.
MAX_JSON_DEPTH = 64
# PositiveIntegerField's range, on every database.
MAX_TOKEN_COUNT = 2_147_483_647
# ApiCall.usd_spent holds 14 digits, 8 after the point.
MAX_USD = Decimal(1_000_000)
USD_QUANTUM = Decimal("1e-8")
FINISH_REASON_CHARS = 64
ID_CHARS = 200
# The counts the call record keeps; a bad value in any of them is worth a note.
RECORDED_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens")


def body_text(body: bytes) -> str:
    """A raw body as stored: UTF-8 with bad bytes replaced, NUL bytes too."""
    return storable.text(body.decode(errors="replace"))


def loads_bounded(text: str | bytes) -> Any:
    """json.loads, refusing documents nested deeper than MAX_JSON_DEPTH.

    Raises ValueError with a reason fit for a message. json.loads raises
    RecursionError (not a ValueError) on very deep input, which is caught here.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise ValueError("not valid JSON") from None
    if _brackets(text) > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _brackets(text: str | bytes) -> int:
    """An upper bound of the nesting depth, counted at C speed (most chunks have a few)."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


def _depth(value: Any) -> int:
    """The nesting depth of decoded JSON, walked without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            todo.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return deepest


class BadValue(ValueError):
    """A reply value of the wrong type; the message names it."""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else "?"


def _text(value: Any, name: str) -> str:
    """Reply text: a string, or a list of content parts; BadValue for anything else."""
    if value is None:
        return ""
    if isinstance(value, str):
        return storable.text(value)
    if isinstance(value, list):  # content parts
        return storable.text(
            "".join(
                part["text"]
                for part in value
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        )
    raise BadValue(f"{name} is {_kind(value)}, not text")


def _bounded_str(value: Any, limit: int) -> str:
    """A short identifier (finish_reason, id, model): a string, cut to `limit`, else ""."""
    return storable.text(value[:limit]) if isinstance(value, str) else ""


def _shown(value: Any) -> str:
    """A bad value, quoted for a note a person reads (bounded)."""
    text = value if isinstance(value, str) else json.dumps(value)[:100]
    return repr(storable.text(text[:40] + ("…" if len(text) > 40 else "")))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT


# --- Choices: every choice of a reply, checked where it enters -----------------
# A reply (or a stream) holds up to MAX_CHOICES choices, each with its text, refusal,
# tool calls, logprobs and annotations. Text is bounded by the reply's size alone, as
# content always was; everything else by count, and short values by length, so what
# is kept grows no faster than the bytes read. A value of the wrong shape is dropped
# with a note on the call record (at most MAX_NOTES of them); text that is not text
# ends the reply, as it does for content.

# More than any reply asks for; a delta names each call once.
MAX_TOOL_CALLS = 128
TOOL_TYPE_CHARS = 64
# OpenAI's own maximum for top_logprobs.
MAX_TOP_LOGPROBS = 20
# One entry per token: MAX_OUTPUT_TOKENS' default.
MAX_LOGPROB_TOKENS = 65_536
TOKEN_CHARS = 1_000
MAX_TOKEN_BYTES = 4 * TOKEN_CHARS
MAX_ANNOTATIONS = 128
# An annotation (a url_citation, say) is a small object: deeper levels, longer lists and
# longer strings than these are cut.
ANNOTATION_DEPTH = 6
ANNOTATION_ITEMS = 64
ANNOTATION_TEXT_CHARS = 4_000
MAX_NOTES = 20
# Numbers a float holds exactly, and JSON readers in browsers read back unchanged.
MAX_SAFE_INTEGER = 2**53


def _note(notes: list[str], note: str) -> None:
    """Add a note once; a hostile stream repeating a bad value must not grow the list."""
    if note not in notes and len(notes) < MAX_NOTES:
        notes.append(note)


def _too_many_choices() -> str:
    return (
        f"The upstream sent more than {settings.MAX_CHOICES} choices at once (MAX_CHOICES); "
        "the rest were ignored."
    )


def _choice_index(entry: Any, position: int, most: int, notes: list[str]) -> int | None:
    """The index a choice names (its position when it names none), or None to ignore it."""
    if not isinstance(entry, dict):
        _note(notes, f"The upstream sent a choice that is {_kind(entry)}; it was ignored.")
        return None
    index = entry.get("index")
    if index is None:
        return position
    if isinstance(index, bool) or not isinstance(index, int):
        _note(
            notes,
            f"The upstream sent a choice whose index is {_shown(index)}, not a whole number; "
            "it was ignored.",
        )
        return None
    if not 0 <= index < most:
        _note(
            notes,
            f"The upstream sent a choice with index {_shown(index)}, outside 0 to "
            f"{most - 1} (MAX_CHOICES); it was ignored.",
        )
        return None
    return index


class _ToolCall:
    """One tool call, from its fragments: the first id, type and name given; the
    arguments joined (each fragment carries the next piece)."""

    def __init__(self) -> None:
        self.id = self.type = self.name = ""
        self.arguments: list[str] = []

    def add(self, fragment: dict[str, Any]) -> None:
        self.id = self.id or fragment.get("id", "")
        self.type = self.type or fragment.get("type", "")
        function = fragment["function"]
        self.name = self.name or function.get("name", "")
        if "arguments" in function:
            self.arguments.append(function["arguments"])

    def assembled(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type or "function",
            "function": {"name": self.name, "arguments": _joined(self.arguments)},
        }


class _Choice:
    """One choice of a reply, assembled from its message or from a stream's deltas.

    Text is kept in pieces, joined when asked for (see _joined): a stream costs its
    length once, however many deltas it comes in.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        # How a bad value's message names this choice, in a message or in a delta.
        named = f" choice {index}" if index else ""
        self._owners = {True: f"The reply's{named}", False: f"A chunk's{named}"}
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self.tool_calls: dict[int, _ToolCall] = {}
        self.logprobs: list[dict[str, Any]] = []
        self.annotations: list[Any] = []
        self.finish_reason = ""

    @property
    def content(self) -> str:
        return _joined(self._content)

    @property
    def reasoning(self) -> str:
        return _joined(self._reasoning)

    @property
    def refusal(self) -> str:
        return _joined(self._refusal)

    def add(
        self, part: dict[str, Any], logprobs: Any, notes: list[str], *, whole: bool
    ) -> dict[str, Any]:
        """Fold in a message (`whole`) or a delta, and the choice's `logprobs`; what it added,
        as StreamEvent fields. BadValue, before anything is kept, for text that is not text."""
        owner = self._owners[whole]
        content = _text(part.get("content"), f"{owner} content")
        reasoning = _text(part.get("reasoning_content"), f"{owner} reasoning_content")
        refusal = _text(part.get("refusal"), f"{owner} refusal")
        for pieces, text in (
            (self._content, content),
            (self._reasoning, reasoning),
            (self._refusal, refusal),
        ):
            if text:
                pieces.append(text)
        # Most deltas hold text alone: the rest is looked at only when it is there.
        fragments: list[dict[str, Any]] = []
        if (tool_calls := part.get("tool_calls")) is not None:
            fragments = self._add_tool_calls(_tool_fragments(tool_calls, notes, whole), notes)
        entries: list[dict[str, Any]] = []
        if logprobs is not None:
            entries = _logprob_entries(logprobs, notes, MAX_LOGPROB_TOKENS - len(self.logprobs))
            self.logprobs += entries
        if (annotations := part.get("annotations")) is not None:
            self.annotations += _annotations(
                annotations, notes, MAX_ANNOTATIONS - len(self.annotations)
            )
        return {
            "content": content,
            "reasoning": reasoning,
            "refusal": refusal,
            "tool_calls": tuple(fragments),
            "logprobs": tuple(entries),
        }

    def finish(self, value: Any) -> None:
        # Accept values outside the documented enum (Claude answers "end_turn"); a later
        # chunk without one (a usage chunk) does not undo it.
        if finish_reason := _bounded_str(value, FINISH_REASON_CHARS):
            self.finish_reason = finish_reason

    def _add_tool_calls(
        self, fragments: list[dict[str, Any]], notes: list[str]
    ) -> list[dict[str, Any]]:
        """Join each fragment into the call its index names; the fragments joined, indexed."""
        joined = []
        for fragment in fragments:
            if fragment["index"] is None:
                fragment["index"] = self._index_for(fragment.get("id"))
            if fragment["index"] >= MAX_TOOL_CALLS:
                _note(notes, _too_many_tool_calls())
                continue
            call = self.tool_calls.get(fragment["index"])
            if call is None:
                call = self.tool_calls[fragment["index"]] = _ToolCall()
            call.add(fragment)
            joined.append(fragment)
        return joined

    def _index_for(self, call_id: str | None) -> int:
        """The call a fragment without an index belongs to (some servers send none): the
        one with its id, else a new one when it brings an id, else the latest."""
        if call_id:
            known = (index for index, call in self.tool_calls.items() if call.id == call_id)
            return next(known, max(self.tool_calls, default=-1) + 1)
        return max(self.tool_calls, default=0)

    def assembled(self) -> dict[str, Any]:
        """The choice as a non-streamed chat.completion has it."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if not self._content and (self.tool_calls or self._refusal):
            message["content"] = None  # as OpenAI sends a reply that is only calls
        if self._reasoning:
            message["reasoning_content"] = self.reasoning
        if self._refusal:
            message["refusal"] = self.refusal
        if self.tool_calls:
            message["tool_calls"] = [
                self.tool_calls[index].assembled() for index in sorted(self.tool_calls)
            ]
        if self.annotations:
            message["annotations"] = list(self.annotations)
        choice = {
            "index": self.index,
            "message": message,
            "finish_reason": self.finish_reason or None,
        }
        if self.logprobs:
            choice["logprobs"] = {"content": list(self.logprobs)}
        return choice


def _tool_fragments(value: Any, notes: list[str], whole: bool) -> list[dict[str, Any]]:
    """A message's tool calls (`whole`: each one complete, indexed by position) or a
    delta's fragments, checked; "index" is None for a fragment that gives none."""
    if value is None:
        return []
    if not isinstance(value, list):
        _note(notes, f"The upstream sent tool_calls that are {_kind(value)}; they were ignored.")
        return []
    fragments = []
    for position, item in enumerate(value):
        if position >= MAX_TOOL_CALLS:
            _note(notes, _too_many_tool_calls())
            break
        if not isinstance(item, dict):
            _note(notes, f"The upstream sent a tool call that is {_kind(item)}; it was ignored.")
            continue
        index = position if whole else item.get("index")
        if index is not None and (
            isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_TOOL_CALLS
        ):
            _note(
                notes,
                f"The upstream sent a tool call with index {_shown(index)}, not one of 0 to "
                f"{MAX_TOOL_CALLS - 1}; it was ignored.",
            )
            continue
        fragment: dict[str, Any] = {"index": index}
        for key, limit in (("id", ID_CHARS), ("type", TOOL_TYPE_CHARS)):
            if isinstance(item.get(key), str):
                fragment[key] = _bounded_str(item[key], limit)
        fragment["function"] = _tool_function(item.get("function"), notes)
        fragments.append(fragment)
    return fragments


def _too_many_tool_calls() -> str:
    return (
        f"The upstream sent more than {MAX_TOOL_CALLS} tool calls for one choice; "
        "the rest were ignored."
    )


def _tool_function(value: Any, notes: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _note(notes, f"The upstream sent a tool call function that is {_kind(value)}; ignored.")
        return {}
    function = {}
    if isinstance(value.get("name"), str):
        function["name"] = _bounded_str(value["name"], ID_CHARS)
    arguments = value.get("arguments")
    if isinstance(arguments, str):
        function["arguments"] = storable.text(arguments)
    elif isinstance(arguments, dict):
        # Some servers (Ollama) send the arguments as an object, not as its JSON text.
        function["arguments"] = storable.text(encode_body(arguments).decode())
    elif arguments is not None:
        _note(
            notes,
            f"The upstream sent tool call arguments that are {_kind(arguments)}, not text; "
            "they were ignored.",
        )
    return function


def _logprob_entries(value: Any, notes: list[str], room: int) -> list[dict[str, Any]]:
    """A choice's logprobs.content entries, checked; at most `room` of them."""
    if value is None:
        return []
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(content, list | None):
        _note(notes, "The upstream sent logprobs of the wrong shape; they were ignored.")
        return []
    entries = []
    for item in content or ():
        if len(entries) >= room:
            _note(
                notes,
                f"The upstream sent logprobs for more than {MAX_LOGPROB_TOKENS} tokens of one "
                "choice; the rest were ignored.",
            )
            break
        entry = _logprob(item)
        if entry is None:
            _note(notes, "The upstream sent a logprobs entry of the wrong shape; it was ignored.")
            continue
        tops = item.get("top_logprobs")
        top = (
            [_logprob(other) for other in tops[:MAX_TOP_LOGPROBS]] if isinstance(tops, list) else []
        )
        entry["top_logprobs"] = [other for other in top if other is not None]
        entries.append(entry)
    return entries


def _logprob(item: Any) -> dict[str, Any] | None:
    """{"token", "logprob", "bytes"} from one entry, or None when it is not one."""
    if not isinstance(item, dict) or not isinstance(item.get("token"), str):
        return None
    logprob = item.get("logprob")
    if not _is_finite_number(logprob):
        return None
    token_bytes = item.get("bytes")
    if not (
        isinstance(token_bytes, list)
        and len(token_bytes) <= MAX_TOKEN_BYTES
        and all(type(byte) is int and 0 <= byte <= 255 for byte in token_bytes)
    ):
        token_bytes = None
    return {
        "token": storable.text(item["token"][:TOKEN_CHARS]),
        "logprob": logprob,
        "bytes": token_bytes,
    }


def _is_finite_number(value: Any) -> bool:
    """A JSON number a database and a browser read back as it was: no NaN, no 10**400."""
    if isinstance(value, float):
        return math.isfinite(value)
    return type(value) is int and abs(value) <= MAX_SAFE_INTEGER


def _annotations(value: Any, notes: list[str], room: int) -> list[Any]:
    """A message's or delta's annotations (url citations, say), each cut to a small object."""
    if value is None:
        return []
    if not isinstance(value, list):
        _note(notes, f"The upstream sent annotations that are {_kind(value)}; they were ignored.")
        return []
    if len(value) > room:
        _note(
            notes,
            f"The upstream sent more than {MAX_ANNOTATIONS} annotations for one choice; "
            "the rest were ignored.",
        )
    kept = [_small_json(item, ANNOTATION_DEPTH) for item in value[: max(room, 0)]]
    return [item for item in kept if isinstance(item, dict)]


def _small_json(value: Any, depth: int) -> Any:
    """`value` cut to `depth` levels, ANNOTATION_ITEMS items and ANNOTATION_TEXT_CHARS a
    string, storable; a number that does not read back as itself becomes None."""
    if isinstance(value, str):
        return storable.text(value[:ANNOTATION_TEXT_CHARS])
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value if _is_finite_number(value) else None
    if depth <= 0:
        return None
    if isinstance(value, list):
        return [_small_json(item, depth - 1) for item in value[:ANNOTATION_ITEMS]]
    if isinstance(value, dict):
        return {
            storable.text(key[:ID_CHARS]): _small_json(item, depth - 1)
            for key, item in list(value.items())[:ANNOTATION_ITEMS]
        }
    return None


def clean_usage(usage: Any) -> tuple[dict[str, Any], list[str]]:
    """`usage` with only token counts (and one level of details), and notes on what was dropped.

    A count the database cannot hold (10**20, -1, "12", NaN) is dropped, never
    the reply: the notes say which, for the call record.
    """
    if usage is None:
        return {}, []
    if not isinstance(usage, dict):
        return {}, [f"The upstream reported usage that is {_kind(usage)}; it was not recorded."]
    clean: dict[str, Any] = {}
    notes = []
    for key, value in list(usage.items())[:64]:
        name = storable.text(key[:64])
        if isinstance(value, dict):
            inner, inner_notes = _counts(value, f"{name}.")
            clean[name] = inner
            notes += inner_notes
        else:
            _count_into(clean, notes, name, value, name)
    return clean, notes


def _counts(values: dict[str, Any], prefix: str) -> tuple[dict[str, int], list[str]]:
    clean: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in list(values.items())[:64]:
        name = storable.text(key[:64])
        _count_into(clean, notes, name, value, prefix + name)
    return clean, notes


def _count_into(clean: dict, notes: list[str], name: str, value: Any, path: str) -> None:
    if _is_count(value):
        clean[name] = value
    elif value is not None and name in RECORDED_COUNTS:
        notes.append(
            f"The upstream reported {path} {_shown(value)}, which is not a token count; "
            "it was not recorded."
        )


def cost_reported(
    data: dict[str, Any], headers: dict[str, str]
) -> tuple[Decimal | None, list[str]]:
    """Cost as the provider reported it (body `meta.usage.usd_spent`, else the header),
    and notes on any reported value that is not a plausible amount (not recorded)."""
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    meta_usage = meta.get("usage") if isinstance(meta.get("usage"), dict) else {}
    notes = []
    for value in (meta_usage.get("usd_spent"), header(headers, "x-aimlapi-usd-spent")):
        if value is None:
            continue
        amount, problem = _usd(value)
        if amount is not None:
            return amount, notes
        notes.append(
            f"The upstream reported a cost of {_shown(value)}, which is {problem}; "
            "it was not recorded."
        )
    return None, notes


def usd_spent(data: dict[str, Any], headers: dict[str, str]) -> Decimal | None:
    return cost_reported(data, headers)[0]


def _usd(value: Any) -> tuple[Decimal | None, str]:
    """A reported cost as an amount the record can hold, or why it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(value)) > 40:
        return None, "not an amount"
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None, "not an amount"
    if not amount.is_finite():
        return None, "not an amount"
    if not 0 <= amount < MAX_USD:
        return None, "not a plausible amount"
    return amount.quantize(USD_QUANTUM), ""


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


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
