"""A 5 MB image in a 20-turn conversation: what is stored, and what a turn costs.

    .venv/bin/python bench/attachments.py [--turns 20] [--megabytes 5]

Runs the app in process (a temporary SQLite file, Django's full stack through the test
client, the form path) against the demo upstream over 127.0.0.1. Sends one message with the
image attached, then `turns - 1` text messages, each of which sends the image again; and, in
the same run, the same number of turns without any file (the baseline). Prints a table:

- bytes stored: the attachment once, the request bodies as stored (base64 cut out), against
  the bytes that went over the wire (what storing each body whole would have cost);
- every stored call's download equals the bytes the demo received (checked, not assumed);
- time per turn with the image against the turn without it, and against posting the same
  bytes straight to the upstream (the floor: 6.7 MB of base64 has to go over the wire).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(base_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="playground-attachments-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="playground.settings",
        DEBUG="false",
        SECRET_KEY="attachments-bench-" + "x" * 50,
        ALLOWED_HOSTS="testserver",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        UPSTREAM_BASE_URL=base_url,
        UPSTREAM_API_KEY="attachments-bench",
        UPSTREAM_CALLS_PER_MINUTE="0",
        UPSTREAM_CALLS_PER_MINUTE_GLOBAL="0",
        MAX_ATTACHMENT_BYTES=str(64 * 1024 * 1024),
        MAX_MESSAGE_ATTACHMENT_BYTES=str(64 * 1024 * 1024),
        MAX_REQUEST_BYTES=str(64 * 1024 * 1024),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def image(megabytes: float) -> bytes:
    """A PNG header and IHDR, then `megabytes` of random bytes (the app checks the header)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 1024, 1024, 8, 2, 0, 0, 0)
    ihdr = b"IHDR" + header
    chunk = struct.pack(">I", len(header)) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + os.urandom(int(megabytes * 1024 * 1024))


def turn(client, conversation, text: str, files=None) -> float:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    data = {
        "content": text,
        "idempotency_key": uuid.uuid4().hex,
        "model": "demo/echo",
        "extra_params": "",
    }
    if files:
        data["attachments"] = [SimpleUploadedFile("big.png", files, "image/png")]
    started = time.perf_counter()
    response = client.post(reverse("message_send", args=[conversation.public_id]), data)
    elapsed = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    return elapsed


def run(turns: int, megabytes: float) -> None:
    import requests

    from chat.demo_upstream import DemoUpstream

    demo = DemoUpstream().start()
    try:
        configure(demo.base_url)
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django.test import Client
        from django.urls import reverse

        from chat.models import ApiCall, Attachment, Conversation

        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        client = Client()
        client.force_login(user)
        data = image(megabytes)

        with_file = Conversation.objects.create(owner=user, model="demo/echo")
        timed = [turn(client, with_file, "What is in it?", files=data)]
        timed += [turn(client, with_file, f"And turn {n}?") for n in range(2, turns + 1)]
        plain = Conversation.objects.create(owner=user, model="demo/echo")
        baseline = [turn(client, plain, f"Turn {n}?") for n in range(1, turns + 1)]

        calls = list(ApiCall.objects.filter(conversation=with_file).order_by("created"))
        received = demo.chat_requests()[: len(calls)]
        for call, request in zip(calls, received, strict=True):
            download = client.get(reverse("call_download", args=[call.public_id, "request"]))
            assert download.content == request.body, "a download differs from what was sent"
        stored_bodies = sum(len(call.request_body.encode()) for call in calls)
        wire_bytes = sum(len(request.body) for request in received)
        attachment_bytes = sum(a.size for a in Attachment.objects.all())
        direct = []
        for _ in range(5):  # the same bytes posted straight to the upstream: the floor
            started = time.perf_counter()
            requests.post(
                f"{demo.base_url}/chat/completions",
                data=received[-1].body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            ).raise_for_status()
            direct.append(time.perf_counter() - started)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            database_bytes = pages * cursor.fetchone()[0]
    finally:
        demo.stop()

    mb = 1024 * 1024
    first, later = timed[0], statistics.median(timed[1:]) if len(timed) > 1 else timed[0]
    base = statistics.median(baseline)
    print(f"{turns} turns, a {megabytes:g} MB image attached on the first and resent on each")
    print()
    print("| what | value |")
    print("| --- | --- |")
    print(f"| attachments stored | {Attachment.objects.count()} ({attachment_bytes / mb:.1f} MB) |")
    print(f"| request bodies as stored | {stored_bodies / 1024:.1f} KB |")
    print(f"| request bodies as sent (stored whole, this would be) | {wire_bytes / mb:.1f} MB |")
    print(f"| database file | {database_bytes / mb:.1f} MB |")
    print(f"| downloads equal to the bytes sent | {len(calls)} of {len(calls)} |")
    print(f"| first turn (upload + send), ms | {first * 1000:.0f} |")
    print(f"| later turn with the image, median ms | {later * 1000:.0f} |")
    print(f"| turn without a file, median ms (baseline) | {base * 1000:.0f} |")
    floor = statistics.median(direct)
    print(f"| the same body posted straight to the upstream, median ms | {floor * 1000:.0f} |")
    print(f"| later turn / text-only turn | {later / base:.1f}× |")
    own = (later - floor) * 1000
    print(f"| later turn minus the direct post, ms (the app's own cost) | {own:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--megabytes", type=float, default=5)
    arguments = parser.parse_args()
    run(arguments.turns, arguments.megabytes)


if __name__ == "__main__":
    main()
