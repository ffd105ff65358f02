"""Two app processes, one PostgreSQL database: the same users, conversations and share links.

    .venv/bin/python scripts/two_instances.py --database-url postgres://USER:PASS@HOST/DB

Starts the demo upstream and two production app servers on two ports, both on the database
given (migrated first; the script adds its own rows, with a fresh username). Then, through
plain HTTP with cookies as a browser keeps them, it signs up on one instance and uses the
session on the other, chats on each (the per-user call limit counted across both, through a
shared cache), shares on one and opens and revokes the link across both. Prints a line per
check and exits non-zero if any fails. tests/test_two_instances.py runs it when the suite
runs on PostgreSQL.
"""

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CALL_LIMIT = 4


class Browser:
    """Cookies and CSRF tokens, as a browser keeps them, across any number of instances."""

    def __init__(self) -> None:
        self.cookies = http.cookiejar.CookieJar(policy=PlainHttpPolicy())
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect()
        )

    def get(self, url: str) -> tuple[int, str, str]:
        return self._open(urllib.request.Request(url))

    def post(self, url: str, data: dict, *, token_from: str | None = None) -> tuple[int, str, str]:
        page = self.get(token_from or url)[1]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        return self._open(urllib.request.Request(url, body, headers={"Referer": url}))

    def _open(self, request: urllib.request.Request) -> tuple[int, str, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), ""
        except urllib.error.HTTPError as error:
            return (
                error.code,
                error.read().decode(errors="replace"),
                error.headers.get("Location", ""),
            )


class PlainHttpPolicy(http.cookiejar.DefaultCookiePolicy):
    """Production cookies are Secure; here both servers are plain HTTP on 127.0.0.1,
    standing for instances behind a TLS-terminating load balancer."""

    def return_ok_secure(self, cookie, request) -> bool:
        return True


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the caller reads Location itself, like a test client


def start_with_room_in_the_minute(seconds: float) -> None:
    """Wait for the next clock minute when fewer than `seconds` of this one are left.

    The call limit keeps one count per user per clock minute (chat/limits.py): calls
    that straddle a minute's end are counted in two windows, and the limit seems broken.
    """
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def production_server(port: int) -> list[str]:
    """The documented production server (`make serve`), on one port."""
    return [
        str(Path(PYTHON).parent / "uvicorn"),
        "playground.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
    ]


def environment(database_url: str, demo_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "DJANGO_"))}
    env.update(
        DEBUG="false",
        SECRET_KEY="two-instances-" + secrets.token_hex(24),  # shared, as behind a balancer
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        UPSTREAM_BASE_URL=f"http://127.0.0.1:{demo_port}/v1",
        UPSTREAM_API_KEY="two-instances",
        # A cache both processes see (Redis in production; a table here, no server needed),
        # so the per-user call limit counts across them.
        CACHE_URL="dbcache://playground_cache",
        UPSTREAM_CALLS_PER_MINUTE=str(CALL_LIMIT),
        SIGNUP_MODE="open",  # the checks sign up; production's default is by invitation
        DJANGO_SETTINGS_MODULE="playground.settings",
    )
    return env


def location(headers_location: str) -> str:
    return urllib.parse.urlsplit(headers_location).path


def run_checks(a: str, b: str) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []

    def check(what: str, ok: bool) -> None:
        checks.append((what, ok))
        print(f"{'ok ' if ok else 'FAIL'} {what}", flush=True)

    alice, visitor = Browser(), Browser()
    name = f"alice{secrets.token_hex(4)}"
    password = "two-instances-password-1"
    status, _, _ = alice.post(
        f"{a}/accounts/signup/", {"username": name, "password1": password, "password2": password}
    )
    check("sign up on instance A", status == 302)
    status, page, _ = alice.get(f"{b}/conversations/")
    check("the same session is logged in on instance B", status == 200 and name in page)

    status, _, where = alice.post(f"{b}/conversations/new/", {}, token_from=f"{b}/conversations/")
    conversation = location(where)
    check("create a conversation on B", status == 302 and conversation.startswith("/c/"))
    # The five sends below are counted against the call limit, which counts per clock minute.
    start_with_room_in_the_minute(seconds=10)
    form = {
        "content": "Hello from instance A",
        "idempotency_key": secrets.token_hex(8),
        "model": "demo/echo",
        **dict.fromkeys(
            ("system_prompt", "temperature", "max_tokens", "top_p", "stop", "extra_params"), ""
        ),
    }
    status, _, _ = alice.post(f"{a}{conversation}send/", form, token_from=f"{a}{conversation}")
    check("send a message on A", status == 302)
    status, page, _ = alice.get(f"{b}{conversation}")
    check(
        "B shows A's message and its reply",
        "Hello from instance A" in page and "Demo reply" in page,
    )
    form.update(content="And from instance B", idempotency_key=secrets.token_hex(8))
    status, _, _ = alice.post(f"{b}{conversation}send/", form, token_from=f"{b}{conversation}")
    status, page, _ = alice.get(f"{a}{conversation}")
    check("A shows both exchanges", page.count("Demo reply") >= 2 and "And from instance B" in page)
    statuses = []
    for instance in (a, b, a):  # calls 3 and 4 of the limit, then one too many
        form.update(content=f"Call on {instance}", idempotency_key=secrets.token_hex(8))
        status, page, _ = alice.post(f"{instance}{conversation}send/", form,
                                     token_from=f"{instance}{conversation}")  # fmt: skip
        statuses.append(status)
    check(
        f"the limit of {CALL_LIMIT} calls a minute counts across both instances",
        statuses == [302, 302, 400] and "limit of 4 calls" in page,
    )

    status, _, where = alice.post(
        f"{a}{conversation}share/", {"expires_in": "", "show_inspector": "on"},
        token_from=f"{a}{conversation}",
    )  # fmt: skip
    status, page, _ = alice.get(f"{b}/shares/")
    share_path = re.search(r'href="(/s/[A-Za-z0-9_-]+/)"', page)
    check("a link made on A is listed on B", share_path is not None)
    share_path = share_path.group(1) if share_path else "/s/missing/"
    status, page, _ = visitor.get(f"{b}{share_path}")
    check("a visitor opens the link on B", status == 200 and "And from instance B" in page)
    share_id = re.search(r'id="share-([0-9a-f-]{36})"', alice.get(f"{b}/shares/")[1]).group(1)
    alice.post(f"{b}/shares/{share_id}/revoke/", {}, token_from=f"{b}/shares/")
    status_a, _, _ = visitor.get(f"{a}{share_path}")
    status_b, _, _ = visitor.get(f"{b}{share_path}")
    check("revoked on B, the link stops on both", status_a == 404 and status_b == 404)
    status, page, _ = alice.get(f"{a}/conversations/export.json")
    exported = json.loads(page)["conversations"] if status == 200 else []
    check("the export on A has B's messages", len(exported) == 1 and "And from instance B" in page)
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()

    demo_port, port_a, port_b = free_port(), free_port(), free_port()
    env = environment(args.database_url, demo_port)
    for command in (["migrate", "-v0"], ["createcachetable"]):
        subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    demo = [PYTHON, "manage.py", "demo_upstream", "--port", str(demo_port)]
    processes = [
        subprocess.Popen(demo, cwd=ROOT, env=env, stdout=subprocess.DEVNULL),
        *(
            subprocess.Popen(production_server(port), cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
            for port in (port_a, port_b)
        ),
    ]
    try:
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        for url in (a, b):
            wait_for(f"{url}/accounts/login/")
        checks = run_checks(a, b)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    failed = [what for what, ok in checks if not ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
