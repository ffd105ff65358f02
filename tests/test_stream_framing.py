"""The stream parser finds the same events however the bytes are split between reads."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import client

EVENTS = st.lists(
    st.text(alphabet="ab:{}\r\n ", min_size=1, max_size=12).filter(
        lambda s: "\n" not in s and "\r" not in s
    ),
    min_size=1,
    max_size=6,
)


@pytest.fixture
def stream(upstream):
    """A ChatStream on a real (scripted, empty) answer, to feed bytes to by hand."""
    upstream.script_next(chunks=[])
    call = client.prepare_chat({"model": "m", "messages": [], "stream": True})
    opened = client.open_chat_stream(call)
    yield opened
    opened.close()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=EVENTS,
    newline=st.sampled_from(["\n", "\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_events_are_found_wherever_the_reads_split_them(stream, data, newline, cuts):
    body = "".join(f"data: {line}{newline}{newline}" for line in data).encode()
    stream._pending, stream._pending_newline, stream._held_cr = [], False, False
    bounds = sorted({cut % (len(body) + 1) for cut in cuts})
    pieces = [
        body[start:end] for start, end in zip([0, *bounds], [*bounds, len(body)], strict=True)
    ]

    found = [event for piece in pieces for event in stream._split(piece)] + stream._rest()

    assert found == data
