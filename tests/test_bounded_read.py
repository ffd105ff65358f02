"""read_limited: every non-streamed upstream body is read within a size and a time bound."""

import gzip
import socket
import threading
import time
import tracemalloc
import zlib

import pytest
import requests

from chat import client

MB = 1024 * 1024


@pytest.fixture
def one_shot():
    """Serve one HTTP answer (headers, then body pieces with pauses) on 127.0.0.1."""
    servers = []

    def serve(headers: dict[str, str], pieces: list[bytes], pause: float = 0.0) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)
        head = "HTTP/1.1 200 OK\r\nConnection: close\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )

        def run():
            connection, _ = server.accept()
            connection.recv(65536)
            try:
                connection.sendall(head.encode() + b"\r\n")
                for piece in pieces:
                    connection.sendall(piece)
                    time.sleep(pause)
            except OSError:
                pass  # the client hung up, as it should past a limit
            connection.close()

        threading.Thread(target=run, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/"

    yield serve
    for server in servers:
        server.close()


def _get(url: str) -> requests.Response:
    return requests.get(url, stream=True, timeout=5)


def test_it_decodes_an_honest_gzip_body(one_shot):
    body = b'{"ok": true}' * 1000
    url = one_shot({"Content-Encoding": "gzip"}, [gzip.compress(body)])

    assert client.read_limited(_get(url), limit=MB, deadline=None, what="The reply") == body


def test_it_decodes_deflate_with_and_without_the_zlib_header(one_shot):
    body = b"hello " * 500
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for encoded in (zlib.compress(body), raw.compress(body) + raw.flush()):
        url = one_shot({"Content-Encoding": "deflate"}, [encoded])
        assert client.read_limited(_get(url), limit=MB, deadline=None, what="The reply") == body


def test_it_stops_a_gzip_bomb_at_the_limit_without_expanding_it(one_shot):
    bomb = gzip.compress(b"\0" * (64 * MB))  # about 64 KB on the wire
    url = one_shot({"Content-Encoding": "gzip"}, [bomb])
    response = _get(url)

    tracemalloc.start()
    with pytest.raises(client.UpstreamError) as caught:
        client.read_limited(response, limit=MB, deadline=None, what="The reply")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert caught.value.kind == "too_big"
    assert caught.value.message.startswith("The reply passed the 1 MB limit")
    assert peak < 4 * MB


def test_it_stops_a_plain_body_past_the_limit(one_shot):
    url = one_shot({}, [b"x" * 65536] * 40)

    with pytest.raises(client.UpstreamError) as caught:
        client.read_limited(_get(url), limit=MB, deadline=None, what="The model list")

    assert caught.value.kind == "too_big"
    assert "The model list passed the 1 MB limit" in caught.value.message


def test_it_refuses_an_encoding_it_did_not_ask_for(one_shot):
    url = one_shot({"Content-Encoding": "br"}, [b"\x0b\x02\x80hello\x03"])

    with pytest.raises(client.UpstreamError) as caught:
        client.read_limited(_get(url), limit=MB, deadline=None, what="The reply")

    assert caught.value.kind == "bad_encoding"
    assert "'br'" in caught.value.message


def test_it_gives_up_on_a_body_that_trickles_past_the_deadline(one_shot):
    url = one_shot({}, [b"x"] * 100, pause=0.05)
    started = time.monotonic()

    with pytest.raises(client.UpstreamError) as caught:
        client.read_limited(_get(url), limit=MB, deadline=started + 0.5, what="The schema")

    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 2
