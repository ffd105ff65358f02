"""Thin views: load the object (scoped to its owner), bind a form, call one service."""

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Func, IntegerField, TextField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, Length, Substr
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground import body_limits

from . import (
    accounts,
    attachments,
    branches,
    catalogue,
    client,
    conversations,
    database_thread,
    exports,
    formatting,
    generation,
    limits,
    markdown,
    presenters,
    raw_request,
    request_body,
    sharing,
    snippets,
    usage,
)
from .forms import (
    ChatForm,
    EditForm,
    ImportForm,
    ParametersForm,
    RenameForm,
    ShareForm,
    ShareSettingsForm,
    SignUpForm,
    ToolResultsForm,
)
from .models import ApiCall, Attachment, CompareRun, Conversation, Message, Share

CONVERSATIONS_PER_PAGE = 25
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


def _owned_conversation(request: HttpRequest, public_id: uuid.UUID) -> Conversation:
    return get_object_or_404(Conversation, public_id=public_id, owner=request.user)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Sign up, as SIGNUP_MODE allows: anyone, an invitation's holder, or nobody.

    Each submit counts against the address's sign-up limit, checked before the
    form: a sign-up form must say when a username is taken, and the limit (and,
    by invitation, the link) keeps that from being a free way to list them.
    """
    token = (request.POST.get("invite") or request.GET.get("invite") or "").strip()
    context = {"next": _safe_next(request), "invite": token}
    refusal = accounts.signup_refusal(token=token)
    if refusal is not None:
        context["refusal"] = refusal
        return render(request, "registration/signup.html", context, status=403)
    if request.method != "POST":
        return render(request, "registration/signup.html", {**context, "form": SignUpForm()})
    try:
        limits.signup_take(request=request)
    except limits.Throttled as error:
        form = SignUpForm(initial={"username": request.POST.get("username", "")})
        return _throttled(request, "registration/signup.html", error, {**context, "form": form})
    form = SignUpForm(request.POST)
    if form.is_valid():
        try:
            user = accounts.user_sign_up(form=form, token=token)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            login(request, user)
            return redirect(context["next"] or "conversation_list")
    return render(request, "registration/signup.html", {**context, "form": form})


class LoginView(auth_views.LoginView):
    """Django's log-in, refused for a while (429) after too many failures.

    Failures count per username and per client address (chat/limits.py); once
    either is over its limit even the right password waits, or guessing would
    go on at full speed until it hit.
    """

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        try:
            limits.login_check(request=request, username=username)
        except limits.Throttled as error:
            # A fresh form: a bound one would check the password while rendering.
            form = self.get_form_class()(request, initial={"username": username})
            return _throttled(request, self.template_name, error, self.get_context_data(form=form))
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form) -> HttpResponse:
        limits.login_failed(request=self.request, username=self.request.POST.get("username", ""))
        return super().form_invalid(form)


def _throttled(
    request: HttpRequest, template: str, error: "limits.Throttled", context: dict
) -> HttpResponse:
    """The form again, empty but for what was typed (never the password), saying when."""
    response = render(request, template, {**context, "throttled": error.message}, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def _safe_next(request: HttpRequest) -> str:
    """Where to go after signing up: only ever a path on this site."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return next_url if allowed else ""


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
    conversation = _owned_conversation(request, public_id)
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
    conversation = _owned_conversation(request, public_id)
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


@login_required
@require_POST
def message_stream(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The JavaScript path: the same form, answered as server-sent events.

    A 400 means "submit the form normally" (nothing was saved, and the normal
    path shows the errors); a 409 means this submit already has a reply.
    """
    conversation = _owned_conversation(request, public_id)
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


@login_required
@require_GET
@never_cache
def message_fragment(
    request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID
) -> HttpResponse:
    """One message as the conversation page shows it (polled while a reply is pending)."""
    conversation = _owned_conversation(request, public_id)
    generation.replies_expire_stale(conversation=conversation)
    message = get_object_or_404(conversation.messages, public_id=message_id)
    in_compare = request.GET.get("view") == "compare"  # a compare page's column
    return HttpResponse(_message_html(request, conversation, message, in_compare=in_compare))


@login_required
@require_POST
def reply_stop(request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID) -> HttpResponse:
    conversation = _owned_conversation(request, public_id)
    reply = get_object_or_404(conversation.messages, public_id=message_id)
    generation.reply_stop(reply=reply)
    return HttpResponse(status=204)


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
        "html": _message_html(request, conversation, reply, in_compare=in_compare),
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
    # No new message has a call to inspect yet: skip the query _message_html makes.
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


def _message_html(
    request: HttpRequest, conversation: Conversation, message: Message, *, in_compare: bool = False
) -> str:
    _attach_calls([message])
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


@login_required
@require_GET
def attachment_file(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """An attachment's bytes, to its owner only. Never run as a page: the type is the
    one its bytes were checked to be, and the response may not script or load anything."""
    attachment = get_object_or_404(Attachment, public_id=attachment_id, owner=request.user)
    return attachments.file_response(attachment)


def edit_form_id(message: Message) -> str:
    """Each user message has its own edit form: ids must not collide on the page."""
    return f"id_{message.public_id.hex}_%s"


@login_required
@require_POST
def parameters_save(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    conversation = _owned_conversation(request, public_id)
    # "Copy into the form" from the raw editor: the panel takes what maps from the raw body.
    form = (ChatForm if request.POST.get("use_raw") else ParametersForm)(request.POST)
    if not form.is_valid():
        return render_conversation(request, conversation, panel_form(request), status=400)
    conversations.conversation_update_parameters(
        conversation=conversation, parameters=form.cleaned_data
    )
    _keep_unsent_message(request, conversation)
    return redirect(f"{conversation.get_absolute_url()}#parameters")


def panel_form(request: HttpRequest) -> ChatForm:
    """The chat form as posted, checked for its panel: nothing is sent, so the message
    box may be empty. Its errors show on the page with everything typed kept."""
    form = ChatForm(request.POST)
    form.is_valid()
    form.errors.pop("content", None)
    return form


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
    conversation = _owned_conversation(request, public_id)
    form = ChatForm(initial=request.POST.dict())  # unbound: no errors before a submit
    context = {"conversation": conversation, "form": form, "catalogue": catalogue.catalogue_get()}
    return render(request, "chat/_parameters.html", context)


@login_required
@require_POST
def reply_retry(request: HttpRequest, public_id: uuid.UUID, message_id: uuid.UUID) -> HttpResponse:
    conversation = _owned_conversation(request, public_id)
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
    conversation = _owned_conversation(request, public_id)
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
    conversation = _owned_conversation(request, public_id)
    if request.method == "POST":
        conversations.conversation_delete(conversation=conversation)
        return redirect("conversation_list")
    return render(request, "chat/conversation_confirm_delete.html", {"conversation": conversation})


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


class JSONArrayLength(Func):
    """How many items a JSON array column holds, counted by the database."""

    function = "JSON_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_postgresql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, function="JSONB_ARRAY_LENGTH", **extra)


def _response_type(call: ApiCall) -> str:
    content_type = client.header(call.response_headers, "Content-Type") or ""
    return content_type.split(";")[0].strip() or "application/json"


def _attach_calls(messages: list[Message], *, inline_last_only: bool = False) -> None:
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
    _attach_calls(path, inline_last_only=True)
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


# --- Share links ---------------------------------------------------------------


def _owned_share(request: HttpRequest, public_id: uuid.UUID) -> Share:
    return get_object_or_404(
        Share.objects.select_related("conversation"),
        public_id=public_id,
        conversation__owner=request.user,
    )


@login_required
@require_POST
def share_create(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _share_create(request, _owned_conversation(request, public_id), compare_run=None)


@login_required
@require_POST
def compare_share(request: HttpRequest, public_id: uuid.UUID, run_id: uuid.UUID) -> HttpResponse:
    conversation = _owned_conversation(request, public_id)
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


# --- Export and import ---------------------------------------------------------


@login_required
@require_GET
def conversation_export(request: HttpRequest, public_id: uuid.UUID, fmt: str) -> HttpResponse:
    """JSON has every branch and call; Markdown is the branch on screen."""
    conversation = _owned_conversation(request, public_id)
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
