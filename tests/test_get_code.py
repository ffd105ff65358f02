"""Get code: each snippet, run for real against the demo upstream, sends exactly the stored
request body (the OpenAI SDK: the same JSON) and prints the reply's text."""

import base64
import inspect
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chat.client import encode_body
from chat.demo_upstream import build_reply
from chat.models import ApiCall, Conversation, Share
from chat.snippets import KEY_PLACEHOLDER, OPENAI_CREATE_PARAMETERS, all_snippets
from tests.conftest import TEST_API_KEY
from tests.helpers import form_data, send

pytestmark = pytest.mark.django_db

SDK = "OpenAI SDK (Python)"
LANGUAGES = ("Python", "JavaScript", SDK, "cURL")
COMMANDS = {
    "Python": [sys.executable, "-"],
    "JavaScript": ["node", "--input-type=module", "-"],
    SDK: [sys.executable, "-"],
    "cURL": ["bash"],
}
MISSING = {
    "JavaScript": pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed"),
    "cURL": pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed"),
}
EACH_LANGUAGE = [pytest.param(language, marks=MISSING.get(language, ())) for language in LANGUAGES]
MESSAGE = "Hello, ünïcode ✓ and 'quotes' \"too\"\n$HOME `x` \\ END of it"


@dataclass(frozen=True)
class Stored:
    """A stored request body as Get code is given it, and what was sent."""

    body: str
    splices: tuple[tuple[int, str], ...] = ()
    files: tuple[tuple[str, bytes], ...] = ()

    @property
    def sent(self) -> bytes:
        """The stored body with each file's base64 put back: the bytes the app sent."""
        contents = dict(self.files)
        text, start = "", 0
        for offset, name in sorted(self.splices):
            text += self.body[start:offset] + base64.b64encode(contents[name]).decode()
            start = offset
        return (text + self.body[start:]).encode()

    @property
    def streamed(self) -> bool:
        return json.loads(self.sent).get("stream") is True

    @property
    def reply(self) -> str:
        """The demo's reply text for this body (the same streamed or not)."""
        return build_reply(json.loads(self.sent)).content

    def snippet(self, language: str) -> str:
        return all_snippets(body=self.body, splices=self.splices)[language]


def png(width: int, height: int) -> bytes:
    """A tiny grey PNG."""

    def block(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + block(b"IHDR", header)
        + block(b"IDAT", zlib.compress(rows))
        + block(b"IEND", b"")
    )


def with_attachments(body: str) -> Stored:
    """`body` with two images in its last message, their base64 cut out as stored."""
    files = (("cat.png", png(1, 1)), ("dot.png", png(2, 3)))
    payload = json.loads(body)
    text = payload["messages"][-1]["content"]
    payload["messages"][-1]["content"] = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,CAT"}},
        {"type": "text", "text": "and"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,DOT"}},
    ]
    full = encode_body(payload).decode()
    cat, dot = full.index("CAT"), full.index("DOT")
    stored = full.replace("CAT", "").replace("DOT", "")
    # Given out of order: the snippets put them in order.
    return Stored(stored, splices=((dot - 3, "dot.png"), (cat, "cat.png")), files=files)


def app_call(client: Client, conversation: Conversation, *, streamed: bool) -> ApiCall:
    """A call the app made, streamed (as with JavaScript on) or not."""
    overrides = {"temperature": "1", "stop": "END", "extra_params": '{"top_k": 40}'}
    if streamed:
        url = reverse("message_stream", args=[conversation.public_id])
        response = client.post(url, form_data(MESSAGE, **overrides))
        b"".join(response.streaming_content)
    else:
        send(client, conversation, MESSAGE, **overrides)
    return ApiCall.objects.get()


def run(
    language: str, source: str, cwd, stored: Stored | None = None
) -> subprocess.CompletedProcess:
    for name, content in stored.files if stored else ():
        (cwd / name).write_bytes(content)
    return subprocess.run(
        COMMANDS[language],
        input=source,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=cwd,
    )


def printed_text(language: str, stdout: str, *, streamed: bool) -> str:
    """The reply's text in what a snippet printed: the text as it came, or the response."""
    if language == "cURL" and streamed:
        events = [line.removeprefix("data: ") for line in stdout.splitlines() if line]
        chunks = [json.loads(event) for event in events if event != "[DONE]"]
        return "".join(
            choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
        )
    if streamed or language == SDK:
        assert stdout.endswith("\n")
        return stdout.removesuffix("\n")
    return json.loads(stdout)["choices"][0]["message"]["content"]


def the_body_received(upstream) -> bytes:
    (received,) = upstream.chat_requests()
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["authorization"] == f"Bearer {KEY_PLACEHOLDER}"
    return received.body


def assert_it_sent_and_printed(upstream, language: str, stored: Stored, result) -> None:
    assert result.returncode == 0, result.stderr
    assert printed_text(language, result.stdout, streamed=stored.streamed) == stored.reply
    received = the_body_received(upstream)
    if language == SDK:
        assert json.loads(received) == json.loads(stored.sent)
    else:
        assert received == stored.sent


@pytest.mark.parametrize("language", EACH_LANGUAGE)
@pytest.mark.parametrize("streamed", [False, True], ids=["not-streamed", "streamed"])
@pytest.mark.parametrize("attachments", ["none", "laid-out", "quoted"])
def test_each_snippet_sends_the_stored_body_and_prints_the_reply(
    alice_client, conversation, upstream, settings, tmp_path, language, streamed, attachments
):
    call = app_call(alice_client, conversation, streamed=streamed)
    upstream.clear()
    stored = (
        Stored(call.request_body) if attachments == "none" else with_attachments(call.request_body)
    )
    if attachments == "quoted":
        settings.MAX_FORMAT_CHARS = 100  # too large to lay out as code: quoted as it is
    source = stored.snippet(language)
    assert stored.streamed == streamed
    # (JavaScript writes the temperature's 1.0 as 1, so it sends this body as a string.)
    laid_out = {"Python": "payload = {", SDK: "messages=["}
    if language in laid_out:
        assert (laid_out[language] in source) == (attachments != "quoted")
    if attachments != "none":
        assert "cat.png" in source and "dot.png" in source
        assert base64.b64encode(png(1, 1)).decode() not in source

    result = run(language, source, tmp_path, stored)

    assert_it_sent_and_printed(upstream, language, stored, result)
    if attachments == "none":
        assert stored.reply == call.message.content


@pytest.mark.skipif(not shutil.which("node"), reason="Node.js is not installed")
@pytest.mark.parametrize("streamed", [False, True], ids=["not-streamed", "streamed"])
def test_the_javascript_snippet_lays_out_a_body_with_attachments(upstream, tmp_path, streamed):
    payload = {"model": "demo/echo", "messages": [{"role": "user", "content": "Look"}]}
    stored = with_attachments(encode_body(payload | {"stream": streamed}).decode())
    source = stored.snippet("JavaScript")
    assert "const payload = {" in source
    assert '"url": "data:image/png;base64," + b64("cat.png")' in source

    assert_it_sent_and_printed(
        upstream, "JavaScript", stored, run("JavaScript", source, tmp_path, stored)
    )


def test_the_demo_reply_is_the_one_the_app_stored(alice_client, conversation):
    call = app_call(alice_client, conversation, streamed=True)

    assert Stored(call.request_body).reply == call.message.content


@pytest.mark.parametrize("language", EACH_LANGUAGE)
def test_a_non_canonical_body_is_sent_verbatim(upstream, tmp_path, language):
    stored = Stored(
        '{ "model": "demo/echo",  "messages": [{"role": "user", "content": "spaced"}] }'
    )

    assert_it_sent_and_printed(
        upstream, language, stored, run(language, stored.snippet(language), tmp_path)
    )


@pytest.mark.parametrize("language", EACH_LANGUAGE)
def test_values_javascript_would_write_differently_are_sent_exactly(upstream, tmp_path, language):
    # 1e-05 and 1e+16 are written without an exponent by JavaScript, 2**64 loses digits
    # there, a "__proto__" key is a literal's prototype and a "1" key goes first.
    stored = Stored(
        encode_body(
            {
                "model": "demo/echo",
                "messages": [{"role": "user", "content": "Odd \u2028 values \u0007 \u00e9"}],
                "small": 0.00001,
                "large": 1e16,
                "whole": 2.0,
                "long": 2**64,
                "object": {"b": 1, "1": 2},
                "__proto__": {"polluted": True},
            }
        ).decode()
    )

    assert_it_sent_and_printed(
        upstream, language, stored, run(language, stored.snippet(language), tmp_path)
    )


@pytest.mark.parametrize("language", ["Python", "JavaScript", "cURL"])
def test_a_body_with_nan_is_sent_as_it_is(upstream, tmp_path, language):
    stored = Stored(
        '{"model":"demo/echo","messages":[{"role":"user","content":"hi"}],"seed":NaN,"x":1e999}'
    )

    result = run(language, stored.snippet(language), tmp_path)

    assert result.returncode == 0, result.stderr
    assert the_body_received(upstream) == stored.sent


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_the_curl_snippet_sends_a_body_too_long_for_one_argument(upstream, tmp_path):
    stored = Stored(
        encode_body(
            {"model": "demo/echo", "messages": [{"role": "user", "content": "long " * 40_000}]}
        ).decode()
    )
    source = stored.snippet("cURL")
    assert "@body.json" in source

    assert_it_sent_and_printed(upstream, "cURL", stored, run("cURL", source, tmp_path))


STREAMED = encode_body(
    {"model": "demo/echo", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
).decode()
STREAMING_LANGUAGES = [language for language in EACH_LANGUAGE if language.values[0] != "cURL"]


def crlf_event(content: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": content}}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\r\n\r\n".encode()


@pytest.mark.parametrize("language", STREAMING_LANGUAGES)
def test_a_streamed_snippet_reads_crlf_events_that_end_without_done(upstream, tmp_path, language):
    first, second, third = crlf_event("Grüße, "), crlf_event("wörld"), crlf_event(" ✓")
    split_in_a_character = second.index("ö".encode()) + 1
    upstream.script_next(
        chunks=[
            b": keep-alive\r\n\r\n",
            first[:-1],  # the blank line's \r\n cut in two
            first[-1:] + second[:split_in_a_character],
            second[split_in_a_character:],
            third,  # then the connection closes: no [DONE]
        ]
    )

    result = run(language, Stored(STREAMED).snippet(language), tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "Grüße, wörld ✓\n"


@pytest.mark.parametrize("language", STREAMING_LANGUAGES)
def test_a_streamed_snippet_fails_on_an_error_event(upstream, tmp_path, language):
    body = json.loads(STREAMED) | {"demo_fault": "error_event_after=2"}

    result = run(language, Stored(encode_body(body).decode()).snippet(language), tmp_path)

    assert result.returncode != 0
    assert "Upstream model overloaded" in result.stderr


@pytest.mark.parametrize("language", STREAMING_LANGUAGES)
def test_a_streamed_snippet_prints_the_text_as_it_arrives(upstream, tmp_path, language):
    body = json.loads(STREAMED) | {"demo_fault": "pace=0.05"}
    snippet = Stored(encode_body(body).decode()).snippet(language)
    process = subprocess.Popen(
        COMMANDS[language], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp_path
    )
    process.stdin.write(snippet.encode())
    process.stdin.close()
    try:
        first = os.read(process.stdout.fileno(), 100)
        printed_at = time.monotonic()
        rest = process.stdout.read()
        ended_at = time.monotonic()
    finally:
        process.kill()
        process.wait()

    assert first and (first + rest).startswith(b"**Demo reply**")
    assert ended_at - printed_at > 1  # the rest came over the next seconds, chunk by chunk


def test_the_sdk_parameters_are_those_of_the_installed_sdk():
    import openai  # a test-only dependency: the app never imports it

    create = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9").chat.completions.create
    not_body_keys = {"extra_headers", "extra_query", "extra_body", "timeout"}
    body_keys = set(inspect.signature(create).parameters) - not_body_keys

    assert body_keys == OPENAI_CREATE_PARAMETERS


def test_the_sdk_snippet_explains_a_body_it_cannot_send():
    for body in ('["not", "an object"]', '{"model": "demo/echo"}', "not json"):
        snippet = all_snippets(body=body)[SDK]

        assert snippet.startswith("# The OpenAI SDK sends only a JSON object")
        compile(snippet, "snippet", "exec")


def test_attachment_file_names_are_bare_names():
    body = '{"model":"demo/echo","messages":[{"role":"user","content":"data:,"}]}'
    offset = body.index("data:,") + len("data:,")
    splices = [(offset, "../../.ssh/id_rsa"), (offset, "$(touch pwned)'.png"), (offset, "..")]

    for language, snippet in all_snippets(body=body, splices=splices).items():
        assert "id_rsa" in snippet and "attachment-3" in snippet, language
        assert ".ssh" not in snippet and "$(" not in snippet and "'.png" not in snippet


def test_a_splice_outside_the_body_is_refused():
    with pytest.raises(ValueError, match="outside the request body"):
        all_snippets(body="{}", splices=[(3, "cat.png")])


def test_the_call_page_shows_the_four_snippets_without_the_key(alice_client, conversation):
    call = app_call(alice_client, conversation, streamed=False)
    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()

    summaries = [f"<summary>{language}</summary>" for language in LANGUAGES]
    assert all(summary in page for summary in summaries)
    assert [page.index(summary) for summary in summaries] == sorted(
        page.index(summary) for summary in summaries
    )
    assert "&lt;YOUR_API_KEY&gt;" in page
    assert TEST_API_KEY not in page


def test_downloads_are_the_exact_bodies(alice_client, conversation):
    call = app_call(alice_client, conversation, streamed=False)
    request = alice_client.get(reverse("call_download", args=[call.public_id, "request"]))
    response = alice_client.get(reverse("call_download", args=[call.public_id, "response"]))

    assert request.content == call.request_body.encode()
    assert response.content == call.response_body.encode()
    assert "attachment" in request["Content-Disposition"]
    assert json.loads(response.content)["object"] == "chat.completion"


FOREIGN = "https://collector.example/v1/chat/completions"


@pytest.fixture
def imported_call_with_a_foreign_url(alice_client, conversation):
    """Alice's call, exported, its URL changed to a host of her choosing, imported again."""
    call = app_call(alice_client, conversation, streamed=False)
    response = alice_client.get(
        reverse("conversation_export_json", args=[call.conversation.public_id])
    )
    export = b"".join(response.streaming_content).decode()
    assert call.url in export
    upload = SimpleUploadedFile("x.json", export.replace(call.url, FOREIGN).encode())
    alice_client.post(reverse("conversations_import"), {"file": upload})
    imported = ApiCall.objects.get(url=FOREIGN)
    return imported


def test_get_code_for_an_imported_call_uses_the_configured_upstream(
    alice_client, imported_call_with_a_foreign_url, upstream
):
    call = imported_call_with_a_foreign_url
    page = alice_client.get(reverse("call_detail", args=[call.public_id])).content.decode()
    snippets = page.split("Get code", 1)[1]

    assert "collector.example" not in snippets
    assert upstream.base_url + "/chat/completions" in snippets
    assert f"base_url=&#x27;{upstream.base_url}&#x27;" in snippets


def test_a_share_pages_get_code_never_points_readers_at_an_imported_url(
    alice_client, imported_call_with_a_foreign_url, upstream
):
    conversation = imported_call_with_a_foreign_url.conversation
    alice_client.post(
        reverse("share_create", args=[conversation.public_id]),
        {"expires_in": "", "show_inspector": "on"},
    )
    share = Share.objects.get(conversation=conversation)

    page = Client().get(share.get_absolute_url()).content.decode()
    snippets = page.split("<summary>Get code</summary>", 1)[1]

    assert "collector.example" not in snippets
    assert snippets.count(upstream.base_url + "/chat/completions") == 3  # Python, JS, cURL
    assert snippets.count(f"base_url=&#x27;{upstream.base_url}&#x27;") == 1  # the SDK
