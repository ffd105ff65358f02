"""Browser tests: Debian's Chromium, driven by Playwright, against pytest-django's live server.

Every test here is marked ``browser``. Each one also fails when the page logs a console error
(a CSP violation shows up as one), throws an uncaught exception, or asks any host other than
127.0.0.1 / localhost for anything: the app works offline, with no CDN.
"""

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    expect,
)
from playwright.sync_api import Error as PlaywrightError

from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Schemes that never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about"}
TIMEOUT_MS = 5_000
# How long a stream the browser left may take to end on the server (it notices on a write).
STREAM_END_SECONDS = 5.0
FAILED_LOAD = "Failed to load resource:"
# The streaming endpoint answers an invalid form with 400, meaning "submit it normally".
STREAM_PATH = re.compile(r"^/c/[0-9a-f-]+/stream/$")

expect.set_options(timeout=TIMEOUT_MS)


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"The browser tests need Debian's Chromium at {CHROMIUM}, which is missing. "
            "Run `make test`: it installs it (apt-get install chromium) and runs the suite.",
            pytrace=False,
        )
    return {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(live_server) -> dict:
    return {"base_url": live_server.url}


class BrowserProblems:
    """Console errors, uncaught page errors and off-machine requests seen by the contexts.

    Three console errors are expected and let through: Chromium's "Failed to load resource"
    for a page the app deliberately answered with 400 (a form with errors, rendered again),
    for the script's POST to the streaming endpoint answered with 400 (an invalid form: the
    script then submits the form normally, which shows the errors) and for /favicon.ico,
    which the app does not serve. Any other failed load (a stylesheet, a script, a 500 page,
    a stream answered with 409 or 500) still fails the test.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.failed_loads: list[tuple[str, str]] = []  # (resource URL, console text)
        self.deliberate_400s: set[str] = set()  # URLs the app answered 400 on purpose
        self.contexts: list[BrowserContext] = []

    def watch(self, context: BrowserContext) -> BrowserContext:
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        context.on("console", self._on_console)
        context.on("weberror", lambda error: self.problems.append(f"page error: {error.error}"))
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        self.contexts.append(context)
        return context

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if message.text.startswith(FAILED_LOAD):
            self.failed_loads.append((message.location.get("url", ""), message.text))
        else:
            where = message.page.url if message.page else "?"
            self.problems.append(f"console error on {where}: {message.text}")

    def _on_request(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in LOCAL_SCHEMES and url.hostname not in LOCAL_HOSTS:
            self.problems.append(f"request off this machine: {request.method} {request.url}")

    def _on_response(self, response: Response) -> None:
        if response.status != 400:
            return
        request = response.request
        refused_stream = (
            request.resource_type == "fetch"
            and request.method == "POST"
            and STREAM_PATH.match(urlsplit(response.url).path) is not None
        )
        if request.resource_type == "document" or refused_stream:
            self.deliberate_400s.add(response.url)

    def flush(self) -> None:
        """One round trip per open page, so events already sent by the browser are handled."""
        for context in self.contexts:
            for page in context.pages:
                with contextlib.suppress(PlaywrightError):  # e.g. mid-navigation
                    page.evaluate("0")

    def check(self) -> None:
        self.flush()
        problems = list(self.problems)
        for url, text in self.failed_loads:
            deliberate = url in self.deliberate_400s and "status of 400 " in text
            if not deliberate and urlsplit(url).path != "/favicon.ico":
                problems.append(f"console error: {text} ({url})")
        if problems:
            pytest.fail("The browser reported:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def browser_problems(request) -> BrowserProblems:
    problems = BrowserProblems()
    request.node.browser_problems = problems
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    # Runs after the test body, before fixture teardown: the contexts are still open, and a
    # problem fails the test itself (not its teardown). A test that already failed keeps its
    # own failure.
    result = yield
    problems = getattr(item, "browser_problems", None)
    if problems is not None:
        problems.check()
    return result


@pytest.fixture
def context(new_context, browser_problems) -> Iterator[BrowserContext]:
    context = browser_problems.watch(new_context())
    yield context
    # A test that ends (or fails) while a reply streams leaves the server relaying it until
    # it notices the browser is gone. Close the browser and let that stream end here, so it
    # does not write to the database after the test's data was flushed.
    context.close()
    wait_for_streams_to_end()


def wait_for_streams_to_end(timeout: float = STREAM_END_SECONDS) -> None:
    from chat.models import Message

    deadline = time.monotonic() + timeout
    while Message.objects.filter(status=Message.Status.PENDING).exists():
        if time.monotonic() > deadline:
            break  # a reply left pending for good; the test itself shows why
        time.sleep(0.05)


@pytest.fixture
def no_js_page(new_context, browser_problems) -> Page:
    """A page in a context with JavaScript disabled: the app must work with plain forms."""
    return browser_problems.watch(new_context(java_script_enabled=False)).new_page()


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()


@pytest.fixture
def logged_in_page(page, live_server, alice) -> Page:
    """Alice, logged in through the real login form, on her conversation list."""
    log_in(page, "alice", "alice-password-1")
    return page


@pytest.fixture
def logged_in_no_js_page(no_js_page, live_server, alice) -> Page:
    log_in(no_js_page, "alice", "alice-password-1")
    return no_js_page


class CuttableProxy:
    """A TCP relay to the live server whose connections the test can cut, as a network does.

    The page is loaded through it; `cut()` closes every connection open at that moment
    (the browser's and the server's ends), and later connections go through as before.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                browser_side, _ = self.listener.accept()
            except OSError:
                return  # closed
            server_side = socket.create_connection(self.target)
            self.sockets += [browser_side, server_side]
            for source, destination in ((browser_side, server_side), (server_side, browser_side)):
                threading.Thread(target=self._pipe, args=(source, destination), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, destination: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                destination.sendall(data)
        with contextlib.suppress(OSError):
            destination.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def cuttable_page(browser, browser_problems, live_server, alice) -> Iterator[Page]:
    """Alice, logged in, on a page whose connections to the app go through a CuttableProxy."""
    server = urlsplit(live_server.url)
    proxy = CuttableProxy((server.hostname, server.port))
    context = browser_problems.watch(browser.new_context(base_url=proxy.url))
    page = context.new_page()
    page.proxy = proxy
    log_in(page, "alice", "alice-password-1")
    yield page
    context.close()
    proxy.close()
    wait_for_streams_to_end()
