"""Views for branches: regenerate, edit and resend, switch branch, delete a branch.

Each has a form path (Post/Redirect/Get) and, for the two that make a reply, a
streaming twin the page's script uses, answering the same form as server-sent
events (400: submit the form normally; 409: this submit already has a reply).
"""

import uuid
from dataclasses import dataclass

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from .. import branches, generation, presenters
from ..forms import ChatForm, EditForm, ParametersForm, RegenerateForm, ToolResultsForm
from ..models import Conversation, Message
from .pages import (
    edit_form_id,
    message_url,
    new_messages,
    owned_conversation,
    panel_form,
    redirect_to_reply,
    render_conversation,
    reply_event_stream,
)


def _owned_message(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> tuple[Conversation, Message]:
    conversation = owned_conversation(request, public_id)
    return conversation, get_object_or_404(conversation.messages, public_id=message_id)


@login_required
@require_POST
def reply_regenerate(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    conversation, reply = _owned_message(request, public_id, message_id)
    form = RegenerateForm(request.POST)
    if not form.is_valid():
        return _chat_form_errors(request, conversation)
    try:
        new_reply = branches.reply_regenerate(
            conversation=conversation,
            reply=reply,
            idempotency_key=form.cleaned_data["idempotency_key"],
            parameters=form.cleaned_data,
        )
    except ValidationError as error:
        # Over the call limit, or a reply still generating: the panel is shown as it was sent.
        return _chat_form_errors(request, conversation, error)
    return redirect_to_reply(request, conversation, new_reply)


@login_required
@require_POST
def reply_regenerate_stream(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    conversation, reply = _owned_message(request, public_id, message_id)
    form = RegenerateForm(request.POST)
    if not form.is_valid():
        return HttpResponse(status=400)
    try:
        new_reply, created = branches.reply_regenerate_start(
            conversation=conversation,
            reply=reply,
            idempotency_key=form.cleaned_data["idempotency_key"],
            parameters=form.cleaned_data,
        )
    except ValidationError:
        return HttpResponse(status=400)
    if not created:
        return HttpResponse(status=409)
    return reply_event_stream(request, conversation, new_reply, new=[new_reply])


def _chat_form_errors(
    request: HttpRequest, conversation: Conversation, error: ValidationError | None = None
) -> HttpResponse:
    """The panel's errors, shown the way Save parameters shows them; the text is kept."""
    chat_form = panel_form(request)  # regenerating needs no message
    if error is not None:
        chat_form.add_error(None, error)
    return render_conversation(request, conversation, chat_form, status=400)


@login_required
@require_POST
def message_edit(request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID) -> HttpResponse:
    conversation, original = _owned_message(request, public_id, message_id)
    form = EditForm(request.POST, auto_id=edit_form_id(original))
    if form.is_valid():
        try:
            reply = branches.message_edit(
                conversation=conversation,
                original=original,
                content=form.cleaned_data["content"],
                idempotency_key=form.cleaned_data["idempotency_key"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return redirect_to_reply(request, conversation, reply)
    chat_form = ChatForm(
        initial={**ParametersForm.initial_for(conversation), "idempotency_key": uuid.uuid4().hex}
    )
    return render_conversation(
        request, conversation, chat_form, edit_form=form, edit_target=original, status=400
    )


@login_required
@require_POST
def message_edit_stream(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    conversation, original = _owned_message(request, public_id, message_id)
    form = EditForm(request.POST)
    if not form.is_valid() or original.role == Message.Role.ASSISTANT:
        return HttpResponse(status=400)  # an edited assistant message asks nothing: form path
    try:
        reply, created = branches.message_edit_start(
            conversation=conversation,
            original=original,
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
        )
    except ValidationError:
        return HttpResponse(status=400)
    if not created:
        return HttpResponse(status=409)
    return reply_event_stream(request, conversation, reply, new=[reply.parent, reply])


@login_required
@require_POST
def branch_switch(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    conversation, message = _owned_message(request, public_id, message_id)
    branches.branch_switch(conversation=conversation, message=message)
    return redirect(message_url(conversation, message))


@login_required
@require_POST
def branch_delete(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    conversation, message = _owned_message(request, public_id, message_id)
    try:
        branches.branch_delete(conversation=conversation, message=message)
    except ValidationError:
        return redirect(message_url(conversation, message))  # the page shows it still generating
    return redirect(conversation)


@dataclass(frozen=True)
class _ToolResults:
    """A tool-results submit: the form, and the start it made (None when refused)."""

    conversation: Conversation
    reply: Message
    form: ToolResultsForm
    started: tuple[Message, bool] | None


def _tool_results_start(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> _ToolResults:
    """The results the user wrote for a reply's tool calls, started as its continuation."""
    conversation, reply = _owned_message(request, public_id, message_id)
    form = ToolResultsForm(request.POST, cards=presenters.tool_cards_of(reply))
    started = None
    if form.is_valid():
        try:
            started = generation.tool_results_start(
                conversation=conversation,
                reply=reply,
                results=form.results(),
                key=form.cleaned_data["idempotency_key"],
            )
        except ValidationError as error:
            form.add_error(None, error)
    return _ToolResults(conversation, reply, form, started)


@login_required
@require_POST
def tool_results_send(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    """Continue after a reply's tool calls with the results the user wrote."""
    submit = _tool_results_start(request, public_id, message_id)
    if submit.started is not None:
        new_reply, created = submit.started
        if created:
            generation.reply_generate(reply=new_reply)
        return redirect_to_reply(request, submit.conversation, new_reply)
    chat_form = ChatForm(
        initial={
            **ParametersForm.initial_for(submit.conversation),
            "idempotency_key": uuid.uuid4().hex,
        }
    )
    if not submit.reply.tool_calls:  # no tool results form on the page to show its error
        for error in submit.form.non_field_errors():
            flash.error(request, error)
    return render_conversation(
        request,
        submit.conversation,
        chat_form,
        tool_results_form=submit.form,
        edit_target=submit.reply,
        status=400,
    )


@login_required
@require_POST
def tool_results_stream(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    submit = _tool_results_start(request, public_id, message_id)
    if submit.started is None:
        return HttpResponse(status=400)  # the form path shows why
    new_reply, created = submit.started
    if not created:
        return HttpResponse(status=409)
    new = new_messages(submit.conversation, new_reply, submit.reply.pk)
    return reply_event_stream(request, submit.conversation, new_reply, new=new)
