"""Time to first token through the app versus straight to the upstream, in the same run.

    .venv/bin/python bench/streaming_ttft.py [--concurrency 1 64 256] [--floors] \
        [--write docs/performance.md]

Starts the demo upstream (realistic pacing: a first-token delay and a per-chunk
delay) and the app under the production server, then for each concurrency opens
that many streams, directly against the upstream and through the app, and
reports p50/p95 time to first token and errors, two ways:

* burst: all streams start at the same instant (everyone presses Send at once);
* steady: that many clients each stream back to back for a few rounds, so that
  many streams are always in flight and starts spread out as they do in use;
  the first round (the burst) is left out of these numbers.

Through the app, a "first token" is the first `delta` event the browser would
see, "total" the time to the `done` event (the last byte, directly), and
"longest pause" each stream's longest wait between two pieces of text (p95 over
the streams: how much the text stutters under load); every reply is then
checked in the database (complete, with all its text). Servers compared on the
same code: uvicorn (ASGI, the documented `make serve`) and
gunicorn gthread (threaded WSGI). `--floors` also measures two relays that store
nothing (bench/floor.py): what the extra HTTP hop costs, and what Django's
request handling with the login and owner checks costs, before any of our work.
"""

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FIRST_TOKEN_DELAY = 0.3  # seconds; a fast hosted model
CHUNK_DELAY = 0.02  # seconds between chunks (~50 tokens/s)
PROMPT = "Explain time to first token in one paragraph."
ROUNDS = 4  # streams per client: one burst, then three back to back (20 for one client)


@dataclass
class Result:
    ttft_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    pause_ms: list[float] = field(default_factory=list)  # each stream's longest wait between tokens
    errors: list[str] = field(default_factory=list)
    sent: int = 0

    def row(self, label: str, concurrency: int) -> dict:
        return {
            "target": label,
            "streams": concurrency,
            "p50": percentile(self.ttft_ms, 50),
            "p95": percentile(self.ttft_ms, 95),
            "total_p50": percentile(self.total_ms, 50),
            "total_p95": percentile(self.total_ms, 95),
            "pause_p95": percentile(self.pause_ms, 95),
            "errors": len(self.errors),
        }


class Tokens:
    """When a stream's text arrived: the first time, and the longest wait between two."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.longest_pause = 0.0

    def arrived(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.longest_pause = max(self.longest_pause, now - self.last)
        self.last = now

    def record(self, started: float, result: Result) -> None:
        result.ttft_ms.append((self.first - started) * 1000)
        result.total_ms.append((time.perf_counter() - started) * 1000)
        result.pause_ms.append(self.longest_pause * 1000)


def percentile(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    if percent == 50:
        return statistics.median(ordered)
    return ordered[max(0, round(percent / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def app_environment(workdir: Path, demo_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "DJANGO_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="bench-" + "k3y" * 20 + "-not-for-production",
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=env.get("BENCH_DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"),
        UPSTREAM_BASE_URL=f"http://127.0.0.1:{demo_port}/v1",
        UPSTREAM_API_KEY="bench-key",
        # Hundreds of simulated users at once: past the server-wide call limit by design.
        UPSTREAM_CALLS_PER_MINUTE_GLOBAL="0",
        DJANGO_SETTINGS_MODULE="playground.settings",
    )
    return env


def prepare_users(env: dict[str, str], count: int) -> list[dict[str, str]]:
    """Migrate and create one user, session and conversation per concurrent stream."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    script = f"""
import json, secrets
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from chat.models import Conversation
users = []
for n in range({count}):
    user, _ = get_user_model().objects.get_or_create(username=f"bench{{n}}")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    conversation = Conversation.objects.create(owner=user, model="demo/echo")
    users.append({{"session": session.session_key, "conversation": str(conversation.public_id)}})
print(json.dumps(users))
"""
    return django_shell(env, script)


def django_shell(env: dict[str, str], script: str):
    """Run `script` in `manage.py shell` with the app's environment; its last line is JSON."""
    output = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def stream_direct(port: int, result: Result) -> None:
    body = json.dumps(
        {"model": "demo/echo", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    result.sent += 1
    started = time.perf_counter()
    try:
        connection.request(
            "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        tokens = Tokens()
        for line in response:
            text = line.startswith(b"data:") and b'"content": "' in line
            if text and b'"content": ""' not in line:
                tokens.arrived()
        if tokens.first is None:
            raise RuntimeError("no content")
        tokens.record(started, result)
    except Exception as error:  # a benchmark counts every failure, whatever it is
        result.errors.append(repr(error))
    finally:
        connection.close()


def stream_through_app(port: int, user: dict, result: Result) -> None:
    token = "b" * 32
    form = urllib.parse.urlencode(
        {
            "content": PROMPT,
            "idempotency_key": os.urandom(8).hex(),
            "model": "demo/echo",
            "system_prompt": "",
            "temperature": "",
            "max_tokens": "",
            "top_p": "",
            "stop": "",
            "extra_params": "",
        }
    )
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"sessionid={user['session']}; csrftoken={token}",
        "X-CSRFToken": token,
    }
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    result.sent += 1
    started = time.perf_counter()
    try:
        connection.request("POST", f"/c/{user['conversation']}/stream/", form, headers)
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        tokens = Tokens()
        events = []
        for line in response:
            if line.startswith(b"event: "):
                events.append(line[7:].strip())
                if events[-1] == b"delta":
                    tokens.arrived()
        if tokens.first is None or events[-1] != b"done":
            raise RuntimeError(f"stream ended after {events[-1:]}")
        tokens.record(started, result)
    except Exception as error:  # a benchmark counts every failure, whatever it is
        result.errors.append(repr(error))
    finally:
        connection.close()


def run_load(stream, concurrency: int, rounds: int) -> tuple[Result, Result]:
    rounds = 20 if concurrency == 1 else rounds
    """`concurrency` clients start together, then each streams `rounds` times back to back.

    Returns (burst, steady): the first round of every client, and the rest.
    """
    burst, steady = Result(), Result()
    barrier = threading.Barrier(concurrency)

    def client(n: int) -> None:
        barrier.wait()
        stream(n, burst)
        for _ in range(rounds - 1):
            stream(n, steady)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return burst, steady


def measure_app(server, port, users, concurrency, env, checks, stores=True) -> list[dict]:
    """Stream through `server`; when it `stores` replies, check each was stored complete."""
    before = stored_replies(env) if stores else None
    burst, steady = run_load(
        lambda n, result: stream_through_app(port, users[n], result), concurrency, ROUNDS
    )
    rows = [
        burst.row(f"{server}, burst", concurrency),
        steady.row(f"{server}, steady", concurrency),
    ]
    stored_note = ""
    if stores:
        sent = burst.sent + steady.sent
        stored = stored_replies(env)["complete"] - before["complete"]
        checks.append(
            f"{server}, {concurrency} clients: {sent} replies sent, {stored} stored complete"
        )
        stored_note = f" | stored {stored}/{sent}"
    print(format_row(rows[0]), "\n" + format_row(rows[1]) + stored_note, flush=True)
    for error in (burst.errors + steady.errors)[:1]:
        print("   first error:", error, flush=True)
    return rows


def stored_replies(env: dict[str, str]) -> dict[str, int]:
    script = """
import json
from chat.models import Message
replies = Message.objects.filter(role="assistant")
print(json.dumps({"replies": replies.count(),
                  "complete": replies.filter(status="complete").exclude(content="").count()}))
"""
    return django_shell(env, script)


def uvicorn(application: str):
    return lambda port: [
        str(Path(PYTHON).parent / "uvicorn"),
        application,
        "--port",
        str(port),
        "--workers",
        os.environ.get("WEB_CONCURRENCY", "2"),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


SERVERS = {
    "uvicorn (ASGI)": uvicorn("playground.asgi:application"),
    "gunicorn gthread": lambda port: [
        str(Path(PYTHON).parent / "gunicorn"),
        "-c",
        "playground/gunicorn.conf.py",
        "playground.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "/dev/null",
    ],
}
# --floors: stand-ins that relay without storing anything (bench/floor.py), under
# uvicorn as the app runs, with the settings module each needs.
FLOORS = {
    "floor: uvicorn + httpx only": (uvicorn("bench.floor:raw_application"), {}),
    "floor: Django + login + owner check": (
        uvicorn("playground.asgi:application"),
        {"DJANGO_SETTINGS_MODULE": "bench.floor_settings"},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS))
    parser.add_argument("--write", type=Path, help="replace the table in this Markdown file")
    parser.add_argument(
        "--floors", action="store_true", help="also measure the relays of bench/floor.py"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    demo_port = free_port()
    demo = subprocess.Popen(
        [
            PYTHON,
            "manage.py",
            "demo_upstream",
            "--port",
            str(demo_port),
            "--first-token-delay",
            str(FIRST_TOKEN_DELAY),
            "--chunk-delay",
            str(CHUNK_DELAY),
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings", "DEBUG": "true"},
        stdout=subprocess.DEVNULL,
    )
    env = app_environment(workdir, demo_port)
    users = prepare_users(env, max(args.concurrency))
    rows, checks = [], []
    try:
        wait_for_port(demo_port)
        for concurrency in args.concurrency:
            burst, steady = run_load(lambda n, r: stream_direct(demo_port, r), concurrency, ROUNDS)
            rows += [
                burst.row("direct, burst", concurrency),
                steady.row("direct, steady", concurrency),
            ]
            print(format_row(rows[-2]), "\n" + format_row(rows[-1]), flush=True)
        servers = [(name, SERVERS[name], {}) for name in args.servers]
        if args.floors:
            servers += [(name, command, extra) for name, (command, extra) in FLOORS.items()]
        for server, command, extra_env in servers:
            port = free_port()
            process = subprocess.Popen(
                command(port), cwd=ROOT, env={**env, **extra_env}, stderr=subprocess.DEVNULL
            )
            try:
                wait_for_port(port)
                for concurrency in args.concurrency:
                    stores = server in SERVERS
                    rows += measure_app(server, port, users, concurrency, env, checks, stores)
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        demo.terminate()
        demo.wait(timeout=10)
    table = markdown_table(rows)
    print()
    print(table)
    print("\n".join(checks))
    if args.write:
        replace_section(args.write, table + "\n\n" + "\n".join(f"- {check}" for check in checks))


def format_row(row: dict) -> str:
    return (
        f"{row['target']:<30} {row['streams']:>4} streams  p50 {row['p50']:8.1f} ms  "
        f"p95 {row['p95']:8.1f} ms  errors {row['errors']}"
    )


def markdown_table(rows: list[dict]) -> str:
    direct = {
        (row["streams"], row["target"].rsplit(", ", 1)[1]): row
        for row in rows
        if row["target"].startswith("direct")
    }
    lines = [
        "| target, start | streams | TTFT p50 (ms) | TTFT p95 (ms) | p50 added (ms) "
        "| p95 ratio | total p50 (ms) | total p95 (ms) | longest pause p95 (ms) | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        base = direct[(row["streams"], row["target"].rsplit(", ", 1)[1])]
        added = row["p50"] - base["p50"]
        ratio = row["p95"] / base["p95"] if base["p95"] else float("nan")
        lines.append(
            f"| {row['target']} | {row['streams']} | {row['p50']:.1f} | {row['p95']:.1f} | "
            f"{added:+.1f} | {ratio:.2f}× | {row['total_p50']:.0f} | {row['total_p95']:.0f} | "
            f"{row['pause_p95']:.0f} | {row['errors']} |"
        )
    return "\n".join(lines)


def replace_section(path: Path, content: str) -> None:
    begin, end = "<!-- streaming-ttft:begin -->", "<!-- streaming-ttft:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{content}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
