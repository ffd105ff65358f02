"""Starting and running generations: each saves records, calls the client, and updates them.

Nothing is lost: the user's message is committed before the upstream is called,
and every call leaves an ApiCall row, whatever happens to the request.
"""

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.utils import timezone

from . import client, database_thread, limits, raw_request, storable, wire
from .conversations import (
    PANEL_FIELDS,
    Draft,
    conversation_path,
    draft_from_wire,
    messages_check_room,
    parameters_set,
    title_from,
)
from .models import ApiCall, CompareColumn, Conversation, Message
from .request_body import ChatRequest, attachments_by_id, request_for, response_format
from .usage import cost_estimate

logger = logging.getLogger(__name__)

# Streaming: how often the partial reply is saved, Stop is checked, and the
# browser is pinged while the upstream is quiet.
PERSIST_INTERVAL = 1.0


STOP_CHECK_INTERVAL = 0.5


PING_INTERVAL = 0.5


# How long the `start` event waits for the request to be written (a new connection
# to a distant upstream can take longer; the event then goes anyway).
SEND_GRACE = 0.1


StreamUpdate = tuple[str, dict[str, Any]]


# A form token already used by another kind of submit (only a hand-made form does that).
KEY_REUSED = "This form was already submitted. Reload the page and try again."


# A start the database refused for another reason: nothing was saved or sent.
START_REFUSED = (
    "This could not be saved (the database refused a value in it), so nothing was sent. "
    "Check the parameters for unusual values, then try again."
)


START_BUSY = "The database is busy with another change, so nothing was sent. Try again in a moment."


def message_send(
    *,
    conversation: Conversation,
    drafts: list[Draft],
    idempotency_key: str,
    parameters: dict,
    raw_body: str = "",
) -> Message:
    """Save the messages and generate the reply in this request (the form path, no JS).

    Returns the assistant message (complete or failed). Submitting the same
    idempotency key again returns the first submit's reply without a new call.
    """
    reply, created = message_start(
        conversation=conversation,
        drafts=drafts,
        idempotency_key=idempotency_key,
        parameters=parameters,
        raw_body=raw_body,
    )
    if created:
        reply_generate(reply=reply)
    return reply


def message_start(
    *,
    conversation: Conversation,
    drafts: list[Draft],
    idempotency_key: str,
    parameters: dict | None,
    raw_body: str = "",
    generate: bool = True,
) -> tuple[Message, bool]:
    """Commit the parameters, the messages and a pending reply, before any call.

    Returns (reply, created); created is False when this idempotency key was
    already used, and the reply is the one that first submit started. Without
    `generate` the messages are only added (a few-shot turn, say), and the last
    of them is returned instead of a reply.
    """
    return exchange_start(
        conversation=conversation,
        parent_id=conversation.current_leaf_id,
        drafts=drafts,
        idempotency_key=idempotency_key,
        parameters=parameters,
        raw_body=raw_body,
        generate=generate,
    )


def exchange_start(
    *,
    conversation: Conversation,
    parent_id: int | None,
    drafts: list[Draft],
    idempotency_key: str,
    parameters: dict | None,
    raw_body: str = "",
    generate: bool = True,
) -> tuple[Message, bool]:
    """Messages under the message `parent_id` and their pending reply, the new current leaf.

    Sending continues from the current leaf; editing starts a sibling of the
    edited message. The last draft carries the idempotency key (and a raw body);
    the reply hangs under it. `parameters` (the panel's cleaned data) are saved
    with them when given. Returns (reply, created) as message_start does.

    A used idempotency key is found by the unique constraint, not by a query
    before: the insert fails, nothing is kept, and no call is counted. The parent
    goes in by its id: loading it would be one more query before a streamed call.
    """

    def insert() -> Message:
        last_id = parent_id
        for position, draft in enumerate(drafts, start=1):
            last = position == len(drafts)
            message = Message.objects.create(
                conversation=conversation,
                parent_id=last_id,
                role=draft.role,
                content=draft.content,
                parts=draft.parts,
                tool_calls=draft.tool_calls,
                tool_call_id=draft.tool_call_id,
                refusal=draft.refusal,
                extra=draft.extra,
                written=True,
                idempotency_key=idempotency_key if last else "",
                raw_body=raw_body if last else "",
            )
            if draft.attachments:
                message.attachments.set(draft.attachments)
            last_id = message.pk
        leaf = reply_placeholder(conversation=conversation, parent=message) if generate else message
        untitled = conversation.title == Conversation._meta.get_field("title").default
        texts = [draft.content for draft in drafts if draft.content.strip()]
        if generate:
            generation_commit(
                conversation=conversation,
                leaf=leaf,
                parameters=parameters,
                title=title_from(texts[0]) if untitled and texts else None,
            )
        else:
            messages_check_room(conversation=conversation, adding=0)
            conversation.current_leaf = leaf
            saved = ["current_leaf", "updated"]
            if parameters is not None:
                parameters_set(target=conversation, parameters=parameters)
                saved += PANEL_FIELDS
            conversation.save(update_fields=saved)
        return leaf

    def existing() -> Message | None:
        if generate:
            return _reply_for_key(conversation, idempotency_key)
        return conversation.messages.filter(idempotency_key=idempotency_key).first()

    return start_once(
        insert,
        existing=existing,
        conversation=conversation,
        idempotency_key=idempotency_key,
    )


TOOL_RESULTS_KEY_PREFIX = "t:"


def tool_results_start(
    *, conversation: Conversation, reply: Message, results: list[tuple[str, str]], key: str
) -> tuple[Message, bool]:
    """The user's results of `reply`'s tool calls, as tool messages below it, and the
    pending reply that goes on from them."""
    if not reply.tool_calls or reply.status == Message.Status.PENDING:
        raise ValidationError("Only a finished reply with tool calls takes tool results.")
    return exchange_start(
        conversation=conversation,
        parent_id=reply.pk,
        drafts=[
            Draft(role=Message.Role.TOOL, content=text, tool_call_id=call_id)
            for call_id, text in results
        ],
        idempotency_key=TOOL_RESULTS_KEY_PREFIX + key,
        parameters=None,
    )


def raw_start(
    *, conversation: Conversation, raw_body: str, body: dict, idempotency_key: str, parameters: dict
) -> tuple[Message, bool]:
    """Raw request mode: the body's new messages saved (raw_request.new_messages), the
    body itself kept byte for byte on the last one, and a pending reply under it."""
    path = conversation_path(conversation=conversation)
    common, new = raw_request.new_messages(body, path)
    owner = conversation.owner
    return exchange_start(
        conversation=conversation,
        parent_id=path[common - 1].pk if common else None,
        drafts=[draft_from_wire(owner=owner, message=message) for message in new],
        idempotency_key=idempotency_key,
        parameters=parameters,
        raw_body=raw_body,
    )


def start_once[T](
    insert: Callable[[], T],
    *,
    existing: Callable[[], T | None],
    conversation: Conversation,
    idempotency_key: str,
) -> tuple[T, bool]:
    """Run `insert` in a transaction; (its result, True), or (what the key started, False).

    Every generating start goes through here. A used key is found by the unique
    constraint on the insert: `existing` then finds what the first submit started.
    Any other refusal by the database (a constraint, a value it cannot store, a
    lock it waited on too long) is logged and becomes a message for the form:
    nothing was saved, and nothing will be sent.
    """
    try:
        with transaction.atomic():
            return insert(), True
    except DatabaseError as error:
        # The insert set the conversation's new leaf, title and parameters before its save.
        with contextlib.suppress(DatabaseError, Conversation.DoesNotExist):
            conversation.refresh_from_db()
        if isinstance(error, IntegrityError):
            # This key was used: by an earlier submit, or a concurrent one that won the race.
            if (found := existing()) is not None:
                return found, False
            if conversation.messages.filter(idempotency_key=idempotency_key).exists():
                raise ValidationError(KEY_REUSED) from None  # by another kind of submit
        raise _refused(error) from None


class StartRefused(ValidationError):
    """The database refused a start, or was too busy for it: nothing was saved or sent."""


def _refused(error: DatabaseError) -> StartRefused:
    if isinstance(error, OperationalError):  # SQLite's "database is locked", or no database
        logger.warning("A start could not write to the database: %s", error)
        return StartRefused(START_BUSY)
    # A constraint, or a value PostgreSQL cannot store (a DataError).
    logger.warning("A start was refused by the database: %s", error)
    return StartRefused(START_REFUSED)


def generation_commit(
    *,
    conversation: Conversation,
    leaf: Message,
    parameters: dict | None,
    title: str | None = None,
) -> None:
    """After a generation's rows are inserted, in their transaction: check, then move the leaf.

    The checks come after the inserts so that a used idempotency key (its insert
    fails first) counts no call. Saves the panel's `parameters` (cleaned data)
    and a new `title` with the leaf, in the conversation's one update.
    """
    messages_check_room(conversation=conversation, adding=0)
    limits.upstream_calls_take(user_id=conversation.owner_id)
    saved = ["current_leaf", "updated"]
    if parameters is not None:
        parameters_set(target=conversation, parameters=parameters)
        saved += PANEL_FIELDS
    if title is not None:
        conversation.title = title
        saved.append("title")
    conversation.current_leaf = leaf
    conversation.save(update_fields=saved)


def reply_retry(*, reply: Message) -> Message:
    """Ask again for a reply that failed, stopped or broke off; returns the new attempt."""
    pending = reply_prepare_retry(reply=reply)
    reply_generate(reply=pending)
    return pending


def reply_prepare_retry(*, reply: Message) -> Message:
    """The pending reply a retry will fill.

    A failed reply has no text and is asked again in place. A stopped or
    interrupted one keeps its partial text: the new reply is its sibling.
    """
    if not reply.can_retry:
        raise ValidationError("Only a failed, stopped or interrupted reply can be retried.")
    limits.upstream_calls_take(user_id=reply.conversation.owner_id)
    if reply.status in {Message.Status.STOPPED, Message.Status.INTERRUPTED}:
        conversation = reply.conversation
        try:
            with transaction.atomic():
                retry = reply_placeholder(
                    conversation=conversation,
                    parent=reply.parent,
                    compare_column=reply.compare_column,
                )
                conversation.current_leaf = retry
                conversation.save(update_fields=["current_leaf", "updated"])
        except DatabaseError as error:
            raise _refused(error) from None
        return retry
    # Claim the reply atomically, so two clicks on Retry start one generation.
    try:
        claimed = Message.objects.filter(
            pk=reply.pk, role=Message.Role.ASSISTANT, status=Message.Status.FAILED
        ).update(status=Message.Status.PENDING, updated=timezone.now())
    except DatabaseError as error:
        raise _refused(error) from None
    if not claimed:
        raise ValidationError("Only a failed, stopped or interrupted reply can be retried.")
    reply.status = Message.Status.PENDING
    return reply


def reply_stop(*, reply: Message) -> None:
    """Ask the request streaming this reply to stop (it checks about twice a second)."""
    Message.objects.filter(pk=reply.pk, status=Message.Status.PENDING).update(stop_requested=True)


def replies_expire_stale(*, conversation: Conversation) -> None:
    """Mark replies left pending by a process that died as interrupted.

    A live generation touches its reply at least every PERSIST_INTERVAL while
    streaming, and finishes within the worst-case retry schedule otherwise.
    """
    worst_case = (
        (settings.UPSTREAM_CONNECT_TIMEOUT + settings.UPSTREAM_READ_TIMEOUT)
        * (settings.UPSTREAM_MAX_RETRIES + 1)
        + settings.UPSTREAM_RETRY_MAX_WAIT * settings.UPSTREAM_MAX_RETRIES
        + 30
    )
    cutoff = timezone.now() - timedelta(seconds=worst_case)
    stale = conversation.messages.filter(status=Message.Status.PENDING, updated__lt=cutoff)
    # A page view writes only when there is something to mark (a write waits for
    # SQLite's lock), and a busy database leaves it for the next view.
    if stale.exists():
        with contextlib.suppress(OperationalError), transaction.atomic():
            stale.update(status=Message.Status.INTERRUPTED, updated=timezone.now())


def reply_generate(*, reply: Message) -> None:
    """Call the upstream for a pending reply, retrying transient failures."""
    replies_generate(replies=[reply])


def replies_generate(*, replies: list[Message]) -> None:
    """Call the upstream for pending replies, all at once, retrying transient failures.

    Only the HTTP calls run in worker threads; every record is written here, in
    the calling thread, so each reply is saved as soon as its own call ends and
    the total time is that of the slowest call, not the sum. Retries only 429,
    5xx and refused connections (GUIDE §4), waiting for Retry-After when given,
    never longer than UPSTREAM_RETRY_MAX_WAIT.
    """
    if not replies:
        return
    with ThreadPoolExecutor(max_workers=len(replies), thread_name_prefix="reply") as pool:
        in_flight: dict[Future, tuple[Message, _Call, int, ChatRequest]] = {}

        def submit(reply: Message, request: ChatRequest, retry: int, delay: float) -> None:
            # Earlier attempts count too: a manual retry continues the numbering.
            call = _call_record(reply, request, reply.calls.count() + 1)
            future = pool.submit(_send_after, call.prepared, delay, request.streamed)
            in_flight[future] = (reply, call, retry, request)

        for reply in replies:
            submit(reply, request_for(reply), retry=0, delay=0.0)
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                reply, call, retry, request = in_flight.pop(future)
                try:
                    completion = future.result()
                except client.UpstreamError as error:
                    _call_failed(call.record, error)
                    if error.retryable and retry < settings.UPSTREAM_MAX_RETRIES:
                        submit(reply, request, retry + 1, _retry_wait(error, retry))
                    else:
                        _reply_finish(reply, status=Message.Status.FAILED)
                    continue
                if isinstance(completion, _ReadStream):
                    status = (
                        Message.Status.COMPLETE
                        if completion.error is None
                        else (Message.Status.INTERRUPTED)
                    )
                    _stream_finish(reply, call.record, completion.stream, status, completion.error)
                    continue
                _call_succeeded(call.record, completion)
                _reply_finish(reply, status=Message.Status.COMPLETE, choices=completion.choices)


@dataclass(frozen=True)
class _ReadStream:
    """A streamed raw body on the form path, read to its end (or to where it broke)."""

    stream: client.ChatStream
    error: client.UpstreamError | None


def _send_after(
    prepared: client.PreparedCall, delay: float, streamed: bool
) -> "client.Completion | _ReadStream":
    if delay:
        time.sleep(delay)
    if not streamed:
        return client.send_chat(prepared)
    stream = client.open_chat_stream(prepared)
    try:
        for _event in stream.events():
            pass
    except client.UpstreamError as error:
        return _ReadStream(stream, error)
    finally:
        stream.close()
    return _ReadStream(stream, None)


def reply_stream(*, reply: Message) -> Iterator[StreamUpdate]:
    """Generate a pending reply with a streamed call, yielding what the browser needs.

    Yields ("sent", {}) first, as the request goes to the upstream, so that the
    browser shows the new messages and Stop while the upstream has not answered;
    then ("delta", {"content", "reasoning"}) as text arrives and ("ping", {})
    when nothing has arrived for a while (so a closed browser is noticed even
    while the upstream stalls). The reply is saved about once a second and once
    more however the stream ends: complete, stopped, interrupted or failed.
    Retries (429, 5xx, refused) happen only before the stream opens, that is,
    before any token reached the browser. A streamed reply is always a new one
    (Retry after a failure uses the form path), so its calls count from 1.

    For a threaded server (WSGI); `reply_stream_async` is the same on an event loop.
    """
    payload = _stream_payload(reply)
    try:
        yield ("sent", {})
        opened = yield from _stream_open(reply, payload)
    except GeneratorExit:  # the browser went away before the upstream answered
        _reply_abandon(reply, Message.Status.INTERRUPTED)
        raise
    except _StopPressed:
        _reply_abandon(reply, Message.Status.STOPPED)
        opened = None
    if opened is not None:
        yield from _stream_relay(_Relay(reply, *opened))


def reply_stream_async(*, reply: Message) -> AsyncIterator[StreamUpdate]:
    """`reply_stream` for an ASGI server: one task per stream instead of two threads.

    Called in the request's thread, which builds the request body and records the
    first call at once; the returned iterator runs on the event loop, and does
    its database work on the process's database thread (chat/database_thread.py).
    """
    payload = _stream_payload(reply)
    first_call = _call_record(reply, payload, attempt=1)
    return _reply_stream_async(reply, payload, first_call)


async def _reply_stream_async(
    reply: Message, payload: ChatRequest, call: "_Call"
) -> AsyncIterator[StreamUpdate]:
    sent = asyncio.Event()
    opening = asyncio.create_task(_stream_open_async(reply, payload, call, sent))
    try:
        # The `start` event is rendered on the database thread, while the upstream
        # thinks; first the request goes out, or it would wait for the GIL.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sent.wait(), SEND_GRACE)
        yield ("sent", {})
        async for update in _while_opening(opening, reply):
            yield update
    finally:
        if not opening.done():  # the browser went away before the upstream answered
            await _opening_abandon(opening, reply, Message.Status.INTERRUPTED)
    opened = None if opening.cancelled() else opening.result()
    if opened is not None:
        async for update in _stream_relay_async(_Relay(reply, *opened)):
            yield update


async def _stream_open_async(
    reply: Message, payload: ChatRequest, call: "_Call", sent: asyncio.Event
) -> tuple[ApiCall, client.AsyncChatStream] | None:
    """`_stream_open` on the event loop (pings and Stop are `_while_opening`'s).

    `sent` is set once the first request is written (or has failed).
    """
    for retry in range(settings.UPSTREAM_MAX_RETRIES + 1):
        if retry:
            # Stop, or a deleted conversation, in the wait's last moment: no new call.
            if await database_thread.run(database_thread.CHECKPOINT, _should_stop, reply):
                await database_thread.run(
                    database_thread.FINISH, _reply_abandon, reply, Message.Status.STOPPED
                )
                return None
            call = await database_thread.run(
                database_thread.START, _call_record, reply, payload, call.record.attempt + 1
            )
        try:
            return call.record, await client.aopen_chat_stream(call.prepared, sent=sent)
        except client.UpstreamError as error:
            await database_thread.run(database_thread.START, _call_failed, call.record, error)
            if error.retryable and retry < settings.UPSTREAM_MAX_RETRIES:
                await asyncio.sleep(_retry_wait(error, retry))
                continue
            await database_thread.run(
                database_thread.FINISH, _reply_finish, reply, status=Message.Status.FAILED
            )
            return None
    return None


async def _while_opening(opening: asyncio.Task, reply: Message) -> AsyncIterator[StreamUpdate]:
    """Pings until the stream is open (or given up on); Stop gives it up at once.

    The upstream may take long to answer: a queue, a slow first byte, retries
    and their waits. The browser is pinged meanwhile, so a closed one is noticed.
    """
    while not opening.done():
        await asyncio.wait([opening], timeout=STOP_CHECK_INTERVAL)
        if opening.done():
            return
        if await database_thread.run(database_thread.CHECKPOINT, _should_stop, reply):
            await _opening_abandon(opening, reply, Message.Status.STOPPED)
            return
        yield ("ping", {})


async def _opening_abandon(opening: asyncio.Task, reply: Message, status: str) -> None:
    """Hang up on the upstream before it answered, and save how the reply ended."""
    opening.cancel()
    await asyncio.wait([opening])
    if opening.cancelled():  # else it ended just now, and the relay takes it from there
        await database_thread.run(database_thread.FINISH, _reply_abandon, reply, status)


def _stream_payload(reply: Message) -> ChatRequest:
    request = request_for(reply)
    if request.streamed or reply.parent.raw_body:
        return request  # a raw body is sent as written (the stream view takes streamed ones)
    return ChatRequest.of({**request.payload, "stream": True})


def _stream_open(
    reply: Message, payload: ChatRequest
) -> Generator[StreamUpdate, None, tuple[ApiCall, client.ChatStream] | None]:
    """Open the stream, retrying transient failures; None when it could not be opened.

    The upstream may take long to answer: a queue, a slow first byte, retries and
    their waits. The request waits in a thread of its own, so that meanwhile the
    browser is pinged (a closed one is noticed) and Stop gives it up (_StopPressed).
    """
    for retry in range(settings.UPSTREAM_MAX_RETRIES + 1):
        if retry and _should_stop(reply):  # in the wait's last moment: no new call
            raise _StopPressed
        call = _call_record(reply, payload, attempt=retry + 1)
        opening = _open_in_thread(call.prepared)
        try:
            yield from _waiting(partial(_done_within, opening), reply)
        except (_StopPressed, GeneratorExit):  # given up on: hang up once the upstream answers
            opening.add_done_callback(_close_if_opened)
            raise
        try:
            return call.record, opening.result()
        except client.UpstreamError as error:
            _call_failed(call.record, error)
            if error.retryable and retry < settings.UPSTREAM_MAX_RETRIES:
                retry_at = time.monotonic() + _retry_wait(error, retry)
                yield from _waiting(partial(_sleep_until, retry_at), reply)
                continue
            _reply_finish(reply, status=Message.Status.FAILED)
            return None
    return None


class _StopPressed(Exception):
    """Stop was pressed before the stream opened."""


def _waiting(done_within: Callable[[float], bool], reply: Message) -> Iterator[StreamUpdate]:
    """Pings until `done_within(timeout)` is true; raises _StopPressed if Stop comes first."""
    while not done_within(STOP_CHECK_INTERVAL):
        if _should_stop(reply):
            raise _StopPressed
        yield ("ping", {})


def _done_within(future: Future, timeout: float) -> bool:
    return bool(wait([future], timeout).done)


def _sleep_until(moment: float, timeout: float) -> bool:
    """Sleep up to `timeout` seconds, but not past `moment`; whether `moment` has come."""
    time.sleep(max(0.0, min(timeout, moment - time.monotonic())))
    return time.monotonic() >= moment


def _open_in_thread(prepared: client.PreparedCall) -> Future:
    opening: Future = Future()

    def run() -> None:
        try:
            opening.set_result(client.open_chat_stream(prepared))
        except BaseException as error:  # handed to the waiting request, whatever it is
            opening.set_exception(error)

    # A thread of its own, not an executor's: a daemon, so that a process stopping
    # does not wait for an upstream that was given up on.
    threading.Thread(target=run, name="stream-open", daemon=True).start()
    return opening


def _close_if_opened(opening: Future) -> None:
    if opening.exception() is None:
        opening.result().close()


class _Every:
    """Due once every `seconds`, the first time `seconds` from now."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.next = time.monotonic() + seconds

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + self.seconds
        return True


class _Relay:
    """What a relay does with what the upstream sent, whichever way it waits for it.

    The drivers (threads: `_stream_relay`, event loop: `_stream_relay_async`)
    wait for events, then hand them here; `outcome` is set once the stream is over.
    """

    END = object()  # the stream ended normally
    STOPPED = object()  # a checkpoint found Stop pressed (event-loop relay only)

    def __init__(self, reply: Message, call: ApiCall, stream: client.ChatStream) -> None:
        self.reply, self.call, self.stream = reply, call, stream
        self.outcome: tuple[str, client.UpstreamError | None] | None = None
        self.saves, self.stop_checks = _Every(PERSIST_INTERVAL), _Every(STOP_CHECK_INTERVAL)

    def take(self, events: list[client.StreamEvent], end: Any) -> StreamUpdate | None:
        """The update for the browser (None: nothing to send); notes how the stream ended."""
        if end is self.END:
            self.outcome = (Message.Status.COMPLETE, None)
        elif end is self.STOPPED:
            self.stopped()
        elif isinstance(end, client.UpstreamError):
            self.outcome = (Message.Status.INTERRUPTED, end)
        if events:
            # Under load several events wait in the queue: send them as one.
            return ("delta", delta_of(events))
        return ("ping", {}) if end is None else None

    def stop_check_due(self) -> bool:
        return self.outcome is None and self.stop_checks.due()

    def save_due(self) -> bool:
        return self.outcome is None and self.saves.due()

    def stopped(self) -> None:
        self.outcome = (Message.Status.STOPPED, None)

    def finish(self, *, stop_requested: bool) -> None:
        """Save how it ended; no outcome means the browser went away or the app failed."""
        if self.outcome is None:
            status = Message.Status.STOPPED if stop_requested else Message.Status.INTERRUPTED
            self.outcome = (status, None)
        _stream_finish(self.reply, self.call, self.stream, *self.outcome)


def delta_of(events: list[client.StreamEvent]) -> dict[str, Any]:
    """What `events` add, for the browser: the first choice's text and reasoning as
    "content" and "reasoning"; when there is more (other choices, refusals, tool
    calls), "choices": {index: {content, reasoning, refusal, tool_calls}} too, the
    tool-call fragments in order (the page joins them by their index)."""
    delta = {
        "content": "".join(event.content for event in events if event.choice == 0),
        "reasoning": "".join(event.reasoning for event in events if event.choice == 0),
    }
    if all(event.choice == 0 and not (event.refusal or event.tool_calls) for event in events):
        return delta
    choices: dict[int, dict[str, Any]] = {}
    for event in events:
        choice = choices.setdefault(
            event.choice, {"content": "", "reasoning": "", "refusal": "", "tool_calls": []}
        )
        choice["content"] += event.content
        choice["reasoning"] += event.reasoning
        choice["refusal"] += event.refusal
        choice["tool_calls"] += list(event.tool_calls)
    delta["choices"] = choices
    return delta


def _stream_relay(relay: _Relay) -> Iterator[StreamUpdate]:
    pump = _StreamPump(relay.stream, reply_id=relay.reply.public_id)
    try:
        while relay.outcome is None:
            update = relay.take(*pump.drain(timeout=PING_INTERVAL))
            if update is not None:
                yield update
            if relay.stop_check_due() and _should_stop(relay.reply):
                relay.stopped()
            if relay.save_due():
                _stream_save_partial(relay.reply, relay.stream)
    finally:
        relay.stream.close()  # hangs up on the upstream at once, whatever ended the relay
        pump.join()
        _stream_relay_finish(relay)


async def _stream_relay_async(relay: _Relay) -> AsyncIterator[StreamUpdate]:
    stream = relay.stream
    assert isinstance(stream, client.AsyncChatStream)
    queue: asyncio.Queue = asyncio.Queue()
    reader = asyncio.create_task(_pump_async(stream, queue, relay.reply.public_id))
    checkpoint: asyncio.Task | None = None
    try:
        while relay.outcome is None:
            update = relay.take(*await _drain_async(queue, timeout=PING_INTERVAL))
            if update is not None:
                yield update
            if checkpoint is None or checkpoint.done():
                if checkpoint is not None:
                    checkpoint.result()  # a failed save ends the relay, as a failed query would
                checkpoint = _checkpoint_start(relay, queue)
    finally:
        # Runs also when the browser went away: the ASGI server cancels this task,
        # or the response is closed at a yield.
        reader.cancel()
        await stream.aclose()  # hangs up on the upstream at once
        if checkpoint is not None:
            await asyncio.wait([checkpoint])  # its partial save goes before the final one
            if not checkpoint.cancelled() and checkpoint.exception() is not None:
                # The final save below supersedes it; say which reply, rather than
                # leave asyncio to report an exception nobody retrieved.
                logger.error(
                    "A partial save of reply %s failed as its stream ended",
                    relay.reply.public_id,
                    exc_info=checkpoint.exception(),
                )
        await database_thread.run(database_thread.FINISH, _stream_relay_finish, relay)


def _checkpoint_start(relay: _Relay, queue: asyncio.Queue) -> asyncio.Task | None:
    """Save the partial reply and/or look for Stop, if due, without holding up the relay.

    Under load the database thread has a queue; awaiting it here would pause the
    tokens of every stream behind it. One checkpoint at a time per stream: if
    Stop was pressed, it wakes the relay through the event queue.
    """
    check_stop, save = relay.stop_check_due(), relay.save_due()
    if not (check_stop or save):
        return None

    async def checkpoint() -> None:
        if await database_thread.run(
            database_thread.CHECKPOINT, _stream_checkpoint, relay, check_stop, save
        ):
            queue.put_nowait(_Relay.STOPPED)

    return asyncio.create_task(checkpoint())


def _stream_checkpoint(relay: _Relay, check_stop: bool, save: bool) -> bool:
    """Save the partial reply and/or look for Stop, in one trip to the database thread."""
    if save:
        _stream_save_partial(relay.reply, relay.stream)
    return check_stop and _should_stop(relay.reply)


def _stream_relay_finish(relay: _Relay) -> None:
    relay.finish(stop_requested=relay.outcome is None and _should_stop(relay.reply))


async def _pump_async(stream: client.AsyncChatStream, queue: asyncio.Queue, reply_id: Any) -> None:
    try:
        async for event in stream.aevents():
            queue.put_nowait(event)
    except client.UpstreamError as error:
        queue.put_nowait(error)
    except Exception:  # a bug must end the reply too, not leave the relay pinging
        queue.put_nowait(_pump_failed(stream, reply_id))
    else:
        queue.put_nowait(_Relay.END)


def _pump_failed(stream: client.ChatStream, reply_id: Any) -> client.UpstreamError:
    """The ending for an unexpected error while reading a stream (logged, with the reply)."""
    logger.exception("Reading the stream of reply %s failed", reply_id)
    return client.UpstreamError(
        "internal",
        "The reply could not be read to its end because of an error in the app (it was "
        "logged); the text received so far is kept.",
        http_status=stream.http_status,
        headers=stream.headers,
        latency_ms=round((time.monotonic() - stream.started) * 1000),
    )


async def _drain_async(
    queue: asyncio.Queue, *, timeout: float
) -> tuple[list[client.StreamEvent], Any]:
    """Wait up to `timeout` for events, then take all that are ready (as _StreamPump.drain)."""
    events: list[client.StreamEvent] = []
    try:
        item = await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return events, None
    while True:
        if not isinstance(item, client.StreamEvent):
            return events, item
        events.append(item)
        if queue.empty():
            return events, None
        item = queue.get_nowait()


class _StreamPump:
    """Reads the upstream stream in a thread, so the relay can ping and poll Stop."""

    def __init__(self, stream: client.ChatStream, *, reply_id: Any = None) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._reply_id = reply_id
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: client.ChatStream) -> None:
        try:
            for event in stream.events():
                self._queue.put(event)
        except client.UpstreamError as error:
            self._queue.put(error)
        except Exception:  # a bug must end the reply too, not leave the relay pinging
            self._queue.put(_pump_failed(stream, self._reply_id))
        else:
            self._queue.put(_Relay.END)

    def drain(self, *, timeout: float) -> tuple[list[client.StreamEvent], Any]:
        """Wait up to `timeout` for events, then take all that are ready.

        Returns (events, end): end is _Relay.END, an UpstreamError, or None while
        the stream goes on.
        """
        events: list[client.StreamEvent] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if not isinstance(item, client.StreamEvent):
                    return events, item
                events.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return events, None

    def join(self) -> None:
        self._thread.join(timeout=5)


def _should_stop(reply: Message) -> bool:
    """Stop was pressed, or the reply is gone: its conversation (or its owner) was
    deleted while it was generated. Either way, hang up on the upstream."""
    return not Message.objects.filter(pk=reply.pk, stop_requested=False).exists()


def _save_unless_deleted(instance: ApiCall | Message, **options: Any) -> bool:
    """Save a row the generation made; False if it was deleted meanwhile (see _should_stop).

    A plain save() would insert it again, or fail on its deleted conversation.
    """
    try:
        # Inside a transaction, a savepoint: the failure must not spoil the rest of it.
        with transaction.atomic():
            instance.save(force_update=True, **options)
    except instance.NotUpdated:
        return False
    return True


def _stream_save_partial(reply: Message, stream: client.ChatStream) -> None:
    # The text only: the call's raw events are written once, when the stream ends
    # (rewriting a growing JSON list every second would cost O(n²) at scale).
    Message.objects.filter(pk=reply.pk).update(
        content=stream.content, reasoning=stream.reasoning, updated=timezone.now()
    )


STREAM_END_MESSAGES = {
    Message.Status.STOPPED: ("stopped", "Stopped by the user; the text received so far is kept."),
    Message.Status.INTERRUPTED: (
        "client_gone",
        "The browser went away before the reply finished; the text received so far is kept.",
    ),
}


# The same ends, before the upstream answered: no text arrived.
OPENING_END_MESSAGES = {
    Message.Status.STOPPED: ("stopped", "Stopped by the user before the model answered."),
    Message.Status.INTERRUPTED: ("client_gone", "The browser went away before the model answered."),
}


# Said where a generation ends because its conversation was deleted (_should_stop).
REPLY_DELETED = "This conversation was deleted while its reply was being generated."


def _reply_abandon(reply: Message, status: str) -> None:
    """The reply ended before its stream opened: Stop, or the browser went away."""
    kind, text = OPENING_END_MESSAGES[status]
    reply.calls.filter(status=ApiCall.Status.SENDING).update(
        status=ApiCall.Status.FAILED, error_kind=kind, error_message=text
    )
    if reply.status == Message.Status.PENDING:  # not already failed, just then
        _reply_finish(reply, status=status)


def _stream_finish(
    reply: Message,
    call: ApiCall,
    stream: client.ChatStream,
    status: str,
    error: client.UpstreamError | None,
) -> None:
    call.status = (
        ApiCall.Status.SUCCEEDED if status == Message.Status.COMPLETE else ApiCall.Status.FAILED
    )
    call.http_status = stream.http_status
    call.response_headers = stream.headers
    call.response_body = client.body_text(stream.body)
    call.stream_events = list(stream.raw_events)
    call.assembled_response = stream.assembled()
    call.first_token_ms = stream.first_token_ms
    call.latency_ms = round((time.monotonic() - stream.started) * 1000)
    call.finish_reason = stream.finish_reason[:64]
    if error is not None:
        call.error_kind, call.error_message = error.kind, storable.text(error.message)
    elif status in STREAM_END_MESSAGES:
        call.error_kind, call.error_message = STREAM_END_MESSAGES[status]
    _apply_usage(call, stream.usage, stream.usd_spent, stream.notes)
    _save_call(call)
    _reply_finish(reply, status=status, choices=stream.choices())


# Said on a call whose full record the database refused (the reply still ends).
SAVE_REFUSED = (
    "The database refused this call's full record (the error was logged); "
    "only this summary was kept."
)


def _save_call(call: ApiCall) -> None:
    """Save a finished call; if the database refuses the record, keep a minimal one.

    Whatever the upstream sent, the reply must still end: a refused save is
    logged, and the call is marked failed with a message that says so.
    """
    try:
        _save_unless_deleted(call)
    except DatabaseError:
        logger.exception("Saving call %s of reply %s failed", call.public_id, call.message_id)
        try:
            ApiCall.objects.filter(pk=call.pk).update(
                status=ApiCall.Status.FAILED,
                error_kind="save_failed",
                error_message=SAVE_REFUSED,
                updated=timezone.now(),
            )
        except DatabaseError:
            logger.exception("Saving even a summary of call %s failed", call.public_id)


@dataclass(frozen=True)
class _Call:
    record: ApiCall
    prepared: client.PreparedCall


def _call_record(reply: Message, request: ChatRequest, attempt: int) -> _Call:
    """Store the request exactly as it will be sent, before sending it.

    Attachments' base64 is not stored with it: the record keeps where each goes
    (chat/wire.py), once per file however many calls send it.
    """
    if request.raw:
        encoded = wire.Encoded(wire=request.text.encode(), stored=request.text, splices=[])
    else:
        ids = wire.mark_ids(request.text)
        attachments = attachments_by_id(
            owner_id=reply.conversation.owner_id, ids=ids, with_data=True
        )
        encoded = wire.encode(request.text, attachments)
    prepared = client.prepare_chat(request.payload, body=encoded.wire)
    record = ApiCall.objects.create(
        conversation=reply.conversation,
        message=reply,
        attempt=attempt,
        url=prepared.url,
        request_headers=prepared.redacted_headers(),
        request_body=encoded.stored,
        request_splices=encoded.splices,
        model=str(request.payload.get("model") or "")[:200],
        response_format=response_format(request.payload),
    )
    return _Call(record=record, prepared=prepared)


def _call_succeeded(call: ApiCall, completion: client.Completion) -> None:
    call.status = ApiCall.Status.SUCCEEDED
    call.http_status = completion.http_status
    call.response_headers = completion.headers
    call.response_body = client.body_text(completion.body)
    call.latency_ms = completion.latency_ms
    call.finish_reason = completion.finish_reason[:64]
    _apply_usage(call, completion.usage, completion.usd_spent, completion.notes)
    _save_call(call)


def _apply_usage(
    call: ApiCall,
    usage: dict[str, Any],
    usd_spent: Decimal | None,
    notes: "list[str] | tuple[str, ...]" = (),
) -> None:
    """The counts and cost on the call record; `notes` (values the client dropped as
    implausible) join its message, so the inspector says what was not recorded."""
    if notes:
        call.error_message = "\n".join(filter(None, [call.error_message, *notes]))
    details = usage.get("completion_tokens_details")
    call.prompt_tokens = _count(usage.get("prompt_tokens"))
    call.completion_tokens = _count(usage.get("completion_tokens"))
    call.total_tokens = _count(usage.get("total_tokens"))
    call.reasoning_tokens = (
        _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    )
    call.usd_spent = usd_spent
    if usd_spent is None:  # not reported: computed from catalogue pricing, marked as such
        call.usd_spent = cost_estimate(
            model=call.model,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
        )
        call.cost_estimated = call.usd_spent is not None


def _call_failed(call: ApiCall, error: client.UpstreamError) -> None:
    call.status = ApiCall.Status.FAILED
    call.http_status = error.http_status
    call.response_headers = error.headers
    call.response_body = client.body_text(error.body)
    call.latency_ms = error.latency_ms
    call.error_kind = error.kind
    call.error_message = storable.text(error.message)
    _save_call(call)
    logger.warning("Upstream call %s failed: %s", call.public_id, error.kind)


# What a reply's choice fills in (Message fields), from a choice of the response.
CHOICE_FIELDS = [
    "content",
    "parts",
    "reasoning",
    "tool_calls",
    "refusal",
    "extra",
    "finish_reason",
    "logprobs",
    "choice_index",
]


def choice_fields(choice: dict[str, Any]) -> dict[str, Any]:
    """A response's choice (as chat/client.py hands it, checked) as Message fields."""
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    return {
        "content": storable.text(wire.projection(content)),
        "parts": storable.json_value(content) if isinstance(content, list) else None,
        "reasoning": storable.text(message.get("reasoning_content") or ""),
        "tool_calls": storable.json_value(message.get("tool_calls")) or None,
        "refusal": storable.text(message.get("refusal") or ""),
        "extra": storable.json_value(
            {key: value for key, value in message.items() if key not in wire.OWN_KEYS}
        ),
        "finish_reason": str(choice.get("finish_reason") or "")[:64],
        "logprobs": storable.json_value(choice.get("logprobs")),
        "choice_index": choice.get("index") if isinstance(choice.get("index"), int) else None,
    }


def _reply_finish(
    reply: Message, *, status: str, choices: "list[dict] | tuple[dict, ...]" = ()
) -> None:
    """Save how a reply ended, with its first choice; each further choice (n > 1)
    becomes a sibling reply. It never stays pending: if the database refuses its
    text, the reply is saved failed without it (logged; its call says why)."""
    first, *others = choices or [{}]
    reply.status = status
    for name, value in choice_fields(first).items():
        setattr(reply, name, value)
    if not others:
        reply.choice_index = None  # shown as "choice k of n" only when there were several
    try:
        saved = _save_unless_deleted(reply, update_fields=[*CHOICE_FIELDS, "status", "updated"])
        if saved and others:
            _choices_add(reply, others, status)
    except DatabaseError:
        logger.exception("Saving reply %s failed; saving it as failed, without its text", reply.pk)
        reply.status, reply.content, reply.reasoning = Message.Status.FAILED, "", ""
        try:
            saved = bool(
                Message.objects.filter(pk=reply.pk).update(
                    status=Message.Status.FAILED,
                    content="",
                    parts=None,
                    reasoning="",
                    tool_calls=None,
                    updated=timezone.now(),
                )
            )
        except DatabaseError:
            logger.exception("Saving reply %s as failed failed too", reply.pk)
            return
    if saved:
        Conversation.objects.filter(pk=reply.conversation_id).update(updated=timezone.now())


def _choices_add(reply: Message, choices: list[dict], status: str) -> None:
    """The other choices of the reply's call, as its siblings (the user picks one)."""
    with transaction.atomic():
        Message.objects.bulk_create(
            Message(
                conversation_id=reply.conversation_id,
                parent_id=reply.parent_id,
                role=Message.Role.ASSISTANT,
                status=status,
                compare_column_id=reply.compare_column_id,
                **choice_fields(choice),
            )
            for choice in choices
        )


def reply_placeholder(
    *,
    conversation: Conversation,
    parent: Message,
    compare_column: CompareColumn | None = None,
    idempotency_key: str = "",
) -> Message:
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        compare_column=compare_column,
        idempotency_key=idempotency_key,
    )


def _reply_for_key(conversation: Conversation, idempotency_key: str) -> Message | None:
    return (
        Message.objects.filter(
            conversation=conversation,
            parent__idempotency_key=idempotency_key,
            role=Message.Role.ASSISTANT,
        )
        .order_by("created")
        .first()
    )


def _retry_wait(error: client.UpstreamError, retries_so_far: int) -> float:
    wait = error.retry_after if error.retry_after is not None else 0.5 * 2**retries_so_far
    return min(wait, settings.UPSTREAM_RETRY_MAX_WAIT)


def _count(value: Any) -> int | None:
    """A token count the record can hold (PositiveIntegerField), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= client.MAX_TOKEN_COUNT else None
