"""Conversations as files: the versioned JSON export, Markdown, and import.

The JSON format is documented in docs/export-format.md. Share links store
their snapshot in the same format, and "continue a shared conversation" is an
import of that snapshot, so there is one reader and one writer for all three.

Import trusts nothing in the file: ids only link messages within the file,
owners and file names are never read, every value is checked against the same
bounds as the forms, and the whole file is checked before anything is written:
it is saved whole or not at all.
A NUL character or an unpaired surrogate, which no database stores, becomes U+FFFD
both ways.
"""

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.utils import timezone

from . import client, storable
from .forms import ParametersForm
from .models import ApiCall, CompareColumn, CompareRun, Conversation, Message

logger = logging.getLogger(__name__)

FORMAT = "playground.conversations"
VERSION = 1

CALL_FIELDS = (
    "attempt",
    "status",
    "method",
    "url",
    "request_headers",
    "request_body",
    "http_status",
    "response_headers",
    "response_body",
    "stream_events",
    "assembled_response",
    "first_token_ms",
    "error_kind",
    "error_message",
    "latency_ms",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "usd_spent",
)
PARAMETER_NAMES = ("temperature", "top_p", "max_tokens", "stop", "extra_params")
MAX_JSON_DEPTH = 64
MAX_POSITIVE_INT = 2_147_483_647  # PositiveIntegerField on every database
# An import writes its conversations in transactions of about this long. Between
# two, on SQLite, it pauses a little longer than SQLite's busy handler sleeps
# between its tries at most (100 ms): a send waiting for the write lock gets it
# then, rather than losing every race for it until the import ends.
WRITE_BATCH_SECONDS = 0.2
WRITE_PAUSE_SECONDS = 0.11
PARENTS_PER_QUERY = 400  # two parameters each, within SQLite's 999
EXPORT_PIECE_CHARS = 65_536  # what export_json hands the server at a time, about


class ImportRejected(ValueError):
    """The file cannot be imported; the message names the problem and where it is."""


# --- Export ------------------------------------------------------------------


def envelope(conversations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversations": conversations,
    }


def conversation_document(
    *,
    conversation: Conversation,
    messages: list[Message] | None = None,
    leaf: Message | None = None,
) -> dict[str, Any]:
    """One conversation: its parameters, messages (all branches unless given) and calls.

    `leaf` is the message the copy opens at; by default the conversation's own.
    """
    if messages is None:
        messages = list(conversation.messages.all())
    calls_by_message = defaultdict(list)
    for call in ApiCall.objects.filter(message__in=messages):
        calls_by_message[call.message_id].append(call)
    leaf_id = conversation.current_leaf_id if leaf is None else leaf.id
    ids = {message.id: str(message.public_id) for message in messages}
    document = {
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "parameters": {name: getattr(conversation, name) for name in PARAMETER_NAMES},
        "created": conversation.created.isoformat(),
        "current_leaf": ids.get(leaf_id) if leaf_id in ids else _last_id(messages),
        "compare_runs": _compare_runs_document(messages, ids),
        "messages": [
            {
                "id": ids[message.id],
                "parent": ids.get(message.parent_id),
                "role": message.role,
                "status": message.status,
                "content": message.content,
                "reasoning": message.reasoning,
                "created": message.created.isoformat(),
                "calls": [_call_document(call) for call in calls_by_message[message.id]],
            }
            for message in messages
        ],
    }
    # Text stored before it was made storable (SQLite keeps a NUL) leaves as U+FFFD.
    # Copied only then: the copy of a call of megabytes is that many more (its events).
    return storable_copy(document) if storable.problem(document) else document


def _compare_runs_document(messages: list[Message], ids: dict[int, str]) -> list[dict[str, Any]]:
    """The compare runs whose prompt is among `messages`, with the replies among them."""
    runs = CompareRun.objects.filter(prompt__in=messages).prefetch_related("columns")
    replies = defaultdict(list)
    for message in messages:
        if message.compare_column_id is not None:
            replies[message.compare_column_id].append(ids[message.id])
    return [
        {
            "prompt": ids[run.prompt_id],
            "chosen": ids.get(run.chosen_id),
            "columns": [
                {
                    "position": column.position,
                    "model": column.model,
                    "system_prompt": column.system_prompt,
                    "parameters": {name: getattr(column, name) for name in PARAMETER_NAMES},
                    "replies": replies[column.id],
                }
                for column in run.columns.all()
            ],
        }
        for run in runs
    ]


def _last_id(messages: list[Message]) -> str | None:
    return str(messages[-1].public_id) if messages else None


def _call_document(call: ApiCall) -> dict[str, Any]:
    document = {name: getattr(call, name) for name in CALL_FIELDS}
    document["usd_spent"] = None if call.usd_spent is None else str(call.usd_spent)
    document["created"] = call.created.isoformat()
    return document


def export_json(conversations: Iterable[Conversation]) -> Iterator[bytes]:
    """The export file, one conversation at a time (a user's whole history can be large)."""
    head = json.dumps(envelope([]), indent=2)
    opening, closing = head.rsplit("[]", 1)
    yield f"{opening}[\n".encode()
    for index, conversation in enumerate(conversations):
        if index:
            yield b",\n"
        yield from _encoded(conversation_document(conversation=conversation))
    yield f"\n]{closing}\n".encode()


def _encoded(document: dict[str, Any]) -> Iterator[bytes]:
    """`document` as indented JSON, in pieces of about EXPORT_PIECE_CHARS: a call may hold
    megabytes, and the whole text (then its bytes) would be two more copies of it."""
    pieces, size = [], 0
    for piece in json.JSONEncoder(indent=2).iterencode(document):
        pieces.append(piece)
        size += len(piece)
        if size >= EXPORT_PIECE_CHARS:
            yield "".join(pieces).encode()
            pieces, size = [], 0
    yield "".join(pieces).encode()


def export_markdown(*, conversation: Conversation, messages: list[Message]) -> str:
    """The branch shown, as a readable Markdown document."""
    lines = [f"# {conversation.title}", "", f"- Model: `{conversation.model}`"]
    # The parameters only: not conversation_document, which loads every call.
    for name in PARAMETER_NAMES:
        value = getattr(conversation, name)
        if value not in (None, [], {}):
            lines.append(f"- {name}: `{json.dumps(value)}`")
    lines.append(f"- Exported: {timezone.now():%Y-%m-%d %H:%M} UTC")
    if conversation.system_prompt:
        lines += ["", "## System prompt", "", conversation.system_prompt]
    for message in messages:
        heading = message.get_role_display()
        if message.status != Message.Status.COMPLETE:
            heading += f" ({message.get_status_display().lower()})"
        lines += ["", f"## {heading}", ""]
        if message.reasoning:
            lines += [f"> {line}" for line in message.reasoning.splitlines()] + [""]
        lines.append(message.content)
    return "\n".join(lines) + "\n"


# --- Import ------------------------------------------------------------------


def conversations_import(*, owner: Any, data: bytes) -> list[Conversation]:
    """Create the file's conversations for `owner`, all of them or none.

    The whole file is checked before anything is written. Then the conversations
    are written in short transactions (whole conversations, bulk inserts), with a
    pause between them on SQLite: there a transaction holds the one write lock,
    and other users' sends wait for one batch, not for the file. If a write
    fails, the conversations already written are deleted again.
    """
    if len(data) > settings.MAX_IMPORT_BYTES:
        raise ImportRejected(
            f"The file is {len(data):,} bytes; the limit is {settings.MAX_IMPORT_BYTES:,}."
        )
    return _conversations_write(owner, parse_export(data))


def _conversations_write(owner: Any, conversations: list[dict[str, Any]]) -> list[Conversation]:
    """Checked conversations, written in short transactions; all of them, or ImportRejected."""
    created: list[Conversation] = []
    try:
        while len(created) < len(conversations):
            if created and connection.vendor == "sqlite":
                time.sleep(WRITE_PAUSE_SECONDS)  # the lock is free: a waiting writer takes it
            batch = []
            with transaction.atomic():
                deadline = time.monotonic() + WRITE_BATCH_SECONDS
                for document in conversations[len(created) :]:
                    batch.append(_conversation_create(owner, document))
                    if time.monotonic() > deadline:
                        break
            created += batch  # committed
    except Exception as error:
        _conversations_remove(created)
        if isinstance(error, OperationalError):  # SQLite's "database is locked"
            logger.warning("An import could not write to the database: %s", error)
            raise ImportRejected(
                "The database was busy with other changes. Try again in a moment."
            ) from None
        if isinstance(error, DatabaseError):
            logger.warning("An import was refused by the database: %s", error)
            raise ImportRejected("The database refused to store a conversation.") from None
        raise
    return created


def _conversations_remove(conversations: list[Conversation]) -> None:
    """What an import that failed had written, deleted (each in its own short transaction)."""
    for conversation in reversed(conversations):
        try:
            conversation.delete()
        except DatabaseError:
            logger.exception("A failed import left conversation %s behind", conversation.pk)


def parse_export(data: bytes) -> list[dict[str, Any]]:
    """The file's conversations, validated and normalised, or ImportRejected."""
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ImportRejected("The file is not UTF-8 text. Choose a JSON export file.") from None
    except json.JSONDecodeError as error:
        raise ImportRejected(
            f"The file is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    except RecursionError:
        raise ImportRejected(f"The file nests deeper than {MAX_JSON_DEPTH} levels.") from None
    return _envelope_read(storable_copy(document, max_depth=MAX_JSON_DEPTH))


def conversation_import(*, owner: Any, document: Any) -> Conversation:
    """One conversation in the export format (a share's snapshot), checked, for `owner`."""
    document = storable_copy(document, max_depth=MAX_JSON_DEPTH, path="conversation")
    [conversation] = _conversations_write(owner, [conversation_read(document, "conversation")])
    return conversation


def storable_copy(value: Any, *, max_depth: int | None = None, path: str = "file") -> Any:
    """A copy of a parsed JSON value whose every string and key the databases can store.

    Each NUL and unpaired surrogate becomes U+FFFD, on the way out (export, share
    snapshots) and on the way in (import, continue), so that whatever one
    Playground wrote, any Playground reads. With `max_depth`, deeper nesting is
    refused. Iterative: a hostile file can nest thousands deep.
    """
    if not isinstance(value, dict | list):
        return storable.text(value) if isinstance(value, str) else value
    root: dict | list = {} if isinstance(value, dict) else []
    stack = [(value, root, path, 0)]
    while stack:
        source, target, where, depth = stack.pop()
        pairs = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in pairs:
            if max_depth is not None and depth + 1 > max_depth:
                here = f"{where}.{key}" if isinstance(source, dict) else f"{where}[{key}]"
                raise ImportRejected(f"{here}: nests deeper than {max_depth} levels.")
            if isinstance(child, dict | list):
                copy = {} if isinstance(child, dict) else []
                here = f"{where}.{key}" if isinstance(source, dict) else f"{where}[{key}]"
                stack.append((child, copy, here, depth + 1))
            else:
                copy = storable.text(child) if isinstance(child, str) else child
            if isinstance(target, dict):
                target[storable.text(key)] = copy
            else:
                target.append(copy)
    return root


def _envelope_read(document: Any) -> list[dict[str, Any]]:
    _expect_object(
        document, "file", required={"format", "version", "conversations"}, optional={"exported_at"}
    )
    if document["format"] != FORMAT:
        raise ImportRejected(f'file.format: expected "{FORMAT}"; this is not a Playground export.')
    version = document["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImportRejected("file.version: must be a whole number.")
    if version > VERSION:
        raise ImportRejected(
            f"file.version: the file is format version {version}; this Playground reads "
            f"version {VERSION}. Update Playground to import it."
        )
    conversations = _expect_list(document["conversations"], "file.conversations")
    if not conversations:
        raise ImportRejected("file.conversations: the file has no conversations.")
    if len(conversations) > settings.MAX_IMPORT_CONVERSATIONS:
        raise ImportRejected(
            f"file.conversations: {len(conversations):,} conversations; at most "
            f"{settings.MAX_IMPORT_CONVERSATIONS:,} per file."
        )
    return [
        conversation_read(item, f"conversations[{index}]")
        for index, item in enumerate(conversations)
    ]


def conversation_read(document: Any, path: str) -> dict[str, Any]:
    """One conversation of the file, checked field by field."""
    _expect_object(
        document,
        path,
        required={"model", "messages"},
        optional={
            "title", "system_prompt", "parameters", "current_leaf", "created", "compare_runs"
        },
    )  # fmt: skip
    parameters = _parameters_read(document, path)
    messages = _expect_list(document["messages"], f"{path}.messages")
    if len(messages) > settings.MAX_MESSAGES_PER_CONVERSATION:
        raise ImportRejected(
            f"{path}.messages: {len(messages):,} messages; at most "
            f"{settings.MAX_MESSAGES_PER_CONVERSATION:,} per conversation."
        )
    known: set[str] = set()
    checked = []
    for index, message in enumerate(messages):
        checked.append(_message_read(message, f"{path}.messages[{index}]", known))
        known.add(checked[-1]["id"])
    leaf = document.get("current_leaf")
    if leaf is not None and leaf not in known:
        raise ImportRejected(f"{path}.current_leaf: no message has the id {leaf!r}.")
    title = _string(document.get("title", ""), f"{path}.title", max_length=200).strip()
    by_id = {message["id"]: message for message in checked}
    runs = _expect_list(document.get("compare_runs", []), f"{path}.compare_runs")
    return {
        **parameters,
        "title": title or "Imported conversation",
        "current_leaf": leaf if leaf is not None else (checked[-1]["id"] if checked else None),
        "messages": checked,
        "compare_runs": [
            _compare_run_read(run, f"{path}.compare_runs[{index}]", by_id)
            for index, run in enumerate(runs)
        ],
    }


def _compare_run_read(run: Any, path: str, messages: dict[str, dict]) -> dict[str, Any]:
    """A compare run: a user message as prompt, and 1-4 columns of its replies."""
    _expect_object(run, path, required={"prompt", "columns"}, optional={"chosen"})
    prompt = messages.get(run["prompt"])
    if prompt is None or prompt["role"] != Message.Role.USER:
        raise ImportRejected(f"{path}.prompt: {run['prompt']!r} is not a user message here.")
    columns = _expect_list(run["columns"], f"{path}.columns")
    if not 1 <= len(columns) <= CompareColumn.MAX_COLUMNS:
        raise ImportRejected(f"{path}.columns: 1 to {CompareColumn.MAX_COLUMNS} columns.")
    checked, positions, claimed = [], set(), set()
    for index, column in enumerate(columns):
        where = f"{path}.columns[{index}]"
        _expect_object(
            column,
            where,
            required={"position", "model"},
            optional={"system_prompt", "parameters", "replies"},
        )
        position = _integer(column["position"], f"{where}.position", 0, 3)
        if position is None or position in positions:
            raise ImportRejected(f"{where}.position: must be a unique whole number from 0 to 3.")
        positions.add(position)
        replies = _expect_list(column.get("replies", []), f"{where}.replies")
        for reply in replies:
            message = messages.get(reply) if isinstance(reply, str) else None
            if message is None or message["parent"] != run["prompt"] or reply in claimed:
                raise ImportRejected(
                    f"{where}.replies: {reply!r} is not a reply to the prompt, "
                    "or is in two columns."
                )
            claimed.add(reply)
        checked.append(
            {**_parameters_read(column, where), "position": position, "replies": replies}
        )
    chosen = run.get("chosen")
    if chosen is not None and chosen not in claimed:
        raise ImportRejected(f"{path}.chosen: {chosen!r} is not one of the run's replies.")
    return {"prompt": run["prompt"], "chosen": chosen, "columns": checked}


def _parameters_read(document: dict[str, Any], path: str) -> dict[str, Any]:
    """Model, system prompt and parameters, through the same form as the parameter panel."""
    parameters = document.get("parameters", {})
    _expect_object(
        parameters,
        f"{path}.parameters",
        optional=set(PARAMETER_NAMES),
    )
    stop = _expect_list(parameters.get("stop", []), f"{path}.parameters.stop")
    for index, sequence in enumerate(stop):
        _string(sequence, f"{path}.parameters.stop[{index}]")
    extra = parameters.get("extra_params", {})
    _expect_object(extra, f"{path}.parameters.extra_params", any_keys=True)
    form = ParametersForm(
        {
            "model": _string(document["model"], f"{path}.model"),
            "system_prompt": _string(document.get("system_prompt", ""), f"{path}.system_prompt"),
            "temperature": _number_text(parameters.get("temperature"), path, "temperature"),
            "top_p": _number_text(parameters.get("top_p"), path, "top_p"),
            "max_tokens": _number_text(parameters.get("max_tokens"), path, "max_tokens"),
            "stop": "\n".join(stop),
            "extra_params": json.dumps(extra) if extra else "",
        },
        # The generic bounds only: a conversation may hold values its model's schema refuses
        # (sent with "Send anyway"), and an import makes no network calls.
        schema=None,
    )
    if not form.is_valid():
        name, errors = next(iter(form.errors.items()))
        where = (
            f"{path}.{name}" if name in {"model", "system_prompt"} else f"{path}.parameters.{name}"
        )
        raise ImportRejected(f"{where}: {' '.join(errors)}")
    return form.cleaned_data


def _number_text(value: Any, path: str, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportRejected(f"{path}.parameters.{name}: must be a number or null.")
    return repr(value)


def _message_read(message: Any, path: str, known: set[str]) -> dict[str, Any]:
    _expect_object(
        message,
        path,
        required={"id", "role", "content"},
        optional={"parent", "status", "reasoning", "created", "calls"},
    )
    message_id = _string(message["id"], f"{path}.id", max_length=64)
    if not message_id or message_id in known:
        raise ImportRejected(f"{path}.id: must be a unique, non-empty string.")
    parent = message.get("parent")
    if parent is not None and parent not in known:
        raise ImportRejected(
            f"{path}.parent: {parent!r} is not the id of an earlier message in this conversation."
        )
    role = message["role"]
    if role not in Message.Role.values:
        raise ImportRejected(f'{path}.role: must be "user" or "assistant", not {role!r}.')
    status = message.get("status", Message.Status.COMPLETE)
    if status not in Message.Status.values:
        raise ImportRejected(
            f"{path}.status: must be one of {', '.join(Message.Status.values)}, not {status!r}."
        )
    limit = settings.MAX_MESSAGE_CHARS if role == Message.Role.USER else None
    calls = _expect_list(message.get("calls", []), f"{path}.calls")
    if calls and role == Message.Role.USER:
        raise ImportRejected(f"{path}.calls: only assistant messages have calls.")
    return {
        "id": message_id,
        "parent": parent,
        "role": role,
        # A reply still generating when exported will never finish here.
        "status": Message.Status.INTERRUPTED if status == Message.Status.PENDING else status,
        "content": _string(message["content"], f"{path}.content", max_length=limit),
        "reasoning": _string(message.get("reasoning", ""), f"{path}.reasoning"),
        "calls": [_call_read(call, f"{path}.calls[{i}]") for i, call in enumerate(calls)],
    }


def _call_read(call: Any, path: str) -> dict[str, Any]:
    _expect_object(call, path, required={"request_body"}, optional={*CALL_FIELDS, "created"})
    checked: dict[str, Any] = {}
    for name in (
        "method",
        "url",
        "request_body",
        "response_body",
        "error_kind",
        "error_message",
        "finish_reason",
    ):
        max_length = ApiCall._meta.get_field(name).max_length
        checked[name] = _string(call.get(name, ""), f"{path}.{name}", max_length=max_length)
    checked["method"] = checked["method"] or "POST"
    status = call.get("status", ApiCall.Status.SUCCEEDED)
    if status not in ApiCall.Status.values:
        raise ImportRejected(
            f"{path}.status: must be one of {', '.join(ApiCall.Status.values)}, not {status!r}."
        )
    checked["status"] = status
    checked["attempt"] = _integer(call.get("attempt", 1), f"{path}.attempt", low=1, high=32767)
    checked["http_status"] = _integer(call.get("http_status"), f"{path}.http_status", 100, 599)
    for name in (
        "first_token_ms",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "total_tokens",
    ):
        checked[name] = _integer(call.get(name), f"{path}.{name}", 0, MAX_POSITIVE_INT)
    for name in ("request_headers", "response_headers"):
        headers = call.get(name, {})
        _expect_object(headers, f"{path}.{name}", any_keys=True)
        for key, value in headers.items():
            _string(value, f"{path}.{name}.{key}")
        checked[name] = headers
    # A file may come from anywhere: never store a key that someone left in it.
    checked["request_headers"] = client.redact_headers(checked["request_headers"])
    checked["stream_events"] = _stream_events(call.get("stream_events", []), path)
    assembled = call.get("assembled_response")
    if assembled is not None:
        _expect_object(assembled, f"{path}.assembled_response", any_keys=True)
    checked["assembled_response"] = assembled
    checked["usd_spent"] = _usd(call.get("usd_spent"), f"{path}.usd_spent")
    return checked


def _stream_events(events: Any, path: str) -> list[dict[str, Any]]:
    events = _expect_list(events, f"{path}.stream_events")
    for index, event in enumerate(events):
        where = f"{path}.stream_events[{index}]"
        _expect_object(event, where, required={"at_ms", "data"})
        _integer(event["at_ms"], f"{where}.at_ms", 0, MAX_POSITIVE_INT)
        _string(event["data"], f"{where}.data")
    return events


def _usd(value: Any, path: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value)) if isinstance(value, str | int | float) else None
    except InvalidOperation:
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite():
        raise ImportRejected(f'{path}: must be a decimal number such as "0.0042", or null.')
    if not 0 <= amount < 1_000_000:
        raise ImportRejected(f"{path}: must be between 0 and 1,000,000.")
    return amount.quantize(Decimal("0.00000001"))


def _expect_object(
    value: Any,
    path: str,
    *,
    required: set[str] = frozenset(),
    optional: set[str] = frozenset(),
    any_keys: bool = False,
) -> None:
    if not isinstance(value, dict):
        raise ImportRejected(f"{path}: must be a JSON object, not {_json_type(value)}.")
    if missing := sorted(required - value.keys()):
        raise ImportRejected(f'{path}: the field "{missing[0]}" is missing.')
    if not any_keys and (unknown := sorted(value.keys() - required - optional)):
        raise ImportRejected(f'{path}: unknown field "{unknown[0]}".')


def _expect_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImportRejected(f"{path}: must be a JSON array, not {_json_type(value)}.")
    return value


def _string(value: Any, path: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise ImportRejected(f"{path}: must be a string, not {_json_type(value)}.")
    if max_length is not None and len(value) > max_length:
        raise ImportRejected(f"{path}: {len(value):,} characters; at most {max_length:,}.")
    return value


def _integer(value: Any, path: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ImportRejected(f"{path}: must be a whole number from {low:,} to {high:,}, or null.")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _conversation_create(owner: Any, document: dict[str, Any]) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner,
        title=document["title"],
        model=document["model"],
        system_prompt=document["system_prompt"],
        temperature=document["temperature"],
        top_p=document["top_p"],
        max_tokens=document["max_tokens"],
        stop=document["stop"],
        extra_params=document["extra_params"],
    )
    items = document["messages"]
    # Bulk-created (both databases return the new ids), then linked to their parents.
    messages = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=item["role"],
            status=item["status"],
            content=item["content"],
            reasoning=item["reasoning"],
        )
        for item in items
    )
    created = {item["id"]: message for item, message in zip(items, messages, strict=True)}
    links = []
    for item, message in zip(items, messages, strict=True):
        if item["parent"] is not None:
            message.parent = created[item["parent"]]
            links.append((message.pk, message.parent.pk))
    _parents_set(links)
    ApiCall.objects.bulk_create(
        ApiCall(conversation=conversation, message=message, **call)
        for item, message in zip(items, messages, strict=True)
        for call in item["calls"]
    )
    for run in document["compare_runs"]:
        _compare_run_create(conversation, run, created)
    if document["current_leaf"] is not None:
        conversation.current_leaf = created[document["current_leaf"]]
        conversation.save(update_fields=["current_leaf"])
    return conversation


def _parents_set(links: list[tuple[int, int]]) -> None:
    """Set each (message id, parent id) pair's parent, in a few UPDATE ... FROM (VALUES) queries.

    bulk_update builds a CASE expression per message in Python: a third of an
    import's write time, which is time other users' writes wait on SQLite.
    Both databases name a VALUES list's columns column1, column2.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    for start in range(0, len(links), PARENTS_PER_QUERY):
        chunk = links[start : start + PARENTS_PER_QUERY]
        rows = ", ".join(["(%s, %s)"] * len(chunk))
        # Only the model's table name and placeholders are formatted in; values are parameters.
        sql = f"UPDATE {table} SET parent_id = links.column2 FROM (VALUES {rows}) AS links "  # noqa: S608
        sql += f"WHERE {table}.id = links.column1"
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for link in chunk for value in link])


def _compare_run_create(
    conversation: Conversation, run: dict[str, Any], created: dict[str, Message]
) -> None:
    compare_run = CompareRun.objects.create(
        conversation=conversation,
        prompt=created[run["prompt"]],
        chosen=created.get(run["chosen"]),
    )
    for column in run["columns"]:
        fields = {name: column[name] for name in ("model", "system_prompt", *PARAMETER_NAMES)}
        # Imported replies are finished: nothing may start generating them again.
        saved = CompareColumn.objects.create(
            run=compare_run, position=column["position"], generation_started=True, **fields
        )
        ids = [created[reply].id for reply in column["replies"]]
        Message.objects.filter(id__in=ids).update(compare_column=saved)
