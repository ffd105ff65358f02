"""Small helpers shared by the tests (the fixtures live in conftest.py)."""

import asyncio
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from django.test import Client
from django.urls import reverse

from chat import limits
from chat.models import Conversation


def form_data(content: str = "Hello there", **overrides) -> dict:
    """What the chat form posts when the user only types a message."""
    data = {
        "content": content,
        "idempotency_key": uuid.uuid4().hex,
        "model": "demo/echo",
        "system_prompt": "",
        "temperature": "",
        "max_tokens": "",
        "top_p": "",
        "stop": "",
        "extra_params": "",
    }
    data.update(overrides)
    return data


def panel(model: str = "demo/echo", **overrides) -> dict:
    """The parameter panel's cleaned data, as the services take it: nothing set."""
    return {
        "model": model,
        "system_prompt": "",
        "temperature": None,
        "top_p": None,
        "max_tokens": None,
        "stop": [],
        "extra_params": {},
        **overrides,
    }


def send(client: Client, conversation: Conversation, content: str = "Hello there", **overrides):
    url = reverse("message_send", args=[conversation.public_id])
    return client.post(url, form_data(content, **overrides))


def start_with_room_in_the_minute(seconds: float = 5) -> None:
    """Wait for the next clock minute when fewer than `seconds` of this one are left.

    The call limit keeps one count per user per clock minute (chat/limits.py): a test
    whose calls straddle a minute's end would see the count start again.
    """
    left = limits.WINDOW_SECONDS - time.time() % limits.WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.05)


def sent_bodies(server) -> list[dict]:
    """The JSON bodies the demo upstream received for chat completions."""
    return [json.loads(recorded.body) for recorded in server.chat_requests()]


def headers_as_recorded(received) -> dict[str, str]:
    """The headers the demo upstream received, as the call's record must show them.

    The key is redacted, and Host is left out: the HTTP library writes it from the URL.
    """
    headers = {name: value for name, value in received.headers.items() if name != "Host"}
    return {**headers, "Authorization": "Bearer [redacted]"}


def on_event_loop(scenario):
    """Run `scenario()` (a coroutine function) on a fresh event loop in its own thread.

    Its own thread, because Playwright's sync API may keep a loop running in this one.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, scenario()).result()


class EndlessBody:
    """A request body of `size` bytes, made as it is read, that counts what was read.

    Reading past `fail_after` bytes fails the test at once (a body that should not be
    read at all is then not read for minutes).
    """

    def __init__(self, size: int, *, fail_after: int = 10 * 2**20, chunk: int = 2**16) -> None:
        self.size, self.fail_after, self.chunk = size, fail_after, chunk
        self.read_bytes = 0

    def take(self, wanted: int) -> bytes:
        wanted = min(wanted, self.size - self.read_bytes)
        self.read_bytes += wanted
        if self.read_bytes > self.fail_after:
            raise AssertionError(f"{self.read_bytes:,} bytes of the body were read")
        return b"x" * wanted

    # As a WSGI input stream.
    def read(self, size: int = -1) -> bytes:
        return self.take(self.size if size is None or size < 0 else size)

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)

    # As an ASGI receive callable.
    async def receive(self) -> dict:
        body = self.take(self.chunk)
        return {"type": "http.request", "body": body, "more_body": self.read_bytes < self.size}


def asgi_request(handler, *, path: str, headers: dict[str, str], receive) -> tuple[int, bytes]:
    """Drive an ASGI `handler` with one POST; its status and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    on_event_loop(lambda: handler(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body


def large_export(*, conversations: int, exchanges: int, body_bytes: int = 400) -> bytes:
    """An export file of `conversations` conversations of `exchanges` question-answer pairs.

    Each answer has one call with request and response bodies of about `body_bytes`.
    250 x 20 x 400 is about 10 MB, MAX_IMPORT_BYTES by default.
    """
    padding = "lorem ipsum " * (body_bytes // 12)
    documents = []
    for number in range(conversations):
        messages = []
        for turn in range(exchanges):
            question, answer = f"q{turn}", f"a{turn}"
            messages.append(
                {
                    "id": question,
                    "parent": messages[-1]["id"] if messages else None,
                    "role": "user",
                    "content": f"Question {turn} of conversation {number}: {padding[:200]}",
                }
            )
            messages.append(
                {
                    "id": answer,
                    "parent": question,
                    "role": "assistant",
                    "content": f"Answer {turn}: {padding[:300]}",
                    "calls": [
                        {
                            "request_body": json.dumps({"model": "demo/echo", "x": padding}),
                            "response_body": json.dumps({"choices": [], "x": padding}),
                            "http_status": 200,
                            "status": "succeeded",
                            "url": "http://127.0.0.1:8001/v1/chat/completions",
                            "request_headers": {"Content-Type": "application/json"},
                            "stream_events": [{"at_ms": 5, "data": '{"choices": []}'}],
                            "prompt_tokens": 10,
                            "completion_tokens": 20,
                            "usd_spent": "0.0001",
                        }
                    ],
                }
            )
        documents.append(
            {"title": f"Conversation {number}", "model": "demo/echo", "messages": messages}
        )
    envelope = {"format": "playground.conversations", "version": 1, "conversations": documents}
    return json.dumps(envelope).encode()


def png_bytes(width: int = 3, height: int = 2, *, seed: int = 0) -> bytes:
    """A real PNG, `width` by `height` grey pixels (`seed` varies the bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(
        b"\x00" + bytes([(seed + x) % 256 for x in range(width)]) for _ in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
    b"3 0 obj << /Type /Page /Parent 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)
