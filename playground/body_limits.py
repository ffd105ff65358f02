"""Limits on request bodies that hold before a body is read.

Django bounds a form's fields (DATA_UPLOAD_MAX_MEMORY_SIZE) but not its files, and
only once something reads the body; under ASGI its handler spools the whole body
to a temporary file before any middleware runs. So the limit is checked first:
by the ASGI handler (playground/handlers.py), by RequestBodyLimitMiddleware under
WSGI, and, for the one form that takes a file, by UploadLimitHandler as the file
streams in.
"""

import functools
import re

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.html import escape

# The import form's other fields and its multipart headers, beside the file itself.
IMPORT_FORM_OVERHEAD = 64 * 1024
IMPORT_URL_NAME = "conversations_import"


# The chat form's posts, which may carry a message's attachments.
_MESSAGE_PATH = re.compile(r"^/c/[0-9a-f-]{36}/(send|stream)/$")


def body_limit(path_info: str) -> int:
    """The largest body a request to `path_info` may have, in bytes."""
    if path_info == _import_path():
        return settings.MAX_IMPORT_BYTES + IMPORT_FORM_OVERHEAD
    if _MESSAGE_PATH.match(path_info):
        return settings.MAX_REQUEST_BYTES + settings.MAX_MESSAGE_ATTACHMENT_BYTES
    return settings.MAX_REQUEST_BYTES


def file_limit(path_info: str) -> int:
    """The largest file an upload to `path_info` may carry, in bytes.

    A message's files are let through up to the whole body's limit, so that the
    form can name the file and the limit it passed, with the typed text kept
    (a stopped upload loses the fields after it).
    """
    if _MESSAGE_PATH.match(path_info):
        return settings.MAX_MESSAGE_ATTACHMENT_BYTES + settings.MAX_REQUEST_BYTES
    return settings.MAX_IMPORT_BYTES


@functools.cache
def _import_path() -> str | None:
    # Compared, not resolved: resolving took about 0.1 ms of every request.
    try:
        path = reverse(IMPORT_URL_NAME)
    except NoReverseMatch:  # a URLconf without the import page (bench/floor_urls.py)
        return None
    return path.removeprefix(get_script_prefix().rstrip("/"))


def too_large(limit: int) -> HttpResponse:
    """413, with a short page: nothing of the request was read or saved."""
    size = escape(filesizeformat(limit))
    return HttpResponse(
        "<!doctype html><html lang=en><title>Request too large</title>"
        f"<h1>Request too large</h1><p>This request is larger than {size}, the limit here. "
        "Nothing was read or saved. Go back and send less.</p></html>",
        status=413,
    )


class RequestBodyLimitMiddleware:
    """Under WSGI: a declared body over the limit is refused before anything reads it.

    (A WSGI request without Content-Length has, for Django, an empty body.)
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = body_limit(request.path_info)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared <= limit:
            return self.get_response(request)
        stream = request.META.get("wsgi.input")
        if isinstance(stream, LimitedStream):
            # runserver reads whatever the app left unread into memory after the
            # response (basehttp.ServerHandler.close); the connection closes instead.
            stream.limit = 0
        return too_large(limit)


class UploadLimitHandler(FileUploadHandler):
    """Stops an uploaded file past its limit (file_limit) while it streams in.

    The rest is neither read nor spooled to disk; the form sees no file, and
    `upload_too_large(request)` says why.
    """

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > file_limit(self.request.path_info):
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers keep the file


def upload_too_large(request: HttpRequest) -> bool:
    """Whether UploadLimitHandler stopped a file of this request (read request.FILES first)."""
    return getattr(request, "upload_too_large", False)
