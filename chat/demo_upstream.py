"""An offline, deterministic fake of the AI/ML API, served over real HTTP on 127.0.0.1.

It speaks the provider's wire contract (OpenAI-compatible chat completions, the AI/ML API
model catalogue, the provider's error bodies) with the standard library only, so it runs
without Django and without a network. Three users:

* ``make run`` starts it (``manage.py demo_upstream``) when no API key is configured, so the
  app can be tried offline. Replies are Markdown that visibly reflect the request: the model,
  the last user message, the parameters sent, the system prompt, and a code block.
* The test-suite starts one on a free port in a thread (``DemoUpstream().start()``) and reads
  back what the app sent through ``requests`` / ``chat_requests()`` (or ``GET /_demo/requests``
  from another process).
* Benchmarks open hundreds of concurrent streams, paced by ``first_token_delay`` and
  ``chunk_delay``.

Endpoints (each also without the ``/v1`` prefix)
------------------------------------------------
``GET /v1/models``
    The AI/ML API catalogue shape (``data[].id/aliases/type/info/tags``) with ``ETag`` and
    ``If-None-Match`` (304). The header ``X-Demo-Models-Shape: openai`` asks for OpenAI's shape.
    With ``models_api_key`` set, only ``Authorization: Bearer <that key>`` is answered, anything
    else gets an OpenAI-style 401 (as OpenAI, LiteLLM and ``vllm --api-key`` do).
``POST /v1/chat/completions``
    Any model id is answered. ``Authorization: Bearer demo-invalid-key`` gets a 401, any other
    key (or none) is accepted. ``"stream": true`` answers with server-sent events.
``GET /docs-json?model=<id>``
    The model's OpenAPI document, linked from the catalogue's ``info.docsJson``: the
    provider's own documents for the three real models (``chat/schemas/``) and a small one
    for the demo models. ``?include=pricing,capabilities`` on ``/v1/models`` adds a fixed
    per-token price and capabilities to each chat model, as the provider does.
``GET /_demo/requests``, ``POST /_demo/reset``
    The recorded requests as JSON, and a reset (recordings and ``fail_times`` counters).
``POST /_demo/catalogue_fault`` with ``{"fault": "<spec>"}``
    Makes the catalogue or the schema documents hostile (``bad_entries``, ``many=N``,
    ``deep=N``, ``slow_schema``, ``bad_schema``; see "catalogue faults" below); ``""`` ends it.

Same body, same reply text: no randomness and no clock in the content. Tokens are
whitespace-separated words. ``max_tokens`` (or ``max_completion_tokens``) cuts the content to
that many words (``finish_reason: "length"``); ``stop`` / ``stop_sequences`` cut before the
first match. A natural end is ``"stop"``, or ``"end_turn"`` for model ids containing "claude",
as the provider does. ``reasoning_content`` is added when ``enable_thinking`` is true,
``thinking.type`` is "enabled", ``reasoning_effort`` or ``reasoning`` is present, or the model
id contains "thinker" or "r1".

Timing: a stream waits ``first_token_delay`` before its first chunk and ``chunk_delay``
between chunks; a non-streamed reply waits ``first_token_delay`` before answering.

Reply shapes
------------
The body picks the shape of the reply, as with the full chat completions API; plain string
content, or a list of text parts, is answered as before. A refusal wins over tool calls; tool
results and attachments add lines at the start of a text reply:

``[refuse]`` in the last user message's text
    A refusal: ``content`` null, ``refusal`` "I can't help with that. (demo refusal)",
    ``finish_reason: "stop"``; streamed as ``{"refusal": "..."}`` deltas.
``tools`` (OpenAI's ``{"type": "function", "function": {...}}`` or Anthropic's ``{"name",
"input_schema"}``), ``tool_choice`` not "none", and the conversation not ending with tool results
    Tool calls instead of text, ``finish_reason: "tool_calls"``: one call to the first tool, or
    to the tool ``tool_choice`` names (an unknown name is a 400); the first two tools when there
    are two or more and ``parallel_tool_calls`` is not false. Arguments are built from the
    parameters schema: each listed or required property gets its ``enum``'s first value, else
    "demo", 1, true, {} or [] by type. Ids are ``call_<random>``. Streamed as OpenAI does: a
    first delta per call (index, id, type, name, ``arguments: ""``), then its arguments in
    three or more pieces, two calls' pieces taking turns.
the conversation ends with tool results
    (Trailing ``tool`` messages, or ``tool_result`` blocks in the last user message.) The text
    reply starts with one line per result: ``Tool result for <tool_call_id>: <content>``.
attachments in the last user message
    The text reply starts with ``Received N attachments: <facts>; <facts>``, where the facts
    are the media type, a file part's filename, the decoded size, the pixel size of a PNG,
    JPEG, GIF or WebP, a PDF's page count, and ``sha256 <first 12 hex>`` (OpenAI ``image_url``
    and ``file`` parts, Anthropic ``image`` and ``document`` blocks). Remote URLs are not
    fetched; a malformed data URL or bad base64 is said to be one (chat/demo_attachments.py).

Independent of the shape: ``n`` (2 to 8, more counts as 8) returns that many choices, texts
starting "Choice 1: ", "Choice 2: "...; streamed, their chunks take turns, one choice per chunk,
each choice ending with its own ``finish_reason`` chunk (usage on the last). ``logprobs: true``
adds ``logprobs: {"content": [...], "refusal": null}`` (one entry per word token, with
``top_logprobs`` alternatives, 0 to 20); streamed, each text delta carries the entries of its
tokens. The values are deterministic, mostly near 0 with some between -2 and -5.

Fault injection
---------------
A fault spec is a comma-separated list of ``key`` or ``key=value`` items, taken from the first
of these that is present:

1. the request header ``X-Demo-Fault: status=503,retry_after=2``;
2. a top-level string field in the JSON body, ``"demo_fault": "status=503"`` (so a fault can be
   triggered through an app that only lets users add body fields);
3. the model id, when it reads ``demo/fault:<spec>``, e.g. ``demo/fault:status=503``.

Keys:

``status=N``
    Answer with the provider-style error N (400-599), never a stream.
``retry_after=S``
    With ``status``: add the header ``Retry-After: S`` (there is none otherwise).
``fail_times=K``
    With ``status``: only the first K requests carrying this exact spec string fail (counted
    server-wide); later ones are answered normally. Lets you test retries.
``delay=S``
    Wait S seconds before sending anything, status line included (a timeout before the first
    byte).
``pace=S``
    Wait S seconds between stream chunks for this request (overrides ``chunk_delay``).
``reset_after=N``
    Stream: send N content chunks, then abort the TCP connection with a RST. Non-streamed:
    send the status line, headers (with Content-Length) and half of the body, then a RST.
``stall_after=N`` and ``stall=S``
    Stream: after N content chunks hold the connection silently for S seconds (default 30),
    then close it without finishing.
``malformed``
    Non-streamed: a 200 whose JSON body is truncated. Stream: after the first content chunk
    an event ``data: {"choices": [`` that is not JSON, then the stream goes on normally.
``empty_choices``
    A 200 with ``"choices": []`` (a stream of chunks with empty choices, then ``[DONE]``).
``no_end``
    Stream: half of the content chunks, then the connection closes with no ``finish_reason``
    and no ``[DONE]`` (a broken stream).
``no_done``
    Stream: complete, ``finish_reason`` and usage included, but the connection closes without
    ``data: [DONE]`` (Claude's way; a normal end).
``no_cost``
    Report no cost at all: no ``meta.usage`` in the body or the last chunk, no
    ``x-aimlapi-usd-spent`` header (an OpenAI-compatible server's way).
``no_cost_body``
    Non-streamed: no ``meta.usage`` in the body, the cost only in the header.
``error_event_after=N``
    Stream: after N content chunks an event
    ``data: {"error": {"message": "Upstream model overloaded", "code": 503}}``, then close.
``redirect``
    Answer ``307 Temporary Redirect`` to ``/v1/moved/chat/completions`` (where nothing is
    served), as a proxy or a changed base URL does.
``set_cookie``
    Answer with ``Set-Cookie: demo_visitor=<random>; Path=/``, as a CDN in front of a
    provider does. A client that keeps it sends it back with its later requests.

``endless``
    Stream: content chunks forever, at the pace, until the client hangs up.
``huge_line=N``
    Stream: after the first content chunk, one event whose data line is about N bytes (a
    content delta), then the stream goes on normally.
``huge_body=N``
    Non-streamed: a reply whose content is about N bytes.
``gzip_bomb=N``
    The reply goes with ``Content-Encoding: gzip`` and decompresses to about N bytes: a
    non-streamed reply whose content is that long, or a stream of content chunks that long.
``deep_chunk=N``
    Stream: after the first content chunk, a chunk with a field nested N levels deep
    (``[[[...]]]``), then the stream goes on. Non-streamed: the body carries that field.
``deep_text=N``
    The reply's text is a JSON document nested N levels deep, as a string.
``nul``
    The reply's text contains U+0000 (JSON-escaped on the wire, ``\\u0000``).
``surrogate``
    The reply's text contains a lone surrogate, JSON-escaped (``\\ud800``).
``nan_cost``
    ``meta.usage.usd_spent`` is the string ``"NaN"``.
``huge_cost``
    The header ``x-aimlapi-usd-spent: 1e10`` (streams too).
``negative_cost``
    ``meta.usage.usd_spent`` is -5.
``huge_tokens``
    ``usage.prompt_tokens`` is 10**20.
``slow_lexer=N``
    The reply's text is a ```` ```usd ```` code fence holding about N bytes of input that is
    slow for that Pygments lexer (its time grows with the square of the length or worse).

A test can also script the next chat answer byte for byte: ``script_next(status=...,
headers=..., body=...)`` answers the next ``POST /chat/completions`` with that body (and a
Content-Length), ``script_next(chunks=[...])`` with those bytes written one after another,
then the connection closed (for generated stream chunks). Scripts are used in order, once
each, before any fault spec is looked at.

A chunk count N larger than the reply counts as "after the last content chunk". Keys that
only make sense for streams are ignored on non-streamed requests. An unknown key, a missing
or bad value is answered with a 400 ("Unknown demo fault: <key>").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from chat.demo_attachments import attachment_sentence

__all__ = ["DemoUpstream", "FaultSpec", "FaultSpecError", "RecordedRequest", "parse_fault_spec"]

INVALID_KEY = "Bearer demo-invalid-key"
FAULT_MODEL_PREFIX = "demo/fault:"
REDIRECT_LOCATION = "/v1/moved/chat/completions"  # the `redirect` fault's; nothing is there
USD_PER_TOKEN = 0.000002
CREDITS_PER_TOKEN = 2
QUOTE_LIMIT = 200
SYSTEM_PROMPT_LIMIT = 80
PARAM_VALUE_LIMIT = 200
DEFAULT_STALL_SECONDS = 30.0
# Long enough for loopback delivery of the chunks before a reset, and well under the
# read timeouts the tests use, so a reset is never mistaken for a stall.
RESET_GRACE_SECONDS = 0.2
# Transport switches: leaving them out of the parameter list keeps a streamed reply's text
# identical to the non-streamed reply for the same conversation.
TRANSPORT_KEYS = frozenset({"model", "messages", "stream", "stream_options"})

ERROR_MESSAGES = {
    400: "Body validation error!",
    401: "Invalid API key",
    403: "Insufficient credits",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Generation timeout",
}
STREAM_ERROR_EVENT = {"error": {"message": "Upstream model overloaded", "code": 503}}
MALFORMED_EVENT = b'data: {"choices": [\n\n'
DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str  # including query string
    headers: dict[str, str]  # header names as sent
    body: bytes  # exactly the bytes received (de-chunked if sent chunked)
    received_at: float  # time.time()

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", errors="replace"),
            "received_at": self.received_at,
        }


# --------------------------------------------------------------------------- fault specs


class FaultSpecError(ValueError):
    """A fault spec that cannot be honoured; its message is the 400's message."""


@dataclass(frozen=True)
class FaultSpec:
    text: str = ""
    status: int | None = None
    retry_after: str | None = None
    fail_times: int | None = None
    delay: float = 0.0
    pace: float | None = None
    reset_after: int | None = None
    stall_after: int | None = None
    stall: float = DEFAULT_STALL_SECONDS
    malformed: bool = False
    empty_choices: bool = False
    no_end: bool = False
    no_done: bool = False
    no_cost: bool = False
    no_cost_body: bool = False
    error_event_after: int | None = None
    redirect: bool = False
    set_cookie: bool = False
    endless: bool = False
    huge_line: int | None = None
    huge_body: int | None = None
    gzip_bomb: int | None = None
    deep_chunk: int | None = None
    deep_text: int | None = None
    nul: bool = False
    surrogate: bool = False
    nan_cost: bool = False
    huge_cost: bool = False
    negative_cost: bool = False
    huge_tokens: bool = False
    slow_lexer: int | None = None


def _non_negative_int(key: str, value: str) -> int:
    if not value.isdigit():
        raise FaultSpecError(f"Demo fault {key!r} needs a whole number, got {value!r}")
    return int(value)


def _non_negative_float(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0 or number == float("inf"):
        raise FaultSpecError(f"Demo fault {key!r} needs a number of seconds, got {value!r}")
    return number


def _status_code(key: str, value: str) -> int:
    code = _non_negative_int(key, value)
    if not 400 <= code <= 599:
        raise FaultSpecError(f"Demo fault 'status' must be an error status (400-599), got {code}")
    return code


def _retry_after(key: str, value: str) -> str:
    _non_negative_float(key, value)
    return value


# key -> (FaultSpec field, converter); a converter of None marks a flag without a value.
_FAULT_KEYS: dict[str, Any] = {
    "status": _status_code,
    "retry_after": _retry_after,
    "fail_times": _non_negative_int,
    "delay": _non_negative_float,
    "pace": _non_negative_float,
    "reset_after": _non_negative_int,
    "stall_after": _non_negative_int,
    "stall": _non_negative_float,
    "error_event_after": _non_negative_int,
    "malformed": None,
    "empty_choices": None,
    "no_end": None,
    "no_done": None,
    "no_cost": None,
    "no_cost_body": None,
    "redirect": None,
    "set_cookie": None,
    "endless": None,
    "huge_line": _non_negative_int,
    "huge_body": _non_negative_int,
    "gzip_bomb": _non_negative_int,
    "deep_chunk": _non_negative_int,
    "deep_text": _non_negative_int,
    "nul": None,
    "surrogate": None,
    "nan_cost": None,
    "huge_cost": None,
    "negative_cost": None,
    "huge_tokens": None,
    "slow_lexer": _non_negative_int,
}


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse ``"status=503,retry_after=2"``; raise FaultSpecError on anything unknown."""
    spec = FaultSpec(text=text.strip())
    for item in text.split(","):
        key, has_value, value = (part.strip() for part in item.partition("="))
        if not key:
            continue
        if key not in _FAULT_KEYS:
            raise FaultSpecError(f"Unknown demo fault: {key}")
        convert = _FAULT_KEYS[key]
        if convert is None:
            if has_value:
                raise FaultSpecError(f"Demo fault {key!r} takes no value")
            spec = replace(spec, **{key: True})
        elif not value:
            raise FaultSpecError(f"Demo fault {key!r} needs a value ({key}=...)")
        else:
            spec = replace(spec, **{key: convert(key, value)})
    return spec


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolCall:
    """One function call the demo "model" asks for."""

    id: str
    name: str
    arguments: str  # JSON text, as the wire carries it

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Choice:
    """One of a reply's choices: text, a refusal (content None), or tool calls (content None)."""

    index: int
    content: str | None
    reasoning: str | None
    finish_reason: str
    refusal: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def reasoning_tokens(self) -> int:
        return count_words(self.reasoning or "")

    @property
    def completion_tokens(self) -> int:
        calls = sum(1 + count_words(call.arguments) for call in self.tool_calls)
        written = count_words(self.content or "") + count_words(self.refusal or "")
        return written + calls + self.reasoning_tokens


@dataclass(frozen=True)
class Reply:
    """What the demo "model" answers, before it is put on the wire."""

    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    # The top_logprobs count when logprobs were asked for, None when they were not.
    top_logprobs: int | None = None

    # The first choice's, which is the only one unless the body asked for `n`.
    @property
    def content(self) -> str | None:
        return self.choices[0].content

    @property
    def reasoning(self) -> str | None:
        return self.choices[0].reasoning

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def reasoning_tokens(self) -> int:
        return sum(choice.reasoning_tokens for choice in self.choices)

    @property
    def completion_tokens(self) -> int:
        return sum(choice.completion_tokens for choice in self.choices)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def credits_used(self) -> int:
        return self.total_tokens * CREDITS_PER_TOKEN

    def usd_spent(self) -> float:
        return round(self.total_tokens * USD_PER_TOKEN, 8)

    def meta(self) -> dict[str, Any]:
        return {"usage": {"credits_used": self.credits_used(), "usd_spent": self.usd_spent()}}


def count_words(text: str) -> int:
    return len(text.split())


def word_pieces(text: str) -> list[str]:
    """Split into one-word pieces that keep their trailing whitespace: joining them gives
    back ``text`` exactly, which is what makes stream deltas add up to the full reply."""
    return [piece for piece in re.split(r"(?<=\s)(?=\S)", text) if piece]


def group_pieces(pieces: list[str], size: int) -> list[str]:
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


def text_of(content: Any) -> str:
    """A message's text: a plain string, or the text parts of an OpenAI content-parts list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text") for part in content if isinstance(part, dict)]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in payload.get("messages") or [] if isinstance(m, dict)]


def last_user_text(payload: dict[str, Any]) -> str | None:
    users = [m for m in _messages(payload) if m.get("role") == "user"]
    return text_of(users[-1].get("content")) if users else None


def system_prompt(payload: dict[str, Any]) -> str | None:
    for message in _messages(payload):
        if message.get("role") == "system":
            return text_of(message.get("content"))
    top_level = payload.get("system")
    return text_of(top_level) if top_level is not None else None


def wants_reasoning(payload: dict[str, Any]) -> bool:
    model = str(payload.get("model", "")).lower()
    thinking = payload.get("thinking")
    return (
        payload.get("enable_thinking") is True
        or (isinstance(thinking, dict) and thinking.get("type") == "enabled")
        or "reasoning_effort" in payload
        or "reasoning" in payload
        or "thinker" in model
        or "r1" in model
    )


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def _inline_code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _blockquote(text: str | None) -> list[str]:
    if text is None:
        return ["> _(no user message)_"]
    if not text.strip():
        return ["> _(empty message)_"]
    lines = _shorten(text.strip(), QUOTE_LIMIT).splitlines()
    return [f"> {line}" if line.strip() else ">" for line in lines]


def _parameter_lines(payload: dict[str, Any]) -> list[str]:
    keys = sorted(key for key in payload if key not in TRANSPORT_KEYS)
    if not keys:
        return ["No optional parameters were sent."]
    lines = ["Parameters sent:", ""]
    for key in keys:
        value = json.dumps(payload[key], ensure_ascii=False, sort_keys=True)
        lines.append(f"- `{key}`: {_inline_code(_shorten(value, PARAM_VALUE_LIMIT))}")
    return lines


def _code_sample(user_text: str | None) -> list[str]:
    length = len(user_text or "")
    return [
        "```python",
        "def echo_length(message: str) -> int:",
        '    """Count the characters the demo received."""',
        "    return len(message)",
        "",
        "",
        f"print(echo_length(last_user_message))  # {length}",
        "```",
    ]


def render_content(payload: dict[str, Any]) -> str:
    """The full Markdown reply, before any max_tokens / stop cut."""
    model = str(payload.get("model", ""))
    user_text = last_user_text(payload)
    lines = [*_tool_result_lines(payload), *_attachment_lines(payload)]
    lines += [f"**Demo reply** from `{model}`. You wrote:", ""]
    lines += _blockquote(user_text)
    lines += ["", *_parameter_lines(payload)]
    system = system_prompt(payload)
    if system is not None:
        quoted = _shorten(" ".join(system.split()), SYSTEM_PROMPT_LIMIT)
        lines += ["", f'System prompt: "{quoted}"']
    lines += ["", "A little code, to show the highlighting:", "", *_code_sample(user_text)]
    lines += ["", "_This is the offline demo upstream: no model was called._"]
    return "\n".join(lines)


def render_reasoning(payload: dict[str, Any]) -> str:
    model = payload.get("model", "")
    count = len(payload.get("messages") or [])
    noun = "message" if count == 1 else "messages"
    return (
        f"The conversation sent to {model} has {count} {noun}. "
        "I will quote the last user message back and list the parameters that came with it. "
        "Then I will add a short Python example so the code highlighting shows."
    )


def _stop_strings(payload: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("stop", "stop_sequences"):
        value = payload.get(key)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        found += [s for s in values if isinstance(s, str) and s]
    return found


# The parameter list quotes the stop strings themselves; matching those quotes would cut
# every reply there, so the lines that echo them are skipped.
_STOP_ECHO = re.compile(r"^- `(?:stop|stop_sequences)`: .*$", re.MULTILINE)


def _first_stop(content: str, stop: str) -> int | None:
    echoes = [match.span() for match in _STOP_ECHO.finditer(content)]
    position = content.find(stop)
    while position != -1:
        if not any(start <= position < end for start, end in echoes):
            return position
        position = content.find(stop, position + 1)
    return None


def _cut_at_stop(content: str, stops: list[str]) -> tuple[str, bool]:
    positions = [p for p in (_first_stop(content, s) for s in stops) if p is not None]
    return (content[: min(positions)], True) if positions else (content, False)


def _max_tokens(payload: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens"):
        if payload.get(key) is not None:
            return payload[key]
    return None


def build_reply(payload: dict[str, Any]) -> Reply:
    """The deterministic answer to a validated chat-completions body (tool call ids aside)."""
    model = str(payload["model"])
    count = choice_count(payload)
    reasoning = render_reasoning(payload) if wants_reasoning(payload) else None
    calls = tools_to_call(payload)
    refuse = wants_refusal(payload)
    # Rendered once: describing attachments hashes every file the message carried.
    text = "" if refuse or calls else render_content(payload)
    choices = []
    for index in range(count):
        if refuse:
            choice = Choice(index, None, reasoning, "stop", refusal=REFUSAL)
        elif calls:
            tool_calls = tuple(ToolCall(new_call_id(), name, args) for name, args in calls)
            choice = Choice(index, None, reasoning, "tool_calls", tool_calls=tool_calls)
        else:
            numbered = f"Choice {index + 1}: {text}" if count > 1 else text
            choice = _text_choice(payload, index, numbered, reasoning)
        choices.append(choice)
    prompt_tokens = sum(count_words(text_of(m.get("content"))) for m in _messages(payload))
    return Reply(model, tuple(choices), prompt_tokens, requested_top_logprobs(payload))


def _text_choice(payload: dict[str, Any], index: int, text: str, reasoning: str | None) -> Choice:
    model = str(payload["model"])
    content, stopped = _cut_at_stop(text, _stop_strings(payload))
    finish_reason = "stop" if stopped else "end_turn" if "claude" in model.lower() else "stop"
    limit = _max_tokens(payload)
    if limit is not None and count_words(content) > limit:
        content = "".join(word_pieces(content)[:limit]).rstrip()
        finish_reason = "length"
    return Choice(index, content, reasoning, finish_reason)


# --------------------------------------------------------------------------- request shapes
# What in a body changes the reply's shape (the module docstring lists the triggers).

REFUSAL_TRIGGER = "[refuse]"
REFUSAL = "I can't help with that. (demo refusal)"
# The app's default MAX_CHOICES: the demo never writes more choices than the app may ask for.
MAX_CHOICES = 8
MAX_TOP_LOGPROBS = 20
TOOL_RESULT_LIMIT = 200


def choice_count(payload: dict[str, Any]) -> int:
    n = payload.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return 1
    return min(n, MAX_CHOICES)


def requested_top_logprobs(payload: dict[str, Any]) -> int | None:
    """How many alternatives each token lists, or None when logprobs were not asked for."""
    if payload.get("logprobs") is not True:
        return None
    top = payload.get("top_logprobs")
    if isinstance(top, bool) or not isinstance(top, int):
        return 0
    return max(0, min(top, MAX_TOP_LOGPROBS))


def wants_refusal(payload: dict[str, Any]) -> bool:
    return REFUSAL_TRIGGER in (last_user_text(payload) or "")


def tool_definitions(payload: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, parameters schema) for each usable tool: OpenAI's ``{"type": "function",
    "function": {...}}`` or Anthropic's ``{"name", "input_schema"}``; others are skipped."""
    tools = payload.get("tools")
    found: list[tuple[str, Any]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("function"), dict):
            function = tool["function"]
            name, schema = function.get("name"), function.get("parameters")
        elif "input_schema" in tool:
            name, schema = tool.get("name"), tool["input_schema"]
        else:
            continue
        if isinstance(name, str) and name:
            found.append((name, schema))
    return found


def forced_tool_name(payload: dict[str, Any]) -> str | None:
    """The tool `tool_choice` names (OpenAI's or Anthropic's shape), if it names one."""
    choice = payload.get("tool_choice")
    if not isinstance(choice, dict):
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if name is None and choice.get("type") == "tool":
        name = choice.get("name")
    return name if isinstance(name, str) else None


def _tool_choice_is_none(payload: dict[str, Any]) -> bool:
    choice = payload.get("tool_choice")
    return choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none")


def _parallel_calls(payload: dict[str, Any]) -> bool:
    choice = payload.get("tool_choice")
    anthropic_off = isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True
    return payload.get("parallel_tool_calls") is not False and not anthropic_off


def tools_to_call(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments JSON) of the calls to answer with; [] to answer with text."""
    tools = tool_definitions(payload)
    if not tools or _tool_choice_is_none(payload) or tool_results(payload):
        return []
    forced = forced_tool_name(payload)
    if forced is not None:
        chosen = [tool for tool in tools if tool[0] == forced][:1]
    else:
        chosen = tools[:2] if _parallel_calls(payload) else tools[:1]
    return [(name, json.dumps(sample_arguments(schema))) for name, schema in chosen]


def sample_arguments(schema: Any) -> dict[str, Any]:
    """An arguments object for a parameters schema: every listed or required property."""
    if not isinstance(schema, dict):
        return {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    names = [*properties, *(n for n in required if isinstance(n, str) and n not in properties)]
    return {name: _sample_value(properties.get(name)) for name in names}


_SAMPLES: dict[str, Any] = {
    "string": "demo",
    "number": 1,
    "integer": 1,
    "boolean": True,
    "object": {},
    "array": [],
    "null": None,
}


def _sample_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "demo"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _SAMPLES.get(kind, "demo") if isinstance(kind, str) else "demo"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_results(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(call id, result text) when the conversation ends with tool results: the trailing
    ``tool`` messages (OpenAI) or the ``tool_result`` blocks of a last user message
    (Anthropic); [] when it does not."""
    messages = _messages(payload)
    results: list[tuple[str, str]] = []
    while messages and messages[-1].get("role") == "tool":
        message = messages.pop()
        results.insert(0, (message.get("tool_call_id"), text_of(message.get("content"))))
    if not results and messages and messages[-1].get("role") == "user":
        content = messages[-1].get("content")
        blocks = content if isinstance(content, list) else []
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                results.append((block.get("tool_use_id"), text_of(inner)))
    return [(call_id if isinstance(call_id, str) else "(no id)", text) for call_id, text in results]


def _tool_result_lines(payload: dict[str, Any]) -> list[str]:
    results = tool_results(payload)
    lines = [
        f"Tool result for {call_id}: {_shorten(' '.join(text.split()), TOOL_RESULT_LIMIT)}"
        for call_id, text in results
    ]
    return [*lines, ""] if lines else []


def _attachment_lines(payload: dict[str, Any]) -> list[str]:
    users = [m for m in _messages(payload) if m.get("role") == "user"]
    sentence = attachment_sentence(users[-1].get("content")) if users else None
    return [sentence, ""] if sentence else []


def validate_chat_body(payload: Any) -> str | None:
    """The 400 message for a body we cannot answer, or None."""
    if not isinstance(payload, dict):
        return "Body validation error! The request body must be a JSON object."
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        return 'Body validation error! "model" is required.'
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return 'Body validation error! "messages" must be a non-empty array.'
    if not all(isinstance(m, dict) for m in messages):
        return 'Body validation error! Each item of "messages" must be an object.'
    limit = _max_tokens(payload)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        return 'Body validation error! "max_tokens" must be a positive integer.'
    if "demo_fault" in payload and not isinstance(payload["demo_fault"], str):
        return 'Body validation error! "demo_fault" must be a string.'
    forced = forced_tool_name(payload)
    tools = tool_definitions(payload)
    if forced is not None and tools and forced not in {name for name, _ in tools}:
        return f'Body validation error! "tool_choice" names {forced!r}, which is not in "tools".'
    return None


# --------------------------------------------------------------------------- wire shapes


def completion_json(
    reply: Reply, completion_id: str, created: int, *, empty: bool, meta: bool = True
) -> dict:
    choices = [choice_json(choice, reply.top_logprobs) for choice in reply.choices]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model,
        "choices": [] if empty else choices,
        "usage": reply.usage(),
        **({"meta": reply.meta()} if meta else {}),
    }


def choice_json(choice: Choice, top_logprobs: int | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.content}
    if choice.tool_calls:
        message["tool_calls"] = [call.as_json() for call in choice.tool_calls]
    if choice.reasoning is not None:
        message["reasoning_content"] = choice.reasoning
    message["refusal"] = choice.refusal
    logprobs = None
    if top_logprobs is not None:
        logprobs = {
            "content": _logprobs_of(choice.content, top_logprobs),
            "refusal": _logprobs_of(choice.refusal, top_logprobs),
        }
    return {
        "index": choice.index,
        "message": message,
        "finish_reason": choice.finish_reason,
        "logprobs": logprobs,
    }


def _logprobs_of(text: str | None, top: int) -> list[dict[str, Any]] | None:
    return None if text is None else token_logprobs(text, top)


def chunk_json(reply: Reply, completion_id: str, created: int, choices: list, **extra: Any) -> dict:
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": reply.model,
        "choices": choices,
    }
    chunk.update(extra)
    return chunk


def delta_choice(
    delta: dict[str, Any],
    finish_reason: str | None = None,
    *,
    index: int = 0,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return choice


def opening_delta(choice: Choice) -> dict[str, Any]:
    """A choice's first delta: the role, and the first tool call's name and id."""
    if choice.tool_calls:
        return {"role": "assistant", "content": None, "tool_calls": [_call_head(choice, 0)]}
    if choice.refusal is not None:
        return {"role": "assistant", "content": None, "refusal": ""}
    return {"role": "assistant", "content": ""}


def _call_head(choice: Choice, position: int) -> dict[str, Any]:
    call = choice.tool_calls[position]
    return {
        "index": position,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": ""},
    }


def reasoning_deltas(choice: Choice, size: int) -> list[dict[str, Any]]:
    pieces = group_pieces(word_pieces(choice.reasoning or ""), size)
    return [delta_choice({"reasoning_content": piece}, index=choice.index) for piece in pieces]


def body_deltas(choice: Choice, size: int, top_logprobs: int | None) -> list[dict[str, Any]]:
    """A choice's deltas after its opening: text or refusal words (with their logprobs when
    asked for), or each tool call's arguments in pieces, the calls' pieces interleaved."""
    if choice.tool_calls:
        heads = [
            delta_choice({"tool_calls": [_call_head(choice, position)]}, index=choice.index)
            for position in range(1, len(choice.tool_calls))
        ]
        pieces = [
            [
                delta_choice(
                    {"tool_calls": [{"index": position, "function": {"arguments": piece}}]},
                    index=choice.index,
                )
                for piece in argument_pieces(call.arguments)
            ]
            for position, call in enumerate(choice.tool_calls)
        ]
        return heads + interleaved(pieces)
    key, text = (
        ("refusal", choice.refusal) if choice.refusal is not None else ("content", choice.content)
    )
    words = word_pieces(text or "")
    entries = token_logprobs(text or "", top_logprobs) if top_logprobs is not None else None
    deltas = []
    for start in range(0, len(words), size):
        logprobs = None
        if entries is not None:
            logprobs = {"content": None, "refusal": None, key: entries[start : start + size]}
        piece = "".join(words[start : start + size])
        deltas.append(delta_choice({key: piece}, index=choice.index, logprobs=logprobs))
    return deltas


def argument_pieces(arguments: str) -> list[str]:
    """The arguments text in at least three pieces (when it has three characters), as a
    model streams them: a client must join them per call before parsing."""
    size = max(1, min(8, len(arguments) // 3))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


_GAP = object()


def interleaved(lists: list[list[Any]]) -> list[Any]:
    """Round robin: the first item of each list, then the second of each, and so on."""
    return [item for row in zip_longest(*lists, fillvalue=_GAP) for item in row if item is not _GAP]


# --------------------------------------------------------------------------- logprobs
# Deterministic per token and position, and varied on purpose: most tokens near 0 (sure),
# about one in three between -2 and -5 (unsure), so a view shading by probability shows
# differences. The alternatives share what probability the chosen token leaves.

ALTERNATIVE_TOKENS = (
    "the", " a", " and", "of", " to", " is", " in", " it", "that", " for",
    " on", " with", " as", " this", " be", " at", " by", " or", " from", " not",
    " an",
)  # fmt: skip


def token_logprobs(text: str, top: int) -> list[dict[str, Any]]:
    """One logprobs entry per demo token (word) of `text`, with `top` alternatives each."""
    return [
        _logprob_entry(piece, position, top) for position, piece in enumerate(word_pieces(text))
    ]


def _logprob_entry(token: str, position: int, top: int) -> dict[str, Any]:
    digest = hashlib.sha256(f"{position}:{token}".encode("utf-8", "surrogatepass")).digest()
    draw = int.from_bytes(digest[:4], "big") / 2**32
    logprob = -(0.0001 + 0.3 * draw**3) if draw < 0.66 else -(2 + 3 * (draw - 0.66) / 0.34)
    left = 1 - math.exp(logprob)
    others = [word for word in ALTERNATIVE_TOKENS if word != token]
    start = digest[4] % len(others)
    candidates = [(token, logprob)] + [
        (others[(start + rank) % len(others)], math.log(left * 0.5 ** (rank + 1)))
        for rank in range(max(0, top - 1))
    ]
    ranked = sorted(candidates, key=lambda candidate: -candidate[1])
    return {
        **_token_json(token, logprob),
        "top_logprobs": [_token_json(word, value) for word, value in ranked[:top]],
    }


def _token_json(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": round(logprob, 6), "bytes": list(wire(token))}


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return wire(f"data: {text}\n\n")


def wire(text: str) -> bytes:
    """UTF-8, with any lone surrogate written as its JSON escape (``\\ud800``), not as
    bytes UTF-8 has no place for: the ``surrogate`` fault's text stays valid JSON."""
    return text.encode("utf-8", "backslashreplace")


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


# The `usd` lexer's time grows with the square of a run of dashes, or worse.
SLOW_LEXER_INPUT = "-"
FILLER = "lorem ipsum dolor sit amet "


def filler(size: int) -> str:
    return (FILLER * (size // len(FILLER) + 1))[:size]


def error_json(status: int, path: str, message: str | None = None) -> dict[str, Any]:
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "message": message or ERROR_MESSAGES.get(status) or _status_phrase(status),
        "path": path,
        "requestId": str(uuid.uuid4()),
        "statusCode": status,
        "timestamp": timestamp,
    }


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Upstream error"


# --------------------------------------------------------------------------- catalogue

DOCS = "https://docs.aimlapi.com/api-references/text-models-llm"
# Fixed so the ETag never changes between runs.
CATALOGUE_CREATED = 1735689600


def _chat_model(
    model_id: str,
    name: str,
    description: str,
    *,
    developer: str,
    aliases: list[str],
    context: int,
    output: int,
    docs: str,
    tags: list[str],
) -> dict[str, Any]:
    return {
        "id": model_id,
        "aliases": aliases,
        "type": "chat-completion",
        "info": {
            "name": name,
            "developer": developer,
            "description": description,
            "contextLength": context,
            "outputMax": output,
            "docsUrl": docs,
        },
        "tags": tags,
    }


CATALOGUE: list[dict[str, Any]] = [
    _chat_model(
        "demo/echo",
        "Demo Echo",
        "Offline demo: answers with a Markdown echo of your request.",
        developer="Demo",
        aliases=["echo"],
        context=128000,
        output=4096,
        docs="https://docs.aimlapi.com/",
        tags=["demo", "offline"],
    ),
    _chat_model(
        "demo/thinker",
        "Demo Thinker",
        "Offline demo that always returns its reasoning before the answer.",
        developer="Demo",
        aliases=["thinker"],
        context=128000,
        output=4096,
        docs="https://docs.aimlapi.com/",
        tags=["demo", "offline", "reasoning"],
    ),
    _chat_model(
        "anthropic/claude-sonnet-4.5",
        "Claude Sonnet 4.5",
        "Better coding abilities and stronger reasoning than Claude 4 Sonnet.",
        developer="Anthropic",
        aliases=["claude-sonnet-4-5", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5-20250929"],
        context=200000,
        output=64000,
        docs=f"{DOCS}/anthropic/claude-4-5-sonnet",
        tags=["text", "reasoning", "code"],
    ),
    _chat_model(
        "openai/gpt-4o",
        "GPT-4o",
        "Multimodal AI model by OpenAI enhancing human-computer interaction.",
        developer="Open AI",
        aliases=["gpt-4o"],
        context=128000,
        output=16384,
        docs=f"{DOCS}/openai/gpt-4o",
        tags=["text", "vision"],
    ),
    _chat_model(
        "deepseek/deepseek-r1",
        "DeepSeek R1",
        "Open reasoning model that returns its chain of thought.",
        developer="DeepSeek",
        aliases=["deepseek-r1"],
        context=128000,
        output=8000,
        docs=f"{DOCS}/deepseek/deepseek-r1",
        tags=["text", "reasoning"],
    ),
    {
        # Not a chat model, so clients must filter by type. Like the real catalogue, image
        # models carry no contextLength / outputMax.
        "id": "openai/dall-e-3",
        "aliases": ["dall-e-3"],
        "type": "image",
        "info": {
            "name": "DALL·E 3",
            "developer": "Open AI",
            "description": "Text-to-image model; not served by chat completions.",
            "docsUrl": "https://docs.aimlapi.com/api-references/image-models/openai/dall-e-3",
        },
        "tags": ["image"],
    },
]


# The provider's own OpenAPI documents, served at /docs-json for the three real models.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILES = {
    "anthropic/claude-sonnet-4.5": "claude-sonnet-4-5.openapi.json",
    "openai/gpt-4o": "gpt-4o.openapi.json",
    "deepseek/deepseek-r1": "deepseek-r1.openapi.json",
}
DEMO_MODELS = ("demo/echo", "demo/thinker")
DEMO_PRICING = {
    "kind": "fixed",
    "currency": "USD",
    "units": [
        {"unit": "input_tokens", "price": USD_PER_TOKEN * 1_000_000, "per": 1_000_000},
        {"unit": "output_tokens", "price": USD_PER_TOKEN * 1_000_000, "per": 1_000_000},
    ],
}


def demo_schema(model_id: str) -> dict[str, Any]:
    """A small OpenAPI document for the demo models, in the provider's layout."""
    properties: dict[str, Any] = {
        "model": {"type": "string", "enum": [model_id]},
        "messages": {"type": "array", "items": {"type": "object"}},
        "max_tokens": {"type": "integer", "minimum": 1, "description": "Cut the reply here."},
        "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2,
            "default": 1,
            "description": "Echoed back; the demo is deterministic anyway.",
        },
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "stop": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 4,
            "description": "Cut the reply before the first of these.",
        },
        "seed": {"type": "integer", "minimum": 1, "description": "Echoed back."},
        "reasoning_effort": {
            "type": "string",
            "enum": ["low", "medium", "high"],
            "description": "Any value makes the demo show its reasoning.",
        },
        "enable_thinking": {
            "type": "boolean",
            "description": "Qwen-style switch: the demo adds reasoning_content.",
        },
        "response_format": {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": ["text", "json_object"]}},
            "required": ["type"],
            "description": "Echoed back.",
        },
        "stream": {"type": "boolean", "default": False},
    }
    schema = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": properties,
    }
    operation = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}
    }
    return {
        "openapi": "3.0.0",
        "info": {"title": f"Demo schema for {model_id}", "version": "1.0.0"},
        "paths": {"/v1/chat/completions": {"post": operation}},
    }


def schema_document(model_id: str) -> bytes | None:
    if model_id in SCHEMA_FILES:
        return (SCHEMA_DIR / SCHEMA_FILES[model_id]).read_bytes()
    if model_id in DEMO_MODELS:
        return json.dumps(demo_schema(model_id)).encode()
    return None


def _enriched(model: dict[str, Any], origin: str, include: set[str]) -> dict[str, Any]:
    if model["type"] != "chat-completion":
        return model
    info = {**model["info"]}
    if schema_document(model["id"]) is not None:
        info["docsJson"] = f"{origin}/docs-json?model={quote(model['id'], safe='')}"
    enriched = {**model, "info": info}
    if include & {"pricing", "all"}:
        enriched["pricing"] = DEMO_PRICING
    if include & {"capabilities", "all"}:
        enriched["capabilities"] = ["streaming"] + (
            ["reasoning"] if "reasoning" in model["tags"] else []
        )
    return enriched


def catalogue_json(
    shape: str, *, origin: str = "", include: set[str] | frozenset = frozenset(), extra=()
) -> dict[str, Any]:
    models = [*CATALOGUE, *extra]
    if shape.strip().lower() != "openai":
        return {"object": "list", "data": [_enriched(m, origin, include) for m in models]}
    data = [
        {
            "id": model["id"],
            "object": "model",
            "created": CATALOGUE_CREATED,
            "owned_by": model["info"]["developer"],
        }
        for model in models
    ]
    return {"object": "list", "data": data}


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


# --------------------------------------------------------------------------- catalogue faults
# The upstream's catalogue and schema documents are untrusted input for the app, like its
# replies. `DemoUpstream.catalogue_fault` (or ``POST /_demo/catalogue_fault`` with
# ``{"fault": "..."}`` from another process) makes them hostile; a comma-separated list of:
#
# ``bad_entries``  the catalogue is one good model (demo/echo) plus entries with a list-typed
#                  ``type``, a "NaN" price, integer ``aliases``, an id with a lone surrogate
#                  (JSON-escaped), a NUL in a name, a 300-character id and a very deep
#                  ``info.name`` (deep, but within what a JSON parser reads).
# ``many=N``       N extra chat models (priced, with context lengths), after the usual ones.
# ``deep=N``       one extra entry whose ``info`` nests N levels: past a few thousand, the
#                  whole document is too deep for a JSON parser.
# ``slow_schema``  schema documents (/docs-json) are sent one byte at a time, slowly.
# ``bad_schema``   schema documents with ``required: 5``, a property with ``enum: 7``, and
#                  more values of the wrong type (a list ``type``, ``minimum: "x"``).

SLOW_SCHEMA_BYTE_SECONDS = 0.02
BAD_ENTRY_DEPTH = 5000
MAX_MANY_MODELS = 1_000_000
MAX_DEEP = 10_000_000


@dataclass(frozen=True)
class CatalogueFault:
    bad_entries: bool = False
    many: int = 0
    deep: int = 0
    slow_schema: bool = False
    bad_schema: bool = False


def parse_catalogue_fault(text: str) -> CatalogueFault:
    """Parse ``"many=1000,slow_schema"``; raise FaultSpecError on anything unknown."""
    fault = CatalogueFault()
    for item in text.split(","):
        key, has_value, value = (part.strip() for part in item.partition("="))
        if not key:
            continue
        if key in ("bad_entries", "slow_schema", "bad_schema"):
            if has_value:
                raise FaultSpecError(f"Demo fault {key!r} takes no value")
            fault = replace(fault, **{key: True})
        elif key in ("many", "deep"):
            number = _non_negative_int(key, value)
            if number > (MAX_MANY_MODELS if key == "many" else MAX_DEEP):
                raise FaultSpecError(f"Demo fault {key!r} is too large: {number}")
            fault = replace(fault, **{key: number})
        else:
            raise FaultSpecError(f"Unknown demo catalogue fault: {key}")
    return fault


def _deep(levels: int, leaf: str) -> str:
    """JSON text nesting `levels` objects deep (written out: json.dumps cannot go this deep)."""
    return '{"a":' * levels + json.dumps(leaf) + "}" * levels


def bad_catalogue_entries() -> list[str]:
    """The `bad_entries` entries, as JSON texts (so the surrogate and the depth survive)."""
    nan_price = {
        "kind": "fixed",
        "currency": "USD",
        "units": [
            {"unit": "input_tokens", "price": "NaN", "per": 1},
            {"unit": "output_tokens", "price": "NaN", "per": 1},
        ],
    }
    entries: list[dict[str, Any]] = [
        {"id": "bad/list-type", "type": ["chat-completion"], "info": {"name": "List type"}},
        {"id": "bad/nan-price", "type": "chat-completion", "pricing": nan_price},
        {"id": "bad/int-aliases", "type": "chat-completion", "aliases": 5},
        {"id": "bad/surrogate-\ud800", "type": "chat-completion"},
        {"id": "bad/nul-name", "type": "chat-completion", "info": {"name": "Nul\u0000name"}},
        {"id": "bad/" + "x" * 300, "type": "chat-completion"},
    ]
    # ensure_ascii: a lone surrogate cannot be UTF-8, only JSON-escaped.
    texts = [json.dumps(entry) for entry in entries]
    texts.append(
        '{"id": "bad/deep", "type": "chat-completion", "info": {"name": '
        + _deep(BAD_ENTRY_DEPTH, "deep")
        + "}}"
    )
    return texts


def many_models(count: int) -> list[dict[str, Any]]:
    return [
        _chat_model(
            f"many/model-{index:06d}",
            f"Many Model {index}",
            "One of very many models in a catalogue that grew too large.",
            developer=f"Many {index % 50}",
            aliases=[f"many-{index}"],
            context=128000,
            output=4096,
            docs="https://docs.aimlapi.com/",
            tags=["text"],
        )
        for index in range(count)
    ]


def faulty_catalogue_body(
    fault: CatalogueFault, *, origin: str, include: set[str], extra=()
) -> bytes:
    """The /models body with `fault` applied (the JSON is assembled as text where needed)."""
    if fault.bad_entries:
        good = [model for model in CATALOGUE if model["id"] == "demo/echo"]
        texts = [json.dumps(_enriched(m, origin, include)) for m in good]
        texts += bad_catalogue_entries()
    else:
        texts = [json.dumps(m) for m in catalogue_json("", origin=origin, include=include)["data"]]
    texts += [json.dumps(_enriched(m, origin, include)) for m in (*extra, *many_models(fault.many))]
    if fault.deep:
        texts.append(
            '{"id": "deep/model", "type": "chat-completion", "info": '
            + _deep(fault.deep, "deep")
            + "}"
        )
    return ('{"object": "list", "data": [' + ", ".join(texts) + "]}").encode()


def bad_schema_document(model_id: str) -> bytes:
    """A model's schema document with values of the wrong type where numbers and lists go."""
    document = demo_schema(model_id)
    schema = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    schema["required"] = 5
    properties = schema["properties"]
    properties["reasoning_effort"]["enum"] = 7
    properties["seed"] = {"type": ["integer", "null"], "minimum": "x", "description": 12}
    properties["top_k"] = {"type": 5, "maximum": [1]}
    properties["response_format"]["properties"] = [1, 2]
    properties["response_format"]["required"] = "type"
    return json.dumps(document).encode()


# --------------------------------------------------------------------------- HTTP handler


def _route(path: str) -> str:
    """``/v1/chat/completions`` and ``/chat/completions`` both route to the latter."""
    route = urlsplit(path).path
    if route.startswith("/v1/"):
        route = route[3:]
    return route.rstrip("/") or "/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # ---- plumbing

    @property
    def upstream(self) -> DemoUpstream:
        return self.server.upstream

    def log_message(self, format: str, *args: Any) -> None:
        if self.upstream.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _dispatch(self) -> None:
        self.extra_headers: dict[str, str] = {}  # this request's, for every answer it gets
        try:
            self._route_request()
        except DISCONNECT_ERRORS:
            # The client went away (or we reset it on purpose): nothing left to say.
            self.close_connection = True

    def _route_request(self) -> None:
        body = self._read_body()
        if body is None:
            self._send_error(400, "Body validation error! Unreadable request body.", close=True)
            return
        route = _route(self.path)
        if route in ("/models", "/chat/completions", "/docs-json"):
            self.upstream._record(self, body)
        if route == "/models" and self.command == "GET":
            self._send_models()
        elif route == "/docs-json" and self.command == "GET":
            self._send_schema()
        elif route == "/chat/completions" and self.command == "POST":
            ChatExchange(self, body).run()
        elif route == "/_demo/requests" and self.command == "GET":
            self._send_json(200, [r.as_json() for r in self.upstream.requests])
        elif route == "/_demo/reset" and self.command == "POST":
            self.upstream.clear()
            self._send_json(200, {"status": "ok"})
        elif route == "/_demo/catalogue_fault" and self.command == "POST":
            self._set_catalogue_fault(body)
        else:
            self._send_error(404)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length", "0").strip() or "0"
        if not length.isdigit():
            return None
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes | None:
        parts = []
        while True:
            size_line = self.rfile.readline().split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline().strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    # ---- responses

    def _catalogue_fault(self) -> CatalogueFault | None:
        """The catalogue fault in force; None (after a 400) when it cannot be parsed."""
        try:
            return parse_catalogue_fault(self.upstream.catalogue_fault)
        except FaultSpecError as error:
            self._send_error(400, str(error))
            return None

    def _set_catalogue_fault(self, body: bytes) -> None:
        payload = _loads(body)
        text = payload.get("fault") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            self._send_error(400, 'Body validation error! Send {"fault": "<spec>"}.')
            return
        try:
            parse_catalogue_fault(text)
        except FaultSpecError as error:
            self._send_error(400, str(error))
            return
        self.upstream.catalogue_fault = text
        self._send_json(200, {"status": "ok", "fault": text})

    def _send_models(self) -> None:
        shape = self.headers.get("X-Demo-Models-Shape", "") or self.upstream.models_shape
        if self.upstream.models_status:
            self._send_error(self.upstream.models_status)
            return
        key = self.upstream.models_api_key
        if key and self.headers.get("Authorization", "").strip() != f"Bearer {key}":
            # OpenAI's own 401 body, which LiteLLM and vLLM imitate.
            error = {
                "message": "Incorrect API key provided. You must send your API key in an "
                "Authorization header (Bearer).",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
            self._send_json(401, {"error": error})
            return
        fault = self._catalogue_fault()
        if fault is None:
            return
        query = parse_qs(urlsplit(self.path).query)
        include = {part.strip() for value in query.get("include", []) for part in value.split(",")}
        origin = f"http://{self.headers.get('Host') or self.upstream.host}"
        if self.upstream.catalogue_entries is not None:
            # Escaped (ensure_ascii): generated entries may hold lone surrogates.
            body = json.dumps({"object": "list", "data": self.upstream.catalogue_entries}).encode()
        elif fault != CatalogueFault() and shape.strip().lower() != "openai":
            body = faulty_catalogue_body(
                fault, origin=origin, include=include, extra=self.upstream.extra_models
            )
        else:
            catalogue = catalogue_json(
                shape, origin=origin, include=include, extra=self.upstream.extra_models
            )
            body = json.dumps(catalogue, ensure_ascii=False).encode()
        etag = etag_for(body)
        if etag_matches(self.headers.get("If-None-Match"), etag):
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self._send_bytes(200, body, {"ETag": etag, "Cache-Control": "no-cache"})

    def _send_schema(self) -> None:
        fault = self._catalogue_fault()
        if fault is None:
            return
        model_id = parse_qs(urlsplit(self.path).query).get("model", [""])[0]
        if model_id in self.upstream.schema_documents:
            self._send_bytes(200, json.dumps(self.upstream.schema_documents[model_id]).encode())
            return
        document = schema_document(model_id)
        if document is None:
            self._send_error(404, f"No schema for model {model_id!r}")
            return
        if fault.bad_schema:
            document = bad_schema_document(model_id)
        if fault.slow_schema:
            self._send_slowly(document)
            return
        self._send_bytes(200, document)

    def _send_slowly(self, body: bytes) -> None:
        """The whole body, one byte at a time: each read gets a byte well within any read
        timeout, so only a deadline on the whole download ends it."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for index in range(len(body)):
            if self.upstream._stopping.is_set():
                break
            self.upstream._wait(SLOW_SCHEMA_BYTE_SECONDS)
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
        self.close_connection = True

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(data, ensure_ascii=False).encode(), headers)

    def _send_bytes(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, *, close=False
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in self._common_headers(headers).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _send_error(
        self,
        status: int,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        body = json.dumps(error_json(status, urlsplit(self.path).path, message)).encode()
        self._send_bytes(status, body, headers, close=close)

    def _common_headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = {**(headers or {}), **self.extra_headers}
        client_id = self.headers.get("X-Client-Request-Id")
        if client_id:
            merged["X-Client-Request-Id"] = client_id
        return merged

    def abort_with_reset(self) -> None:
        """Drop the connection with a TCP RST instead of a FIN, like a crashed proxy."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The read file holds a reference to the socket: close both, or the fd stays open.
        self.rfile.close()
        self.connection.close()


class ChatExchange:
    """One POST /chat/completions: validation, faults, then a JSON or streamed reply."""

    def __init__(self, handler: _Handler, body: bytes) -> None:
        self.handler = handler
        self.upstream = handler.upstream
        self.payload = _loads(body)
        self.completion_id = f"chatcmpl-demo-{uuid.uuid4().hex}"
        self.inference_id = str(uuid.uuid4())
        self.created = int(time.time())
        self.events_sent = 0
        self.fault = FaultSpec()

    def run(self) -> None:
        scripted = self.upstream._take_script()
        if scripted is not None:
            self._send_script(scripted)
            return
        try:
            fault = parse_fault_spec(self._fault_text())
        except FaultSpecError as error:
            self.handler._send_error(400, str(error))
            return
        if fault.set_cookie:
            self.handler.extra_headers["Set-Cookie"] = f"demo_visitor={uuid.uuid4().hex}; Path=/"
        if fault.delay:
            self.upstream._wait(fault.delay)
        if self.handler.headers.get("Authorization", "").strip() == INVALID_KEY:
            self.handler._send_error(401)
            return
        if fault.status is not None and self.upstream._should_fail(fault):
            self._send_fault_status(fault)
            return
        if fault.redirect:
            self.handler._send_bytes(307, b"", {"Location": REDIRECT_LOCATION})
            return
        if self.payload is NOT_JSON:
            problem = "Body validation error! The request body is not valid JSON."
        else:
            problem = validate_chat_body(self.payload)
        if problem:
            self.handler._send_error(400, problem)
            return
        self.fault = fault
        streamed = self.payload.get("stream") is True
        reply = _with_fault_text(build_reply(self.payload), fault, streamed=streamed)
        if streamed:
            self._stream(reply, fault)
        else:
            self._respond(reply, fault)

    def _send_script(self, scripted: ScriptedAnswer) -> None:
        handler = self.handler
        handler.send_response(scripted.status)
        headers = dict(scripted.headers)
        if not any(name.lower() == "content-type" for name in headers):
            streamed = scripted.chunks is not None
            headers["Content-Type"] = "text/event-stream" if streamed else "application/json"
        if scripted.chunks is None:
            headers["Content-Length"] = str(len(scripted.body))
        else:
            headers["Connection"] = "close"
            handler.close_connection = True
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        for piece in (scripted.body,) if scripted.chunks is None else scripted.chunks:
            handler.wfile.write(piece)
            handler.wfile.flush()

    def _fault_text(self) -> str:
        header = self.handler.headers.get("X-Demo-Fault")
        if header is not None:
            return header
        payload = self.payload if isinstance(self.payload, dict) else {}
        if isinstance(payload.get("demo_fault"), str):
            return payload["demo_fault"]
        model = payload.get("model")
        if isinstance(model, str) and model.startswith(FAULT_MODEL_PREFIX):
            return model[len(FAULT_MODEL_PREFIX) :]
        return ""

    def _send_fault_status(self, fault: FaultSpec) -> None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        self.handler._send_error(fault.status, headers=headers)

    # ---- non-streamed

    def _reply_headers(self, reply: Reply, fault: FaultSpec) -> dict[str, str]:
        headers = {"x-inference-id": self.inference_id}
        if not fault.no_cost:
            headers["x-aimlapi-credits-used"] = str(reply.credits_used())
            # Fixed-point, as the provider writes it ("0.000098", not "9.8e-05").
            headers["x-aimlapi-usd-spent"] = f"{reply.usd_spent():.8f}".rstrip("0").rstrip(".")
        if fault.huge_cost:
            headers["x-aimlapi-usd-spent"] = "1e10"
        return headers

    def _respond(self, reply: Reply, fault: FaultSpec) -> None:
        self.upstream._wait(self.upstream.first_token_delay)
        data = completion_json(
            reply,
            self.completion_id,
            self.created,
            empty=fault.empty_choices,
            meta=not (fault.no_cost or fault.no_cost_body),
        )
        text = json.dumps(_with_fault_accounting(data, fault), ensure_ascii=False)
        if fault.deep_chunk is not None:
            text = f'{text[:-1]}, "deep": {deep_json(fault.deep_chunk)}}}'
        if fault.gzip_bomb is not None:
            self._send_gzip_bomb(text, reply, fault)
            return
        body = wire(text)
        if fault.malformed:
            body = body[: len(body) // 2]
        if fault.reset_after is not None:
            self._send_half_then_reset(body, reply, fault)
            return
        self.handler._send_bytes(200, body, self._reply_headers(reply, fault))

    def _send_gzip_bomb(self, text: str, reply: Reply, fault: FaultSpec) -> None:
        """The reply with its content replaced by `gzip_bomb` bytes, compressed as it is
        built: the demo never holds the expanded body."""
        head, _, tail = text.partition(json.dumps(reply.content, ensure_ascii=False)[1:-1])
        body = b"".join(_gzipped([wire(head), *_filler_blocks(fault.gzip_bomb), wire(tail)]))
        headers = {**self._reply_headers(reply, fault), "Content-Encoding": "gzip"}
        self.handler._send_bytes(200, body, headers)

    def _send_half_then_reset(self, body: bytes, reply: Reply, fault: FaultSpec) -> None:
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in handler._common_headers(self._reply_headers(reply, fault)).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.abort_with_reset()

    # ---- streamed

    def _stream(self, reply: Reply, fault: FaultSpec) -> None:
        self._send_stream_headers(fault)
        pace = self.upstream.chunk_delay if fault.pace is None else fault.pace
        if fault.empty_choices:
            self._stream_empty_choices(reply, pace)
            return
        if fault.gzip_bomb is not None:
            self._stream_gzip_bomb(reply, fault.gzip_bomb)
            return
        # One choice per chunk; with `n`, the choices' chunks take turns.
        for choice in reply.choices:
            self._emit(
                self._chunk(reply, [delta_choice(opening_delta(choice), index=choice.index)]), pace
            )
        if fault.endless:
            while not self.upstream._stopping.is_set():
                self._emit(self._chunk(reply, [delta_choice({"content": "and on "})]), pace)
            return
        size = self.upstream.words_per_chunk
        for piece in interleaved([reasoning_deltas(choice, size) for choice in reply.choices]):
            self._emit(self._chunk(reply, [piece]), pace)
        # The faults' "content chunks": text, refusal or tool-call argument deltas.
        contents = interleaved(
            [body_deltas(choice, size, reply.top_logprobs) for choice in reply.choices]
        )
        for sent in range(len(contents) + 1):
            if sent:
                self._emit(self._chunk(reply, [contents[sent - 1]]), pace)
            if sent == 1 and fault.malformed:
                self._write(MALFORMED_EVENT)
            if sent == 1 and fault.huge_line is not None:
                huge = delta_choice({"content": filler(fault.huge_line)})
                self._emit(self._chunk(reply, [huge]), pace)
            if sent == 1 and fault.deep_chunk is not None:
                chunk = json.dumps(self._chunk(reply, [delta_choice({"content": " "})]))
                self._write(sse(f'{chunk[:-1]}, "deep": {deep_json(fault.deep_chunk)}}}'))
            if self._interrupted(fault, sent, len(contents)):
                return
        self._finish_stream(reply, fault, pace)

    def _send_stream_headers(self, fault: FaultSpec) -> None:
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("x-inference-id", self.inference_id)
        if fault.huge_cost:
            handler.send_header("x-aimlapi-usd-spent", "1e10")
        if fault.gzip_bomb is not None:
            handler.send_header("Content-Encoding", "gzip")
        for name, value in handler._common_headers(None).items():
            handler.send_header(name, value)
        # No Content-Length and no chunked encoding: the body ends when we close.
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.flush()

    def _interrupted(self, fault: FaultSpec, sent: int, total: int) -> bool:
        """Apply the fault due after ``sent`` content chunks; True if the stream ends here."""

        def due(after: int | None) -> bool:
            return after is not None and min(after, total) == sent

        if due(fault.error_event_after):
            self._write(sse(STREAM_ERROR_EVENT))
            return True
        if due(fault.reset_after):
            # Let the chunks already written reach the client first: a RST makes the
            # client's kernel drop data it has not read yet, which would turn "reset
            # after N chunks" into "reset after 0" whenever the client is a little slow.
            self.upstream._wait(RESET_GRACE_SECONDS)
            self.handler.abort_with_reset()
            return True
        if due(fault.stall_after):
            self.upstream._wait(fault.stall)
            return True
        return fault.no_end and sent == max(1, total // 2)

    def _finish_stream(self, reply: Reply, fault: FaultSpec, pace: float) -> None:
        options = self.payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        finishes = [delta_choice({}, c.finish_reason, index=c.index) for c in reply.choices]
        for other in finishes[:-1]:
            self._emit(self._chunk(reply, [other]), pace)
        # Usage (and the cost) ride on the last choice's finish, as with a single choice.
        finish = finishes[-1:]
        meta = {} if fault.no_cost else {"meta": reply.meta()}
        if include_usage:
            self._emit(self._chunk(reply, finish, usage=reply.usage()), pace)
            self._emit(self._chunk(reply, [], usage=reply.usage(), **meta), pace)
        else:
            self._emit(self._chunk(reply, finish, usage=reply.usage(), **meta), pace)
        if not fault.no_done:
            self._write(sse("[DONE]"))

    def _stream_empty_choices(self, reply: Reply, pace: float) -> None:
        self._emit(self._chunk(reply, []), pace)
        self._emit(self._chunk(reply, [], usage=reply.usage(), meta=reply.meta()), pace)
        self._write(sse("[DONE]"))

    def _stream_gzip_bomb(self, reply: Reply, size: int) -> None:
        """Content chunks adding up to `size` bytes, gzipped as they are written."""
        block = sse(self._chunk(reply, [delta_choice({"content": filler(65536)})]))
        events = [sse(self._chunk(reply, [delta_choice({"role": "assistant", "content": ""})]))]
        events += [block] * max(1, size // 65536)
        events += [sse(self._chunk(reply, [delta_choice({}, "stop")])), sse("[DONE]")]
        for piece in _gzipped(events):
            self._write(piece)

    def _chunk(self, reply: Reply, choices: list, **extra: Any) -> dict[str, Any]:
        chunk = chunk_json(reply, self.completion_id, self.created, choices, **extra)
        return _with_fault_accounting(chunk, self.fault)

    def _emit(self, chunk: dict[str, Any], pace: float) -> None:
        """Write one chunk event, after the first-token delay or the pace between chunks."""
        self.upstream._wait(self.upstream.first_token_delay if not self.events_sent else pace)
        self.events_sent += 1
        self._write(sse(chunk))

    def _write(self, data: bytes) -> None:
        self.handler.wfile.write(data)
        self.handler.wfile.flush()


def _with_fault_text(reply: Reply, fault: FaultSpec, *, streamed: bool) -> Reply:
    """The reply with the text the fault spec asks for (in its first choice; a refusal or
    tool calls have no text, and are left as they are)."""
    first = reply.choices[0]
    if first.content is None:
        return reply
    content = first.content
    if fault.deep_text is not None:
        content = deep_json(fault.deep_text)
    if fault.slow_lexer is not None:
        content = f"```usd\n{SLOW_LEXER_INPUT * fault.slow_lexer}\n```"
    if fault.huge_body is not None and not streamed:
        content = filler(fault.huge_body)
    if fault.nul:
        content = f"Before\x00after. {content}"
    if fault.surrogate:
        content = f"Before\ud800after. {content}"
    return replace(reply, choices=(replace(first, content=content), *reply.choices[1:]))


def _with_fault_accounting(data: dict[str, Any], fault: FaultSpec) -> dict[str, Any]:
    """A reply body or chunk with the usage and cost the fault spec asks for."""
    if fault.huge_tokens and isinstance(data.get("usage"), dict):
        data = {**data, "usage": {**data["usage"], "prompt_tokens": 10**20}}
    bad_cost = "NaN" if fault.nan_cost else -5 if fault.negative_cost else None
    if bad_cost is not None and isinstance(data.get("meta"), dict):
        data = {**data, "meta": {"usage": {**data["meta"]["usage"], "usd_spent": bad_cost}}}
    return data


def _filler_blocks(size: int) -> Iterator[bytes]:
    block = filler(1 << 20).encode()
    for start in range(0, size, len(block)):
        yield block[: size - start]


def _gzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    for piece in pieces:
        if out := compressor.compress(piece):
            yield out
    yield compressor.flush()


@dataclass(frozen=True)
class ScriptedAnswer:
    """One chat answer a test wrote byte for byte (DemoUpstream.script_next)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunks: tuple[bytes, ...] | None = None


NOT_JSON = object()


def _loads(body: bytes) -> Any:
    """The decoded body, or NOT_JSON (``null`` is valid JSON, so None cannot mark failure)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # too deep for the parser is not JSON we can read
        return NOT_JSON


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # Benchmarks open hundreds of connections at once; the default backlog (5) drops them.
    request_queue_size = 1024
    upstream: DemoUpstream

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take
        # seconds offline; we only ever need the numeric address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exception(), DISCONNECT_ERRORS):
            return  # a client hanging up is normal here, not worth a traceback
        super().handle_error(request, client_address)


class DemoUpstream:
    """The fake AI/ML API. ``DemoUpstream().start()`` in tests, ``serve_forever()`` in a command.

    ``first_token_delay`` and ``chunk_delay`` (seconds) pace every stream unless a request's
    fault spec says otherwise; ``words_per_chunk`` sets how much text each chunk carries.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.0,
        words_per_chunk: int = 1,
        verbose: bool = False,
    ) -> None:
        if words_per_chunk < 1:
            raise ValueError("words_per_chunk must be at least 1")
        self.host = host
        self.first_token_delay = first_token_delay
        self.chunk_delay = chunk_delay
        self.words_per_chunk = words_per_chunk
        self.verbose = verbose
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: Counter[str] = Counter()
        self._scripts: deque[ScriptedAnswer] = deque()
        # Set on stop(): wakes every handler that is sleeping (delays, stalls) at once.
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        # Test knobs for the catalogue: its shape ("openai" for OpenAI's), an error status
        # to answer instead, and models added to it (which changes its ETag).
        self.models_shape = ""
        self.models_status: int | None = None
        self.models_api_key = ""  # when set, GET /models needs it
        self.extra_models: list[dict[str, Any]] = []
        # A hostile catalogue or schema documents (see parse_catalogue_fault); "" for none.
        self.catalogue_fault = ""
        # Generated input (tests): the catalogue's whole `data` when not None, and schema
        # documents served for these model ids instead of the usual ones.
        self.catalogue_entries: list[Any] | None = None
        self.schema_documents: dict[str, Any] = {}
        self._server = _Server((host, port), _Handler)
        self._server.upstream = self

    # ---- public API

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[RecordedRequest]:
        return [
            r for r in self.requests if r.method == "POST" and _route(r.path) == "/chat/completions"
        ]

    def clear(self) -> None:
        """Forget recorded requests, the ``fail_times`` counters and the catalogue knobs."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._scripts.clear()
        self.models_shape = ""
        self.models_status = None
        self.models_api_key = ""
        self.extra_models = []
        self.catalogue_fault = ""
        self.catalogue_entries = None
        self.schema_documents = {}

    def script_next(
        self,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        chunks: Iterable[bytes] | None = None,
    ) -> None:
        """Answer the next chat request with exactly this (see the module docstring)."""
        answer = ScriptedAnswer(
            status=status,
            headers=tuple((headers or {}).items()),
            body=body,
            chunks=None if chunks is None else tuple(chunks),
        )
        with self._lock:
            self._scripts.append(answer)

    def start(self) -> DemoUpstream:
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"demo-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() (from another thread) or an interrupt."""
        self._serving = True
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._serving:
            # Returns at once if serve_forever already ended (e.g. on KeyboardInterrupt).
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> DemoUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- used by the handler

    def _record(self, handler: _Handler, body: bytes) -> None:
        recorded = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers=dict(handler.headers.items()),
            body=body,
            received_at=time.time(),
        )
        with self._lock:
            self._requests.append(recorded)

    def _take_script(self) -> ScriptedAnswer | None:
        with self._lock:
            return self._scripts.popleft() if self._scripts else None

    def _should_fail(self, fault: FaultSpec) -> bool:
        if fault.fail_times is None:
            return True
        with self._lock:
            self._failures[fault.text] += 1
            return self._failures[fault.text] <= fault.fail_times

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)
