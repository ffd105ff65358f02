"""The demo upstream speaks the full chat completions shapes, over real HTTP.

Tools and tool results, `n` choices, logprobs, refusals and attachments: the app and its
tests rely on the demo answering these as the provider does, so they are checked here on the
wire, with a plain HTTP client and nothing of the app in between.
"""

import base64
import hashlib
import json
import struct
import zlib

import pytest
import requests

HELLO = "What is the weather like?"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "detailed": {"type": "boolean"},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "hours": {"type": "array", "items": {"type": "integer"}},
                "radius": {"type": ["number", "null"]},
            },
            "required": ["city", "country"],
        },
    },
}
WEATHER_ARGUMENTS = {
    "city": "demo",
    "unit": "celsius",
    "days": 1,
    "detailed": True,
    "where": {},
    "hours": [],
    "radius": 1,
    "country": "demo",
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


# --------------------------------------------------------------------------- helpers


def body(content=HELLO, **extra):
    return {"model": "demo/echo", "messages": [{"role": "user", "content": content}], **extra}


def ask(upstream, data):
    response = requests.post(f"{upstream.base_url}/chat/completions", json=data, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def ask_streamed(upstream, data):
    """The parsed chunks of a streamed reply, after checking it ends with [DONE]."""
    response = requests.post(
        f"{upstream.base_url}/chat/completions",
        json={**data, "stream": True},
        timeout=10,
        stream=True,
    )
    assert response.status_code == 200, response.text
    events = [line[len(b"data: ") :] for line in response.iter_lines() if line]
    assert events[-1] == b"[DONE]"
    return [json.loads(event) for event in events[:-1]]


def message(reply, index=0):
    return reply["choices"][index]["message"]


def content_of(chunks, index=0, key="content"):
    return "".join(
        c["choices"][0]["delta"].get(key) or ""
        for c in chunks
        if c["choices"] and c["choices"][0]["index"] == index
    )


def sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Small real files, built here so the expected facts are known.


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x10\x80\xf0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b";"


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof0 += b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + dqt + sof0 + b"\xff\xd9"


def webp(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def pdf(pages: int) -> bytes:
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    objects = [
        "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj",
        f"2 0 obj << /Type /Pages /Kids [{kids}] /Count {pages} >> endobj",
        *(
            f"{3 + i} 0 obj <</Type/Page/Parent 2 0 R/MediaBox[0 0 9 9]>> endobj"
            for i in range(pages)
        ),
    ]
    return ("%PDF-1.4\n" + "\n".join(objects) + "\ntrailer << /Root 1 0 R >>\n%%EOF\n").encode()


# --------------------------------------------------------------------------- tools


def test_it_answers_tools_with_two_parallel_calls_built_from_the_schemas(upstream):
    reply = ask(upstream, body(tools=[WEATHER, CLOCK]))

    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert message(reply)["content"] is None
    calls = message(reply)["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["get_weather", "get_time"]
    assert all(call["type"] == "function" and call["id"].startswith("call_") for call in calls)
    assert calls[0]["id"] != calls[1]["id"]
    assert json.loads(calls[0]["function"]["arguments"]) == WEATHER_ARGUMENTS
    assert json.loads(calls[1]["function"]["arguments"]) == {"zone": "demo"}
    assert reply["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"parallel_tool_calls": False}, ["get_weather"]),
        ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, ["get_time"]),
        ({"tool_choice": {"type": "tool", "name": "get_time"}}, ["get_time"]),
        ({"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}, ["get_weather"]),
        ({"tool_choice": "required"}, ["get_weather", "get_time"]),
    ],
)
def test_it_calls_one_tool_when_parallel_calls_are_off_or_a_tool_is_named(upstream, extra, names):
    calls = message(ask(upstream, body(tools=[WEATHER, CLOCK], **extra)))["tool_calls"]
    assert [call["function"]["name"] for call in calls] == names


def test_it_takes_anthropic_style_tools_and_a_single_tool_gets_a_single_call(upstream):
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {}}}}
    calls = message(ask(upstream, body(tools=[tool])))["tool_calls"]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("lookup", '{"q": "demo"}')
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": [WEATHER], "tool_choice": "none"},
        {"tools": "not a list"},
        {"tools": [{"type": "function"}, 5, {"function": {"name": ""}}]},
        {"tools": []},
    ],
)
def test_it_answers_text_when_tool_choice_is_none_or_no_tool_is_usable(upstream, extra):
    reply = ask(upstream, body(**extra))
    assert message(reply)["content"].startswith("**Demo reply**")
    assert "tool_calls" not in message(reply)
    assert reply["choices"][0]["finish_reason"] == "stop"


def test_a_tool_choice_naming_a_tool_that_is_not_there_is_a_400(upstream):
    forced = {"type": "function", "function": {"name": "launch"}}
    response = requests.post(
        f"{upstream.base_url}/chat/completions",
        json=body(tools=[WEATHER], tool_choice=forced),
        timeout=10,
    )
    assert response.status_code == 400
    assert "'launch'" in response.json()["message"]


def test_it_streams_tool_calls_whose_pieces_join_by_index_into_valid_json(upstream):
    chunks = ask_streamed(upstream, body(tools=[WEATHER, CLOCK]))

    assert all(len(c["choices"]) == 1 and c["choices"][0]["index"] == 0 for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant" and deltas[0]["content"] is None
    pieces = [call for delta in deltas for call in delta.get("tool_calls", [])]
    heads = [p for p in pieces if "id" in p]
    assert [(h["index"], h["type"], h["function"]) for h in heads] == [
        (0, "function", {"name": "get_weather", "arguments": ""}),
        (1, "function", {"name": "get_time", "arguments": ""}),
    ]
    assert all(h["id"].startswith("call_") for h in heads)
    rest = [p for p in pieces if "id" not in p]
    assert all(
        set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in rest
    )
    by_index = {0: [], 1: []}
    for piece in rest:
        by_index[piece["index"]].append(piece["function"]["arguments"])
    assert all(len(parts) >= 3 for parts in by_index.values())
    # Interleaved: the two calls' argument pieces take turns.
    assert [p["index"] for p in rest[:4]] == [0, 1, 0, 1]
    assert json.loads("".join(by_index[0])) == WEATHER_ARGUMENTS
    assert json.loads("".join(by_index[1])) == {"zone": "demo"}
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_a_fault_still_counts_tool_call_pieces_as_content_chunks(upstream):
    response = requests.post(
        f"{upstream.base_url}/chat/completions",
        json=body(tools=[WEATHER], stream=True),
        headers={"X-Demo-Fault": "error_event_after=2"},
        timeout=10,
    )
    events = [line[len(b"data: ") :] for line in response.iter_lines() if line]
    assert json.loads(events[-1]) == {
        "error": {"message": "Upstream model overloaded", "code": 503}
    }
    assert len(events) == 1 + 2 + 1  # the opening, two argument pieces, the error


def test_a_tool_result_round_trip_quotes_each_result_with_its_call_id(upstream):
    first = ask(upstream, body(tools=[WEATHER, CLOCK]))
    calls = message(first)["tool_calls"]
    conversation = [
        {"role": "user", "content": HELLO},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temperature": 21}'},
        {
            "role": "tool",
            "tool_call_id": calls[1]["id"],
            "content": [{"type": "text", "text": "noon"}],
        },
    ]

    reply = ask(
        upstream, {"model": "demo/echo", "messages": conversation, "tools": [WEATHER, CLOCK]}
    )

    assert reply["choices"][0]["finish_reason"] == "stop"
    text = message(reply)["content"]
    assert text.startswith(
        f'Tool result for {calls[0]["id"]}: {{"temperature": 21}}\n'
        f"Tool result for {calls[1]['id']}: noon\n\n**Demo reply**"
    )
    streamed = ask_streamed(
        upstream, {"model": "demo/echo", "messages": conversation, "tools": [WEATHER]}
    )
    assert content_of(streamed) == text


def test_anthropic_tool_result_blocks_are_quoted_too(upstream):
    conversation = [
        {"role": "user", "content": HELLO},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "rain"}],
                },
            ],
        },
    ]
    text = message(
        ask(upstream, {"model": "demo/echo", "messages": conversation, "tools": [WEATHER]})
    )["content"]
    assert text.startswith("Tool result for toolu_1: sunny\nTool result for toolu_2: rain\n\n")


# --------------------------------------------------------------------------- n choices


def test_n_returns_that_many_distinct_choices_with_their_indexes(upstream):
    reply = ask(upstream, body(n=3))

    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert [t.split(" **Demo reply**")[0] for t in texts] == ["Choice 1:", "Choice 2:", "Choice 3:"]
    assert len(set(texts)) == 3
    assert reply["usage"]["completion_tokens"] == sum(len(t.split()) for t in texts)


def test_n_is_capped_at_eight_and_ignored_when_it_is_not_a_count(upstream):
    assert len(ask(upstream, body(n=50))["choices"]) == 8
    for n in (1, 0, -2, "3", True, 2.5):
        reply = ask(upstream, body(n=n))
        assert len(reply["choices"]) == 1
        assert message(reply)["content"].startswith("**Demo reply**")


def test_n_streamed_interleaves_the_choices_one_per_chunk(upstream):
    full = ask(upstream, body(n=2, max_tokens=6))
    chunks = ask_streamed(upstream, body(n=2, max_tokens=6))

    assert all(len(c["choices"]) == 1 for c in chunks)
    indexes = [c["choices"][0]["index"] for c in chunks]
    assert indexes[:6] == [0, 1, 0, 1, 0, 1]
    for index in (0, 1):
        assert content_of(chunks, index) == message(full, index)["content"]
        finishes = [
            c["choices"][0]["finish_reason"]
            for c in chunks
            if c["choices"][0]["index"] == index and c["choices"][0]["finish_reason"]
        ]
        assert finishes == ["length"]
    assert chunks[-1]["usage"] == full["usage"]


# --------------------------------------------------------------------------- logprobs


def test_logprobs_list_each_token_with_the_top_alternatives_asked_for(upstream):
    reply = ask(upstream, body(logprobs=True, top_logprobs=3))

    logprobs = reply["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    entries = logprobs["content"]
    assert "".join(e["token"] for e in entries) == message(reply)["content"]
    for entry in entries:
        assert entry["bytes"] == list(entry["token"].encode())
        assert entry["logprob"] < 0
        top = entry["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert entry["token"] in [t["token"] for t in top]
        assert all(t["bytes"] == list(t["token"].encode()) for t in top)
    values = [e["logprob"] for e in entries]
    assert any(v > -0.5 for v in values) and any(-5 <= v <= -2 for v in values)
    assert ask(upstream, body(logprobs=True, top_logprobs=3))["choices"][0]["logprobs"] == logprobs


def test_logprobs_default_to_no_alternatives_and_are_absent_unless_asked_for(upstream):
    entries = ask(upstream, body(logprobs=True))["choices"][0]["logprobs"]["content"]
    assert entries and all(e["top_logprobs"] == [] for e in entries)
    assert ask(upstream, body(top_logprobs=3))["choices"][0]["logprobs"] is None


def test_streamed_logprobs_ride_on_each_content_delta(upstream):
    full = ask(upstream, body(logprobs=True, top_logprobs=2))["choices"][0]["logprobs"]["content"]
    chunks = ask_streamed(upstream, body(logprobs=True, top_logprobs=2))

    streamed = []
    for chunk in chunks:
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            entries = choice["logprobs"]["content"]
            assert "".join(e["token"] for e in entries) == choice["delta"]["content"]
            streamed += entries
    assert streamed == full


# --------------------------------------------------------------------------- refusals


def test_a_refusal_trigger_gets_a_refusal_instead_of_content(upstream):
    reply = ask(upstream, body("Please [refuse] this one"))
    assert message(reply)["content"] is None
    assert message(reply)["refusal"] == "I can't help with that. (demo refusal)"
    assert reply["choices"][0]["finish_reason"] == "stop"


def test_a_streamed_refusal_arrives_in_refusal_deltas(upstream):
    chunks = ask_streamed(upstream, body([{"type": "text", "text": "[refuse]"}], tools=[WEATHER]))

    assert content_of(chunks, key="refusal") == "I can't help with that. (demo refusal)"
    assert len([c for c in chunks if c["choices"][0]["delta"].get("refusal")]) > 1
    assert content_of(chunks) == ""
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --------------------------------------------------------------------------- attachments


def test_openai_attachments_are_described_with_their_facts(upstream):
    image, animation, document = png(64, 48), gif(3, 2), pdf(2)
    parts = [
        {"type": "text", "text": "Look at these"},
        {"type": "image_url", "image_url": {"url": data_url("image/png", image), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": data_url("image/gif", animation)}},
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": data_url("application/pdf", document)},
        },
    ]
    sent = body(parts)

    text = message(ask(upstream, sent))["content"]

    assert text.startswith(
        f"Received 3 attachments: image/png {len(image)} bytes 64x48 sha256 {sha12(image)}; "
        f"image/gif {len(animation)} bytes 3x2 sha256 {sha12(animation)}; "
        f'application/pdf "report.pdf" {len(document)} bytes 2 pages sha256 {sha12(document)}'
        "\n\n**Demo reply**"
    )
    assert "> Look at these" in text
    assert json.loads(upstream.chat_requests()[-1].body) == sent
    assert content_of(ask_streamed(upstream, sent)) == text


def test_anthropic_blocks_are_described_with_their_facts(upstream):
    photo, sticker, document = jpeg(640, 480), webp(300, 200), pdf(1)
    blocks = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(photo)},
        },
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/webp", "data": b64(sticker)},
        },
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": b64(document)},
        },
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hé"}},
        {"type": "text", "text": "What are these?"},
    ]

    text = message(ask(upstream, body(blocks)))["content"]

    assert text.startswith(
        f"Received 4 attachments: image/jpeg {len(photo)} bytes 640x480 sha256 {sha12(photo)}; "
        f"image/webp {len(sticker)} bytes 300x200 sha256 {sha12(sticker)}; "
        f"application/pdf {len(document)} bytes 1 page sha256 {sha12(document)}; "
        f"text/plain 3 bytes sha256 {sha12('hé'.encode())}\n\n"
    )


def test_only_the_last_user_message_is_described(upstream):
    earlier = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": data_url("image/png", png(1, 1))}}],
    }
    data = {
        "model": "demo/echo",
        "messages": [
            earlier,
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
        ],
    }
    text = message(ask(upstream, data))["content"]
    assert text.startswith("**Demo reply**")
    assert "> and now?" in text


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            "remote image, not fetched",
        ),
        (
            {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}},
            "remote image, not fetched",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not base64@@"}},
            "image/png malformed base64, not decoded",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64"}},
            "malformed data URL (no comma)",
        ),
        (
            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
            "image URL with an unsupported scheme",
        ),
        ({"type": "image_url", "image_url": 5}, "image part without a URL"),
        (
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "%%%"},
            },
            "image/png malformed base64",
        ),
        (
            {
                "type": "image",
                "source": {
                    "type": "base64",
                    "media_type": "image/png",
                    "data": b64(b"\x89PNG\r\n\x1a\n"),
                },
            },
            "image/png 8 bytes dimensions unreadable",
        ),
        (
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": b64(gif(5, 7))},
            },
            "5x7 sha256",
        ),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "file reference file-abc, not fetched"),
        ({"type": "file", "file": "nope"}, "file part without a file object"),
        ({"type": "document", "source": None}, "document block without a source"),
        ({"type": "video", "video": {}}, 'a part of unknown type "video"'),
        ("just a string", "a part that is not an object"),
    ],
)
def test_odd_or_malformed_attachments_are_said_to_be_so_never_a_500(upstream, part, said):
    text = message(ask(upstream, body([part, {"type": "text", "text": "hi"}])))["content"]
    assert text.startswith("Received 1 attachment: ")
    assert said in text.split("\n")[0]


def test_a_file_whose_bytes_differ_from_its_declared_type_says_so(upstream):
    image = png(2, 2)
    text = message(
        ask(
            upstream,
            body([{"type": "image_url", "image_url": {"url": data_url("image/jpeg", image)}}]),
        )
    )["content"]
    assert text.startswith(
        f"Received 1 attachment: image/jpeg {len(image)} bytes 2x2 sha256 {sha12(image)} "
        "(the bytes look like image/png)"
    )


def test_a_body_nested_too_deep_for_the_parser_is_a_400(upstream):
    deep = b'{"model": "demo/echo", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = requests.post(f"{upstream.base_url}/chat/completions", data=deep, timeout=10)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
