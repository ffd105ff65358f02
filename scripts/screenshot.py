"""Take the README screenshot: the chat page with a reply and its inspector open.

    .venv/bin/python scripts/screenshot.py docs/screenshot.png

Self-contained: a throwaway SQLite database, the offline demo upstream (on `make run`'s port
8001 when it is free, else any free port), the app on a free port, and Debian's Chromium
(/usr/bin/chromium) driven by Playwright, as a new user of `make run` would see it. Nothing
outside the temporary directory is touched except the PNG written to the given path.
"""

import argparse
import logging
import os
import socketserver
import sys
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chat.demo_upstream import DemoUpstream  # noqa: E402 (stdlib only; no Django needed)
from tests.browser.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

DEMO_PORT = 8001  # settings.DEMO_UPSTREAM_PORT's default
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 15_000
USERNAME = "ada"
PASSWORD = "screenshot-password-1"
SYSTEM_PROMPT = "You are a concise Python tutor. Answer with working code."
TEMPERATURE = "0.3"
EXTRA_PARAMETERS = '{"enable_thinking": true}'
MESSAGE = "Write a Python function that reverses a string"


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def start_demo_upstream() -> DemoUpstream:
    """On `make run`'s port when it is free, so the picture shows the URLs a user sees."""
    try:
        return DemoUpstream(port=DEMO_PORT).start()
    except OSError:
        return DemoUpstream().start()


def configure_environment(database: Path, demo_port: int) -> None:
    """Settings for a fresh, offline app; real environment variables (and .env) lose."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "playground.settings",
            "DATABASE_URL": f"sqlite:///{database}",
            "CONN_MAX_AGE": "0",
            "CACHE_URL": "locmemcache://screenshot",
            "DEBUG": "true",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
            # No key and no base URL: the offline demo, on the port started below.
            "UPSTREAM_API_KEY": "",
            "UPSTREAM_BASE_URL": "",
            "DEMO_UPSTREAM_PORT": str(demo_port),
            "DEFAULT_MODEL": "anthropic/claude-sonnet-4.5",
        }
    )


def start_app() -> ThreadingWSGIServer:
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.wsgi import get_wsgi_application

    app = StaticFilesHandler(get_wsgi_application())
    server = make_server(
        "127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="app", daemon=True).start()
    return server


def take_screenshot(base_url: str, output: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()

            page.goto("/accounts/login/")
            page.get_by_label("Username").fill(USERNAME)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("main").get_by_role("button", name="New conversation").click()

            page.get_by_label("System prompt").fill(SYSTEM_PROMPT)
            page.get_by_label("Temperature").fill(TEMPERATURE)
            page.get_by_label("Extra parameters (JSON)").fill(EXTRA_PARAMETERS)
            page.get_by_label("Message", exact=True).fill(MESSAGE)
            page.get_by_role("button", name="Send", exact=True).click()

            reply = page.locator("li.message.assistant")
            expect(reply.locator("strong", has_text="Demo reply")).to_be_visible()
            inspector = reply.locator("details.inspector")
            inspector.locator(":scope > summary").click()
            expect(inspector.locator("pre.raw").first).to_be_visible()

            # From the top bar to the end of the request: the conversation, the reply and
            # the inspector (metrics and the exact request body) in one picture.
            request = inspector.locator("section.wire").first
            bottom = request.evaluate(
                "element => element.getBoundingClientRect().bottom + window.scrollY"
            )
            page.evaluate("window.scrollTo(0, 0)")
            page.mouse.move(0, 0)  # no hover styles in the picture
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(output),
                full_page=True,
                clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 16},
            )
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="where to write the PNG")
    output = parser.parse_args().output.resolve()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"{CHROMIUM} is missing; `make screenshot` installs Debian's chromium first.")

    with tempfile.TemporaryDirectory(prefix="playground-screenshot-") as tmp:
        demo = start_demo_upstream()
        app_server = None
        try:
            configure_environment(Path(tmp) / "db.sqlite3", demo.port)
            import django

            django.setup()
            from django.contrib.auth import get_user_model
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            get_user_model().objects.create_user(USERNAME, password=PASSWORD)

            app_server = start_app()
            # After start_app (get_wsgi_application configures logging again): Chromium asks
            # for /favicon.ico, which the app does not serve, and that is not worth a warning.
            logging.getLogger("django.request").setLevel(logging.ERROR)
            host, port = app_server.server_address[:2]
            take_screenshot(f"http://{host}:{port}", output)
        finally:
            if app_server is not None:
                app_server.shutdown()
                app_server.server_close()
            demo.stop()
            from django.db import connections

            connections.close_all()
    print(f"Wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
