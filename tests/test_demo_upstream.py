"""The offline demo upstream (chat/demo_upstream.py), exercised over real HTTP.

Standard-library clients only (http.client, urllib, raw sockets) and no Django: these tests
check the fake provider itself, so nothing of the app may sit in between.
"""

import http.client
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from chat.demo_upstream import DemoUpstream

CHAT = "/v1/chat/completions"
HELLO = "Hello demo, please tell me about streaming"


@pytest.fixture(scope="module")
def upstream():
    server = DemoUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def paced():
    """A server with the benchmark-style pacing, kept small so the tests stay fast."""
    server = DemoUpstream(first_token_delay=0.2, chunk_delay=0.005, words_per_chunk=5).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- helpers


def chat_body(**extra):
    return {"model": "demo/echo", "messages": [{"role": "user", "content": HELLO}], **extra}


def connect(server, timeout=5.0):
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def post(server, body, headers=None, path=CHAT, timeout=5.0):
    """POST and read the whole answer: (status, headers, raw body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = connect(server, timeout)
    try:
        conn.request(
            "POST", path, body=data, headers={"Content-Type": "application/json"} | (headers or {})
        )
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def post_json(server, body, headers=None):
    status, headers, raw = post(server, body, headers)
    return status, headers, json.loads(raw)


def open_stream(server, body, headers=None, timeout=5.0):
    conn = connect(server, timeout)
    payload = json.dumps({**body, "stream": True}).encode()
    conn.request(
        "POST", CHAT, body=payload, headers={"Content-Type": "application/json"} | (headers or {})
    )
    return conn, conn.getresponse()


def read_events(response, timed=False):
    """The `data:` payloads of an SSE response, up to the connection closing."""
    events = []
    while line := response.readline():
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :].rstrip(b"\r\n").decode()
            events.append((time.monotonic(), data) if timed else data)
    return events


def stream(server, body, headers=None):
    conn, response = open_stream(server, body, headers)
    try:
        return response, read_events(response)
    finally:
        conn.close()


def chunks(events):
    return [json.loads(e) for e in events if e != "[DONE]"]


def deltas(events, key):
    return "".join(c["choices"][0]["delta"].get(key, "") for c in chunks(events) if c["choices"])


def content_chunks(events):
    return [c for c in chunks(events) if c["choices"] and c["choices"][0]["delta"].get("content")]


def finish_reasons(events):
    return [c["choices"][0]["finish_reason"] for c in chunks(events) if c["choices"]]


def get(server, path, headers=None):
    conn = connect(server)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def assert_provider_error(raw, status, path=CHAT):
    error = json.loads(raw)
    assert set(error) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert error["statusCode"] == status
    assert error["path"] == path
    assert datetime.fromisoformat(error["timestamp"]).utcoffset().total_seconds() == 0
    return error


# --------------------------------------------------------------------------- models


def test_the_models_list_has_the_aimlapi_catalogue_shape(upstream):
    status, headers, raw = get(upstream, "/v1/models")
    assert status == 200
    assert headers["ETag"]
    catalogue = json.loads(raw)
    assert catalogue["object"] == "list"
    by_id = {model["id"]: model for model in catalogue["data"]}
    assert by_id["demo/echo"]["info"]["name"] == "Demo Echo"
    assert "demo/thinker" in by_id
    assert set(by_id["anthropic/claude-sonnet-4.5"]["aliases"]) == {
        "claude-sonnet-4-5",
        "anthropic/claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
    }
    assert by_id["openai/gpt-4o"]["aliases"] == ["gpt-4o"]
    assert by_id["deepseek/deepseek-r1"]["aliases"] == ["deepseek-r1"]
    assert [m["id"] for m in catalogue["data"] if m["type"] != "chat-completion"] == [
        "openai/dall-e-3"
    ]
    info = by_id["openai/gpt-4o"]["info"]
    assert {"name", "developer", "description", "contextLength", "outputMax", "docsUrl"} <= set(
        info
    )
    assert all(isinstance(m["tags"], list) for m in catalogue["data"])


def test_the_models_list_answers_304_when_the_etag_still_matches(upstream):
    _, headers, _ = get(upstream, "/v1/models")
    etag = headers["ETag"]
    status, headers, raw = get(upstream, "/v1/models", {"If-None-Match": etag})
    assert (status, headers["ETag"], raw) == (304, etag, b"")
    status, _, _ = get(upstream, "/v1/models", {"If-None-Match": '"something-else"'})
    assert status == 200


def test_the_models_list_takes_the_openai_shape_on_request(upstream):
    status, headers, raw = get(upstream, "/v1/models", {"X-Demo-Models-Shape": "openai"})
    assert status == 200
    data = json.loads(raw)["data"]
    gpt = next(m for m in data if m["id"] == "openai/gpt-4o")
    assert (gpt["object"], gpt["owned_by"]) == ("model", "Open AI")
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in data)
    _, aimlapi_headers, _ = get(upstream, "/v1/models")
    assert headers["ETag"] != aimlapi_headers["ETag"]


def test_every_endpoint_is_also_served_without_the_v1_prefix(upstream):
    assert get(upstream, "/models")[0] == 200
    assert post(upstream, chat_body(), path="/chat/completions")[0] == 200


# --------------------------------------------------------------------------- replies


def test_a_reply_reflects_the_model_the_parameters_and_the_last_user_message(upstream):
    body = {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful pirate who answers in rhymes."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": HELLO},
        ],
        "temperature": 0.7,
        "top_p": 0.9,
    }
    status, headers, reply = post_json(upstream, body, {"X-Client-Request-Id": "req-42"})

    assert status == 200
    assert reply["id"].startswith("chatcmpl-demo-")
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "openai/gpt-4o"
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["refusal"] is None
    assert "reasoning_content" not in message
    content = message["content"]
    assert content.startswith("**Demo reply** from `openai/gpt-4o`.")
    assert f"> {HELLO}" in content
    assert "first question" not in content
    assert content.index("- `temperature`: `0.7`") < content.index("- `top_p`: `0.9`")
    assert "You are a helpful pirate who answers in rhymes." in content
    assert "```python\ndef echo_length(message: str) -> int:" in content
    assert f"# {len(HELLO)}" in content

    usage = reply["usage"]
    assert usage["prompt_tokens"] == 9 + 2 + 2 + len(HELLO.split())
    assert usage["completion_tokens"] == len(content.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert reply["meta"]["usage"] == {
        "credits_used": usage["total_tokens"] * 2,
        "usd_spent": round(usage["total_tokens"] * 0.000002, 8),
    }
    assert headers["x-inference-id"]
    assert headers["x-aimlapi-credits-used"] == str(usage["total_tokens"] * 2)
    assert float(headers["x-aimlapi-usd-spent"]) == reply["meta"]["usage"]["usd_spent"]
    assert headers["X-Client-Request-Id"] == "req-42"


def test_a_reply_without_optional_parameters_says_so(upstream):
    _, _, reply = post_json(upstream, chat_body())
    assert "No optional parameters were sent." in reply["choices"][0]["message"]["content"]


def test_the_same_body_always_gets_the_same_text(upstream):
    body = chat_body(temperature=1, seed=7)
    first = post_json(upstream, body)[2]
    second = post_json(upstream, body)[2]
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    assert first["id"] != second["id"]


def test_content_parts_long_messages_and_an_anthropic_style_system_are_understood(upstream):
    long_text = "word " * 100
    body = {
        "model": "demo/echo",
        "system": "Anthropic style system prompt that is rather long, " * 3,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Look at this"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": long_text}]},
        ],
    }
    content = post_json(upstream, body)[2]["choices"][0]["message"]["content"]
    quote = [line for line in content.splitlines() if line.startswith(">")]
    assert len(quote[0]) < 210 and quote[0].endswith("…")
    assert 'System prompt: "Anthropic style system prompt that is rather long, Anthropic' in content


def test_max_tokens_cuts_the_content_to_that_many_words_and_reports_length(upstream):
    for key in ("max_tokens", "max_completion_tokens"):
        _, _, reply = post_json(upstream, chat_body(**{key: 5}))
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "length"
        assert choice["message"]["content"] == "**Demo reply** from `demo/echo`. You"
        assert reply["usage"]["completion_tokens"] == 5


def test_a_generous_max_tokens_changes_nothing(upstream):
    _, _, reply = post_json(upstream, chat_body(max_tokens=5000))
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["choices"][0]["message"]["content"].endswith("no model was called._")


def test_a_stop_string_cuts_the_content_before_it(upstream):
    _, _, reply = post_json(upstream, chat_body(stop=["```", "never there"]))
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    assert content.endswith("highlighting:\n\n")
    # The echo of the parameter itself is not taken for the stop string.
    assert '- `stop`: `` ["```", "never there"] ``' in content

    _, _, reply = post_json(upstream, chat_body(stop="\n\n", stop_sequences=["x"]))
    assert reply["choices"][0]["message"]["content"] == (
        "**Demo reply** from `demo/echo`. You wrote:"
    )


def test_claude_models_end_their_turn_with_end_turn(upstream):
    body = chat_body(model="claude-sonnet-4-5")
    assert post_json(upstream, body)[2]["choices"][0]["finish_reason"] == "end_turn"
    body["max_tokens"] = 3
    assert post_json(upstream, body)[2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("extra", "reasons"),
    [
        ({}, False),
        ({"enable_thinking": False}, False),
        ({"thinking": {"type": "disabled"}}, False),
        ({"enable_thinking": True}, True),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, True),
        ({"reasoning_effort": "low"}, True),
        ({"reasoning": {"effort": "high"}}, True),
        ({"model": "demo/thinker"}, True),
        ({"model": "deepseek/deepseek-r1"}, True),
    ],
)
def test_reasoning_is_returned_only_when_asked_for_or_by_reasoning_models(upstream, extra, reasons):
    _, _, reply = post_json(upstream, chat_body(**extra))
    message = reply["choices"][0]["message"]
    assert ("reasoning_content" in message) is reasons
    details = reply["usage"]["completion_tokens_details"]
    if reasons:
        assert "1 message" in message["reasoning_content"]
        assert reply["model"] in message["reasoning_content"]
        assert details["reasoning_tokens"] == len(message["reasoning_content"].split())
        assert reply["usage"]["completion_tokens"] == (
            len(message["content"].split()) + details["reasoning_tokens"]
        )
    else:
        assert details["reasoning_tokens"] == 0


# --------------------------------------------------------------------------- streaming


def test_it_streams_chunks_whose_deltas_add_up_to_the_non_streamed_reply_then_done(upstream):
    body = chat_body(model="demo/thinker", temperature=0.2)
    message = post_json(upstream, body)[2]["choices"][0]["message"]

    response, events = stream(upstream, body, {"X-Client-Request-Id": "s-1"})

    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Connection"] == "close"
    assert response.headers["Content-Length"] is None
    assert response.headers["X-Client-Request-Id"] == "s-1"
    assert events[-1] == "[DONE]"
    parsed = chunks(events)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in parsed)
    assert len({c["id"] for c in parsed}) == 1
    assert deltas(events, "content") == message["content"]
    assert deltas(events, "reasoning_content") == message["reasoning_content"]
    first_content = next(i for i, c in enumerate(parsed) if c["choices"][0]["delta"].get("content"))
    assert all("reasoning_content" in c["choices"][0]["delta"] for c in parsed[1:first_content])
    assert finish_reasons(events)[-1] == "stop"
    assert finish_reasons(events)[:-1] == [None] * (len(parsed) - 1)
    last = parsed[-1]
    assert last["choices"][0]["delta"] == {}
    assert last["usage"]["completion_tokens"] == (
        len(message["content"].split()) + len(message["reasoning_content"].split())
    )
    assert last["meta"]["usage"]["credits_used"] == last["usage"]["total_tokens"] * 2


def test_include_usage_adds_a_final_chunk_with_empty_choices_and_the_cost(upstream):
    _, events = stream(upstream, chat_body(stream_options={"include_usage": True}))
    parsed = chunks(events)
    finish, final = parsed[-2], parsed[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert "usage" in finish and "meta" not in finish
    assert final["choices"] == []
    assert final["usage"] == finish["usage"]
    assert final["meta"]["usage"]["usd_spent"] == round(
        final["usage"]["total_tokens"] * 0.000002, 8
    )
    assert events[-1] == "[DONE]"


def test_a_streamed_max_tokens_cut_ends_with_length(upstream):
    _, events = stream(upstream, chat_body(max_tokens=4))
    assert len(content_chunks(events)) == 4
    assert finish_reasons(events)[-1] == "length"


def test_the_server_pacing_delays_the_first_chunk_and_groups_words(paced):
    started = time.monotonic()
    conn, response = open_stream(paced, chat_body())
    headers_at = time.monotonic()
    events = read_events(response, timed=True)
    conn.close()

    assert headers_at - started < 0.15  # the status line comes at once...
    assert events[0][0] - started >= 0.19  # ...the first chunk after first_token_delay
    texts = [c["choices"][0]["delta"]["content"] for c in content_chunks([e for _, e in events])]
    assert all(len(text.split()) == 5 for text in texts[:-1])
    assert 1 <= len(texts[-1].split()) <= 5


# --------------------------------------------------------------------------- faults


def test_a_status_fault_answers_a_provider_error_even_when_a_stream_was_asked(upstream):
    headers = {"X-Demo-Fault": "status=429,retry_after=3"}
    status, response_headers, raw = post(upstream, chat_body(stream=True), headers)
    assert status == 429
    assert response_headers["Retry-After"] == "3"
    assert response_headers["Content-Type"] == "application/json"
    assert assert_provider_error(raw, 429)["message"] == "Too many requests"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (400, "Body validation error!"),
        (403, "Insufficient credits"),
        (500, "Internal server error"),
        (502, "Bad gateway"),
        (503, "Service unavailable"),
        (504, "Generation timeout"),
    ],
)
def test_status_faults_carry_the_provider_message_and_no_retry_after(upstream, code, message):
    status, headers, raw = post(upstream, chat_body(), {"X-Demo-Fault": f"status={code}"})
    assert status == code
    assert "Retry-After" not in headers
    assert assert_provider_error(raw, code)["message"] == message


def test_fail_times_fails_only_the_first_requests_carrying_that_spec(upstream):
    upstream.clear()
    headers = {"X-Demo-Fault": "status=503,fail_times=2"}
    statuses = [post(upstream, chat_body(), headers)[0] for _ in range(4)]
    assert statuses == [503, 503, 200, 200]
    other = {"X-Demo-Fault": "status=503,fail_times=1,retry_after=0"}
    assert [post(upstream, chat_body(), other)[0] for _ in range(2)] == [503, 200]
    upstream.clear()  # also resets the counters
    assert post(upstream, chat_body(), headers)[0] == 503


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (chat_body(demo_fault="status=502"), {}, 502),
        (chat_body(model="demo/fault:status=504"), {}, 504),
        (chat_body(demo_fault="status=502"), {"X-Demo-Fault": "status=500"}, 500),
        (chat_body(model="demo/fault:status=504", demo_fault="status=502"), {}, 502),
        (chat_body(model="demo/fault:no_done"), {}, 200),
    ],
)
def test_a_fault_spec_can_come_from_the_header_the_body_or_the_model_id(
    upstream, body, headers, expected
):
    assert post(upstream, body, headers)[0] == expected


def test_a_delay_fault_sends_nothing_before_the_delay(upstream):
    conn = connect(upstream, timeout=0.15)
    conn.request("POST", CHAT, body=json.dumps(chat_body()), headers={"X-Demo-Fault": "delay=0.5"})
    with pytest.raises(TimeoutError):
        conn.getresponse()
    conn.close()

    started = time.monotonic()
    status, _, _ = post(upstream, chat_body(), {"X-Demo-Fault": "delay=0.3"}, timeout=2)
    assert status == 200
    assert time.monotonic() - started >= 0.29


def test_a_pace_fault_slows_down_the_chunks_of_that_request(upstream):
    started = time.monotonic()
    _, events = stream(upstream, chat_body(max_tokens=10), {"X-Demo-Fault": "pace=0.02"})
    assert len(content_chunks(events)) == 10
    assert time.monotonic() - started >= 0.02 * 11


def test_reset_after_aborts_a_stream_with_a_connection_reset(upstream):
    conn, response = open_stream(upstream, chat_body(), {"X-Demo-Fault": "reset_after=3"})
    events = []
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        while line := response.readline():
            events.append(line)
        pytest.fail("the stream ended cleanly instead of being reset")
    conn.close()
    assert not any(b"[DONE]" in line or b'finish_reason": "stop' in line for line in events)


def test_reset_after_aborts_a_non_streamed_reply_in_the_middle_of_its_body(upstream):
    conn = connect(upstream)
    conn.request(
        "POST", CHAT, body=json.dumps(chat_body()), headers={"X-Demo-Fault": "reset_after=1"}
    )
    response = conn.getresponse()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 100
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        response.read()
    conn.close()


def test_a_stall_holds_the_stream_silently_then_closes_it_unfinished(upstream):
    started = time.monotonic()
    conn, response = open_stream(upstream, chat_body(), {"X-Demo-Fault": "stall_after=2,stall=0.4"})
    events = read_events(response, timed=True)
    ended = time.monotonic()
    conn.close()
    texts = [data for _, data in events]
    assert len(content_chunks(texts)) == 2
    assert "[DONE]" not in texts
    assert set(finish_reasons(texts)) == {None}
    assert events[-1][0] - started < 0.2
    assert ended - events[-1][0] >= 0.35


def test_a_stalled_client_gets_a_read_timeout(upstream):
    conn, response = open_stream(
        upstream, chat_body(), {"X-Demo-Fault": "stall_after=1,stall=0.5"}, timeout=0.15
    )
    with pytest.raises(TimeoutError):
        read_events(response)
    conn.close()


def test_a_malformed_fault_truncates_a_non_streamed_json_body(upstream):
    status, headers, raw = post(upstream, chat_body(), {"X-Demo-Fault": "malformed"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(raw)
    assert raw.startswith(b'{"id": "chatcmpl-demo-')
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


def test_a_malformed_fault_slips_one_garbage_event_into_a_stream(upstream):
    expected = post_json(upstream, chat_body())[2]["choices"][0]["message"]["content"]
    _, events = stream(upstream, chat_body(), {"X-Demo-Fault": "malformed"})
    garbage = [i for i, data in enumerate(events) if data == '{"choices": [']
    assert garbage == [2]  # after the role chunk and the first content chunk
    good = events[:2] + events[3:]
    assert deltas(good, "content") == expected
    assert good[-1] == "[DONE]"


def test_empty_choices_answers_200_without_choices(upstream):
    status, _, reply = post_json(upstream, chat_body(), {"X-Demo-Fault": "empty_choices"})
    assert status == 200
    assert reply["choices"] == []
    assert reply["usage"]["total_tokens"] > 0

    _, events = stream(upstream, chat_body(), {"X-Demo-Fault": "empty_choices"})
    assert events[-1] == "[DONE]"
    assert len(chunks(events)) >= 1
    assert all(c["choices"] == [] for c in chunks(events))


def test_no_end_breaks_the_stream_off_without_finish_reason_or_done(upstream):
    full = post_json(upstream, chat_body())[2]["choices"][0]["message"]["content"]
    _, events = stream(upstream, chat_body(), {"X-Demo-Fault": "no_end"})
    assert 0 < len(content_chunks(events)) < len(full.split())
    assert set(finish_reasons(events)) == {None}
    assert "[DONE]" not in events
    assert not any("usage" in c for c in chunks(events))


def test_no_done_finishes_the_stream_but_closes_without_done(upstream):
    full = post_json(upstream, chat_body())[2]["choices"][0]["message"]["content"]
    _, events = stream(upstream, chat_body(), {"X-Demo-Fault": "no_done"})
    assert "[DONE]" not in events
    assert finish_reasons(events)[-1] == "stop"
    assert deltas(events, "content") == full
    assert "meta" in chunks(events)[-1]


def test_error_event_after_sends_an_error_event_then_closes(upstream):
    _, events = stream(upstream, chat_body(), {"X-Demo-Fault": "error_event_after=2"})
    assert len(content_chunks(events[:-1])) == 2
    assert json.loads(events[-1]) == {
        "error": {"message": "Upstream model overloaded", "code": 503}
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode", "Unknown demo fault: explode"),
        ("status=503,teleport=1", "Unknown demo fault: teleport"),
        ("status=abc", "status"),
        ("status=200", "400-599"),
        ("delay", "needs a value"),
        ("malformed=yes", "takes no value"),
    ],
)
def test_a_bad_fault_spec_is_a_400_that_names_the_problem(upstream, spec, message):
    status, _, raw = post(upstream, chat_body(), {"X-Demo-Fault": spec})
    assert status == 400
    assert message in assert_provider_error(raw, 400)["message"]


# --------------------------------------------------------------------------- auth and errors


def test_the_demo_invalid_key_gets_a_401_and_any_other_key_or_none_is_accepted(upstream):
    status, _, raw = post(upstream, chat_body(), {"Authorization": "Bearer demo-invalid-key"})
    assert status == 401
    assert assert_provider_error(raw, 401)["message"] == "Invalid API key"
    assert post(upstream, chat_body(), {"Authorization": "Bearer sk-anything"})[0] == 200
    assert post(upstream, chat_body())[0] == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), '"model"'),
        (json.dumps({"model": "demo/echo"}).encode(), '"messages"'),
        (json.dumps({"model": "demo/echo", "messages": []}).encode(), '"messages"'),
        (json.dumps({**chat_body(), "max_tokens": 0}).encode(), '"max_tokens"'),
    ],
)
def test_a_bad_body_is_a_400_with_a_specific_message(upstream, body, message):
    status, headers, raw = post(upstream, body)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    error = assert_provider_error(raw, 400)
    assert error["message"].startswith("Body validation error!")
    assert message in error["message"]


def test_an_unknown_path_is_a_provider_style_404(upstream):
    status, _, raw = get(upstream, "/v1/nothing-here?x=1")
    assert status == 404
    assert assert_provider_error(raw, 404, "/v1/nothing-here")["message"] == "Not found"
    assert get(upstream, CHAT)[0] == 404


# --------------------------------------------------------------------------- recording


def test_requests_are_recorded_with_the_exact_body_bytes_and_headers_as_sent(upstream):
    upstream.clear()
    raw = '{ "model":"demo/echo",  "messages":[{"role":"user","content":"h\\u00e9 é"}] }'.encode()
    before = time.time()
    post(upstream, raw, {"X-Custom-Thing": "yes", "X-Demo-Fault": "status=500"}, CHAT + "?a=1")
    get(upstream, "/models")
    get(upstream, "/_demo/requests")

    recorded = upstream.requests
    assert [(r.method, r.path) for r in recorded] == [
        ("POST", CHAT + "?a=1"),
        ("GET", "/models"),
    ]
    chat = recorded[0]
    assert chat.body == raw
    assert chat.headers["X-Custom-Thing"] == "yes"
    assert chat.headers["Content-Length"] == str(len(raw))
    assert before <= chat.received_at <= time.time()
    assert upstream.chat_requests() == [chat]
    recorded.clear()  # a copy: the server's own list is untouched
    assert len(upstream.requests) == 2


def test_the_demo_endpoints_list_and_reset_the_recordings_for_other_processes(upstream):
    upstream.clear()
    body = json.dumps(chat_body(temperature=0.5)).encode()
    post(upstream, body)

    with urllib.request.urlopen(f"http://127.0.0.1:{upstream.port}/_demo/requests") as response:
        listed = json.load(response)
    assert len(listed) == 1
    assert set(listed[0]) == {"method", "path", "headers", "body", "received_at"}
    assert listed[0]["body"] == body.decode()
    assert listed[0]["path"] == CHAT

    reset = urllib.request.Request(f"http://127.0.0.1:{upstream.port}/_demo/reset", method="POST")
    with urllib.request.urlopen(reset) as response:
        assert response.status == 200
    assert upstream.requests == []


# --------------------------------------------------------------------------- connections


def test_non_streamed_replies_keep_the_connection_alive(upstream):
    conn = connect(upstream)
    conn.request("POST", CHAT, body=json.dumps(chat_body()))
    first = conn.getresponse()
    first.read()
    sock = conn.sock
    conn.request("POST", CHAT, body=json.dumps(chat_body()))
    second = conn.getresponse()
    second.read()
    assert (first.status, second.status) == (200, 200)
    assert conn.sock is sock
    conn.close()


def test_fifty_concurrent_streams_all_complete(paced):
    expected = post_json(paced, chat_body())[2]["choices"][0]["message"]["content"]

    def one(index):
        _, events = stream(paced, chat_body())
        return events[-1], deltas(events, "content")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert results == [("[DONE]", expected)] * 50
    assert time.monotonic() - started < 5  # served side by side, not one after another


def test_a_client_hanging_up_mid_stream_is_swallowed_quietly(capfd):
    with DemoUpstream(chunk_delay=0.01) as server:
        conn, response = open_stream(server, chat_body())
        response.readline()
        response.close()  # the response owns the socket once the server said "close"
        conn.close()
        time.sleep(0.3)  # long enough for the server to hit the closed socket
        assert post(server, chat_body())[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert "Error" not in err


def test_a_server_can_be_stopped_while_a_stream_is_stalled():
    server = DemoUpstream().start()
    conn, _ = open_stream(server, chat_body(), {"X-Demo-Fault": "stall_after=1,stall=30"})
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    conn.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.base_url + "/models", timeout=1)
