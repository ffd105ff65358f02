"""Views of a recorded upstream call: its page, its full record, its parts as files."""

import json
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import TextField
from django.db.models.functions import Cast, Length, Substr
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from .. import (
    client,
    formatting,
    snippets,
)
from ..models import ApiCall
from .pages import JSONArrayLength


@login_required
@require_GET
def call_detail(request: HttpRequest, call_id: uuid.UUID) -> HttpResponse:
    call = _call_for_page(
        # The page links the message; its text may be megabytes, like the call's.
        ApiCall.objects.select_related("conversation", "message").defer(
            "message__content", "message__reasoning"
        ),
        public_id=call_id,
        conversation__owner=request.user,
    )
    context = {
        "call": call,
        "conversation": call.conversation,
        "snippets": snippets.all_snippets(body=call.request_body, splices=call.splices_named()),
        "snippet_url": client.chat_url(),  # never the stored URL: an import may set any
    }
    return render(request, "chat/call_detail.html", context)


@login_required
@require_GET
def call_record(request: HttpRequest, call_id: uuid.UUID) -> HttpResponse:
    """One call's inspector record, fetched when an older reply's inspector is opened."""
    call = _call_for_page(ApiCall.objects, public_id=call_id, conversation__owner=request.user)
    return render(request, "chat/_call_record.html", {"call": call})


@login_required
@require_GET
def call_download(request: HttpRequest, call_id: uuid.UUID, part: str) -> HttpResponse:
    field = "request_body" if part == "request" else "response_body"
    call = get_object_or_404(
        ApiCall.objects.only(
            "public_id", "response_headers", "request_splices", "conversation__owner_id", field
        ).select_related("conversation"),
        public_id=call_id,
        conversation__owner=request.user,
    )
    # The request as sent: attachments' base64 put back where it was cut out.
    body = call.sent_body() if part == "request" else call.response_body
    content_type = "application/json" if part == "request" else _response_type(call)
    response = HttpResponse(body.encode(), content_type=f"{content_type}; charset=utf-8")
    extension = "txt" if content_type.startswith("text/event-stream") else "json"
    response["Content-Disposition"] = f'attachment; filename="{part}-{call.public_id}.{extension}"'
    return response


# What _call_for_page loads of a large call: the first characters of each text (and
# of the events' JSON, from which the first events are read), never the whole.
PAGE_TEXT_FIELDS = ("request_body", "response_body", "assembled_response", "stream_events")


def _call_for_page(queryset, **lookup) -> ApiCall:
    """One call (or 404) for a page that shows it, each raw field loaded whole only when
    it is small enough to be formatted (MAX_FORMAT_CHARS); a larger one only as far as
    the page shows it (formatting.Head, formatting.EventsHead), since loading a reply of
    megabytes costs the worker several times its size.
    """
    queryset = queryset.filter(**lookup)
    call = queryset.defer(*PAGE_TEXT_FIELDS).first()
    if call is None:
        raise Http404("No such call.")
    row = ApiCall.objects.filter(pk=call.pk)
    # One field per query: the database holds each value it reads whole while the
    # query runs (SQLite does so in this process), so one at a time.
    for name in PAGE_TEXT_FIELDS:
        text = Cast(name, TextField())
        total = row.values_list(Length(text), flat=True).get() or 0
        if total <= settings.MAX_FORMAT_CHARS:
            setattr(call, name, row.values_list(name, flat=True).get())
            continue
        # JSON escapes make the events' text longer than their data: read a little more.
        size = 2 * settings.MAX_SHOWN_CHARS + 4096
        head = row.values_list(Substr(text, 1, size), flat=True).get()
        if name == "stream_events":
            count = row.values_list(JSONArrayLength(name), flat=True).get()
            call.stream_events = formatting.EventsHead(_first_events(head), count)
        else:
            setattr(call, name, formatting.Head(head, total))
    return call


def _first_events(text: str) -> list[dict]:
    """The events that are whole in the first part of the events' JSON text."""
    decoder, events, index = json.JSONDecoder(), [], text.find("[") + 1
    while index:
        while index < len(text) and text[index] in ", \n\t\r":
            index += 1
        try:
            event, index = decoder.raw_decode(text, index)
        except ValueError:  # the first part ends inside this event
            break
        if isinstance(event, dict) and isinstance(event.get("data"), str):
            events.append({"at_ms": event.get("at_ms") or 0, "data": event["data"]})
    return events


def _response_type(call: ApiCall) -> str:
    content_type = client.header(call.response_headers, "Content-Type") or ""
    return content_type.split(";")[0].strip() or "application/json"
