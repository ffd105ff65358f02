"""Conversations as files: the versioned JSON export, Markdown, and import.

The JSON format is documented in docs/export-format.md. Share links store
their snapshot in the same format, and "continue a shared conversation" is an
import of that snapshot, so there is one reader and one writer for all three.

Version 2 carries every field of a message (content parts, tool calls, refusal,
choices, log probabilities...) and each attached file once per document, keyed by
its SHA-256: parts, messages and calls' splices name files by that key, so a file
sent on twenty turns is in the file once and every call's exact bytes can be
rebuilt. Version 1 files still import. A plain OpenAI-style request body
({"messages": [...]}, perhaps with a model and parameters) imports as one new
conversation.

Import trusts nothing in the file: ids only link messages within the file,
owners and file names are never read, every value is checked against the same
bounds as the forms, every attached file is decoded, hashed and sniffed, and the
whole file is checked before anything is written: it is saved whole or not at all.
A NUL character or an unpaired surrogate, which no database stores, becomes U+FFFD
both ways.
"""

import base64
import binascii
import hashlib
import json
import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, OperationalError, connection, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from . import (
    attachments,
    client,
    conversations,
    generation,
    presenters,
    raw_request,
    storable,
    wire,
)
from .forms import ParametersForm
from .models import ApiCall, Attachment, CompareColumn, CompareRun, Conversation, Message

logger = logging.getLogger(__name__)

FORMAT = "playground.conversations"
VERSION = 2

# A call's fields in version 1; version 2 adds CALL_FIELDS_V2's.
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
CALL_FIELDS_V2 = (*CALL_FIELDS, "request_splices", "cost_estimated", "model")
MESSAGE_FIELDS_V1 = frozenset(
    {"id", "parent", "role", "status", "content", "reasoning", "created", "calls"}
)
MESSAGE_FIELDS_V2 = MESSAGE_FIELDS_V1 | {
    "parts",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "extra",
    "choice_index",
    "finish_reason",
    "logprobs",
    "written",
    "raw_body",
    "attachments",
}
PARAMETER_NAMES = ("temperature", "top_p", "max_tokens", "stop", "extra_params")
MAX_JSON_DEPTH = 64
MAX_POSITIVE_INT = 2_147_483_647  # PositiveIntegerField on every database
MAX_SMALL_INT = 32_767  # PositiveSmallIntegerField on every database
# More than any message holds (a reply's parts are bounded by its size alone, a
# typed message's by the raw body's), few enough that a page of them stays small.
MAX_PARTS = 1_000
MAX_FILES = 1_000  # attached files in one file (or snapshot)
SHA256 = re.compile(r"[0-9a-f]{64}")
# What an attachment that is not stored (any more) is sent as (chat/wire.py).
MISSING_FILE_PART = {"type": "text", "text": "[an attachment that is no longer stored]"}
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


class Files:
    """The attachments one document references, each written once, under its SHA-256.

    Looked up without their bytes (owner-scoped: a part may name any id); `entries`
    reads each file's bytes as it is written, one file at a time.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, Attachment] = {}
        self._used: dict[str, int] = {}  # sha256 -> pk, in order of first use

    def load(self, owner_id: int, ids: Iterable[Any]) -> None:
        wanted = {text for text in map(str, ids) if text not in self._by_id and _is_uuid(text)}
        if wanted:
            found = Attachment.objects.filter(owner_id=owner_id, public_id__in=wanted)
            for attachment in found.defer("data"):
                self._by_id[str(attachment.public_id)] = attachment

    def sha(self, public_id: Any) -> str | None:
        """The key of the attachment `public_id` (loaded first), or None if there is none."""
        attachment = self._by_id.get(str(public_id))
        if attachment is None:
            return None
        self._used.setdefault(attachment.sha256, attachment.pk)
        return attachment.sha256

    def entries(self) -> Iterator[tuple[str, Attachment]]:
        """Each referenced attachment, its bytes loaded."""
        for sha, pk in self._used.items():
            attachment = Attachment.objects.filter(pk=pk).first()
            if attachment is not None:
                yield sha, attachment


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def attachment_entry(attachment: Attachment) -> dict[str, Any]:
    """A file as the document holds it: what it is, and its bytes in base64."""
    return {**_attachment_fields(attachment), "data": wire.base64_of(attachment)}


def _attachment_fields(attachment: Attachment) -> dict[str, Any]:
    return {
        "media_type": attachment.media_type,
        "filename": attachment.filename,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
    }


def conversation_document(
    *,
    conversation: Conversation,
    files: Files,
    messages: list[Message] | None = None,
    leaf: Message | None = None,
) -> dict[str, Any]:
    """One conversation: its parameters, messages (all branches unless given) and calls.

    `leaf` is the message the copy opens at; by default the conversation's own. The
    attachments it references are noted in `files`, which the caller writes once.
    """
    if messages is None:
        messages = list(conversation.messages.all())
    calls_by_message = defaultdict(list)
    for call in ApiCall.objects.filter(message__in=messages):
        calls_by_message[call.message_id].append(call)
    attached = defaultdict(list)
    through = Message.attachments.through.objects.filter(message__in=messages).order_by("id")
    for message_id, public_id in through.values_list("message_id", "attachment__public_id"):
        attached[message_id].append(public_id)
    files.load(
        conversation.owner_id,
        [
            *wire.attachment_ids(messages),
            *(public_id for ids in attached.values() for public_id in ids),
            *(
                splice.get("attachment")
                for calls in calls_by_message.values()
                for call in calls
                for splice in call.request_splices or []
                if isinstance(splice, dict)
            ),
        ],
    )
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
                "parts": _parts_document(message.parts, files),
                "reasoning": message.reasoning,
                "tool_calls": message.tool_calls,
                "tool_call_id": message.tool_call_id,
                "refusal": message.refusal,
                "extra": message.extra,
                "choice_index": message.choice_index,
                "finish_reason": message.finish_reason,
                "logprobs": message.logprobs,
                "written": message.written,
                "raw_body": message.raw_body,
                "attachments": list(
                    dict.fromkeys(
                        sha for sha in map(files.sha, attached[message.id]) if sha is not None
                    )
                ),
                "created": message.created.isoformat(),
                "calls": [_call_document(call, files) for call in calls_by_message[message.id]],
            }
            for message in messages
        ],
    }
    # Text stored before it was made storable (SQLite keeps a NUL) leaves as U+FFFD.
    # Copied only then: the copy of a call of megabytes is that many more (its events).
    return storable_copy(document) if storable.problem(document) else document


def conversation_snapshot(
    *, conversation: Conversation, messages: list[Message], leaf: Message | None = None
) -> dict[str, Any]:
    """One conversation as a share link keeps it: the document, with its own copy of
    every file it references (the page serves them from here, never the owner's)."""
    files = Files()
    document = conversation_document(
        conversation=conversation, files=files, messages=messages, leaf=leaf
    )
    entries = {sha: attachment_entry(attachment) for sha, attachment in files.entries()}
    return {**document, "version": VERSION, "attachments": entries}


def _parts_document(parts: Any, files: Files) -> list | None:
    """The parts, each attachment named by its file's key; one no longer stored as the
    text the model is sent in its place."""
    if not isinstance(parts, list):
        return None
    written = []
    for part in parts:
        if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT:
            sha = files.sha(part.get(wire.ATTACHMENT))
            part = {**part, wire.ATTACHMENT: sha} if sha is not None else dict(MISSING_FILE_PART)
        written.append(part)
    return written


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


def _call_document(call: ApiCall, files: Files) -> dict[str, Any]:
    document = {name: getattr(call, name) for name in CALL_FIELDS}
    document["usd_spent"] = None if call.usd_spent is None else str(call.usd_spent)
    # A splice whose file is gone put nothing in its place (ApiCall.sent_body): left out.
    document["request_splices"] = [
        {"at": splice["at"], "attachment": sha}
        for splice in call.request_splices or []
        if isinstance(splice, dict) and (sha := files.sha(splice.get("attachment")))
    ]
    document["cost_estimated"] = call.cost_estimated
    document["model"] = call.model
    document["created"] = call.created.isoformat()
    return document


def export_json(conversations: Iterable[Conversation]) -> Iterator[bytes]:
    """The export file, one conversation at a time (a user's whole history can be large),
    then each file they reference, once, its base64 in pieces."""
    files = Files()
    head = json.dumps(
        {"format": FORMAT, "version": VERSION, "exported_at": timezone.now().isoformat()},
        indent=2,
    )
    yield f'{head.removesuffix("\n}")},\n  "conversations": [\n'.encode()
    for index, conversation in enumerate(conversations):
        if index:
            yield b",\n"
        yield from _encoded(conversation_document(conversation=conversation, files=files))
    yield b'\n  ],\n  "attachments": {'
    for index, (sha, attachment) in enumerate(files.entries()):
        fields = json.dumps(_attachment_fields(attachment)).removesuffix("}")
        yield f'{"," if index else ""}\n    "{sha}": {fields}, "data": "'.encode()
        data = bytes(attachment.data)
        step = EXPORT_PIECE_CHARS // 4 * 3  # whole groups of 3 bytes: the pieces join up
        for start in range(0, len(data), step):
            yield base64.b64encode(data[start : start + step])
        yield b'"}'
    yield b"\n  }\n}\n"


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
    """The branch shown, as a readable Markdown document: each message's text and parts
    (files by name), its tool calls, a tool result's call, and a refusal."""
    lines = [f"# {conversation.title}", "", f"- Model: `{conversation.model}`"]
    # The parameters only: not conversation_document, which loads every call.
    for name in PARAMETER_NAMES:
        value = getattr(conversation, name)
        if value not in (None, [], {}):
            lines.append(f"- {name}: `{json.dumps(value)}`")
    lines.append(f"- Exported: {timezone.now():%Y-%m-%d %H:%M} UTC")
    if conversation.system_prompt:
        lines += ["", "## System prompt", "", conversation.system_prompt]
    ids = {text for text in wire.attachment_ids(messages) if _is_uuid(text)}
    found = Attachment.objects.filter(owner_id=conversation.owner_id, public_id__in=ids)
    files = {str(attachment.public_id): attachment for attachment in found.defer("data")}
    for message in messages:
        notes = []
        if message.written and message.role == Message.Role.ASSISTANT:
            notes.append("written")  # by the user: a few-shot reply, say, not the model's
        if message.choice_index is not None:
            notes.append(f"choice {message.choice_index + 1}")
        if message.status != Message.Status.COMPLETE:
            notes.append(message.get_status_display().lower())
        heading = message.get_role_display() + (f" ({', '.join(notes)})" if notes else "")
        lines += ["", f"## {heading}", ""]
        if message.role == Message.Role.TOOL and message.tool_call_id:
            lines += [f"Result of tool call `{message.tool_call_id}`:", ""]
        if message.reasoning:
            lines += [f"> {line}" for line in message.reasoning.splitlines()] + [""]
        lines += _markdown_content(message, files)
        if message.refusal:
            lines += ["", "**Refusal** (the model declined):", ""]
            lines += [f"> {line}" for line in message.refusal.splitlines()]
        for card in presenters.tool_cards_of(message):
            lines += ["", f"**Tool call** `{card.name}` (id `{card.call_id}`):", ""]
            lines += _fenced(card.arguments, "json")
    return "\n".join(lines) + "\n"


def _markdown_content(message: Message, files: dict[str, Attachment]) -> list[str]:
    if message.parts is None:
        return [message.content]
    lines = []
    for index, part in enumerate(message.parts):
        lines += ([""] if index else []) + _markdown_part(part, files)
    return lines


def _markdown_part(part: Any, files: dict[str, Attachment]) -> list[str]:
    """One content part: text as it is, a file by its name, anything else as its JSON."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return [part["text"]]
    if kind == wire.ATTACHMENT:
        attachment = files.get(str(part.get(wire.ATTACHMENT)))
        if attachment is None:
            return ["- An attachment that is no longer stored"]
        detail = [attachment.media_type, filesizeformat(attachment.size)]
        if attachment.width and attachment.height:
            detail.append(f"{attachment.width}×{attachment.height}")
        label = "Image" if attachment.is_image else "File"
        return [f"- {label}: {attachment.filename} ({', '.join(detail)})"]
    image_url = part.get("image_url") if kind == "image_url" else None
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if isinstance(url, str) and not url.startswith("data:"):
        return [f"- Remote image: <{url[:2000]}>"]
    text = json.dumps(part, ensure_ascii=False, indent=2)
    if len(text) > presenters.MAX_PART_CHARS:
        text = text[: presenters.MAX_PART_CHARS] + "\n… (cut here; the JSON export has all of it)"
    return _fenced(text, "json")


def _fenced(text: str, info: str) -> list[str]:
    """`text` as a fenced code block whose fence no run of backticks in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", text, fence]


# --- Import ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckedFile:
    """An attached file of an import, decoded and checked, not stored yet."""

    filename: str
    data: bytes
    sniffed: attachments.Sniffed


@dataclass(frozen=True)
class Checked:
    """A file's conversations, checked, and the attached files they reference (by key)."""

    conversations: list[dict[str, Any]]
    files: dict[str, CheckedFile]


def conversations_import(*, owner: Any, data: bytes) -> list[Conversation]:
    """Create the file's conversations for `owner`, all of them or none.

    An export file, or a plain OpenAI-style request body (one conversation). The
    whole file is checked before anything is written. Then its files are stored
    (once per owner and content) and the conversations written in short
    transactions (whole conversations, bulk inserts), with a pause between them on
    SQLite: there a transaction holds the one write lock, and other users' sends
    wait for one batch, not for the file. If a write fails, what was written is
    deleted again.
    """
    if len(data) > settings.MAX_IMPORT_BYTES:
        raise ImportRejected(
            f"The file is {len(data):,} bytes; the limit is {settings.MAX_IMPORT_BYTES:,}."
        )
    document = _json_read(data)
    if is_plain_request(document):
        return [_plain_import(owner, _plain_read(document))]
    checked = _envelope_read(document)
    return _conversations_write(owner, checked.conversations, checked.files)


def parse_export(data: bytes) -> Checked:
    """The export file's conversations and files, validated and normalised, or ImportRejected."""
    return _envelope_read(_json_read(data))


def _json_read(data: bytes) -> Any:
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
    return storable_copy(document, max_depth=MAX_JSON_DEPTH)


def conversation_import(*, owner: Any, document: Any) -> Conversation:
    """One conversation in the export format (a share's snapshot), checked, for `owner`.

    A snapshot names its version and holds its files beside the conversation's own
    fields; one taken before version 2 has neither.
    """
    document = storable_copy(document, max_depth=MAX_JSON_DEPTH, path="conversation")
    if not isinstance(document, dict):
        raise ImportRejected(f"conversation: must be a JSON object, not {_json_type(document)}.")
    version = _version_read(document.pop("version", 1), "conversation.version")
    files = {}
    if version >= 2:
        files = _files_read(document.pop("attachments", {}), "conversation.attachments")
    checked = conversation_read(document, "conversation", version=version, files=files)
    referenced = {sha: files[sha] for sha in checked["files"]}
    [conversation] = _conversations_write(owner, [checked], referenced)
    return conversation


def _conversations_write(
    owner: Any, conversations: list[dict[str, Any]], files: dict[str, CheckedFile]
) -> list[Conversation]:
    """Checked conversations and their files, written in short transactions; all of them,
    or ImportRejected."""
    created: list[Conversation] = []
    new_files: list[Attachment] = []
    try:
        stored = _files_store(owner, files, new_files)
        while len(created) < len(conversations):
            if created and connection.vendor == "sqlite":
                time.sleep(WRITE_PAUSE_SECONDS)  # the lock is free: a waiting writer takes it
            batch = []
            with transaction.atomic():
                deadline = time.monotonic() + WRITE_BATCH_SECONDS
                for document in conversations[len(created) :]:
                    batch.append(_conversation_create(owner, document, stored))
                    if time.monotonic() > deadline:
                        break
            created += batch  # committed
    except Exception as error:
        _conversations_remove(created)
        _files_remove(new_files)
        raise _write_failed(error) from None
    return created


def _write_failed(error: Exception) -> Exception:
    """What to raise for a write that failed: a message for the page when the database
    said no, else the error itself (a bug, for the logs)."""
    if isinstance(error, OperationalError):  # SQLite's "database is locked"
        logger.warning("An import could not write to the database: %s", error)
        return ImportRejected("The database was busy with other changes. Try again in a moment.")
    if isinstance(error, DatabaseError):
        logger.warning("An import was refused by the database: %s", error)
        return ImportRejected("The database refused to store a conversation.")
    return error


def _files_store(
    owner: Any, files: dict[str, CheckedFile], new: list[Attachment]
) -> dict[str, Attachment]:
    """The files as the owner's attachments, by key: each stored once (one the owner has
    already is that one). Those stored here are added to `new`, to remove on failure."""
    if not files:
        return {}
    known = set(
        Attachment.objects.filter(owner=owner, sha256__in=list(files)).values_list(
            "sha256", flat=True
        )
    )
    stored = {}
    for sha, file in files.items():
        stored[sha] = attachments.attachment_store(
            owner=owner, filename=file.filename, data=file.data, sniffed=file.sniffed
        )
        if sha not in known:
            new.append(stored[sha])
    return stored


def _conversations_remove(conversations: list[Conversation]) -> None:
    """What an import that failed had written, deleted (each in its own short transaction)."""
    for conversation in reversed(conversations):
        try:
            conversation.delete()
        except DatabaseError:
            logger.exception("A failed import left conversation %s behind", conversation.pk)


def _files_remove(new: list[Attachment]) -> None:
    """The files a failed import stored, unless a message of the owner's took one meanwhile."""
    if not new:
        return
    try:
        unused = Attachment.objects.filter(pk__in=[a.pk for a in new], messages__isnull=True)
        unused.delete()
    except DatabaseError:
        logger.exception("A failed import left %d attachments behind", len(new))


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


def _envelope_read(document: Any) -> Checked:
    _expect_object(
        document,
        "file",
        required={"format", "version", "conversations"},
        optional={"exported_at", "attachments"},
    )
    if document["format"] != FORMAT:
        raise ImportRejected(f'file.format: expected "{FORMAT}"; this is not a Playground export.')
    version = _version_read(document["version"], "file.version")
    if version < 2 and "attachments" in document:
        raise ImportRejected('file: unknown field "attachments" (version 1 files have none).')
    files = _files_read(document.get("attachments", {}), "attachments")
    conversations = _expect_list(document["conversations"], "file.conversations")
    if not conversations:
        raise ImportRejected("file.conversations: the file has no conversations.")
    if len(conversations) > settings.MAX_IMPORT_CONVERSATIONS:
        raise ImportRejected(
            f"file.conversations: {len(conversations):,} conversations; at most "
            f"{settings.MAX_IMPORT_CONVERSATIONS:,} per file."
        )
    checked = [
        conversation_read(item, f"conversations[{index}]", version=version, files=files)
        for index, item in enumerate(conversations)
    ]
    referenced = set().union(*(conversation["files"] for conversation in checked))
    # A file nothing references is checked like the others, but not stored.
    return Checked(checked, {sha: file for sha, file in files.items() if sha in referenced})


def _version_read(version: Any, path: str) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImportRejected(f"{path}: must be a whole number.")
    if version > VERSION:
        raise ImportRejected(
            f"{path}: the file is format version {version}; this Playground reads "
            f"versions 1 to {VERSION}. Update Playground to import it."
        )
    return version


def _files_read(value: Any, path: str) -> dict[str, CheckedFile]:
    """The document's attached files, keyed by SHA-256: each decoded, hashed and sniffed."""
    _expect_object(value, path, any_keys=True)
    if len(value) > MAX_FILES:
        raise ImportRejected(f"{path}: {len(value):,} files; at most {MAX_FILES:,} per file.")
    return {sha: _file_read(sha, entry, path) for sha, entry in value.items()}


def _file_read(sha: str, entry: Any, path: str) -> CheckedFile:
    if not SHA256.fullmatch(sha):
        raise ImportRejected(
            f"{path}: the key {sha[:80]!r} is not a SHA-256 (64 lowercase hex digits)."
        )
    where = f"{path}.{sha}"
    _expect_object(
        entry,
        where,
        required={"media_type", "filename", "data"},
        optional={"size", "width", "height"},
    )
    limit = settings.MAX_ATTACHMENT_BYTES
    encoded = _string(entry["data"], f"{where}.data")
    if len(encoded) > 4 * -(-limit // 3):  # checked before decoding any of it
        raise ImportRejected(f"{where}.data: the file is larger than {limit:,} bytes.")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ImportRejected(f"{where}.data: not valid base64.") from None
    if len(data) > limit:
        raise ImportRejected(f"{where}.data: the file is {len(data):,} bytes; at most {limit:,}.")
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha:
        raise ImportRejected(f"{where}.data: the bytes' SHA-256 is {digest}, not the key.")
    sniffed = attachments.sniff(data)
    if sniffed is None:
        raise ImportRejected(f"{where}.data: not a {attachments.ACCEPTED} file.")
    media_type = _string(entry["media_type"], f"{where}.media_type")
    if media_type != sniffed.media_type:
        raise ImportRejected(
            f"{where}.media_type: the bytes are {sniffed.media_type}, not {media_type[:100]!r}."
        )
    for name, actual in (("size", len(data)), ("width", sniffed.width), ("height", sniffed.height)):
        given = _integer(entry.get(name), f"{where}.{name}", 0, MAX_POSITIVE_INT)
        if name in entry and given != actual:
            raise ImportRejected(f"{where}.{name}: the bytes say {actual}, not {given}.")
    filename = _string(
        entry["filename"], f"{where}.filename", max_length=attachments.MAX_FILENAME_CHARS
    ).strip()
    if not filename:
        raise ImportRejected(f"{where}.filename: must not be empty.")
    return CheckedFile(filename=filename, data=data, sniffed=sniffed)


def conversation_read(
    document: Any, path: str, *, version: int = VERSION, files: Collection[str] = ()
) -> dict[str, Any]:
    """One conversation of the file, checked field by field; `files` are the keys of the
    document's attached files. Its "files" are the keys it references."""
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
        where = f"{path}.messages[{index}]"
        checked.append(_message_read(message, where, known, version=version, files=files))
        known.add(checked[-1]["id"])
    leaf = document.get("current_leaf")
    if leaf is not None and not _one_of(leaf, known):
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
        "files": {sha for message in checked for sha in _message_files(message)},
    }


def _message_files(message: dict[str, Any]) -> Iterator[str]:
    """The keys of the files a checked message references: in parts, itself, its calls."""
    yield from message["attachments"]
    for part in message["parts"] or []:
        if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT:
            yield part[wire.ATTACHMENT]
    for call in message["calls"]:
        for splice in call["request_splices"]:
            yield splice["attachment"]


def _compare_run_read(run: Any, path: str, messages: dict[str, dict]) -> dict[str, Any]:
    """A compare run: a user message as prompt, and 1-4 columns of its replies."""
    _expect_object(run, path, required={"prompt", "columns"}, optional={"chosen"})
    prompt = messages.get(run["prompt"]) if isinstance(run["prompt"], str) else None
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
    if chosen is not None and not _one_of(chosen, claimed):
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
    values = {
        "model": _string(document["model"], f"{path}.model"),
        "system_prompt": _string(document.get("system_prompt", ""), f"{path}.system_prompt"),
        **{name: parameters.get(name) for name in ("temperature", "top_p", "max_tokens")},
        "stop": stop,
        "extra_params": extra,
    }
    where = {
        "model": f"{path}.model",
        "system_prompt": f"{path}.system_prompt",
        **{name: f"{path}.parameters.{name}" for name in PARAMETER_NAMES},
    }
    return _parameters_checked(values, where)


def _parameters_checked(values: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    """The panel's values checked by its form; an error names `where[field]`."""
    form = ParametersForm(
        {
            "model": values["model"],
            "system_prompt": values["system_prompt"],
            **{
                name: _number_text(values[name], where[name])
                for name in ("temperature", "top_p", "max_tokens")
            },
            "stop": "\n".join(values["stop"]),
            "extra_params": json.dumps(values["extra_params"]) if values["extra_params"] else "",
        },
        # The generic bounds only: a conversation may hold values its model's schema refuses
        # (sent with "Send anyway"), and an import makes no network calls.
        schema=None,
    )
    if not form.is_valid():
        name, errors = next(iter(form.errors.items()))
        raise ImportRejected(f"{where.get(name, name)}: {' '.join(errors)}")
    return form.cleaned_data


def _number_text(value: Any, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportRejected(f"{path}: must be a number or null.")
    return repr(value)


def _message_read(
    message: Any, path: str, known: set[str], *, version: int, files: Collection[str]
) -> dict[str, Any]:
    """A message; version 1 has only its text, version 2 everything the API carries."""
    required = {"id", "role", "content"}
    fields = MESSAGE_FIELDS_V2 if version >= 2 else MESSAGE_FIELDS_V1
    _expect_object(message, path, required=required, optional=fields - required)
    message_id = _string(message["id"], f"{path}.id", max_length=64)
    if not message_id or message_id in known:
        raise ImportRejected(f"{path}.id: must be a unique, non-empty string.")
    parent = message.get("parent")
    if parent is not None and not _one_of(parent, known):
        raise ImportRejected(
            f"{path}.parent: {parent!r} is not the id of an earlier message in this conversation."
        )
    role = message["role"]
    if role not in Message.Role.values:
        raise ImportRejected(
            f"{path}.role: must be one of {', '.join(Message.Role.values)}, not {role!r}."
        )
    status = message.get("status", Message.Status.COMPLETE)
    if status not in Message.Status.values:
        raise ImportRejected(
            f"{path}.status: must be one of {', '.join(Message.Status.values)}, not {status!r}."
        )
    # Version 1 knew no other way for a message to be written than a user's.
    written = _boolean(message.get("written", role == Message.Role.USER), f"{path}.written")
    limit = settings.MAX_MESSAGE_CHARS if role == Message.Role.USER or written else None
    calls = _expect_list(message.get("calls", []), f"{path}.calls")
    if calls and role != Message.Role.ASSISTANT:
        raise ImportRejected(f"{path}.calls: only assistant messages have calls.")
    return {
        "id": message_id,
        "parent": parent,
        "role": role,
        # A reply still generating when exported will never finish here.
        "status": Message.Status.INTERRUPTED if status == Message.Status.PENDING else status,
        "content": _string(message["content"], f"{path}.content", max_length=limit),
        "parts": _parts_read(message.get("parts"), f"{path}.parts", files),
        "reasoning": _string(message.get("reasoning", ""), f"{path}.reasoning"),
        "tool_calls": _tool_calls_read(message.get("tool_calls"), f"{path}.tool_calls"),
        "tool_call_id": _string(
            message.get("tool_call_id", ""),
            f"{path}.tool_call_id",
            max_length=_most("tool_call_id"),
        ),
        "refusal": _string(message.get("refusal", ""), f"{path}.refusal"),
        "extra": _extra_read(message.get("extra", {}), f"{path}.extra"),
        "choice_index": _integer(
            message.get("choice_index"), f"{path}.choice_index", 0, MAX_SMALL_INT
        ),
        "finish_reason": _string(
            message.get("finish_reason", ""),
            f"{path}.finish_reason",
            max_length=_most("finish_reason"),
        ),
        "logprobs": _object_or_null(message.get("logprobs"), f"{path}.logprobs"),
        "written": written,
        "raw_body": _raw_body_read(message.get("raw_body", ""), f"{path}.raw_body"),
        "attachments": _references(message.get("attachments", []), f"{path}.attachments", files),
        "calls": [
            _call_read(call, f"{path}.calls[{i}]", version=version, files=files)
            for i, call in enumerate(calls)
        ],
    }


def _one_of(reference: Any, ids: Collection[str]) -> bool:
    """Whether `reference` is one of the message ids `ids` (a file may put anything there)."""
    return isinstance(reference, str) and reference in ids


def _most(name: str) -> int:
    return Message._meta.get_field(name).max_length


def _parts_read(value: Any, path: str, files: Collection[str]) -> list | None:
    """The API's content parts, kept as they came; an attachment must name a file here."""
    if value is None:
        return None
    parts = _expect_list(value, path)
    if len(parts) > MAX_PARTS:
        raise ImportRejected(f"{path}: {len(parts):,} parts; at most {MAX_PARTS:,} per message.")
    for index, part in enumerate(parts):
        if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT:
            where = f"{path}[{index}]"
            _expect_object(part, where, required={"type", wire.ATTACHMENT}, optional={"detail"})
            _file_reference(part[wire.ATTACHMENT], f"{where}.{wire.ATTACHMENT}", files)
            if "detail" in part:
                _string(part["detail"], f"{where}.detail", max_length=20)
    return parts


def _file_reference(value: Any, path: str, files: Collection[str]) -> str:
    if not isinstance(value, str) or value not in files:
        shown = repr(value[:80]) if isinstance(value, str) else _json_type(value)
        raise ImportRejected(f"{path}: {shown} is not the key of a file in the attachments.")
    return value


def _references(value: Any, path: str, files: Collection[str]) -> list[str]:
    references = _expect_list(value, path)
    if len(references) > MAX_PARTS:
        raise ImportRejected(f"{path}: {len(references):,} files; at most {MAX_PARTS:,}.")
    for index, reference in enumerate(references):
        _file_reference(reference, f"{path}[{index}]", files)
    if len(set(references)) != len(references):
        raise ImportRejected(f"{path}: names a file twice.")
    return references


def _tool_calls_read(value: Any, path: str) -> list | None:
    if value is None:
        return None
    calls = _expect_list(value, path)
    if len(calls) > client.MAX_TOOL_CALLS:
        raise ImportRejected(f"{path}: {len(calls):,} tool calls; at most {client.MAX_TOOL_CALLS}.")
    return calls or None


def _extra_read(value: Any, path: str) -> dict[str, Any]:
    """The message's other keys, sent back as they are: none that has its own field."""
    _expect_object(value, path, any_keys=True)
    if own := sorted(value.keys() & wire.OWN_KEYS):
        raise ImportRejected(f'{path}: "{own[0]}" has its own field, not a key here.')
    return value


def _object_or_null(value: Any, path: str) -> dict[str, Any] | None:
    if value is not None:
        _expect_object(value, path, any_keys=True)
    return value


def _raw_body_read(value: Any, path: str) -> str:
    body = _string(value, path)
    if len(body) > raw_request.MAX_RAW_BYTES and len(body.encode()) > raw_request.MAX_RAW_BYTES:
        raise ImportRejected(f"{path}: larger than {raw_request.MAX_RAW_BYTES:,} bytes.")
    return body


def _call_read(call: Any, path: str, *, version: int, files: Collection[str]) -> dict[str, Any]:
    fields = CALL_FIELDS_V2 if version >= 2 else CALL_FIELDS
    _expect_object(call, path, required={"request_body"}, optional={*fields, "created"})
    checked: dict[str, Any] = {}
    for name in (
        "method",
        "url",
        "request_body",
        "response_body",
        "error_kind",
        "error_message",
        "finish_reason",
        "model",
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
    checked["assembled_response"] = _object_or_null(
        call.get("assembled_response"), f"{path}.assembled_response"
    )
    checked["usd_spent"] = _usd(call.get("usd_spent"), f"{path}.usd_spent")
    checked["cost_estimated"] = _boolean(
        call.get("cost_estimated", False), f"{path}.cost_estimated"
    )
    checked["request_splices"] = _splices_read(
        call.get("request_splices", []), f"{path}.request_splices", checked["request_body"], files
    )
    return checked


def _splices_read(value: Any, path: str, body: str, files: Collection[str]) -> list[dict[str, Any]]:
    """Where each file's base64 goes back into the body: offsets in it, in order."""
    splices = _expect_list(value, path)
    checked, previous = [], -1
    for index, splice in enumerate(splices):
        where = f"{path}[{index}]"
        _expect_object(splice, where, required={"at", wire.ATTACHMENT})
        at = splice["at"]
        if isinstance(at, bool) or not isinstance(at, int) or not previous < at <= len(body):
            raise ImportRejected(
                f"{where}.at: must be a whole number after the previous offset ({previous}) "
                f"and at most the body's length ({len(body):,} characters), not {at!r}."
            )
        reference = _file_reference(splice[wire.ATTACHMENT], f"{where}.{wire.ATTACHMENT}", files)
        checked.append({"at": at, wire.ATTACHMENT: reference})
        previous = at
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
        raise ImportRejected(f'{path}: unknown field "{unknown[0][:80]}".')


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


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ImportRejected(f"{path}: must be true or false, not {_json_type(value)}.")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


# --- Writing what was checked --------------------------------------------------


def _conversation_create(
    owner: Any, document: dict[str, Any], stored: dict[str, Attachment]
) -> Conversation:
    """One checked conversation; `stored` holds its files as the owner's attachments, by key."""
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

    def public_id(sha: str) -> str:
        return str(stored[sha].public_id)

    # Bulk-created (both databases return the new ids), then linked to their parents.
    messages = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=item["role"],
            status=item["status"],
            content=item["content"],
            parts=_parts_stored(item["parts"], public_id),
            reasoning=item["reasoning"],
            tool_calls=item["tool_calls"],
            tool_call_id=item["tool_call_id"],
            refusal=item["refusal"],
            extra=item["extra"],
            choice_index=item["choice_index"],
            finish_reason=item["finish_reason"],
            logprobs=item["logprobs"],
            written=item["written"],
            raw_body=item["raw_body"],
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
    through = Message.attachments.through
    through.objects.bulk_create(
        through(message_id=message.pk, attachment_id=stored[sha].pk)
        for item, message in zip(items, messages, strict=True)
        for sha in item["attachments"]
    )
    ApiCall.objects.bulk_create(
        ApiCall(
            conversation=conversation,
            message=message,
            **{
                **call,
                "request_splices": [
                    {"at": splice["at"], wire.ATTACHMENT: public_id(splice[wire.ATTACHMENT])}
                    for splice in call["request_splices"]
                ],
            },
        )
        for item, message in zip(items, messages, strict=True)
        for call in item["calls"]
    )
    for run in document["compare_runs"]:
        _compare_run_create(conversation, run, created)
    if document["current_leaf"] is not None:
        conversation.current_leaf = created[document["current_leaf"]]
        conversation.save(update_fields=["current_leaf"])
    return conversation


def _parts_stored(parts: list | None, public_id: Any) -> list | None:
    """The parts with each file's key replaced by the id of the attachment stored for it."""
    if parts is None:
        return None
    return [
        {**part, wire.ATTACHMENT: public_id(part[wire.ATTACHMENT])}
        if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT
        else part
        for part in parts
    ]


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


# --- A plain OpenAI-style request ----------------------------------------------


def is_plain_request(document: Any) -> bool:
    """A chat completions request body rather than an export: known by its shape."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("messages"), list)
        and not {"version", "conversations"} & document.keys()
    )


def _plain_read(document: dict[str, Any]) -> dict[str, Any]:
    """A request body checked as raw request mode checks one: its messages as the API
    carries them, a leading system message as the system prompt, the other keys as the
    panel's parameters (mapped as raw mode maps them)."""
    messages = document["messages"]
    if not messages:
        raise ImportRejected("messages: the file has no messages.")
    if len(messages) > settings.MAX_MESSAGES_PER_CONVERSATION:
        raise ImportRejected(
            f"messages: {len(messages):,} messages; at most "
            f"{settings.MAX_MESSAGES_PER_CONVERSATION:,} per conversation."
        )
    for index, message in enumerate(messages):
        _wire_message_read(message, f"messages[{index}]")
    system = ""
    if messages[0]["role"] == "system" and isinstance(messages[0].get("content"), str):
        system, messages = messages[0]["content"], messages[1:]
    model = document.get("model", settings.DEFAULT_MODEL)
    mapped = raw_request.to_parameters({**document, "model": _string(model, "model")}, {})
    where = {
        "model": "model",
        "system_prompt": "messages[0].content",
        **{name: name for name in PARAMETER_NAMES},
        "extra_params": "file",  # the body's other keys
    }
    checked = _parameters_checked({**mapped, "system_prompt": system}, where)
    parameters = {name: checked[name] for name in ("model", "system_prompt", *PARAMETER_NAMES)}
    texts = [wire.projection(m.get("content")) for m in messages if m["role"] == "user"]
    title = next((conversations.title_from(text) for text in texts if text.strip()), "")
    return {
        "parameters": parameters,
        "title": title or "Imported conversation",
        "messages": messages,
    }


def _wire_message_read(message: Any, path: str) -> None:
    """A message as a request carries it: what the stored message takes, checked."""
    if not isinstance(message, dict):
        raise ImportRejected(f"{path}: must be a JSON object, not {_json_type(message)}.")
    role = message.get("role")
    if role not in wire.ALL_ROLES:
        raise ImportRejected(
            f"{path}.role: must be one of {', '.join(wire.ALL_ROLES)}, not {role!r}."
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str | list):
        raise ImportRejected(f"{path}.content: must be a string, a list of parts or null.")
    if isinstance(content, list):
        if len(content) > MAX_PARTS:
            raise ImportRejected(
                f"{path}.content: {len(content):,} parts; at most {MAX_PARTS:,} per message."
            )
        for index, part in enumerate(content):
            # Our own reference to a stored file: a request carries its files inline.
            if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT:
                raise ImportRejected(
                    f'{path}.content[{index}]: an "{wire.ATTACHMENT}" part names a stored '
                    "file; a request carries each file inline (image_url, file)."
                )
    if len(wire.projection(content)) > settings.MAX_MESSAGE_CHARS:
        raise ImportRejected(
            f"{path}.content: longer than {settings.MAX_MESSAGE_CHARS:,} characters."
        )
    _tool_calls_read(message.get("tool_calls"), f"{path}.tool_calls")
    for name in ("tool_call_id", "refusal"):
        if message.get(name) is not None:
            _string(message[name], f"{path}.{name}", max_length=_most(name) or None)


def _plain_import(owner: Any, checked: dict[str, Any]) -> Conversation:
    """The request as one new conversation, in one transaction: its messages written by
    the owner (inline files stored as attachments, once), nothing generated."""
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(
                owner=owner, title=checked["title"], **checked["parameters"]
            )
            drafts = [
                conversations.draft_from_wire(owner=owner, message=message)
                for message in checked["messages"]
            ]
            if drafts:
                generation.exchange_start(
                    conversation=conversation,
                    parent_id=None,
                    drafts=drafts,
                    idempotency_key=uuid.uuid4().hex,
                    parameters=None,
                    generate=False,
                )
    except ValidationError as error:  # the start's own refusals (StartRefused too)
        raise ImportRejected(" ".join(error.messages)) from None
    except DatabaseError as error:
        raise _write_failed(error) from None
    return conversation
