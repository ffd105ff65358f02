"""Views of share links: making, listing, changing and revoking them, and the shared page."""

import uuid

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.db.models.fields.json import KeyTransform
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import (
    attachments,
    exports,
    sharing,
    snippets,
)
from ..forms import (
    ShareForm,
    ShareSettingsForm,
)
from ..models import CompareRun, Conversation, Share
from .pages import JSONArrayLength, owned_conversation


def _owned_share(request: HttpRequest, public_id: uuid.UUID) -> Share:
    return get_object_or_404(
        Share.objects.select_related("conversation"),
        public_id=public_id,
        conversation__owner=request.user,
    )


@login_required
@require_POST
def share_create(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _share_create(request, owned_conversation(request, public_id), compare_run=None)


@login_required
@require_POST
def compare_share(request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    run = get_object_or_404(conversation.compare_runs, public_id=run_id)
    return _share_create(request, conversation, compare_run=run)


def _share_create(
    request: HttpRequest, conversation: Conversation, *, compare_run: CompareRun | None
) -> HttpResponse:
    form = ShareForm(request.POST)
    if not form.is_valid():
        return HttpResponse(f"Invalid share options: {form.errors.as_text()}", status=400)
    share = sharing.share_create(
        conversation=conversation,
        compare_run=compare_run,
        show_inspector=form.cleaned_data["show_inspector"],
        show_response_headers=form.cleaned_data["show_response_headers"],
        expires_in=form.cleaned_data["expires_in"],
    )
    return _to_share_list(share)


def _to_share_list(share: Share) -> HttpResponse:
    return redirect(f"{reverse('share_list')}#share-{share.public_id}")


@login_required
@require_GET
def share_list(request: HttpRequest) -> HttpResponse:
    # Each snapshot holds its conversation's calls, megabytes each perhaps: the list
    # needs only how many messages there are, which the database counts.
    messages = JSONArrayLength(KeyTransform("messages", "snapshot"))
    shares = list(
        sharing.shares_for(owner=request.user).defer("snapshot").annotate(message_count=messages)
    )
    for share in shares:
        share.settings_form = ShareSettingsForm(
            initial={
                "expires_in": "keep",
                "show_inspector": share.show_inspector,
                "show_response_headers": share.show_response_headers,
            }
        )
    return render(request, "chat/share_list.html", {"shares": shares})


@login_required
@require_POST
def share_update(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    share = _owned_share(request, public_id)
    sharing.share_update_snapshot(share=share)
    return _to_share_list(share)


@login_required
@require_POST
def share_settings(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    share = _owned_share(request, public_id)
    form = ShareSettingsForm(request.POST)
    if not form.is_valid():
        return HttpResponse(f"Invalid share options: {form.errors.as_text()}", status=400)
    sharing.share_update_settings(share=share, **form.cleaned_data)
    return _to_share_list(share)


@login_required
@require_POST
def share_revoke(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    share = _owned_share(request, public_id)
    sharing.share_revoke(share=share)
    return _to_share_list(share)


@require_GET
@never_cache  # a revoked link must stop working at once, also from caches
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    """The public, read-only page of a share link; no login needed."""
    share = sharing.share_get_live(token=token)
    messages = sharing.snapshot_messages(share=share)
    if share.show_inspector:
        for message in messages:
            for call in message.call_list:
                call.snippets = snippets.all_snippets(
                    body=call.request_body, splices=call.splices_named()
                )
    context = {
        "share": share,
        "snapshot": share.snapshot,
        "parameters": sharing.snapshot_parameters(share=share),
        "path": messages,
        "read_only": True,
        "hide_inspector": not share.show_inspector,
        "hide_response_headers": not share.show_response_headers,
    }
    if share.compare_run_id is not None:
        context["path"], context["columns"] = sharing.snapshot_compare(
            share=share, messages=messages
        )
    response = render(request, "chat/shared_conversation.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    # The URL is the secret: never send it to another site. (Not "no-referrer":
    # Chromium then sends "Origin: null" with this page's forms, failing CSRF.)
    response["Referrer-Policy"] = "same-origin"
    return response


@require_GET
@never_cache  # a revoked link stops serving its files at once too
def shared_file(request: HttpRequest, token: str, sha256: str) -> HttpResponse:
    """A file shown on a share page, from the snapshot's own copy: never the owner's
    files, and only those the snapshot holds."""
    attachment, data = sharing.snapshot_file(token=token, sha256=sha256)
    response = attachments.file_response(attachment, data=data)
    del response["Cache-Control"]  # the owner's files are immutable; a share's may be revoked
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "same-origin"
    return response


@require_http_methods(["GET", "POST"])
def share_continue(request: HttpRequest, token: str) -> HttpResponse:
    share = sharing.share_get_live(token=token)  # a dead link is not worth logging in for
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())  # and back here afterwards
    if request.method == "POST":
        try:
            conversation = sharing.share_continue(share=share, owner=request.user)
        except exports.ImportRejected as error:  # a snapshot this Playground's limits refuse
            flash.error(request, f"Nothing was copied. {error}")
            return redirect("share_continue", token=token)
        return redirect(conversation)
    response = render(request, "chat/share_continue.html", {"share": share})
    response["Referrer-Policy"] = "same-origin"
    return response
