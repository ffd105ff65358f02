"""Floors for `streaming_ttft.py --floors`: what relaying a stream costs before any of our work.

Two stand-ins for the app's stream endpoint, both relaying the upstream's stream
to the same events the benchmark reads (`delta`, then `done`), and storing nothing:

* `raw_application`: a bare ASGI app under uvicorn, with httpx to the upstream and
  no Django: the cost of the extra HTTP hop alone.
* `stream_relay` in bench/floor_urls.py, served by Django with
  `bench.floor_settings`: the app's full middleware, the login check (session
  and user) and the owner check, then the same relay. Everything the real
  endpoint does on top of this (the form, the idempotency key, the call limit,
  saving the message, the pending reply and the call record, building the
  request body) is what the app adds beyond the floor.
"""

import json
import os

import httpx

from bench.streaming_ttft import PROMPT

BODY = json.dumps(
    {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": PROMPT}],  # the demo echoes it: same length
        "stream": True,
    }
).encode()
_client: httpx.AsyncClient | None = None


async def relay():
    """The upstream's content chunks as `delta` events, then `done`."""
    global _client
    if _client is None:
        # The pool as chat/client.py sets it: httpx's default of 100 connections would
        # queue streams beyond the 100th, a wait the app does not have.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        _client = httpx.AsyncClient(timeout=60, limits=limits)
    url = os.environ["UPSTREAM_BASE_URL"] + "/chat/completions"
    request = _client.build_request(
        "POST", url, content=BODY, headers={"Content-Type": "application/json"}
    )
    response = await _client.send(request, stream=True)
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:") and '"content": "' in line and '"content": ""' not in line:
                yield b'event: delta\ndata: {"content": "."}\n\n'
    finally:
        await response.aclose()
    yield b"event: done\ndata: {}\n\n"


async def raw_application(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async for chunk in relay():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
