"""Streamed replies under an ASGI server (the production setup): the same promises as WSGI.

These drive the ASGI handler production serves (playground/handlers.py), with the
request, its body and the browser hanging up delivered as ASGI messages, so the async view path, the async
upstream client and the database thread are exercised as a server runs them.
The database thread has its own connection, hence real transactions here.
"""

import asyncio
import json
import threading
import time
import urllib.parse

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import Client
from django.urls import reverse

from chat import database_thread
from chat.models import ApiCall, Message
from playground.handlers import OneHopASGIHandler
from tests.helpers import form_data, headers_as_recorded, on_event_loop

pytestmark = pytest.mark.django_db(transaction=True)

CSRF_TOKEN = "c" * 32


@pytest.fixture(autouse=True)
def close_database_thread_connection():
    """Threads that outlive a test keep a connection open: close it so the test database can go."""
    yield

    async def close_all():
        await database_thread.run(database_thread.FINISH, connections.close_all)
        await sync_to_async(connections.close_all)()  # asgiref's thread, used by the scenarios

    on_event_loop(close_all)


@pytest.fixture
def session_cookie(alice):
    client = Client()
    client.force_login(alice)
    return client.cookies["sessionid"].value


class Browser:
    """One POST to the streaming endpoint, answered by the ASGI application.

    `events` fill in as they arrive; `hang_up()` makes the next receive() say
    the client disconnected, as a server does when a browser tab closes.
    """

    def __init__(self, path: str, data: dict, session: str) -> None:
        self.body = urllib.parse.urlencode(data).encode()
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(self.body)).encode()),
                (b"cookie", f"sessionid={session}; csrftoken={CSRF_TOKEN}".encode()),
                (b"x-csrftoken", CSRF_TOKEN.encode()),
            ],
        }
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.events: list[tuple[str, dict]] = []
        self.arrived = asyncio.Event()
        self._gone = asyncio.Event()
        self._body_sent = False
        self._buffer = b""

    async def run(self) -> None:
        await OneHopASGIHandler()(self.scope, self._receive, self._send)

    def hang_up(self) -> None:
        self._gone.set()

    async def next_event(self, kind: str) -> dict:
        """Wait until an event of this kind arrives; its data."""
        while True:
            for seen, data in self.events:
                if seen == kind:
                    return data
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), timeout=10)

    async def _receive(self) -> dict:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = dict(message["headers"])
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"")
            *blocks, self._buffer = self._buffer.split(b"\n\n")
            for block in blocks:
                if block and not block.startswith(b":"):  # pings are comments
                    event, data = block.decode().split("\n", 1)
                    self.events.append(
                        (event.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
                    )
            self.arrived.set()
            if not message.get("more_body"):
                self._gone.set()  # the response is over; the server then says so


def stream(conversation, session, content="Stream to me", **overrides) -> Browser:
    path = reverse("message_stream", args=[conversation.public_id])
    return Browser(path, form_data(content, **overrides), session)


def run(browser: Browser) -> Browser:
    on_event_loop(browser.run)
    return browser


def deltas(browser: Browser) -> str:
    return "".join(data["content"] for kind, data in browser.events if kind == "delta")


def test_it_streams_deltas_then_the_message_as_a_reload_shows_it(
    conversation, session_cookie, upstream
):
    browser = run(stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.01"}'))

    assert browser.status == 200
    assert browser.headers[b"Content-Type"] == b"text/event-stream"
    assert browser.headers[b"X-Accel-Buffering"] == b"no"
    kinds = [kind for kind, _ in browser.events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("delta") > 3  # relayed as it arrives, not at the end
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.COMPLETE
    assert deltas(browser) == reply.content
    assert "<strong>Demo reply</strong>" in browser.events[-1][1]["html"]
    assert json.loads(upstream.chat_requests()[0].body)["stream"] is True


def test_it_records_the_stream_for_the_inspector(conversation, session_cookie, upstream):
    run(stream(conversation, session_cookie, extra_params='{"enable_thinking": true}'))

    call = ApiCall.objects.get()
    reply = Message.objects.get(role="assistant")
    assert call.status == ApiCall.Status.SUCCEEDED
    assert call.stream_events[-1]["data"] == "[DONE]"
    assert call.assembled_response["choices"][0]["message"]["content"] == reply.content
    assert reply.reasoning
    assert call.first_token_ms is not None and call.latency_ms >= call.first_token_ms
    assert call.completion_tokens and call.usd_spent is not None
    assert call.request_body.encode() == upstream.chat_requests()[0].body
    assert call.request_headers["Authorization"] == "Bearer [redacted]"


def test_the_recorded_headers_are_the_ones_the_upstream_received(
    conversation, session_cookie, upstream
):
    """A cookie an upstream sets is not sent back with the next stream, which may be
    another user's: the record would not show it."""
    first = stream(conversation, session_cookie, extra_params='{"demo_fault": "set_cookie"}')

    async def two_streams():  # on one event loop, so through one upstream client, as a worker
        await first.run()
        await stream(conversation, session_cookie, "Again").run()

    on_event_loop(two_streams)

    first_received, second_received = upstream.chat_requests()
    calls = ApiCall.objects.order_by("created")
    assert "demo_visitor=" in calls[0].response_headers["Set-Cookie"]
    assert [call.request_headers for call in calls] == [
        headers_as_recorded(first_received),
        headers_as_recorded(second_received),
    ]
    assert "Cookie" not in second_received.headers


@pytest.mark.parametrize(
    ("fault", "error_kind"),
    [
        ("reset_after=3", "broken"),
        ("stall_after=3,stall=5", "timeout"),
        ("error_event_after=3", "stream_error"),
        ("malformed", "bad_json"),
        ("no_end", "broken"),
    ],
)
def test_a_broken_stream_keeps_the_partial_text_marked_interrupted(
    conversation, session_cookie, settings, fault, error_kind
):
    settings.UPSTREAM_READ_TIMEOUT = 1.5
    browser = run(
        stream(conversation, session_cookie, extra_params=json.dumps({"demo_fault": fault}))
    )

    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.INTERRUPTED
    assert reply.content and reply.content == deltas(browser)
    assert ApiCall.objects.get().error_kind == error_kind
    assert browser.events[-1][1]["status"] == "interrupted"
    assert ">Retry</button>" in browser.events[-1][1]["html"]


def test_it_retries_before_the_stream_opens(conversation, session_cookie):
    run(
        stream(
            conversation, session_cookie, extra_params='{"demo_fault": "status=503,fail_times=1"}'
        )
    )

    assert Message.objects.get(role="assistant").status == Message.Status.COMPLETE
    assert [call.http_status for call in ApiCall.objects.order_by("attempt")] == [503, 200]


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        ("status=400", "Body validation error!"),
        ("redirect", "The upstream answered 307 (Temporary Redirect)"),  # and not followed
    ],
)
def test_a_stream_that_cannot_open_ends_in_a_visible_error(
    conversation, session_cookie, upstream, fault, shown
):
    browser = run(
        stream(conversation, session_cookie, extra_params=json.dumps({"demo_fault": fault}))
    )

    assert Message.objects.get(role="assistant").status == Message.Status.FAILED
    assert shown in browser.events[-1][1]["html"]
    assert [r.method for r in upstream.requests].count("POST") == 1


def stop_once(browser: Browser, client, conversation, after: str) -> dict[str, float]:
    """Run `browser`, press Stop once an `after` event arrives; when each thing happened."""
    timings = {}

    async def scenario():
        began = time.monotonic()
        task = asyncio.create_task(browser.run())
        reply_id = (await browser.next_event("start"))["reply_id"]
        timings["start"] = time.monotonic() - began
        await browser.next_event(after)
        stop_url = reverse("reply_stop", args=[conversation.public_id, reply_id])
        assert (await sync_to_async(client.post)(stop_url)).status_code == 204
        timings["asked"] = time.monotonic()
        await task
        timings["ended"] = time.monotonic()

    on_event_loop(scenario)
    return timings


def test_stop_ends_the_stream_within_a_second_and_keeps_the_text(
    alice_client, conversation, session_cookie
):
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.1"}')

    timings = stop_once(browser, alice_client, conversation, after="delta")

    assert timings["ended"] - timings["asked"] < 1.0
    assert browser.events[-1][1]["status"] == "stopped"
    reply = Message.objects.get(role="assistant")
    call = ApiCall.objects.get()
    assert reply.status == Message.Status.STOPPED and reply.content
    assert call.finish_reason == "" and call.error_kind == "stopped"


def test_deleting_the_conversation_mid_stream_hangs_up_and_keeps_nothing(
    alice_client, conversation, session_cookie
):
    """Deleted in another tab, say: the stream ends within a second, saying why, and no
    row of it comes back."""
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.1"}')
    timings = {}

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("delta")
        delete_url = reverse("conversation_delete", args=[conversation.public_id])
        assert (await sync_to_async(alice_client.post)(delete_url)).status_code == 302
        timings["deleted"] = time.monotonic()
        await task
        timings["ended"] = time.monotonic()

    on_event_loop(scenario)

    assert timings["ended"] - timings["deleted"] < 1.0
    kind, data = browser.events[-1]
    assert kind == "gone" and "was deleted" in data["message"]
    assert not Message.objects.exists() and not ApiCall.objects.exists()


def test_a_conversation_deleted_just_before_a_retry_gets_no_new_call(
    alice_client, conversation, session_cookie, upstream
):
    fault = '{"demo_fault": "delay=0.7,status=503,retry_after=0,fail_times=1"}'
    browser = stream(conversation, session_cookie, extra_params=fault)

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("start")
        await asyncio.sleep(0.55)  # after the wait's first Stop check, before the 503 at 0.7 s
        delete_url = reverse("conversation_delete", args=[conversation.public_id])
        await sync_to_async(alice_client.post)(delete_url)
        await task

    on_event_loop(scenario)

    assert browser.events[-1][0] == "gone"
    assert len(upstream.chat_requests()) == 1  # the retry never went out
    assert not Message.objects.exists() and not ApiCall.objects.exists()


def test_a_closed_browser_leaves_the_partial_text_marked_interrupted(conversation, session_cookie):
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.1"}')

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("delta")
        browser.hang_up()
        await task

    on_event_loop(scenario)

    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.INTERRUPTED and reply.content
    assert ApiCall.objects.get().error_kind == "client_gone"
    assert "done" not in [kind for kind, _ in browser.events]


def test_stop_works_while_the_upstream_has_not_answered(alice_client, conversation, session_cookie):
    # A slow first byte (a queue, a cold model): 5 s before even the status line.
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "delay=5"}')

    timings = stop_once(browser, alice_client, conversation, after="start")

    assert timings["start"] < 1.0  # the new messages and Stop show at once
    assert timings["ended"] - timings["asked"] < 1.0
    assert browser.events[-1][0] == "done" and browser.events[-1][1]["status"] == "stopped"
    reply = Message.objects.get(role="assistant")
    call = ApiCall.objects.get()
    assert reply.status == Message.Status.STOPPED and reply.content == ""
    assert call.status == ApiCall.Status.FAILED and call.error_kind == "stopped"
    assert "Stopped by the user before the model answered." in browser.events[-1][1]["html"]


def test_stop_works_while_waiting_to_retry(alice_client, conversation, session_cookie, settings):
    settings.UPSTREAM_RETRY_MAX_WAIT = 30
    fault = '{"demo_fault": "status=503,retry_after=30"}'  # "try again in 30 s"
    browser = stream(conversation, session_cookie, extra_params=fault)

    timings = stop_once(browser, alice_client, conversation, after="start")

    assert timings["ended"] - timings["asked"] < 1.0
    assert Message.objects.get(role="assistant").status == Message.Status.STOPPED
    call = ApiCall.objects.get()  # no second attempt
    assert call.http_status == 503 and call.error_kind == "http"


def test_a_browser_closed_before_the_upstream_answered_leaves_the_reply_interrupted(
    conversation, session_cookie
):
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "delay=5"}')
    timings = {}

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("start")
        browser.hang_up()
        hung_up = time.monotonic()
        await task
        timings["ended"] = time.monotonic() - hung_up

    on_event_loop(scenario)

    assert timings["ended"] < 1.0
    assert Message.objects.get(role="assistant").status == Message.Status.INTERRUPTED
    call = ApiCall.objects.get()
    assert call.status == ApiCall.Status.FAILED and call.error_kind == "client_gone"


def test_the_partial_text_is_saved_while_streaming(conversation, session_cookie):
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.1"}')
    seen = {}

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("delta")
        await asyncio.sleep(1.6)
        seen["reply"] = await sync_to_async(Message.objects.get)(role="assistant")
        seen["deltas"] = len(browser.events)
        browser.hang_up()
        await task

    on_event_loop(scenario)

    assert seen["reply"].status == Message.Status.PENDING
    assert seen["reply"].content
    assert seen["deltas"] > 3  # the text above was saved while more kept arriving


def test_tokens_keep_arriving_while_the_database_thread_is_busy(conversation, session_cookie):
    """Under load the database thread has a queue: a due save must not pause the relay."""
    browser = stream(conversation, session_cookie, extra_params='{"demo_fault": "pace=0.05"}')
    release, counts = threading.Event(), []

    async def scenario():
        task = asyncio.create_task(browser.run())
        await browser.next_event("delta")
        busy = asyncio.create_task(database_thread.run(database_thread.START, release.wait, 5))
        for _ in range(2):  # a save and a Stop check fall due in the first second
            await asyncio.sleep(0.8)
            counts.append(len(browser.events))
        release.set()
        await busy
        await task

    on_event_loop(scenario)

    assert counts[1] > counts[0] + 5  # about 16 more at one word per 0.05 s
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.COMPLETE and reply.content == deltas(browser)


def test_one_submit_starts_one_stream(conversation, session_cookie, upstream):
    data = form_data("only once")
    path = reverse("message_stream", args=[conversation.public_id])

    run(Browser(path, data, session_cookie))
    second = run(Browser(path, data, session_cookie))

    assert second.status == 409
    assert len(upstream.chat_requests()) == 1
