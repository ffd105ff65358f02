from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from chat import accounts


class Command(BaseCommand):
    help = (
        "Make one-time sign-up links (for SIGNUP_MODE=invite) and print them. "
        "Each link makes one account."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=1, help="How many links (default 1).")
        parser.add_argument(
            "--days",
            type=float,
            default=7,
            help="Days until the links expire (default 7; 0 for never).",
        )
        parser.add_argument(
            "--note", default="", help="Who the links are for (shown in the admin)."
        )
        parser.add_argument(
            "--base-url",
            default="",
            help="The site's address, e.g. https://play.example.com (default: the first "
            "CSRF_TRUSTED_ORIGINS entry, else the first ALLOWED_HOSTS name).",
        )

    def handle(self, *args, count: int, days: float, note: str, base_url: str, **options) -> None:
        if not 1 <= count <= 1000:
            raise CommandError("--count must be between 1 and 1000.")
        if days < 0:
            raise CommandError("--days must be 0 (never expires) or more.")
        base = (base_url or self._default_base()).rstrip("/")
        expires_in = timedelta(days=days) if days else None
        for _ in range(count):
            invitation = accounts.invitation_create(expires_in=expires_in, note=note)
            query = urlencode({"invite": invitation.token})
            self.stdout.write(f"{base}{reverse('signup')}?{query}")
        when = f"expire in {days:g} days" if days else "never expire"
        self.stderr.write(f"{count} one-time link{'s' if count != 1 else ''}; they {when}.")
        if settings.SIGNUP_MODE != "invite":
            self.stderr.write(
                f"Note: SIGNUP_MODE is {settings.SIGNUP_MODE}, so the links are "
                + (
                    "not needed: anyone can sign up."
                    if settings.SIGNUP_MODE == "open"
                    else "refused until it is set to invite."
                )
            )

    @staticmethod
    def _default_base() -> str:
        if settings.DEBUG:
            return "http://127.0.0.1:8000"  # `make run`
        if settings.CSRF_TRUSTED_ORIGINS:
            return settings.CSRF_TRUSTED_ORIGINS[0]
        hosts = [
            host
            for host in settings.ALLOWED_HOSTS
            if host not in {"*"} and not host.startswith(".")
        ]
        if hosts:
            scheme = "http" if settings.DEBUG else "https"
            return f"{scheme}://{hosts[0]}"
        return ""
