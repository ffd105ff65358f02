"""WhiteNoise, for serving under ASGI as well."""

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseFileResponse, WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise, with each file read whole when served under ASGI.

    Django's ASGI handler reads a sync file iterator whole anyway, with a
    warning each time; static files are small, so read it here, in the
    request's thread.
    """

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = super().__call__(request)
        if isinstance(response, WhiteNoiseFileResponse) and isinstance(request, ASGIRequest):
            return _read_whole(response)
        return response


def _read_whole(response: WhiteNoiseFileResponse) -> HttpResponse:
    try:
        read = HttpResponse(b"".join(response), status=response.status_code)
        for name, value in response.items():
            read[name] = value
    finally:
        response.close()
    return read
