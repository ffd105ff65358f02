"""Views for compare runs: the form, the run page, one stream per column, choosing a reply.

Without JavaScript the form's POST generates every column concurrently and
redirects to the run page. With it, the script posts the same form to
compare_start (nothing is generated), opens the run page, and streams each
column over its own request.
"""

import uuid

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import catalogue, compare, conversations, generation, presenters
from ..forms import CompareColumnForm, CompareForm, ParametersForm, ShareForm, compare_column_forms
from ..models import CompareRun, Conversation
from .pages import attach_calls, message_url, owned_conversation, reply_event_stream


def _owned_run(request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID) -> CompareRun:
    conversation = owned_conversation(request, public_id)
    return get_object_or_404(
        CompareRun.objects.select_related("conversation", "prompt"),
        conversation=conversation,
        public_id=run_id,
    )


@login_required
@require_http_methods(["GET", "POST"])
@never_cache  # a stale copy would resend an old idempotency key
def compare_new(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = owned_conversation(request, public_id)
    if request.method == "GET":
        return _render_compare_form(request, conversation, *_blank_forms(conversation))
    form, columns = CompareForm(request.POST), compare_column_forms(request.POST)
    parameter_sets = _valid_parameter_sets(form, columns)
    if parameter_sets is None:
        return _render_compare_form(request, conversation, form, columns, status=400)
    try:
        run = compare.compare_send(
            conversation=conversation,
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            parameter_sets=parameter_sets,
        )
    except ValidationError as error:
        form.add_error(None, error)
        return _render_compare_form(request, conversation, form, columns, status=400)
    return redirect(run)


@login_required
@require_POST
def compare_start(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The script's path: save the run without generating; the run page streams each column.

    400 means "submit the form normally" (nothing was saved; that path shows the errors).
    """
    conversation = owned_conversation(request, public_id)
    form, columns = CompareForm(request.POST), compare_column_forms(request.POST)
    parameter_sets = _valid_parameter_sets(form, columns)
    if parameter_sets is None:
        return HttpResponse(status=400)
    try:
        run, created = compare.compare_start(
            conversation=conversation,
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            parameter_sets=parameter_sets,
            claim=False,
        )
    except ValidationError:
        return HttpResponse(status=400)
    return JsonResponse({"url": run.get_absolute_url()}, status=201 if created else 200)


@login_required
@require_GET
@never_cache
def compare_detail(request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID) -> HttpResponse:
    run = _owned_run(request, public_id, run_id)
    generation.replies_expire_stale(conversation=run.conversation)
    columns = compare.compare_columns(run=run)
    replies = [column.reply for column in columns if column.reply is not None]
    attach_calls(replies)
    presenters.messages_present(replies)
    context = {
        "conversation": run.conversation,
        "run": run,
        "columns": columns,
        "share_form": ShareForm(),
    }
    return render(request, "chat/compare_detail.html", context)


@login_required
@require_POST
def compare_column_stream(
    request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID, position: int
) -> HttpResponse:
    """One column's reply as server-sent events; 409 when it was already claimed."""
    run = _owned_run(request, public_id, run_id)
    column = get_object_or_404(run.columns, position=position)
    reply = column.replies.order_by("created", "id").first()
    if reply is None or not compare.compare_column_claim(column=column):
        return HttpResponse(status=409)
    return reply_event_stream(request, run.conversation, reply, new=[reply], in_compare=True)


@login_required
@require_POST
def compare_choose(
    request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    run = _owned_run(request, public_id, run_id)
    reply = get_object_or_404(run.conversation.messages, public_id=message_id)
    try:
        compare.compare_choose(run=run, reply=reply)
    except ValidationError:
        return redirect(run)
    return redirect(message_url(run.conversation, reply))


def _blank_forms(conversation: Conversation) -> tuple[CompareForm, list[CompareColumnForm]]:
    """The conversation's parameters in the first two columns, ready to be varied."""
    panel = ParametersForm.initial_for(conversation)
    form = CompareForm(initial={"idempotency_key": uuid.uuid4().hex})
    return form, compare_column_forms(initial=[panel, panel])


def _valid_parameter_sets(form: CompareForm, columns: list[CompareColumnForm]) -> list[dict] | None:
    """Each used column's cleaned data, or None (with errors on the forms) if anything is off."""
    valid = form.is_valid()
    valid = all([column.is_valid() for column in columns]) and valid
    if not valid:
        return None
    used = [column.cleaned_data for column in columns if column.is_used()]
    if len(used) < compare.MIN_COLUMNS:
        form.add_error(
            None,
            f"Fill in the model of at least {compare.MIN_COLUMNS} columns to compare them.",
        )
        return None
    return used


def _render_compare_form(
    request: HttpRequest,
    conversation: Conversation,
    form: CompareForm,
    columns: list[CompareColumnForm],
    *,
    status: int = 200,
) -> HttpResponse:
    context = {
        "conversation": conversation,
        "form": form,
        "columns": columns,
        "catalogue": catalogue.catalogue_get(),
        "path": conversations.conversation_path(conversation=conversation),
    }
    return render(request, "chat/compare_form.html", context, status=status)
