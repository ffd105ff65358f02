"""Many users chatting at once against the production server: throughput, latency, losses.

    .venv/bin/python bench/load.py [--users 64] [--turns 6] [--database-url URL]
                                   [--write docs/performance.md]

Starts the demo upstream (first token after 200 ms, then a chunk every 10 ms) and the app
under the documented production server (uvicorn, as `make serve` runs it), on a
fresh SQLite file or on the PostgreSQL database given (emptied first). Each simulated user
has a session and a conversation; all start together, and each takes `turns` turns, in
turn streamed (the browser's path) and plain (the form without JavaScript), reloading the
conversation page after each, as a person does.

Reports throughput, latency percentiles per kind of request, errors (5xx, refused or
broken connections, broken streams), "database is locked" and tracebacks in the server's
log, and lost messages: messages sent against rows stored (user messages, and replies
stored complete). Target (issue 7): at 64 users, zero 5xx, zero "database is locked",
zero lost messages.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streaming_ttft import (
    PYTHON,
    ROOT,
    SERVERS,
    app_environment,
    django_shell,
    free_port,
    prepare_users,
    wait_for_port,
)

FIRST_TOKEN_DELAY = 0.2
CHUNK_DELAY = 0.01
CSRF = "c" * 32


class Tally:
    """Latencies per kind of request, and every failure, from all client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_ms: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.sent = 0

    def record(self, kind: str, started: float) -> None:
        with self.lock:
            self.latency_ms[kind].append((time.perf_counter() - started) * 1000)

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


def request(port, method, path, user, body=None):
    headers = {"Cookie": f"sessionid={user['session']}; csrftoken={CSRF}", "X-CSRFToken": CSRF}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.request(method, path, body, headers)
    return connection, connection.getresponse()


def form(text: str) -> str:
    return urllib.parse.urlencode(
        {
            "content": text,
            "idempotency_key": os.urandom(8).hex(),
            "model": "demo/echo",
            **dict.fromkeys(
                ("system_prompt", "temperature", "max_tokens", "top_p", "stop", "extra_params"),
                "",
            ),
        }
    )


def turn(port: int, user: dict, number: int, tally: Tally) -> None:
    conversation = f"/c/{user['conversation']}/"
    streamed = number % 2 == 0
    kind = "send, streamed" if streamed else "send, form"
    path = conversation + ("stream/" if streamed else "send/")
    started = time.perf_counter()
    with tally.lock:
        tally.sent += 1
    try:
        connection, response = request(port, "POST", path, user, form(f"turn {number}"))
        body = response.read()
        connection.close()
        expected = 200 if streamed else 302
        if response.status != expected:
            tally.fail(f"{kind}: HTTP {response.status}")
            return
        if streamed and b"event: done" not in body:
            tally.fail(f"{kind}: the stream ended without its done event")
            return
        tally.record(kind, started)
        started = time.perf_counter()
        connection, response = request(port, "GET", conversation, user)
        response.read()
        connection.close()
        if response.status != 200:
            tally.fail(f"page: HTTP {response.status}")
            return
        tally.record("conversation page", started)
    except Exception as error:  # a benchmark counts every failure, whatever it is
        tally.fail(f"{kind}: {error!r}")


def run(port: int, users: list[dict], turns: int) -> tuple[Tally, float]:
    tally = Tally()
    barrier = threading.Barrier(len(users))

    def client(user: dict) -> None:
        barrier.wait()
        for number in range(turns):
            turn(port, user, number, tally)

    threads = [threading.Thread(target=client, args=(user,)) for user in users]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - started


def stored(env: dict[str, str]) -> dict[str, int]:
    script = """
import json
from chat.models import Message
print(json.dumps({
    "user": Message.objects.filter(role="user").count(),
    "complete": Message.objects.filter(role="assistant", status="complete").count(),
}))
"""
    return django_shell(env, script)


def percentile(values: list[float], fraction: float) -> float:
    values = sorted(values)
    return values[max(0, round(fraction * len(values)) - 1)] if values else float("nan")


def report(database: str, users: int, tally: Tally, seconds: float, counts: dict, log: str):
    rows = []
    for kind, values in sorted(tally.latency_ms.items()):
        rows.append(
            f"| {database} | {users} | {kind} | {len(values)} | {statistics.median(values):.0f} "
            f"| {percentile(values, 0.95):.0f} | {percentile(values, 0.99):.0f} |"
        )
    five_xx = sum(" HTTP 5" in error for error in tally.errors)
    summary = {
        "database": database,
        "users": users,
        "messages sent": tally.sent,
        "user messages stored": counts["user"],
        "replies stored complete": counts["complete"],
        "lost": tally.sent - min(counts["user"], counts["complete"]),
        "throughput (messages/s)": round(tally.sent / seconds, 1),
        "errors": len(tally.errors),
        "5xx": five_xx,
        '"database is locked" in the log': log.count("database is locked"),
        "tracebacks in the log": log.count("Traceback"),
    }
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--write", type=Path, help="replace the table in this Markdown file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="playground-load-"))
    demo_port, app_port = free_port(), free_port()
    env = app_environment(workdir, demo_port)
    env["UPSTREAM_CALLS_PER_MINUTE"] = "0"  # simulated users type faster than people
    env["UPSTREAM_CALLS_PER_MINUTE_GLOBAL"] = "0"
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgres") else "SQLite"
    demo = subprocess.Popen(
        [PYTHON, "manage.py", "demo_upstream", "--port", str(demo_port),
         "--first-token-delay", str(FIRST_TOKEN_DELAY), "--chunk-delay", str(CHUNK_DELAY)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings", "DEBUG": "true"},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run([PYTHON, "manage.py", "flush", "--noinput"], cwd=ROOT, env=env, check=True)
    users = prepare_users(env, args.users)
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            SERVERS["uvicorn (ASGI)"](app_port), cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            wait_for_port(demo_port)
            wait_for_port(app_port)
            tally, seconds = run(app_port, users, args.turns)
        finally:
            server.terminate()
            server.wait(timeout=30)
            demo.terminate()
            demo.wait(timeout=10)
    rows, summary = report(
        database, args.users, tally, seconds, stored(env), log_path.read_text(errors="replace")
    )
    table = "\n".join(
        [
            "| database | users | request | count | p50 (ms) | p95 (ms) | p99 (ms) |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    facts = "\n".join(f"- {name}: {value}" for name, value in summary.items())
    print(table, facts, sep="\n\n")
    for error in tally.errors[:5]:
        print("  error:", error)
    if args.write:
        replace_section(args.write, database, f"{table}\n\n{facts}")


def replace_section(path: Path, database: str, text: str) -> None:
    begin, end = f"<!-- load-{database.lower()}:begin -->", f"<!-- load-{database.lower()}:end -->"
    content = path.read_text()
    before, rest = content.split(begin, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{begin}\n{text}\n{end}{after}")


if __name__ == "__main__":
    main()
