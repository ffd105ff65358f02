from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest


def upstream(request: HttpRequest) -> dict:
    """What every page says about where replies come from (never the key itself)."""
    return {
        "upstream_demo": settings.UPSTREAM_DEMO,
        "upstream_host": urlsplit(settings.UPSTREAM_BASE_URL).netloc,
        "upstream_has_key": bool(settings.UPSTREAM_API_KEY),
    }


def accounts(request: HttpRequest) -> dict:
    """Whether pages offer a sign-up link: not when sign-up is closed."""
    return {"signup_mode": settings.SIGNUP_MODE}
