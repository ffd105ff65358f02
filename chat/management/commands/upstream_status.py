from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Say which upstream the app will call (never prints the key)."

    def handle(self, *args, **options) -> None:
        if settings.UPSTREAM_DEMO:
            self.stdout.write(
                "No UPSTREAM_API_KEY set: replies come from the offline demo endpoint at "
                f"{settings.UPSTREAM_BASE_URL}.\n"
                "To use real models, copy .env.example to .env, set UPSTREAM_API_KEY, and restart."
            )
        else:
            key = "with an API key" if settings.UPSTREAM_API_KEY else "without an API key"
            self.stdout.write(f"Upstream: {settings.UPSTREAM_BASE_URL} ({key}).")
