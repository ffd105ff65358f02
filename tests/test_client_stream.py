"""The stream parser against an upstream that frames events with CRLF, split across writes."""

import socket
import threading
import time

import pytest

from chat import client


@pytest.fixture
def crlf_upstream(settings):
    """A one-shot HTTP server whose SSE uses \\r\\n line ends, one split between two writes."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    chunk = '{"choices":[{"delta":{"content":"%s"},"finish_reason":%s}]}'
    writes = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        f"data: {chunk % ('Hello', 'null')}\r\n\r".encode(),  # the event's last \n comes later
        f"\ndata: {chunk % (' world', '"stop"')}\r\n\r\ndata: [DONE]\r\n\r\n".encode(),
    ]

    def serve():
        connection, _ = server.accept()
        connection.recv(65536)
        for data in writes:
            connection.sendall(data)
            time.sleep(0.05)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    settings.UPSTREAM_BASE_URL = f"http://127.0.0.1:{port}/v1"
    yield
    server.close()


def test_it_reads_crlf_framed_events_split_across_packets(crlf_upstream):
    stream = client.open_chat_stream(
        client.prepare_chat({"model": "m", "messages": [], "stream": True})
    )

    events = list(stream.events())

    assert [event.content for event in events] == ["Hello", " world"]
    assert (stream.content, stream.finish_reason) == ("Hello world", "stop")
    assert stream.raw_events[-1]["data"] == "[DONE]"
