"""WhiteNoise that can also run on an event loop.

WhiteNoise's middleware is sync-only. Under ASGI a single sync-only middleware
makes Django run the whole chain around it through extra thread hops on every
request, streaming ones included; this one passes non-static requests straight
on in either mode, and serves static files the same way WhiteNoise does.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        static_file = self._static_file(request)
        if static_file is not None:
            return await sync_to_async(self._serve_read, thread_sensitive=False)(
                static_file, request
            )
        return await self.get_response(request)

    def _serve_read(self, static_file, request) -> HttpResponse:
        # Django's ASGI handler would read WhiteNoise's file response whole anyway,
        # with a warning each time; read it here, off the event loop.
        response = self.serve(static_file, request)
        try:
            read = HttpResponse(b"".join(response), status=response.status_code)
            for name, value in response.items():
                read[name] = value
        finally:
            response.close()
        return read

    def _static_file(self, request):
        if self.autorefresh:
            return self.find_file(request.path_info)
        return self.files.get(request.path_info)
