"""A hostile reply in one tab never freezes another user's stream in the next (issue 18).

Bob streams a normal, paced reply while Alice, in another browser context, gets a reply
the demo upstream makes hostile (a fault spec in her Extra parameters). Bob's text keeps
arriving at its pace, his reply finishes in about its normal time, and Alice's reply
ends with a visible message instead of a spinner or a 500 (the browser fixtures fail the
test on any 500 or console error).

Both are served by uvicorn running the production ASGI handler, in a thread of the test
process (so it sees the test database), as `make serve` runs it, rather than by the
live server's WSGI threads: under ASGI every stream's database work and final render
share one thread per process (chat/database_thread.py), which is where a slow render
froze everyone else's stream.
"""

import socket
import threading
import time
from collections.abc import Iterator
from itertools import pairwise

import pytest
import uvicorn
from playwright.sync_api import Page, expect

from chat.models import Message
from playground.handlers import OneHopASGIHandler

from .conftest import log_in, wait_for_streams_to_end
from .ui import (
    DEMO_MODEL,
    message_box,
    new_conversation,
    reply,
    send_button,
    set_extra_parameters,
    set_model,
)

# Bob's reply: about 50 words, one every 0.1 s, so about 5 s of steady rhythm.
PACED = '{"demo_fault": "pace=0.1"}'
NORMAL_REPLY_MS = 15_000
# The target is a pause under 1 s (bench/hostile.py measures it); a test on a busy
# machine gets twice that. A frozen worker shows pauses of many seconds.
LONGEST_GAP_MS = 2_000
HOSTILE_END_MS = 30_000

# Each fault with a reply large or slow enough to hurt, and what Alice's reply then says:
# a Markdown code fence for a slow Pygments lexer and a JSON text nested deep (the
# reply is kept and shown), one enormous stream line (cut off at the size limit).
HOSTILE_FAULTS = [
    ("slow_lexer=48000", "-" * 40),
    ("deep_text=9000", "[[[[[[[["),
    ("huge_line=20000000", "limit"),
]

# The times (ms) at which the text of the page's streaming reply changed, kept by the page.
WATCH_TEXT = """() => {
    window.textChanges = [];
    let length = -1;
    new MutationObserver(() => {
        const text = document.querySelector("li.status-pending [data-stream-content]");
        if (text !== null && text.textContent.length !== length) {
            length = text.textContent.length;
            window.textChanges.push(performance.now());
        }
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture
def asgi_server(live_server, settings) -> Iterator[str]:
    """The app under uvicorn and the production ASGI handler, in a thread; its URL.

    `live_server` gives the database every thread of the process sees (its own pages
    are not used here). WhiteNoise serves the static files from their sources, as in
    development: a fresh clone has no collected copy.
    """
    settings.WHITENOISE_USE_FINDERS = True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        OneHopASGIHandler(), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="asgi-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def pages(browser, browser_problems, asgi_server, alice, bob) -> Iterator[tuple[Page, Page]]:
    """Alice and Bob, each logged in through the login form in a browser context of
    their own, on the ASGI server."""
    opened = []
    for username in ("alice", "bob"):
        context = browser_problems.watch(browser.new_context(base_url=asgi_server))
        page = context.new_page()
        log_in(page, username, f"{username}-password-1")
        opened.append(page)
    yield opened[0], opened[1]
    for page in opened:
        page.context.close()
    wait_for_streams_to_end()


def send(page: Page, text: str, extra_parameters: str) -> None:
    new_conversation(page)
    set_model(page, DEMO_MODEL)
    set_extra_parameters(page, extra_parameters)
    message_box(page).fill(text)
    send_button(page).click()


def longest_gap_ms(page: Page) -> float:
    changes = page.evaluate("window.textChanges")
    assert len(changes) > 10, f"the reply's text changed only {len(changes)} times"
    return max(later - earlier for earlier, later in pairwise(changes))


@pytest.mark.browser
@pytest.mark.parametrize(("fault", "shown"), HOSTILE_FAULTS)
def test_it_keeps_another_users_stream_flowing_beside_a_hostile_reply(pages, fault, shown):
    alice_page, bob_page = pages
    new_conversation(bob_page)
    bob_page.evaluate(WATCH_TEXT)
    set_model(bob_page, DEMO_MODEL)
    set_extra_parameters(bob_page, PACED)
    message_box(bob_page).fill("Keep talking to me")
    send_button(bob_page).click()
    bobs_reply = reply(bob_page)
    expect(bobs_reply.locator("[data-stream-content]")).to_contain_text("Demo reply")

    send(alice_page, "Be hostile, please", f'{{"demo_fault": "{fault}"}}')

    expect(bobs_reply.locator("strong", has_text="Demo reply")).to_be_visible(
        timeout=NORMAL_REPLY_MS
    )
    assert longest_gap_ms(bob_page) < LONGEST_GAP_MS
    expect(bobs_reply.locator(".badge")).to_have_count(0)  # complete

    alices_reply = reply(alice_page)
    expect(alices_reply.get_by_text("Generating…")).to_have_count(0, timeout=HOSTILE_END_MS)
    alice_page.reload()  # the conversation page shows the reply that was kept, no 500
    alices_reply = reply(alice_page)
    expect(alices_reply).to_be_visible()
    expect(alices_reply.get_by_text("Generating…")).to_have_count(0)
    hostile = Message.objects.get(
        role=Message.Role.ASSISTANT, conversation__owner__username="alice"
    )
    assert hostile.status != Message.Status.PENDING
    expect(alices_reply).to_contain_text(shown)
    if hostile.status != Message.Status.COMPLETE:  # ended early: it says so, on the page
        expect(alices_reply.locator(".badge")).to_be_visible()
