"""What several pages share: the owner's objects, the conversation page, its streams and fragments.

Not a view module: the view modules import from here, never from one another.
"""

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

from django.conf import settings
from django.contrib import messages as flash
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.db.models import Func, IntegerField
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string

from .. import (
    branches,
    catalogue,
    conversations,
    database_thread,
    generation,
    markdown,
    presenters,
    usage,
)
from ..forms import (
    ChatForm,
    EditForm,
    RenameForm,
    ShareForm,
    ToolResultsForm,
)
from ..models import ApiCall, CompareRun, Conversation, Message

# A long conversation opens at its latest messages; "Show all" renders the rest.
MAX_MESSAGES_SHOWN = 100


# What only the full inspector record shows; a reply's summary line needs none of it.
RAW_CALL_FIELDS = (
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "stream_events",
    "assembled_response",
)


def owned_conversation(request: HttpRequest, public_id: uuid.UUID) -> Conversation:
    return get_object_or_404(Conversation, public_id=public_id, owner=request.user)


def message_url(page: Conversation | CompareRun, message: Message) -> str:
    """`message` on `page`: its conversation's, or a compare run's."""
    return f"{page.get_absolute_url()}#message-{message.public_id}"


def redirect_to_reply(
    request: HttpRequest, page: Conversation | CompareRun, reply: Message
) -> HttpResponse:
    """To `reply` on `page`, after the form path generated it; to the list, saying why,
    if its conversation was deleted meanwhile (in another tab, say)."""
    if not Message.objects.filter(pk=reply.pk).exists():
        flash.info(request, generation.REPLY_DELETED)
        return redirect("conversation_list")
    return redirect(message_url(page, reply))


def new_messages(conversation: Conversation, reply: Message, parent_id: int | None) -> list:
    """The messages a start added, down to its reply: after `parent_id`, or after the
    point where a raw body departed from the branch on screen."""
    path = conversations.message_path(conversation=conversation, leaf_id=reply.pk)
    ids = [message.pk for message in path]
    start = ids.index(parent_id) + 1 if parent_id in ids else 0
    new = [message for message in path[start:] if message.written or message.pk == reply.pk]
    return new or [reply]


def reply_event_stream(
    request: HttpRequest,
    conversation: Conversation,
    reply: Message,
    *,
    new: list[Message],
    in_compare: bool = False,
) -> StreamingHttpResponse:
    """Generate `reply` as server-sent events; `new` are the messages the start event shows.

    `in_compare`: the messages are rendered as a compare page's column shows them.
    """
    # Each server model needs its own kind of iterator: Django buffers an async
    # one whole under WSGI, and a sync one whole under ASGI.
    if isinstance(request, ASGIRequest):
        updates = generation.reply_stream_async(reply=reply)  # records the first call
        events = _reply_events_async(request, conversation, reply, updates, new, in_compare)
        # The stream's database work runs on the database thread: this request's
        # thread gives its connection back now rather than hold it for minutes.
        connections.close_all()
    else:
        events = _reply_events(request, conversation, reply, new, in_compare)
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx not to buffer the stream
    return response


def _reply_events(
    request: HttpRequest,
    conversation: Conversation,
    reply: Message,
    new: list[Message],
    in_compare: bool,
) -> Iterator[bytes]:
    """The stream the browser reads: start, deltas, then the message as a reload shows it."""
    for kind, data in generation.reply_stream(reply=reply):
        if kind == "sent":  # the new messages, and Stop, show while the upstream is asked
            yield _start_event(request, conversation, reply, new, in_compare)
        elif kind == "ping":
            yield b": ping\n\n"
        elif kind == "delta":
            yield _sse("delta", data)
    yield _done_event(request, conversation, reply, in_compare)


async def _reply_events_async(
    request: HttpRequest,
    conversation: Conversation,
    reply: Message,
    updates: AsyncIterator[generation.StreamUpdate],
    new: list[Message],
    in_compare: bool,
) -> AsyncIterator[bytes]:
    """`_reply_events` for an ASGI server (the database work on the database thread)."""
    async for kind, data in updates:
        if kind == "sent":
            yield await database_thread.run(
                database_thread.START, _start_event, request, conversation, reply, new, in_compare
            )
        elif kind == "ping":
            yield b": ping\n\n"
        elif kind == "delta":
            yield _sse("delta", data)
    # Every stream's checkpoints and first events queue on the database thread:
    # the reply's Markdown, the slow part of the `done` event, is rendered into the
    # render cache in a thread of its own, and the event's render there finds it.
    await asyncio.to_thread(_render_markdown_of, reply)
    yield await database_thread.run(
        database_thread.FINISH, _done_event, request, conversation, reply, in_compare
    )


def _render_markdown_of(message: Message) -> None:
    for text in (message.content, message.reasoning):
        if text:
            markdown.render_markdown(text)


def _done_event(
    request: HttpRequest, conversation: Conversation, reply: Message, in_compare: bool
) -> bytes:
    # `reply` is the instance the stream saved its end to; the title may have been renamed.
    title = Conversation.objects.filter(pk=conversation.pk).values_list("title", flat=True).first()
    if title is None:  # deleted meanwhile, with the reply: nothing to show but that
        return _sse("gone", {"message": generation.REPLY_DELETED})
    conversation.title = title
    data = {
        "status": reply.status,
        "title": conversation.title,
        "html": message_html(request, conversation, reply, in_compare=in_compare),
        "next_idempotency_key": uuid.uuid4().hex,
        # Several choices: their siblings are on the page only after a reload.
        "reload": reply.choice_index is not None,
    }
    if not in_compare:  # the conversation page's header counts this call too now
        data["totals_html"] = _totals_html(conversation)
    return _sse("done", data)


def _totals_html(conversation: Conversation) -> str:
    totals = usage.conversation_totals(conversation=conversation)
    return render_to_string("chat/_conversation_totals.html", {"totals": totals})


def _start_event(
    request: HttpRequest,
    conversation: Conversation,
    reply: Message,
    new: list[Message],
    in_compare: bool,
) -> bytes:
    """The new messages, to show after `after` (their parent) in place of what followed it,
    and the conversation's title (a first message names it)."""
    # No new message has a call to inspect yet: skip the query message_html makes.
    for message in new:
        message.call_list, message.last_call = [], None
    if not in_compare:
        _attach_branch_controls(conversation, new)
    html = "".join(
        _render_message(request, conversation, message, in_compare=in_compare) for message in new
    )
    after = new[0].parent
    return _sse(
        "start",
        {
            "reply_id": str(reply.public_id),
            "title": conversation.title,
            "after": str(after.public_id) if after is not None else None,
            "html": html,
        },
    )


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_html(
    request: HttpRequest, conversation: Conversation, message: Message, *, in_compare: bool = False
) -> str:
    attach_calls([message])
    if not in_compare:
        _attach_branch_controls(conversation, [message])
    else:
        presenters.messages_present([message])
    return _render_message(request, conversation, message, in_compare=in_compare)


def _render_message(
    request: HttpRequest, conversation: Conversation, message: Message, *, in_compare: bool = False
) -> str:
    context = {"conversation": conversation, "message": message, "in_compare": in_compare}
    return render_to_string("chat/_message.html", context, request=request)


def _attach_branch_controls(
    conversation: Conversation,
    messages: list[Message],
    *,
    edit_form: EditForm | None = None,
    edit_target: Message | None = None,
    tool_results_form: ToolResultsForm | None = None,
) -> None:
    """What each message shows and its controls need: its parts and tool calls, its
    siblings, an edit form, its compare run, and for the last one's tool calls the
    form for their results."""
    presenters.messages_present(messages)
    branches.branches_attach(conversation=conversation, messages=messages)
    _attach_other_choices(conversation, messages)
    prompts = [message for message in messages if message.role == Message.Role.USER]
    runs = {run.prompt_id: run for run in conversation.compare_runs.filter(prompt__in=prompts)}
    for message in messages:
        message.compare_run = runs.get(message.id)
        if message.status == Message.Status.PENDING:
            continue
        if edit_target is not None and message.pk == edit_target.pk and edit_form is not None:
            message.edit_form = edit_form
        else:
            message.edit_form = EditForm(
                initial={"content": message.content, "idempotency_key": uuid.uuid4().hex},
                auto_id=edit_form_id(message),
            )
    last = messages[-1] if messages else None
    if last is not None and last.tool_calls and last.status != Message.Status.PENDING:
        last.tool_results_form = (
            tool_results_form
            if tool_results_form is not None
            and edit_target is not None
            and edit_target.pk == last.pk
            else ToolResultsForm(
                initial={"idempotency_key": uuid.uuid4().hex}, cards=last.tool_cards
            )
        )


def _attach_other_choices(conversation: Conversation, messages: list[Message]) -> None:
    """A reply that is one of several choices (n > 1) gets `.other_choices`: the rest of
    them (its siblings with a choice index), each shown with a way to continue from it."""
    chosen = [message for message in messages if message.choice_index is not None]
    if not chosen:
        return
    others = defaultdict(list)
    siblings = conversation.messages.filter(
        parent_id__in={message.parent_id for message in chosen}, choice_index__isnull=False
    ).order_by("choice_index", "created", "id")
    siblings = list(siblings)
    presenters.messages_present(siblings)
    for sibling in siblings:
        others[sibling.parent_id].append(sibling)
    for message in chosen:
        message.other_choices = [
            sibling for sibling in others[message.parent_id] if sibling.pk != message.pk
        ]


def edit_form_id(message: Message) -> str:
    """Each user message has its own edit form: ids must not collide on the page."""
    return f"id_{message.public_id.hex}_%s"


def panel_form(request: HttpRequest) -> ChatForm:
    """The chat form as posted, checked for its panel: nothing is sent, so the message
    box may be empty. Its errors show on the page with everything typed kept."""
    form = ChatForm(request.POST)
    form.is_valid()
    form.errors.pop("content", None)
    return form


class JSONArrayLength(Func):
    """How many items a JSON array column holds, counted by the database."""

    function = "JSON_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="JSONB_ARRAY_LENGTH", **extra)


def attach_calls(messages: list[Message], *, inline_last_only: bool = False) -> None:
    """Give each reply its calls (one query), for the inspector.

    With `inline_last_only`, only the last reply's call record is put in the
    page, and only if its bodies are within what a page shows (MAX_SHOWN_CHARS);
    the others load when opened (a long conversation's raw bodies, or one reply of
    megabytes, would otherwise cost the worker many times their size to render).
    """
    calls_by_message = defaultdict(list)
    replies = [message for message in messages if message.role == Message.Role.ASSISTANT]
    last_reply = replies[-1] if replies else None
    if not inline_last_only:
        calls = list(ApiCall.objects.filter(message__in=replies))
        inline = set(replies)
    else:
        # The raw bodies are loaded only for the record shown inline, and its size is
        # looked at first, so that a huge record is never loaded for this page.
        others = [reply for reply in replies if reply is not last_reply]
        last = ApiCall.objects.filter(message__in=[last_reply] if last_reply else [])
        last = last.defer(*RAW_CALL_FIELDS)
        last = last.annotate(raw_chars=Length("request_body") + Length("response_body"))
        calls = [*ApiCall.objects.filter(message__in=others).defer(*RAW_CALL_FIELDS), *last]
        shown = max(last, key=lambda call: (call.created, call.id), default=None)
        inline = set()
        if shown is not None and shown.raw_chars <= settings.MAX_SHOWN_CHARS:
            calls[calls.index(shown)] = ApiCall.objects.get(pk=shown.pk)
            inline = {last_reply}
    for call in sorted(calls, key=lambda call: (call.created, call.id)):
        calls_by_message[call.message_id].append(call)
    for message in messages:
        message.call_list = calls_by_message.get(message.id, [])
        message.last_call = message.call_list[-1] if message.call_list else None
        message.lazy_record = inline_last_only and message not in inline


def render_conversation(
    request: HttpRequest,
    conversation: Conversation,
    form: ChatForm,
    *,
    rename_form: RenameForm | None = None,
    edit_form: EditForm | None = None,
    edit_target: Message | None = None,
    tool_results_form: ToolResultsForm | None = None,
    status: int = 200,
) -> HttpResponse:
    generation.replies_expire_stale(conversation=conversation)
    size = (
        MAX_MESSAGES_SHOWN
        if request.GET.get("all") != "1"
        else settings.MAX_MESSAGES_PER_CONVERSATION
    )
    path, hidden = conversations.conversation_window(conversation=conversation, size=size)
    attach_calls(path, inline_last_only=True)
    _attach_branch_controls(
        conversation,
        path,
        edit_form=edit_form,
        edit_target=edit_target,
        tool_results_form=tool_results_form,
    )
    context = {
        "conversation": conversation,
        "path": path,
        "hidden_count": hidden,
        "form": form,
        "rename_form": rename_form or RenameForm(initial={"title": conversation.title}),
        "share_form": ShareForm(),
        "catalogue": catalogue.catalogue_get(),
        "totals": usage.conversation_totals(conversation=conversation),
        "recent": Conversation.objects.filter(owner=request.user).only("public_id", "title")[:15],
    }
    return render(request, "chat/conversation_detail.html", context, status=status)
