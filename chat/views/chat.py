"""Views of a conversation: the list, the page, sending, streaming, stopping, its parameters."""

import uuid

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import (
    attachments,
    catalogue,
    conversations,
    generation,
    limits,
    raw_request,
    request_body,
)
from ..forms import (
    ChatForm,
    ParametersForm,
    RenameForm,
)
from ..models import Attachment, Conversation, Message
from .pages import (
    message_html,
    new_messages,
    owned_conversation,
    panel_form,
    redirect_to_reply,
    render_conversation,
    reply_event_stream,
)

CONVERSATIONS_PER_PAGE = 25


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    conversations = Conversation.objects.filter(owner=request.user).only(
        "public_id", "title", "model", "updated"
    )
    page = Paginator(conversations, CONVERSATIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "chat/conversation_list.html", {"page": page})


@login_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    conversation = conversations.conversation_create(owner=request.user)
    return redirect(conversation)


@login_required
@require_GET
@never_cache  # a stale copy would resend an old idempotency key
def conversation_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    form = ChatForm(
        initial={
            **ParametersForm.initial_for(conversation),
            "content": request.session.pop(_unsent_message_key(conversation), ""),
            "idempotency_key": uuid.uuid4().hex,
            # The raw editor holds the whole conversation: drawn only when asked for.
            "raw_body": raw_request.preview(
                request_body.build_payload(
                    conversation=conversation, leaf_id=conversation.current_leaf_id
                )
            )
            if request.GET.get("raw") == "1"
            else "",
        }
    )
    return render_conversation(request, conversation, form)


@login_required
@require_POST
def message_send(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    form = ChatForm(request.POST, request.FILES)
    if not form.is_valid():
        return render_conversation(request, conversation, form, status=400)
    data = form.cleaned_data
    try:
        reply, created = _chat_form_start(conversation, data)
    except ValidationError as error:
        form.add_error(None, error)
        return render_conversation(request, conversation, form, status=400)
    if created and reply.status == Message.Status.PENDING:
        generation.reply_generate(reply=reply)
    return redirect_to_reply(request, conversation, reply)


def _chat_form_start(conversation: Conversation, data: dict) -> tuple[Message, bool]:
    """What the chat form asks for, saved: a raw body, or a message (with its files) that
    is sent, or only added (few-shot turns). (reply or added message, created)."""
    if data.get("raw_request") is not None:
        return generation.raw_start(
            conversation=conversation,
            raw_body=data["raw_text"],
            body=data["raw_request"],
            idempotency_key=data["idempotency_key"],
            parameters=data,
        )
    draft = conversations.draft_from_form(
        owner=conversation.owner,
        content=data["content"],
        role=data["role"],
        files=data["attachments"],
    )
    return generation.message_start(
        conversation=conversation,
        drafts=[draft],
        idempotency_key=data["idempotency_key"],
        parameters=data,
        generate=not data["add_only"],
    )


@login_required
@require_POST
def message_stream(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The JavaScript path: the same form, answered as server-sent events.

    A 400 means "submit the form normally" (nothing was saved, and the normal
    path shows the errors); a 409 means this submit already has a reply.
    """
    conversation = owned_conversation(request, public_id)
    form = ChatForm(request.POST, request.FILES)
    if not form.is_valid():
        return HttpResponse(status=400)
    data = form.cleaned_data
    raw = data.get("raw_request")
    if data["add_only"] or (raw is not None and raw.get("stream") is not True):
        return HttpResponse(status=400)  # nothing to stream: the form path does it
    parent_id = conversation.current_leaf_id
    try:
        reply, created = _chat_form_start(conversation, data)
    except ValidationError:
        return HttpResponse(status=400)
    if not created:
        return HttpResponse(status=409)
    return reply_event_stream(
        request, conversation, reply, new=new_messages(conversation, reply, parent_id)
    )


@login_required
@require_GET
@never_cache
def message_fragment(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    """One message as the conversation page shows it (polled while a reply is pending)."""
    conversation = owned_conversation(request, public_id)
    generation.replies_expire_stale(conversation=conversation)
    message = get_object_or_404(conversation.messages, public_id=message_id)
    in_compare = request.GET.get("view") == "compare"  # a compare page's column
    return HttpResponse(message_html(request, conversation, message, in_compare=in_compare))


@login_required
@require_POST
def reply_stop(request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    reply = get_object_or_404(conversation.messages, public_id=message_id)
    generation.reply_stop(reply=reply)
    return HttpResponse(status=204)


@login_required
@require_GET
def attachment_file(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """An attachment's bytes, to its owner only. Never run as a page: the type is the
    one its bytes were checked to be, and the response may not script or load anything."""
    attachment = get_object_or_404(Attachment, public_id=attachment_id, owner=request.user)
    return attachments.file_response(attachment)


@login_required
@require_POST
def parameters_save(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    # "Copy into the form" from the raw editor: the panel takes what maps from the raw body.
    form = (ChatForm if request.POST.get("use_raw") else ParametersForm)(request.POST)
    if not form.is_valid():
        return render_conversation(request, conversation, panel_form(request), status=400)
    conversations.conversation_update_parameters(
        conversation=conversation, parameters=form.cleaned_data
    )
    _keep_unsent_message(request, conversation)
    return redirect(f"{conversation.get_absolute_url()}#parameters")


def _keep_unsent_message(request: HttpRequest, conversation: Conversation) -> None:
    """Saving the parameters reloads the page: the message typed so far comes back with it."""
    text = request.POST.get("content", "")
    if text.strip() and len(text) <= settings.MAX_MESSAGE_CHARS:
        request.session[_unsent_message_key(conversation)] = text


def _unsent_message_key(conversation: Conversation) -> str:
    return f"unsent-message:{conversation.public_id}"


@login_required
@require_POST
def parameters_panel(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The parameter panel for the model now in the form, keeping the values typed so far.

    Read-only (nothing is saved): JavaScript swaps it in when the model changes.
    Without JavaScript, Save parameters shows the new model's panel instead.
    """
    conversation = owned_conversation(request, public_id)
    form = ChatForm(initial=request.POST.dict())  # unbound: no errors before a submit
    context = {"conversation": conversation, "form": form, "catalogue": catalogue.catalogue_get()}
    return render(request, "chat/_parameters.html", context)


@login_required
@require_POST
def reply_retry(request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    reply = get_object_or_404(conversation.messages, public_id=message_id)
    try:
        reply = generation.reply_retry(reply=reply)
    except (limits.RateLimited, generation.StartRefused) as error:
        flash.error(request, error.message)
    except ValidationError:
        pass  # a second click on Retry finds the reply no longer failed; the page shows it
    if request.POST.get("return_to") == "compare" and reply.compare_column is not None:
        return redirect_to_reply(request, reply.compare_column.run, reply)
    return redirect_to_reply(request, conversation, reply)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    form = RenameForm(request.POST)
    if form.is_valid():
        conversations.conversation_rename(
            conversation=conversation, title=form.cleaned_data["title"]
        )
        return redirect(conversation)
    chat_form = ChatForm(initial=ParametersForm.initial_for(conversation))
    return render_conversation(request, conversation, chat_form, rename_form=form, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    if request.method == "POST":
        conversations.conversation_delete(conversation=conversation)
        return redirect("conversation_list")
    return render(request, "chat/conversation_confirm_delete.html", {"conversation": conversation})
