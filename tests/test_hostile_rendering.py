"""Rendering hostile model output and stored records: never a huge page, never a frozen worker.

Deep JSON is shown exactly, with no formatted view, not re-indented with the square
of its depth;
code is highlighted only within a size and time budget; the final render of a
streamed reply runs off the database thread every stream waits on; and a
reply's HTML is cached, so a public share page does not render it per view.
"""

import asyncio
import itertools
import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from chat import markdown
from chat.models import ApiCall, Message, Share
from tests.helpers import form_data, on_event_loop, send
from tests.test_streaming_asgi import (
    Browser,
    close_database_thread_connection,
    deltas,
    session_cookie,
)

__all__ = ["close_database_thread_connection", "session_cookie"]  # fixtures used below

DEPTH = 9_000
DEEP_JSON = "[" * DEPTH + "]" * DEPTH  # 18 KB; indented, about 162 MB
USD_FENCE = "```usd\n" + "-" * 48_000 + "\n```"  # about a minute for Pygments' usd lexer


def share_it(client: Client, conversation) -> Share:
    response = client.post(
        reverse("share_create", args=[conversation.public_id]),
        {"expires_in": "", "show_inspector": "on"},
    )
    assert response.status_code == 302
    return Share.objects.filter(conversation=conversation).latest("created")


@pytest.fixture
def deep_call(alice_client, conversation) -> ApiCall:
    """A reply whose call holds 9,000-deep JSON as its request and response (as an
    imported call, or a hostile upstream's reply, would)."""
    send(alice_client, conversation, "Hello")
    call = ApiCall.objects.get()
    ApiCall.objects.filter(pk=call.pk).update(request_body=DEEP_JSON, response_body=DEEP_JSON)
    return call


def get_timed(client: Client, url: str):
    start = time.perf_counter()
    response = client.get(url)
    return response, time.perf_counter() - start


def assert_shown_exactly(response, seconds: float) -> None:
    page = response.content.decode()
    assert response.status_code == 200
    assert seconds < 2, f"{seconds:.1f} s"
    assert len(response.content) < 300_000, f"{len(response.content):,} bytes"
    assert DEEP_JSON in page  # the exact text
    assert "No formatted view: too deep to format" in page


@pytest.mark.django_db
def test_the_share_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, conversation, deep_call
):
    share = share_it(alice_client, conversation)

    response, seconds = get_timed(Client(), share.get_absolute_url())

    assert_shown_exactly(response, seconds)


@pytest.mark.django_db
def test_the_conversation_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, conversation, deep_call
):
    response, seconds = get_timed(alice_client, conversation.get_absolute_url())

    assert_shown_exactly(response, seconds)


@pytest.mark.django_db
def test_the_call_page_of_a_call_holding_deep_json_is_small_quick_and_exact(
    alice_client, deep_call
):
    response, seconds = get_timed(alice_client, reverse("call_detail", args=[deep_call.public_id]))

    assert_shown_exactly(response, seconds)
    download = alice_client.get(reverse("call_download", args=[deep_call.public_id, "response"]))
    assert download.content.decode() == DEEP_JSON  # and downloadable as it is


@pytest.mark.django_db
def test_a_streamed_call_whose_assembled_response_is_deep_shows_it_unindented(
    alice_client, conversation
):
    """Stored as JSON, so as deep as the database takes (SQLite: under 1,000 levels)."""
    send(alice_client, conversation, "Hello")
    deep = "[" * 900 + "]" * 900  # indented, 1.6 MB
    ApiCall.objects.update(assembled_response=json.loads(deep), stream_events=[])

    response = alice_client.get(conversation.get_absolute_url())

    page = response.content.decode()
    assert response.status_code == 200
    assert len(response.content) < 300_000, f"{len(response.content):,} bytes"
    assert deep in page
    assert "Shown unindented: too deep to format" in page


@pytest.mark.django_db
def test_json_a_little_too_large_to_format_is_shown_only_exactly(
    alice_client, conversation, settings
):
    settings.MAX_FORMAT_CHARS = 1_000
    send(alice_client, conversation, "Hello")
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 2_000}]})
    ApiCall.objects.update(request_body=body)

    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert "No formatted view: too large to format" in page
    assert page.count(body.replace('"', "&quot;")) == 1


def test_a_48_kb_usd_fence_renders_within_a_second():
    start = time.perf_counter()
    html = markdown.render_markdown(USD_FENCE)
    seconds = time.perf_counter() - start

    assert seconds < 1, f"{seconds:.1f} s"
    assert "-" * 48_000 in html  # shown, as plain code


def test_code_in_a_language_off_the_allowlist_is_shown_plain(settings):
    settings.HIGHLIGHT_LANGUAGES = ["json"]

    html = markdown.render_markdown("```python\ndef f(): pass\n```\n\n```json\n[1]\n```")

    assert '<code class="language-python">def f(): pass' in html
    assert '<span class="p">[</span>' in html


def test_the_default_allowlist_takes_aliases_and_refuses_lexers_that_stall():
    """ini's lexer spends 20 s on one token of 64 KB chosen for it (bench/highlight_lexers.py)."""
    html = markdown.render_markdown("```py\nx = 1\n```\n\n```ini\n[section]\n```")

    assert '<span class="n">x</span>' in html
    assert '<code class="language-ini">[section]' in html


def test_highlighting_stops_at_the_time_budget_and_the_code_stays(settings):
    settings.HIGHLIGHT_TIME_BUDGET = 0.05
    settings.HIGHLIGHT_LANGUAGES = ["python"]
    slow = "\n \n" * 6_000  # Pygments' Python lexer is quadratic on lines of blanks

    start = time.perf_counter()
    html = markdown.render_markdown(f"```python\nx = 1{slow}\n```")

    assert time.perf_counter() - start < 1
    assert '<code class="language-python">x = 1' in html  # not highlighted


def test_a_block_over_the_highlight_size_is_shown_plain(settings):
    settings.MAX_HIGHLIGHT_CHARS = 100

    html = markdown.render_markdown("```python\n" + "x = 1\n" * 50 + "```")

    assert '<code class="language-python">x = 1\n' in html


def test_markdown_over_the_size_limit_is_shown_as_received(settings):
    settings.MAX_MARKDOWN_CHARS = 1_000
    text = "**not bold** <b>" + "x" * 1_000

    html = markdown.render_markdown(text)

    assert "Shown as received: too large to format" in html
    assert "**not bold** &lt;b&gt;" + "x" * 1_000 in html
    assert "<strong>" not in html


def test_markdown_nested_past_what_the_parser_renders_is_shown_as_received():
    """markdown-it drops what is nested deeper than its limit: show the text instead."""
    text = ">" * 30 + " hidden words"

    html = markdown.render_markdown(text)

    assert "hidden words" in html
    assert "Shown as received: too deep to format" in html


@pytest.mark.django_db
def test_repeated_views_of_a_shared_24_kb_reply_render_it_once(alice_client, conversation):
    send(alice_client, conversation, "Hello")
    code = "```python\n" + "def f(x):\n    return [i * 2 for i in range(x)]\n" * 520 + "```"
    assert len(code) > 24_000
    Message.objects.filter(role=Message.Role.ASSISTANT).update(content=code)
    share = share_it(alice_client, conversation)
    Client().get(share.get_absolute_url())
    before = markdown.cache_info()

    response = Client().get(share.get_absolute_url())

    after = markdown.cache_info()
    assert response.status_code == 200
    assert '<span class="k">def</span>' in response.content.decode()
    assert after.misses == before.misses  # nothing rendered again
    assert after.hits > before.hits


def test_the_render_cache_is_bounded_by_size(settings):
    settings.MARKDOWN_CACHE_BYTES = 100_000
    for n in range(20):
        markdown.render_markdown(f"reply {n} " + "word " * 2_000)  # about 10 KB each

    assert markdown.cache_info().bytes <= 100_000


# --- Streams: the final render does not hold up other streams --------------------


def longest_gap(times: list[float]) -> float:
    return max(later - earlier for earlier, later in itertools.pairwise(times))


class TimedBrowser(Browser):
    """A Browser that notes when each part of the response arrived."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []

    async def run(self) -> None:
        self.times.append(time.perf_counter())  # the request goes out
        await super().run()

    async def _send(self, message: dict) -> None:
        self.times.append(time.perf_counter())
        await super()._send(message)


def timed_stream(conversation, session, fault: str, content: str) -> TimedBrowser:
    path = reverse("message_stream", args=[conversation.public_id])
    extra = json.dumps({"demo_fault": fault})
    return TimedBrowser(path, form_data(content, extra_params=extra), session)


def other_stream_while_one_renders(conversation, session, slow_fault: str):
    """Stream a reply that is slow to render; once its text is in, stream another
    reply and return both browsers when they are done."""
    slow = timed_stream(conversation, session, slow_fault, "Slow")
    other = timed_stream(conversation, session, "pace=0.02", "Other")

    async def scenario():
        slow_task = asyncio.create_task(slow.run())
        while not deltas(slow).rstrip().endswith("```"):
            await slow.next_event("delta")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the slow reply's text is all in: its end is rendering
        await other.run()
        await asyncio.wait_for(slow_task, timeout=120)

    on_event_loop(scenario)
    return slow, other


@pytest.mark.django_db(transaction=True)
def test_a_reply_slow_to_highlight_does_not_hold_another_stream(conversation, session_cookie):
    slow, other = other_stream_while_one_renders(conversation, session_cookie, "slow_lexer=48000")

    assert [kind for kind, _ in other.events][-1] == "done"
    assert longest_gap(other.times) < 1, f"{longest_gap(other.times):.1f} s"
    assert "-" * 48_000 in slow.events[-1][1]["html"]


@pytest.mark.django_db(transaction=True)
def test_a_reply_slow_to_render_is_rendered_off_the_database_thread(
    conversation, session_cookie, settings
):
    """Even a render the budget allows to be slow does not hold the other stream."""
    settings.HIGHLIGHT_LANGUAGES = ["usd"]
    settings.HIGHLIGHT_TIME_BUDGET = 60
    slow, other = other_stream_while_one_renders(conversation, session_cookie, "slow_lexer=9000")

    assert [kind for kind, _ in other.events][-1] == "done"
    assert longest_gap(other.times) < 1, f"{longest_gap(other.times):.1f} s"
    assert '<span class="' in slow.events[-1][1]["html"]  # it was highlighted, slowly
