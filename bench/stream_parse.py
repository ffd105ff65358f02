"""CPU time to read one huge stream event: the stream parser must be linear in the bytes.

    .venv/bin/python bench/stream_parse.py [--megabytes 20] [--async]

Starts the demo upstream in this process and reads, with the app's own client
(chat/client.py), a stream whose second content event is one data line of about
N MB (the demo's ``huge_line`` fault). The reply limit is raised above N for the
run. Prints the CPU time of this process (the demo server included) to read it.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=20)
    parser.add_argument("--async", dest="use_async", action="store_true")
    options = parser.parse_args()
    size = int(options.megabytes * 1_000_000)

    from chat.demo_upstream import DemoUpstream

    server = DemoUpstream().start()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "UPSTREAM_BASE_URL": server.base_url,
            "UPSTREAM_API_KEY": "bench",
            "UPSTREAM_MAX_REPLY_BYTES": str(size * 2),
            "UPSTREAM_READ_TIMEOUT": "120",
        }
    )
    import django

    django.setup()
    from chat import client

    def read(spec: str) -> tuple[float, int]:
        payload = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}
        call = client.prepare_chat({**payload, "stream": True, "demo_fault": spec})
        started = time.process_time()
        if options.use_async:

            async def run() -> int:
                stream = await client.aopen_chat_stream(call)
                async for _ in stream.aevents():
                    pass
                return len(stream.content)

            length = asyncio.run(run())
        else:
            stream = client.open_chat_stream(call)
            for _ in stream.events():
                pass
            length = len(stream.content)
        return time.process_time() - started, length

    reader = "httpx (async)" if options.use_async else "requests (threads)"
    seconds, length = read(f"huge_line={size}")
    print(f"{reader}: one {size / 1e6:g} MB event line: {seconds:.2f} s CPU ({length:,} chars)")
    server.stop()


if __name__ == "__main__":
    main()
