"""Django's ASGI handler, with a body limit and the middleware chain and view in one thread hop."""

from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponse

from playground.body_limits import body_limit, too_large


class OneHopASGIHandler(ASGIHandler):
    """Runs each request's middleware and view as one sync call in the request's thread.

    Django's own handler runs the middleware chain on the event loop. Its
    middlewares are sync code that can run either way, so it hops to a thread
    and back for each one's request half and again for its response half:
    fourteen hops a request here, 0.13 to 0.17 ms each, before a sync view
    takes a thread anyway (every view of the app is sync; streamed replies are
    relayed on the event loop after the view returns). Loaded as for WSGI, the
    chain is entered once. Measured with the login and owner check alone
    (bench/floor.py, in one process), the time to the response headers went
    from 5.2-6.0 to 3.3-3.6 ms, and at 256 concurrent streams the app's p95
    time to first token from 2.5-3.1x to 1.5-1.8x the direct p95
    (docs/performance.md).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's, but a body over the limit is refused before it is read.

        Django's handler reads the whole body into a temporary file (on disk past
        FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware can look at it. A
        declared Content-Length over the limit is answered 413 at once; a chunked
        body is read only up to the limit, then dropped and answered 413.
        """
        path_info = scope["path"].removeprefix(get_script_prefix(scope).rstrip("/"))
        limit = body_limit(path_info)
        if _content_length(scope) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = False

        async def bounded_receive() -> dict[str, Any]:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django's read_body then discards what it read and stops.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await super().handle(scope, bounded_receive, send)
        if refused:
            await self._refuse(send, limit)

    async def _refuse(self, send: Any, limit: int) -> None:
        response = too_large(limit)
        response["Connection"] = "close"  # the rest of the body is never read
        await self.send_response(response, send)


def _content_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server refuses a malformed one before the app sees it
    return 0
