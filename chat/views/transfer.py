"""Views that export conversations (JSON, Markdown) and import them."""

import uuid

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods

from playground import body_limits

from .. import (
    conversations,
    exports,
)
from ..forms import (
    ImportForm,
)
from ..models import Conversation
from .pages import owned_conversation


@login_required
@require_GET
def conversation_export(request: HttpRequest, public_id: uuid.UUID, fmt: str) -> HttpResponse:
    """JSON has every branch and call; Markdown is the branch on screen."""
    conversation = owned_conversation(request, public_id)
    name = slugify(conversation.title) or "conversation"
    if fmt == "md":
        path = conversations.conversation_path(conversation=conversation)
        text = exports.export_markdown(conversation=conversation, messages=path)
        response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            exports.export_json([conversation]), content_type="application/json"
        )
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@login_required
@require_GET
def conversations_export(request: HttpRequest) -> HttpResponse:
    conversations = Conversation.objects.filter(owner=request.user).order_by("created", "id")
    response = StreamingHttpResponse(
        exports.export_json(conversations.iterator(chunk_size=100)),
        content_type="application/json",
    )
    filename = slugify(f"playground-{request.user.get_username()}-conversations")
    response["Content-Disposition"] = f'attachment; filename="{filename}.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def conversations_import(request: HttpRequest) -> HttpResponse:
    form = (
        ImportForm(
            request.POST,
            request.FILES,
            upload_too_large=body_limits.upload_too_large(request),  # after reading FILES
        )
        if request.method == "POST"
        else ImportForm()
    )
    if form.is_bound and form.is_valid():
        try:
            imported = exports.conversations_import(
                owner=request.user, data=form.cleaned_data["file"]
            )
        except exports.ImportRejected as error:
            form.add_error("file", f"Nothing was imported. {error}")
        else:
            if len(imported) == 1:
                return redirect(imported[0])
            flash.success(request, f"Imported {len(imported):,} conversations.")
            return redirect("conversation_list")
    status = 400 if form.errors else 200
    context = {"form": form, "max_bytes": settings.MAX_IMPORT_BYTES}
    return render(request, "chat/conversation_import.html", context, status=status)
