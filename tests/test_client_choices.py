"""Every choice of a reply, whole: text, reasoning, refusal, tool calls, logprobs and
annotations, streamed (joined by index) or not, each value checked where it enters.

The demo upstream answers with exactly the bytes each test scripts (`script_next`), over
real HTTP on 127.0.0.1: n=2 streams interleaved by index, tool-call fragments of two calls
interleaved, and hostile variants that must neither crash the reader nor grow what it keeps.
"""

import json

import pytest

from chat import client
from tests.helpers import on_event_loop

MAX_TOOL_CALLS = client.MAX_TOOL_CALLS


def sse(*chunks) -> list[bytes]:
    """Server-sent events: each chunk a dict (sent as JSON) or the exact text of a data line."""
    return [
        f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n".encode()
        for chunk in chunks
    ]


def chunk(*choices, **extra) -> dict:
    return {"id": "chatcmpl-1", "model": "m", "choices": list(choices), **extra}


def delta(index, finish_reason=None, logprobs=None, **fields) -> dict:
    choice = {"index": index, "delta": fields, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return choice


def streamed(upstream, *pieces: bytes) -> tuple[client.ChatStream, list[client.StreamEvent]]:
    upstream.script_next(chunks=pieces)
    stream = client.open_chat_stream(
        client.prepare_chat({"model": "m", "messages": [], "stream": True, "n": 2})
    )
    try:
        return stream, list(stream.events())
    finally:
        stream.close()


def answered(upstream, body: dict | bytes) -> client.Completion:
    upstream.script_next(body=body if isinstance(body, bytes) else json.dumps(body).encode())
    return client.send_chat(client.prepare_chat({"model": "m", "messages": []}))


def call(index, call_id=None, name=None, arguments=None, **extra) -> dict:
    function = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    fragment = {"index": index, **extra, "function": function}
    if call_id is not None:
        fragment |= {"id": call_id, "type": "function"}
    return fragment


# --- Streams -------------------------------------------------------------------


def test_it_keeps_two_interleaved_choices_apart(upstream):
    pieces = sse(
        chunk(delta(0, role="assistant", content="")),
        chunk(delta(1, role="assistant", content="")),
        chunk(delta(0, content="Red ")),
        chunk(delta(1, content="Blue ")),
        chunk(delta(1, content="sky")),
        chunk(delta(0, content="sun")),
        chunk(delta(1, finish_reason="length")),
        chunk(delta(0, finish_reason="stop")),
        "[DONE]",
    )

    stream, events = streamed(upstream, *pieces)

    assert [(event.choice, event.content) for event in events] == [
        (0, "Red "),
        (1, "Blue "),
        (1, "sky"),
        (0, "sun"),
    ]
    assert stream.choices() == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Red sun"},
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Blue sky"},
            "finish_reason": "length",
        },
    ]
    # Callers that know one reply read choice 0.
    assert (stream.content, stream.finish_reason) == ("Red sun", "stop")
    assert stream.assembled()["choices"] == stream.choices()
    assert stream.body == b"".join(pieces)  # the record is the stream as received


def test_one_chunk_that_adds_to_two_choices_gives_an_event_for_each(upstream):
    both = chunk(delta(1, content="B"), delta(0, content="A"))

    stream, events = streamed(
        upstream, *sse(both, chunk(delta(0, finish_reason="stop"), delta(1, finish_reason="stop")))
    )

    assert [(event.choice, event.content) for event in events] == [(1, "B"), (0, "A")]
    assert events[0].raw == events[1].raw == json.dumps(both)
    assert [choice["message"]["content"] for choice in stream.choices()] == ["A", "B"]


def test_it_joins_tool_call_arguments_by_their_index_with_two_calls_interleaved(upstream):
    pieces = sse(
        chunk(delta(0, role="assistant", content=None, tool_calls=[call(0, "call_a", "weather")])),
        chunk(delta(0, tool_calls=[call(1, "call_b", "time", "")])),
        chunk(delta(0, tool_calls=[call(0, arguments='{"ci')])),
        chunk(delta(0, tool_calls=[call(1, arguments='{"zone"')])),
        chunk(delta(0, tool_calls=[call(0, arguments='ty": "Oslo"}')])),
        chunk(delta(0, tool_calls=[call(1, arguments=': "UTC"}')])),
        chunk(delta(0, finish_reason="tool_calls")),
    )

    stream, events = streamed(upstream, *pieces)  # no [DONE]: the finish_reason ends it

    (choice,) = stream.choices()
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "time", "arguments": '{"zone": "UTC"}'},
                },
            ],
        },
        "finish_reason": "tool_calls",
    }
    assert len(events) == 6  # each fragment is news, though none is text
    assert events[0].tool_calls == (
        {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather"}},
    )
    assert events[2].tool_calls == ({"index": 0, "function": {"arguments": '{"ci'}},)
    assert stream.first_token_ms is not None and stream.content == ""


def test_fragments_without_an_index_follow_their_call_id(upstream):
    pieces = sse(
        chunk(delta(0, tool_calls=[{"id": "a", "function": {"name": "f", "arguments": "{"}}])),
        chunk(delta(0, tool_calls=[{"function": {"arguments": "}"}}])),
        chunk(delta(0, tool_calls=[{"id": "b", "function": {"name": "g", "arguments": "[]"}}])),
        chunk(delta(0, finish_reason="tool_calls")),
    )

    stream, _ = streamed(upstream, *pieces)

    calls = stream.choices()[0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("a", "{}"), ("b", "[]")]


def test_it_assembles_a_refusal_and_counts_it_as_the_first_token(upstream):
    pieces = sse(
        chunk(delta(0, role="assistant", refusal="I can't ")),
        chunk(delta(0, refusal="help with that.")),
        chunk(delta(0, finish_reason="stop")),
        "[DONE]",
    )

    stream, events = streamed(upstream, *pieces)

    assert [event.refusal for event in events] == ["I can't ", "help with that."]
    assert stream.choices()[0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help with that.",
    }
    assert stream.first_token_ms == events[0].at_ms


def test_it_keeps_logprobs_and_annotations(upstream):
    top = [
        {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
        {"token": "Yo", "logprob": -3, "bytes": None},
    ]
    entry = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": top}
    citation = {
        "type": "url_citation",
        "url_citation": {"url": "https://example.com", "title": "Ex", "start_index": 0},
    }
    pieces = sse(
        chunk(delta(0, content="Hi", logprobs={"content": [entry]})),
        chunk(delta(0, logprobs={"content": [{"token": "!", "logprob": -2.5, "bytes": None}]})),
        chunk(delta(0, annotations=[citation], finish_reason="stop")),
        "[DONE]",
    )

    stream, events = streamed(upstream, *pieces)

    assert [len(event.logprobs) for event in events] == [1, 1]  # annotations are no event
    (choice,) = stream.choices()
    assert choice["logprobs"] == {
        "content": [entry, {"token": "!", "logprob": -2.5, "bytes": None, "top_logprobs": []}]
    }
    assert choice["message"]["annotations"] == [citation]
    assert choice["message"]["content"] == "Hi"


def test_a_stream_is_broken_while_a_choice_seen_has_no_finish_reason(upstream):
    pieces = sse(
        chunk(delta(0, content="A")),
        chunk(delta(1, content="B")),
        chunk(delta(0, finish_reason="stop")),
    )

    with pytest.raises(client.UpstreamError) as raised:
        streamed(upstream, *pieces)

    assert raised.value.kind == "broken"
    assert "without a finish_reason for choice 1" in raised.value.message


def test_done_ends_a_stream_whatever_its_choices_lack(upstream):
    stream, _ = streamed(upstream, *sse(chunk(delta(1, content="B")), "[DONE]"))

    assert stream.choices()[0]["finish_reason"] is None
    assert (stream.content, stream.finish_reason) == ("", "")  # there is no choice 0


def test_the_event_loop_reader_assembles_the_same_choices(upstream):
    pieces = sse(
        chunk(delta(1, content="B", tool_calls=[call(0, "c", "f", "{}")])),
        chunk(delta(0, content="A")),
        chunk(delta(0, finish_reason="stop"), delta(1, finish_reason="tool_calls")),
    )
    threaded, _ = streamed(upstream, *pieces)

    async def read() -> client.AsyncChatStream:
        upstream.script_next(chunks=pieces)
        stream = await client.aopen_chat_stream(
            client.prepare_chat({"model": "m", "messages": [], "stream": True})
        )
        async for _ in stream.aevents():
            pass
        await stream.aclose()
        return stream

    assert on_event_loop(read).choices() == threaded.choices()


# --- Hostile streams -----------------------------------------------------------


def test_choice_indexes_out_of_range_or_not_numbers_are_ignored_with_a_note(upstream):
    pieces = sse(
        chunk(delta(10**9, content="far")),
        chunk(delta("0", content="text")),
        chunk(delta(-1, content="negative")),
        chunk(delta(True, content="boolean")),
        chunk(delta(1.0, content="float")),
        chunk("not a choice"),
        chunk(delta(0, content="kept"), finish_reason=None),
        chunk(delta(0, finish_reason="stop")),
    )

    stream, events = streamed(upstream, *pieces)

    assert [choice["index"] for choice in stream.choices()] == [0]
    assert [event.content for event in events] == ["kept"]
    assert stream.content == "kept"
    notes = "\n".join(stream.notes)
    assert "index '1000000000', outside 0 to 7 (MAX_CHOICES)" in notes
    assert "whose index is '0', not a whole number" in notes
    assert "index '-1'" in notes and "whose index is 'true'" in notes
    assert "a choice that is a string; it was ignored" in notes


def test_a_chunk_with_ten_thousand_choices_keeps_max_choices_of_them(upstream):
    many = [delta(index % 20, content="x", finish_reason="stop") for index in range(10_000)]

    stream, events = streamed(upstream, *sse(chunk(*many)))

    assert [choice["index"] for choice in stream.choices()] == list(range(8))
    assert len(events) == 8
    assert any("more than 8 choices at once" in note for note in stream.notes)


def test_the_same_bad_value_ten_thousand_times_makes_one_note(upstream):
    bad = chunk(delta(10**9, content="x"), delta(0, content="y"))

    stream, _ = streamed(upstream, *sse(*[bad] * 10_000, chunk(delta(0, finish_reason="stop"))))

    assert len(stream.notes) == 1
    assert len(stream.content) == 10_000


def test_ten_thousand_tool_calls_keep_at_most_the_bound(upstream):
    in_one_delta = [call(index, f"call_{index}", "f", "{}") for index in range(10_000)]
    one_per_chunk = [
        chunk(delta(1, tool_calls=[call(i, f"c{i}", "g", "{}")])) for i in range(10_000)
    ]
    without_index = [
        chunk(delta(2, tool_calls=[{"id": f"n{i}", "function": {"arguments": "{}"}}]))
        for i in range(300)
    ]
    pieces = sse(
        chunk(delta(0, tool_calls=in_one_delta)),
        *one_per_chunk,
        *without_index,
        chunk(*(delta(index, finish_reason="tool_calls") for index in range(3))),
    )

    stream, events = streamed(upstream, *pieces)

    assert [len(choice["message"]["tool_calls"]) for choice in stream.choices()] == [
        MAX_TOOL_CALLS
    ] * 3
    assert len(events[0].tool_calls) == MAX_TOOL_CALLS
    assert len(events) == 1 + MAX_TOOL_CALLS + MAX_TOOL_CALLS  # past the bound: no news
    assert "tool call with index '128', not one of 0 to 127" in "\n".join(stream.notes)


def test_tool_calls_of_the_wrong_shape_are_dropped_not_fatal(upstream):
    pieces = sse(
        chunk(delta(0, tool_calls={"index": 0})),
        chunk(delta(0, tool_calls="call it")),
        chunk(delta(0, tool_calls=[5, None, [call(0)]])),
        chunk(delta(0, tool_calls=[call("0", "x", "f", "{}"), call(-1, "y", "f", "{}")])),
        chunk(delta(0, tool_calls=[call(0, "a", "f", 12)])),  # arguments not a string
        chunk(delta(0, tool_calls=[call(0, arguments=["x"])])),
        chunk(delta(0, tool_calls=[call(0, arguments={"city": "Oslo"})])),  # Ollama's way
        chunk(delta(0, tool_calls=[{"index": 0, "function": "f", "id": 7, "type": ["function"]}])),
        chunk(delta(0, tool_calls=[call(0, name="n" * 10_000, arguments="!")])),
        chunk(delta(0, content="text", finish_reason="stop")),
    )

    stream, _ = streamed(upstream, *pieces)

    message = stream.choices()[0]["message"]
    assert message["content"] == "text"
    assert message["tool_calls"] == [
        {
            "id": "a",
            "type": "function",
            "function": {"name": "f", "arguments": '{"city":"Oslo"}!'},
        }
    ]
    notes = "\n".join(stream.notes)
    assert "tool_calls that are an object" in notes and "tool_calls that are a string" in notes
    assert "a tool call that is null" in notes and "a tool call function that is a string" in notes
    assert "tool call arguments that are a number, not text" in notes
    assert "tool call arguments that are a list" in notes
    assert "tool call with index '0', not one of 0 to 127" in notes


def test_a_tool_name_or_id_is_cut_like_an_id(upstream):
    long = "x" * 5_000
    pieces = sse(chunk(delta(0, tool_calls=[call(0, long, long, "{}")], finish_reason="stop")))

    stream, events = streamed(upstream, *pieces)

    (tool_call,) = stream.choices()[0]["message"]["tool_calls"]
    assert len(tool_call["id"]) == len(tool_call["function"]["name"]) == client.ID_CHARS
    assert events[0].tool_calls[0]["id"] == tool_call["id"]


def test_hostile_logprobs_are_bounded(upstream):
    # NaN is no JSON, but Python's parser reads it (json.dumps would write it too).
    nan_chunk = chunk(delta(0, logprobs={"content": [{"token": "a", "logprob": float("nan")}]}))
    tops = [{"token": f"t{i}", "logprob": -1.0} for i in range(1_000)]
    pieces = sse(
        json.dumps(nan_chunk),
        chunk(delta(0, logprobs="many")),
        chunk(delta(0, logprobs={"content": "many"})),
        chunk(delta(0, logprobs={"content": [{"token": 5, "logprob": 0}, {"token": "b"}]})),
        chunk(delta(0, logprobs={"content": [{"token": "c", "logprob": 10**30}]})),
        chunk(
            delta(
                0,
                logprobs={
                    "content": [
                        {
                            "token": "t" * 5_000,
                            "logprob": -1,
                            "bytes": [1, 300],
                            "top_logprobs": tops,
                        }
                    ]
                },
            )
        ),
        chunk(delta(0, content="ok", finish_reason="stop")),
    )

    stream, events = streamed(upstream, *pieces)

    (entry,) = stream.choices()[0]["logprobs"]["content"]
    assert len(entry["token"]) == client.TOKEN_CHARS
    assert entry["bytes"] is None  # 300 is no byte
    assert len(entry["top_logprobs"]) == client.MAX_TOP_LOGPROBS
    assert "logprobs of the wrong shape" in "\n".join(stream.notes)
    assert "a logprobs entry of the wrong shape" in "\n".join(stream.notes)
    assert [event.content for event in events if event.content] == ["ok"]
    json.dumps(stream.assembled(), allow_nan=False)  # nothing a database would refuse


def test_logprobs_past_the_bound_for_one_choice_are_dropped(upstream):
    bound = client.MAX_LOGPROB_TOKENS
    entries = {"content": [{"token": "a", "logprob": -1}] * 5_000}
    count = bound // 5_000 + 1
    pieces = sse(
        *[chunk(delta(0, content="a", logprobs=entries)) for _ in range(count)],
        chunk(delta(0, finish_reason="stop")),
    )

    stream, events = streamed(upstream, *pieces)

    assert len(stream.choices()[0]["logprobs"]["content"]) == bound
    assert sum(len(event.logprobs) for event in events) == bound
    assert len(events) == count  # the text still comes
    assert any(f"more than {bound} tokens" in note for note in stream.notes)


def test_deep_or_huge_annotations_are_cut_to_a_small_object(upstream):
    deep: dict = {"leaf": "x"}
    for _ in range(50):
        deep = {"a": deep}
    wide = {"type": "url_citation", "items": list(range(10_000)), "text": "t" * 10_000}
    pieces = sse(
        chunk(delta(0, annotations=[deep, wide, "not an object", 5])),
        chunk(delta(0, annotations={"type": "url_citation"})),
        *[chunk(delta(0, annotations=[{"n": i}] * 10)) for i in range(30)],
        chunk(delta(0, content="ok", finish_reason="stop")),
    )

    stream, _ = streamed(upstream, *pieces)

    annotations = stream.choices()[0]["message"]["annotations"]
    assert len(annotations) == client.MAX_ANNOTATIONS
    kept_deep, kept_wide = annotations[:2]
    assert json.dumps(kept_deep).count("{") == client.ANNOTATION_DEPTH
    assert len(kept_wide["items"]) == client.ANNOTATION_ITEMS
    assert len(kept_wide["text"]) == client.ANNOTATION_TEXT_CHARS
    assert "annotations that are an object" in "\n".join(stream.notes)


def test_a_chunk_nested_past_the_depth_limit_ends_the_stream_with_its_text_kept(upstream):
    deep = '{"choices": [{"index": 0, "delta": {"tool_calls": ' + "[" * 5_000 + "]" * 5_000
    pieces = sse(chunk(delta(0, content="kept")), deep + "}}]}")

    upstream.script_next(chunks=pieces)
    stream = client.open_chat_stream(client.prepare_chat({"model": "m", "stream": True}))
    with pytest.raises(client.UpstreamError) as raised:
        list(stream.events())

    assert raised.value.kind == "bad_json" and "nested deeper than 64" in raised.value.message
    assert stream.content == "kept"


def test_refusal_that_is_not_text_ends_the_stream_like_content_does(upstream):
    pieces = sse(chunk(delta(0, content="kept")), chunk(delta(1, refusal={"no": 1})))

    upstream.script_next(chunks=pieces)
    stream = client.open_chat_stream(client.prepare_chat({"model": "m", "stream": True}))
    with pytest.raises(client.UpstreamError) as raised:
        list(stream.events())

    assert raised.value.kind == "bad_reply"
    assert raised.value.message.startswith("A chunk's choice 1 refusal is an object, not text")
    assert stream.content == "kept"


# --- Non-streamed replies --------------------------------------------------------


def test_a_non_streamed_reply_carries_every_choice_sorted_by_index(upstream):
    body = {
        "id": "chatcmpl-2",
        "choices": [
            {
                "index": 1,
                "message": {"role": "assistant", "content": "Second", "reasoning_content": "R"},
                "finish_reason": "length",
            },
            {
                "index": 0,
                "message": {"role": "assistant", "content": "First"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "First", "logprob": -0.5, "bytes": None}]},
            },
        ],
    }

    completion = answered(upstream, body)

    assert (completion.content, completion.finish_reason) == ("First", "stop")
    assert completion.choices == (
        {
            "index": 0,
            "message": {"role": "assistant", "content": "First"},
            "finish_reason": "stop",
            "logprobs": {
                "content": [{"token": "First", "logprob": -0.5, "bytes": None, "top_logprobs": []}]
            },
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Second", "reasoning_content": "R"},
            "finish_reason": "length",
        },
    )
    assert completion.body == json.dumps(body).encode()  # kept byte for byte


def test_a_reply_that_is_only_tool_calls_is_a_reply(upstream):
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}

    completion = answered(upstream, body)

    assert (completion.content, completion.finish_reason) == ("", "tool_calls")
    assert completion.choices[0]["message"] == message


def test_a_reply_that_is_only_a_refusal_is_a_reply(upstream):
    message = {
        "role": "assistant",
        "content": None,
        "refusal": "No.",
        "annotations": [{"type": "note"}],
    }

    completion = answered(upstream, {"choices": [{"message": message, "finish_reason": "stop"}]})

    assert completion.choices[0]["message"] == message
    assert completion.choices[0]["index"] == 0  # no index: its place in the list


def test_choices_without_a_message_are_still_no_reply(upstream):
    body = {"choices": [{"index": 0, "finish_reason": "stop"}, {"index": 1, "message": "hi"}]}

    with pytest.raises(client.UpstreamError) as raised:
        answered(upstream, body)

    assert raised.value.kind == "empty" and raised.value.http_status == 200
    assert "no message in its choices" in raised.value.message


def test_hostile_choices_in_a_non_streamed_reply_are_ignored_with_notes(upstream):
    message = {"role": "assistant", "content": "ok"}
    many_calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in range(10_000)
    ]
    body = {
        "choices": [
            {"index": 10**9, "message": {"content": "far"}},
            {"index": "0", "message": {"content": "text"}},
            {"index": 0, "message": {**message, "tool_calls": many_calls}, "finish_reason": "stop"},
            {"index": 0, "message": {"content": "again"}},
            {"index": 1, "message": {"content": "b", "tool_calls": {"not": "a list"}}},
            {
                "index": 2,
                "message": {"content": "c", "tool_calls": [{"function": {"arguments": 5}}]},
            },
            *[{"index": 3, "message": {"content": "d"}}] * 10_000,
        ]
    }

    completion = answered(upstream, body)

    assert completion.content == "ok"
    assert [choice["index"] for choice in completion.choices] == [0, 1, 2, 3]
    assert len(completion.choices[0]["message"]["tool_calls"]) == MAX_TOOL_CALLS
    assert "tool_calls" not in completion.choices[1]["message"]
    assert completion.choices[2]["message"]["tool_calls"] == [
        {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    ]
    notes = "\n".join(completion.notes)
    assert "index '1000000000'" in notes and "whose index is '0'" in notes
    assert "sent choice 0 twice" in notes
    assert "more than 128 tool calls for one choice" in notes
    assert "more than 8 choices at once" in notes
    assert len(completion.notes) <= client.MAX_NOTES


def test_a_reply_whose_other_choice_holds_bad_text_is_a_bad_reply(upstream):
    body = {"choices": [{"message": {"content": "ok"}}, {"message": {"content": 5}}]}

    with pytest.raises(client.UpstreamError) as raised:
        answered(upstream, body)

    assert raised.value.kind == "bad_reply"
    assert "The reply's choice 1 content is a number, not text" in raised.value.message
