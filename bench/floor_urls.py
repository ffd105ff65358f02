"""The Django floor of bench/floor.py: the app's middleware, login and owner check, relay."""

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.views.decorators.http import require_POST

from bench.floor import relay
from chat.models import Conversation


@login_required
@require_POST
def stream_relay(request: HttpRequest, public_id: uuid.UUID) -> StreamingHttpResponse:
    get_object_or_404(Conversation, public_id=public_id, owner=request.user)
    return StreamingHttpResponse(relay(), content_type="text/event-stream")


urlpatterns = [path("c/<uuid:public_id>/stream/", stream_relay)]
