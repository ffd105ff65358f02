"""A hostile upstream and hostile input, one case at a time, beside a normal stream (issue 18).

    .venv/bin/python bench/hostile.py [--cases slow_lexer deep_text=20000 ...] [--repeat 2]
        [--case-seconds 60] [--workers 1] [--database-url URL] [--set SETTING=VALUE ...]

Starts the demo upstream and, for each case, the app as `make serve` runs it (uvicorn on
playground.asgi, DEBUG off, a SECRET_KEY, the demo as the upstream) on its own copy of a
freshly migrated SQLite file, with two logged-in users. After a warm-up (pages and one
reply for each user) it takes the worker's idle RSS, then:

* bob streams normal replies back to back, paced by the upstream at one word every
  50 ms, the whole time; the longest wait between two events he receives (the gap from
  one reply's end to the next one's start included) is the "longest pause";
* alice sets off the case: a reply with that demo fault (through the `demo_fault` body
  field the Extra parameters carry, streamed or through the plain form), a catalogue or
  schema fault (`POST /_demo/catalogue_fault` on the demo), a large import, or a 300 MB
  body posted logged out; then she opens every page that shows the result: the
  conversation, its call, the list, both exports, the panel, and its share link logged out;
* the worker's RSS (VmRSS in /proc/<pid>/status) is sampled every 50 ms meanwhile.

Targets: peak RSS under 1.5x idle, longest pause under 1 s, no 500 anywhere. A case whose
fault the demo does not know reports "fault not available". Everything runs on 127.0.0.1
and ends by itself: each case is cut off after --case-seconds (the browser hangs up).
One worker by default (--workers), so the hostile case and the normal stream share it:
the worst case for "another user on the same worker". `--set SETTING=VALUE` tries a limit
(e.g. UPSTREAM_MAX_REPLY_BYTES); HOSTILE_SHOW_LOG=1 prints each request and the server log.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streaming_ttft import (
    PYTHON,
    ROOT,
    app_environment,
    django_shell,
    free_port,
    wait_for_port,
)

from chat.demo_upstream import FaultSpecError, parse_fault_spec

FIRST_TOKEN_DELAY = 0.05  # seconds; the demo's, for every reply
CHUNK_DELAY = 0.02
NORMAL_PACE = 0.05  # seconds between the normal stream's words: its steady rhythm
NORMAL_FAULT = f"pace={NORMAL_PACE}"
PROMPT = "Tell me about a steady stream, word by word, while a neighbour misbehaves."
CSRF = "h" * 32
RSS_TARGET = 1.5
PAUSE_TARGET_MS = 1000
SAMPLE_SECONDS = 0.05
# Long enough for a normal stream to settle into its rhythm before the case starts.
LEAD_IN_SECONDS = 0.5
# After the case, bob finishes one more whole reply (so a freeze that follows the case,
# or one in his own final render, is seen), within this bound.
TAIL_SECONDS = 15.0
MIB = 1024 * 1024
READ_SIZE = 65536
# Alice's requests that are the case itself, not pages showing it.
HOSTILE_REQUESTS = {"hostile stream", "hostile send", "import", "big post, logged out"}
EVENT_HEAD = 2048  # bytes of an event's data kept (a `done` event's status comes first)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # stream | send | catalogue | import | big_post
    value: str = ""  # the fault spec, the catalogue fault, or a size in bytes

    def with_value(self, value: str) -> "Case":
        if self.kind in ("import", "big_post"):
            return Case(self.name, self.kind, value)
        key = self.value.split("=")[0]
        return Case(self.name, self.kind, f"{key}={value}")


# The numbers the issue reproduced its findings with.
CASES = {
    case.name: case
    for case in [
        Case("endless", "stream", "endless,pace=0"),
        Case("huge_line", "stream", "huge_line=20000000"),
        Case("huge_body", "send", "huge_body=20000000"),
        Case("gzip_bomb", "stream", "gzip_bomb=100000000"),
        Case("gzip_bomb_send", "send", "gzip_bomb=100000000"),
        Case("deep_chunk", "stream", "deep_chunk=9000"),
        Case("deep_chunk_send", "send", "deep_chunk=9000"),
        Case("deep_text", "stream", "deep_text=9000"),
        Case("nul", "stream", "nul"),
        Case("surrogate", "stream", "surrogate"),
        Case("nan_cost", "stream", "nan_cost"),
        Case("huge_cost", "stream", "huge_cost"),
        Case("negative_cost", "stream", "negative_cost"),
        Case("huge_tokens", "stream", "huge_tokens"),
        Case("slow_lexer", "stream", "slow_lexer=48000"),
        Case("bad_entries", "catalogue", "bad_entries"),
        Case("many", "catalogue", "many=100000"),
        Case("slow_schema", "catalogue", "slow_schema"),
        Case("bad_schema", "catalogue", "bad_schema"),
        Case("import", "import", str(9_500_000)),
        Case("big_post", "big_post", str(300 * 1024 * 1024)),
    ]
}


# --------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    label: str
    status: int | None  # None: no answer (refused, reset, timed out)
    seconds: float
    size: int = 0
    location: str = ""
    error: str = ""
    head: bytes = b""  # the first bytes of the body


class Session:
    """One user's cookies and deadline; every request is bounded by the deadline."""

    def __init__(self, port: int, session_key: str | None, deadline: float = float("inf")):
        self.port = port
        self.session_key = session_key
        self.deadline = deadline
        self.answers: list[Answer] = []
        self.connection: http.client.HTTPConnection | None = None  # the one open now
        self.doing = ""  # what it asks for now (the RSS peak names it)

    def timeout(self) -> float:
        return max(1.0, min(120.0, self.deadline - time.monotonic()))

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def headers(self, content_type: str | None = None) -> dict[str, str]:
        cookie = f"csrftoken={CSRF}"
        if self.session_key:
            cookie += f"; sessionid={self.session_key}"
        headers = {"Cookie": cookie, "X-CSRFToken": CSRF}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def open(self, method: str, path: str, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout())
        self.connection = connection
        connection.request(method, path, body, headers or self.headers())
        return connection, connection.getresponse()

    def fetch(self, label: str, method: str, path: str, body=None, content_type=None) -> Answer:
        """A whole request; the body is read (bounded by the deadline) and counted, not kept."""
        if self.expired():
            answer = Answer(label, None, 0.0, error="skipped: case time limit")
            self.answers.append(answer)
            return answer
        started = time.perf_counter()
        answer = Answer(label, None, 0.0)
        connection = None
        self.doing = label
        try:
            connection, response = self.open(method, path, body, self.headers(content_type))
            answer.status = response.status
            answer.location = response.getheader("Location") or ""
            while chunk := response.read1(READ_SIZE):
                if len(answer.head) < EVENT_HEAD:
                    answer.head += chunk[: EVENT_HEAD - len(answer.head)]
                answer.size += len(chunk)
                if self.expired():
                    answer.error = "cut off: case time limit"
                    break
        except (OSError, http.client.HTTPException) as error:
            answer.error = f"{type(error).__name__}: {error}"
        finally:
            if connection is not None:
                connection.close()
        answer.seconds = time.perf_counter() - started
        self.answers.append(answer)
        return answer

    def hang_up(self) -> None:
        connection = self.connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)


def send_form(content: str, model: str = "demo/echo", extra: dict | None = None) -> str:
    return urllib.parse.urlencode(
        {
            "content": content,
            "idempotency_key": uuid.uuid4().hex,
            "model": model,
            "system_prompt": "",
            "temperature": "",
            "max_tokens": "",
            "top_p": "",
            "stop": "",
            "extra_params": json.dumps(extra) if extra else "",
        }
    )


FORM = "application/x-www-form-urlencoded"
# A share that shows the calls too: the heaviest page a logged-out reader can ask for.
SHARE = "expires_in=&show_inspector=on"
PANEL = send_form("")  # the panel for the form's model, as the page's script asks for it


class EventReader:
    """Server-sent events from a response, read in pieces: a line of any length costs
    the bench only EVENT_HEAD bytes. Calls `on_event(name, data_head)` per event."""

    def __init__(self, on_event, should_stop=lambda: False) -> None:
        self.on_event = on_event
        self.should_stop = should_stop
        self.pending = b""
        self.long_line: bytes | None = None  # the head of a line too long to keep
        self.name = b""
        self.data = b""

    def read(self, response) -> str:
        """Read to the end; returns "" or why it stopped early."""
        while chunk := response.read1(READ_SIZE):
            self.feed(chunk)
            if self.should_stop():
                return "cut off"
        return ""

    def feed(self, chunk: bytes) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            start = end + 1
            if self.long_line is not None:
                line, self.long_line = self.long_line, None
            else:
                line, self.pending = self.pending + piece, b""
            self.line(line)
        rest = chunk[start:]
        if self.long_line is None:
            self.pending += rest
            if len(self.pending) > READ_SIZE:
                self.long_line, self.pending = self.pending[:EVENT_HEAD], b""

    def line(self, line: bytes) -> None:
        if line.startswith(b"event:"):
            self.name = line[6:].strip()
        elif line.startswith(b"data:"):
            self.data = self.data or line[5:].strip()[:EVENT_HEAD]
        elif not line.strip():
            if self.name or self.data:
                self.on_event(self.name.decode() or "message", self.data)
            self.name, self.data = b"", b""


# --------------------------------------------------------------------------- measuring


class Rhythm:
    """When the normal stream's events arrived: the longest wait between two, while on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: float | None = None
        self.longest = 0.0
        self.counting = False
        self.events = 0

    def arrived(self) -> None:
        now = time.perf_counter()
        with self.lock:
            if self.counting and self.last is not None:
                self.longest = max(self.longest, now - self.last)
            self.last = now
            self.events += 1

    def start(self) -> None:
        with self.lock:
            self.counting, self.longest = True, 0.0

    def stop(self) -> float:
        """The longest pause, counting the one still going on (a worker frozen right now)."""
        now = time.perf_counter()
        with self.lock:
            self.counting = False
            if self.last is not None:
                self.longest = max(self.longest, now - self.last)
            return self.longest


class NormalStreams(threading.Thread):
    """Bob's replies, streamed back to back until stopped."""

    def __init__(self, port: int, user: dict, rhythm: Rhythm) -> None:
        super().__init__(daemon=True)
        self.session = Session(port, user["session"])
        self.conversation = user["conversation"]
        self.rhythm = rhythm
        self.stopping = threading.Event()
        self.completed = 0
        self.errors: list[str] = []
        self.statuses: list[int] = []
        self.first_delta = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.stream_once()

    def stream_once(self) -> None:
        events: list[str] = []

        def on_event(name: str, data: bytes) -> None:
            events.append(name)
            self.rhythm.arrived()
            if name == "delta":
                self.first_delta.set()

        form = send_form(PROMPT, extra={"demo_fault": NORMAL_FAULT})
        path = f"/c/{self.conversation}/stream/"
        connection = None
        try:
            connection, response = self.session.open("POST", path, form, self.session.headers(FORM))
            self.statuses.append(response.status)
            if response.status != 200:
                self.errors.append(f"HTTP {response.status}")
                time.sleep(0.2)
                return
            EventReader(on_event).read(response)
        except (OSError, http.client.HTTPException) as error:
            if not self.stopping.is_set():
                self.errors.append(f"{type(error).__name__}: {error}")
                time.sleep(0.2)
            return
        finally:
            if connection is not None:
                connection.close()
        if events and events[-1] == "done":
            self.completed += 1
        elif not self.stopping.is_set():
            self.errors.append(f"stream ended after {events[-1:] or 'nothing'}")

    def stop(self) -> None:
        self.stopping.set()
        self.session.hang_up()
        self.join(timeout=10)


def worker_pids(server_pid: int) -> list[int]:
    """The uvicorn worker processes: the server itself with one worker, else its children."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server_pid and b"multiprocessing" in cmdline and b"spawn_main" in cmdline:
            children.append(int(entry.name))
    return children or [server_pid]


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


class RssSampler(threading.Thread):
    """Each worker's RSS, sampled every SAMPLE_SECONDS until stopped, with what `doing()`
    said was going on at each sample."""

    def __init__(self, pids: list[int], doing) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.doing = doing
        self.samples: dict[int, list[tuple[float, str]]] = {pid: [] for pid in pids}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for pid in self.pids:
                self.samples[pid].append((rss_mib(pid), self.doing()))
            self.stopping.wait(SAMPLE_SECONDS)

    def stop(self) -> dict[int, float]:
        """Each worker's peak RSS."""
        self.stopping.set()
        self.join()
        return {
            pid: max((rss for rss, _ in samples), default=0.0)
            for pid, samples in self.samples.items()
        }

    def peak_during(self, pid: int) -> str:
        """What was going on when the RSS first came near its peak (it never goes back
        down much: freed memory stays with the process)."""
        peak = max(rss for rss, _ in self.samples[pid])
        return next(doing for rss, doing in self.samples[pid] if rss >= 0.95 * peak)


def idle_rss(pids: list[int]) -> dict[int, float]:
    samples = {pid: [] for pid in pids}
    for _ in range(5):
        for pid in pids:
            samples[pid].append(rss_mib(pid))
        time.sleep(SAMPLE_SECONDS)
    return {pid: statistics.median(values) for pid, values in samples.items()}


# --------------------------------------------------------------------------- the demo


class Demo:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                PYTHON,
                "manage.py",
                "demo_upstream",
                "--port",
                str(self.port),
                "--first-token-delay",
                str(FIRST_TOKEN_DELAY),
                "--chunk-delay",
                str(CHUNK_DELAY),
            ],
            cwd=ROOT,
            # The app's settings (DEBUG off, a SECRET_KEY): the command loads them.
            env=app_environment(Path(tempfile.gettempdir()), self.port),
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def post(self, path: str, data: dict | None = None) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            body = json.dumps(data or {})
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def set_catalogue_fault(self, fault: str) -> bool:
        return 200 <= self.post("/_demo/catalogue_fault", {"fault": fault}) < 300

    def reset(self) -> None:
        self.post("/_demo/reset")
        with contextlib.suppress(OSError):
            self.set_catalogue_fault("")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def fault_available(case: Case, demo: Demo) -> bool:
    if case.kind in ("stream", "send"):
        try:
            parse_fault_spec(case.value)  # the same code the demo runs
        except FaultSpecError:
            return False
        return True
    if case.kind == "catalogue":
        available = demo.set_catalogue_fault(case.value)
        demo.set_catalogue_fault("")
        return available
    return True


# --------------------------------------------------------------------------- the app


def bench_environment(workdir: Path, demo_port: int, database_url: str | None) -> dict:
    env = app_environment(workdir, demo_port)
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(
        # Bob streams for the whole run: the per-user call limit is not what is measured
        # (app_environment lifts the server-wide one).
        UPSTREAM_CALLS_PER_MINUTE="0",
        LOG_LEVEL="WARNING",
    )
    return env


def prepare(env: dict) -> list[dict]:
    """Migrate, and make alice (the hostile case) and bob (the normal stream)."""
    if env["DATABASE_URL"].startswith("postgres"):
        subprocess.run(
            [PYTHON, "manage.py", "flush", "--noinput", "-v0"], cwd=ROOT, env=env, check=False
        )
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    # As `make serve` does: with DEBUG off, a page needs the collected static files.
    subprocess.run(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    script = """
import json
from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
users = []
for name in ("alice", "bob"):
    user, _ = get_user_model().objects.get_or_create(username=name)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    users.append({"session": session.session_key})
print(json.dumps(users))
"""
    return django_shell(env, script)


class App:
    """The app under uvicorn, as `make serve` runs it, on this case's database copy."""

    def __init__(self, env: dict, workers: int, log: Path) -> None:
        self.port = free_port()
        self.log_path = log
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [
                str(Path(PYTHON).parent / "uvicorn"),
                "playground.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # every worker up
            pids = worker_pids(self.process.pid)
            if workers == 1 or len(pids) == workers:
                break
            time.sleep(0.1)
        self.pids = worker_pids(self.process.pid)

    def stop(self) -> int:
        """Stop; returns the number of tracebacks in the server's log."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        log = self.log_path.read_text(errors="replace")
        if os.environ.get("HOSTILE_SHOW_LOG"):
            print(log[-5000:])
        return log.count("Traceback")


def new_conversation(session: Session) -> str:
    answer = session.fetch("new conversation", "POST", "/conversations/new/", "", FORM)
    match = re.search(r"/c/([0-9a-f-]{36})/", answer.location)
    if not match:
        raise RuntimeError(f"could not create a conversation: {answer}")
    return match.group(1)


# --------------------------------------------------------------------------- the cases


@dataclass
class Outcome:
    """What alice's case did: its own requests' answers, and a word on how it ended."""

    notes: list[str] = field(default_factory=list)


def hostile_stream(alice: Session, conversation: str, spec: str, outcome: Outcome) -> None:
    events: list[tuple[str, bytes]] = []
    form = send_form("Be hostile, please.", extra={"demo_fault": spec})
    started = time.perf_counter()
    answer = Answer("hostile stream", None, 0.0)
    alice.doing = answer.label
    connection = None
    try:
        connection, response = alice.open(
            "POST", f"/c/{conversation}/stream/", form, alice.headers(FORM)
        )
        answer.status = response.status
        reader = EventReader(lambda name, data: events.append((name, data)), alice.expired)
        answer.error = reader.read(response)
    except (OSError, http.client.HTTPException) as error:
        answer.error = f"{type(error).__name__}: {error}"
    finally:
        if connection is not None:
            connection.close()
    answer.seconds = time.perf_counter() - started
    alice.answers.append(answer)
    last_name, last_data = events[-1] if events else ("nothing", b"")
    status = re.search(rb'"status": "(\w+)"', last_data)
    ended = f"{last_name} {status.group(1).decode()}" if status else last_name
    if answer.error:
        ended += f", {answer.error}"
    outcome.notes.append(f"stream: {len(events)} events, {ended}, {answer.seconds:.1f} s")


def hostile_send(alice: Session, conversation: str, spec: str, outcome: Outcome) -> None:
    form = send_form("Be hostile, please.", extra={"demo_fault": spec})
    answer = alice.fetch("hostile send", "POST", f"/c/{conversation}/send/", form, FORM)
    ended = answer.status if answer.status is not None else answer.error
    outcome.notes.append(f"send: {ended}, {answer.seconds:.1f} s")


def pages_of(alice: Session, conversation: str, outcome: Outcome) -> None:
    """Every page that shows alice's conversation, and its share link logged out."""
    page = alice.fetch("conversation", "GET", f"/c/{conversation}/")
    alice.fetch("raw body editor", "GET", f"/c/{conversation}/?raw=1")
    alice.fetch("conversation list", "GET", "/conversations/")
    alice.fetch("panel", "POST", f"/c/{conversation}/parameters/panel/", PANEL, FORM)
    alice.fetch("export json", "GET", f"/c/{conversation}/export.json")
    alice.fetch("export md", "GET", f"/c/{conversation}/export.md")
    alice.fetch("export all", "GET", "/conversations/export.json")
    calls = re.findall(rb"/calls/([0-9a-f-]{36})/", page.head)
    if not calls:  # the links come after the messages: read the page again, all of it
        calls = find_in_page(alice, f"/c/{conversation}/", rb"/calls/([0-9a-f-]{36})/")
    if calls:
        alice.fetch("call", "GET", f"/calls/{calls[-1].decode()}/")
    alice.fetch("share", "POST", f"/c/{conversation}/share/", SHARE, FORM)
    tokens = find_in_page(alice, "/shares/", rb'/s/([A-Za-z0-9_-]+)/"')
    if tokens:
        anonymous = Session(alice.port, None, alice.deadline)
        anonymous.fetch("share page, logged out", "GET", f"/s/{tokens[0].decode()}/")
        alice.answers += anonymous.answers


def find_in_page(session: Session, path: str, pattern: bytes) -> list[bytes]:
    """Matches of `pattern` in a page (of any size: read in pieces, the tail kept)."""
    if session.expired():
        return []
    found: list[bytes] = []
    connection = None
    session.doing = f"GET {path}"
    try:
        connection, response = session.open("GET", path)
        tail = b""
        while chunk := response.read1(READ_SIZE):
            text = tail + chunk
            found += re.findall(pattern, text)
            tail = text[-200:]
            if session.expired():
                break
    except (OSError, http.client.HTTPException):
        pass
    finally:
        if connection is not None:
            connection.close()
    return list(dict.fromkeys(found))


def catalogue_case(alice: Session, conversation: str, demo: Demo, fault: str, outcome: Outcome):
    """The upstream's catalogue or schemas turn bad: the pages that read them, a few times
    (the first page after the cache is due refreshes in the background)."""
    demo.set_catalogue_fault(fault)
    time.sleep(1.1)  # the bench's UPSTREAM_MODELS_CACHE_SECONDS: the copy is due
    for _ in range(3):
        alice.fetch("conversation", "GET", f"/c/{conversation}/")
        alice.fetch("panel", "POST", f"/c/{conversation}/parameters/panel/", PANEL, FORM)
        alice.fetch("new conversation page", "POST", "/conversations/new/", "", FORM)
        form = send_form("Hello through a bad catalogue.")
        alice.fetch("send", "POST", f"/c/{conversation}/send/", form, FORM)
        time.sleep(0.5)
    outcome.notes.append("catalogue fault set")


def import_document(size: int) -> bytes:
    """An export file of about `size` bytes: many conversations of many messages."""
    conversations = []
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit " * 8).strip()
    one = 0
    while one * len(conversations) < size and len(conversations) < 1000:
        messages = []
        parent = None
        for n in range(20):
            message_id = f"m{n}"
            messages.append(
                {
                    "id": message_id,
                    "parent": parent,
                    "role": "user" if n % 2 == 0 else "assistant",
                    "content": words,
                }
            )
            parent = message_id
        conversations.append(
            {"title": f"Imported {len(conversations)}", "model": "demo/echo", "messages": messages}
        )
        one = one or len(json.dumps(conversations[0]))
    document = {"format": "playground.conversations", "version": 1, "conversations": conversations}
    return json.dumps(document).encode()


def import_case(alice: Session, size: int, outcome: Outcome) -> None:
    document = import_document(size)
    boundary = "bench" + uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.json"\r\n'
        f"Content-Type: application/json\r\n\r\n".encode()
        + document
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    answer = alice.fetch("import", "POST", "/conversations/import/", body, content_type)
    outcome.notes.append(
        f"import of {len(document) / MIB:.1f} MiB: {answer.status or answer.error}, "
        f"{answer.seconds:.1f} s"
    )
    alice.fetch("conversation list", "GET", "/conversations/")


def big_post_case(port: int, size: int, deadline: float, outcome: Outcome) -> Answer:
    """`size` bytes posted logged out, sent as fast as the server takes them."""
    started = time.perf_counter()
    answer = Answer("big post, logged out", None, 0.0)
    block = b"a" * MIB
    sent = 0
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(
            (
                "POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        while sent < size and time.monotonic() < deadline:
            sock.sendall(block[: min(MIB, size - sent)])
            sent += min(MIB, size - sent)
    except OSError as error:
        answer.error = f"{type(error).__name__} after {sent / MIB:.0f} MiB"
    try:
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        head = sock.recv(4096)
        status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        answer.status = int(status.group(1)) if status else None
    except OSError as error:
        answer.error = answer.error or f"{type(error).__name__}: {error}"
    finally:
        sock.close()
    answer.seconds = time.perf_counter() - started
    outcome.notes.append(
        f"sent {sent / MIB:.0f} of {size / MIB:.0f} MiB, answer "
        f"{answer.status or answer.error}, {answer.seconds:.1f} s"
    )
    return answer


# --------------------------------------------------------------------------- a run


@dataclass
class Row:
    case: str
    idle: float = 0.0
    peak: float = 0.0
    pause_ms: float = 0.0
    errors_500: int = 0
    slowest_page: float = 0.0
    notes: str = ""
    available: bool = True

    @property
    def ratio(self) -> float:
        return self.peak / self.idle if self.idle else float("nan")

    def worse(self, other: "Row") -> "Row":
        """The worst of two runs of one case, figure by figure."""
        if not other.available:
            return self
        mine = self if self.ratio >= other.ratio else other
        return Row(
            self.case,
            mine.idle,
            mine.peak,
            max(self.pause_ms, other.pause_ms),
            self.errors_500 + other.errors_500,
            max(self.slowest_page, other.slowest_page),
            self.notes if self.notes == other.notes else f"{self.notes}; {other.notes}",
        )


def run_case(case: Case, demo: Demo, template: Path | None, env: dict, users, args) -> Row:
    row = Row(case.name)
    if not fault_available(case, demo):
        row.available, row.notes = False, "fault not available"
        return row
    demo.reset()
    workdir = Path(tempfile.mkdtemp(prefix=f"hostile-{case.name}-"))
    case_env = dict(env)
    if template is not None:  # a fresh copy of the migrated database per case
        copy = workdir / "case.sqlite3"
        shutil.copy(template, copy)
        case_env["DATABASE_URL"] = f"sqlite:///{copy}"
    if case.kind == "catalogue":
        case_env["UPSTREAM_MODELS_CACHE_SECONDS"] = "1"
    app = App(case_env, args.workers, workdir / "server.log")
    try:
        row = measure(case, demo, app, users, args)
    except Exception as error:  # one broken case must not stop the others
        row.notes = f"bench error: {type(error).__name__}: {error}"
    finally:
        tracebacks = app.stop()
        demo.reset()
        shutil.rmtree(workdir, ignore_errors=True)
    if tracebacks:
        row.notes += f"; {tracebacks} tracebacks in the server log"
    return row


def measure(case: Case, demo: Demo, app: App, users, args) -> Row:
    row = Row(case.name)
    alice = Session(app.port, users[0]["session"])
    bob = Session(app.port, users[1]["session"])
    # Warm-up: what a worker has done before anyone misbehaves.
    alice_conversation = new_conversation(alice)
    bob_conversation = new_conversation(bob)
    for session, conversation in ((alice, alice_conversation), (bob, bob_conversation)):
        session.fetch("warm-up", "GET", "/conversations/")
        session.fetch("warm-up", "GET", f"/c/{conversation}/")
        session.fetch("warm-up", "POST", f"/c/{conversation}/parameters/panel/", PANEL, FORM)
    rhythm = Rhythm()
    warm = NormalStreams(app.port, {**users[1], "conversation": bob_conversation}, rhythm)
    warm.stream_once()
    if warm.errors:
        raise RuntimeError(f"the warm-up stream failed: {warm.errors}")
    time.sleep(0.3)
    idle = idle_rss(app.pids)
    warm_up_500s = sum(1 for a in alice.answers + bob.answers if (a.status or 0) >= 500)
    alice.answers.clear()
    bob.answers.clear()

    sampler = RssSampler(app.pids, lambda: alice.doing)
    sampler.start()
    normal = NormalStreams(app.port, {**users[1], "conversation": bob_conversation}, rhythm)
    normal.start()
    normal.first_delta.wait(timeout=10)
    time.sleep(LEAD_IN_SECONDS)
    rhythm.start()
    outcome = Outcome()
    alice.deadline = time.monotonic() + args.case_seconds
    hostile = threading.Thread(
        target=run_hostile,
        args=(case, alice, alice_conversation, demo, app.port, outcome),
        daemon=True,
    )
    hostile.start()
    hostile.join(timeout=args.case_seconds + 5)
    if hostile.is_alive():  # stuck past its deadline: hang up on it
        alice.hang_up()
        hostile.join(timeout=10)
        outcome.notes.append("hung up at the time limit")
    alice.doing = "nothing (bob's last reply)"
    completed = normal.completed
    tail_deadline = time.monotonic() + TAIL_SECONDS
    while normal.completed == completed and time.monotonic() < tail_deadline:
        time.sleep(0.05)
    pause = rhythm.stop()
    normal.stop()
    peaks = sampler.stop()
    bob.deadline = time.monotonic() + 30
    bob.fetch("bob's conversation", "GET", f"/c/{bob_conversation}/")
    bob.fetch("bob's list", "GET", "/conversations/")

    if os.environ.get("HOSTILE_SHOW_LOG"):
        for answer in alice.answers + bob.answers:
            print(
                f"   {answer.label}: {answer.status} {answer.seconds:.2f} s {answer.size} B "
                f"{answer.error}"
            )
    worst = max(app.pids, key=lambda pid: peaks[pid] / idle[pid] if idle[pid] else 0)
    answers = alice.answers + bob.answers
    pages = [a for a in answers if a.label not in HOSTILE_REQUESTS]
    row.idle, row.peak = idle[worst], max(peaks[worst], idle[worst])
    peak_during = sampler.peak_during(worst)
    row.pause_ms = pause * 1000
    row.errors_500 = (
        warm_up_500s
        + sum(1 for a in answers if (a.status or 0) >= 500)
        + sum(1 for status in normal.statuses if status >= 500)
    )
    row.slowest_page = max((a.seconds for a in pages), default=0.0)
    no_answer = [a for a in answers if a.status is None]
    notes = list(outcome.notes)
    if row.ratio >= RSS_TARGET:
        notes.append(f"RSS peak during: {peak_during}")
    if no_answer:
        notes.append(
            f"{len(no_answer)} requests unanswered ({no_answer[0].label}: {no_answer[0].error})"
        )
    refused = [a for a in answers if a.status is not None and 400 <= a.status < 500]
    if refused:
        notes.append("4xx: " + ", ".join(f"{a.label} {a.status}" for a in refused[:4]))
    notes.append(f"bob: {normal.completed} replies, {len(normal.errors)} failed")
    if normal.errors:
        notes.append(f"first failure: {normal.errors[0]}")
    row.notes = "; ".join(notes)
    return row


def run_hostile(case: Case, alice: Session, conversation: str, demo, port, outcome) -> None:
    try:
        if case.kind == "stream":
            hostile_stream(alice, conversation, case.value, outcome)
            pages_of(alice, conversation, outcome)
        elif case.kind == "send":
            hostile_send(alice, conversation, case.value, outcome)
            pages_of(alice, conversation, outcome)
        elif case.kind == "catalogue":
            catalogue_case(alice, conversation, demo, case.value, outcome)
        elif case.kind == "import":
            import_case(alice, int(case.value), outcome)
        elif case.kind == "big_post":
            alice.answers.append(big_post_case(port, int(case.value), alice.deadline, outcome))
    except Exception as error:  # a benchmark reports every failure, whatever it is
        outcome.notes.append(f"bench error: {type(error).__name__}: {error}")


# --------------------------------------------------------------------------- output


def format_row(row: Row) -> str:
    if not row.available:
        return f"{row.case:<16} fault not available"
    return (
        f"{row.case:<16} idle {row.idle:7.1f} MiB  peak {row.peak:7.1f} MiB  "
        f"{row.ratio:5.2f}x  pause {row.pause_ms:8.0f} ms  500s {row.errors_500}  "
        f"slowest page {row.slowest_page:5.1f} s | {row.notes}"
    )


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| case | idle RSS (MiB) | peak RSS (MiB) | ratio (target < 1.5×) "
        "| longest pause of the normal stream (ms, target < 1,000) | 500s "
        "| slowest page (s) | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        if not row.available:
            lines.append(f"| {row.case} | | | | | | | fault not available |")
            continue
        ratio_mark = "" if row.ratio < RSS_TARGET else " ✗"
        pause_mark = "" if row.pause_ms < PAUSE_TARGET_MS else " ✗"
        lines.append(
            f"| {row.case} | {row.idle:.0f} | {row.peak:.0f} | {row.ratio:.2f}×{ratio_mark} "
            f"| {row.pause_ms:,.0f}{pause_mark} | {row.errors_500} | {row.slowest_page:.1f} "
            f"| {row.notes.replace('|', '/')} |"
        )
    return "\n".join(lines)


def parse_cases(names: list[str]) -> list[Case]:
    cases = []
    for name in names:
        key, has_value, value = name.partition("=")
        if key not in CASES:
            raise SystemExit(f"unknown case {key!r}; the cases are: {', '.join(CASES)}")
        cases.append(CASES[key].with_value(value) if has_value else CASES[key])
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(CASES),
        metavar="CASE[=N]",
        help=f"which cases, N replacing the size (default all: {', '.join(CASES)})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (worst kept)")
    parser.add_argument("--case-seconds", type=float, default=60, help="each case's time limit")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--database-url", help="a PostgreSQL database to use (emptied first)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="SETTING=VALUE",
        help="settings for the app, e.g. UPSTREAM_MAX_REPLY_BYTES=1048576 (to try a limit)",
    )
    args = parser.parse_args()
    cases = parse_cases(args.cases)

    workdir = Path(tempfile.mkdtemp(prefix="playground-hostile-"))
    demo = Demo()
    rows: list[Row] = []
    try:
        env = bench_environment(workdir, demo.port, args.database_url)
        env.update(setting.split("=", 1) for setting in args.set)
        users = prepare(env)
        template = None if args.database_url else workdir / "bench.sqlite3"
        for case in cases:
            row = None
            for _ in range(args.repeat):
                this = run_case(case, demo, template, env, users, args)
                print(format_row(this), flush=True)
                row = this if row is None else row.worse(this)
                if not this.available:
                    break
            rows.append(row)
    finally:
        demo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    table = markdown_table(rows)
    settings = f", with {' '.join(args.set)}" if args.set else ""
    print(f"\nAt {commit}, {args.workers} worker(s){settings}, worst of {args.repeat} run(s):\n")
    print(table)


if __name__ == "__main__":
    main()
