from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from chat.demo_upstream import DemoUpstream


class Command(BaseCommand):
    help = (
        "Run the offline demo upstream: a fake AI/ML API on 127.0.0.1 (see chat/demo_upstream.py)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.DEMO_UPSTREAM_PORT)
        parser.add_argument("--first-token-delay", type=float, default=0.3, help="seconds")
        parser.add_argument("--chunk-delay", type=float, default=0.03, help="seconds per chunk")
        parser.add_argument(
            "--only-if-demo",
            action="store_true",
            help="Exit at once unless the app is configured to use the demo (no key, no base URL).",
        )

    def handle(self, *args, host: str, port: int, only_if_demo: bool, **options) -> None:
        if only_if_demo and not settings.UPSTREAM_DEMO:
            return
        server = DemoUpstream(
            host,
            port,
            first_token_delay=options["first_token_delay"],
            chunk_delay=options["chunk_delay"],
            verbose=options["verbosity"] > 1,
        )
        self.stdout.write(f"Demo upstream listening on {server.base_url}")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
