"""The API's message structure: our messages in the shape a model's schema expects, and back.

A stored message keeps what the wire carries (chat/models.py: role, content or
content parts, tool calls, tool-call id, the other keys in `extra`). Attachments
are stored once (chat/attachments.py) and referenced from a part as
{"type": "attachment", "attachment": "<public id>"}; `to_wire` turns each into
the model's own block: an OpenAI `image_url` or `file` part with a data URL, or an
Anthropic-style `image` / `document` source block where the schema names those.

The base64 of an attachment is not stored in a call's request body: `encode`
cuts it out and records where it goes (a splice), and `splice_in` puts it back,
so the bytes sent can still be downloaded exactly.
"""

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .catalogue import ModelSchema

ALL_ROLES = ("system", "developer", "user", "assistant", "tool")
ATTACHMENT = "attachment"
# Keys of a wire message that have their own column; the rest go in `extra`.
OWN_KEYS = frozenset(
    {"role", "content", "tool_calls", "tool_call_id", "refusal", "reasoning_content"}
)
# In the request body while it is encoded: JSON writes NUL as \u0000, which typed
# text cannot contain (chat/storable.py takes NUL out of everything stored).
_MARK = "\x00attachment:{}\x00"
_ENCODED_MARK_START = "\\u0000attachment:"
_ENCODED_MARK_END = "\\u0000"


@dataclass(frozen=True)
class Dialect:
    """How a model takes messages: which roles, where the system prompt goes, which blocks."""

    roles: tuple[str, ...] = ALL_ROLES
    # A top-level `system` field instead of a system message (Anthropic style).
    system_field: bool = False
    # Images and PDFs as {"type": "image"|"document", "source": {...}} blocks, and
    # tool calls and results as tool_use / tool_result blocks.
    anthropic_blocks: bool = False

    def allows(self, role: str) -> bool:
        return role in self.roles


def dialect_for(schema: ModelSchema | None) -> Dialect:
    """The model's dialect from its request schema; OpenAI's when it says nothing."""
    if schema is None:
        return Dialect()
    types = set(schema.part_types)
    anthropic = "image" in types and "image_url" not in types
    roles = tuple(role for role in ALL_ROLES if role in schema.roles) or ALL_ROLES
    if anthropic and "tool_result" in types and "tool" not in roles:
        roles = (*roles, "tool")  # written as tool messages, sent as tool_result blocks
    return Dialect(
        roles=roles, system_field="system" in schema.properties, anthropic_blocks=anthropic
    )


@dataclass(frozen=True)
class Row:
    """What a message contributes to a request (a Message, or a row of _PATH_CONTEXT_SQL)."""

    role: str
    content: str
    parts: list | None = None
    tool_calls: list | None = None
    tool_call_id: str = ""
    refusal: str = ""
    extra: Mapping[str, Any] | None = None


def attachment_ids(rows: Iterable[Row]) -> set[str]:
    """The ids the rows' attachment parts name (only well-formed ones: a lookup by them
    must not fail on a value that is not an id)."""
    return {
        str(part.get(ATTACHMENT))
        for row in rows
        for part in row.parts or []
        if isinstance(part, dict)
        and part.get("type") == ATTACHMENT
        and is_attachment_id(part.get(ATTACHMENT))
    }


def is_attachment_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def to_wire(rows: list[Row], dialect: Dialect, attachments: Mapping[str, Any]) -> list[dict]:
    """The request's messages. `attachments` maps public id to Attachment; their data
    is written as a mark that `encode` replaces with the base64 (and records)."""
    messages: list[dict] = []
    for row in rows:
        message = _wire_message(row, dialect, attachments)
        if (
            dialect.anthropic_blocks
            and row.role == "tool"
            and messages
            and messages[-1].get("_tool_results")
        ):
            messages[-1]["content"].extend(message["content"])  # one user turn for all results
            continue
        messages.append(message)
    for message in messages:
        message.pop("_tool_results", None)
    return messages


def _wire_message(row: Row, dialect: Dialect, attachments: Mapping[str, Any]) -> dict:
    content: Any = row.content
    if row.parts is not None:
        content = [_wire_part(part, dialect, attachments) for part in row.parts]
    if dialect.anthropic_blocks and row.role == "tool":
        result = {"type": "tool_result", "tool_use_id": row.tool_call_id, "content": content}
        return {"role": "user", "content": [result], "_tool_results": True}
    if dialect.anthropic_blocks and row.tool_calls:
        blocks = content if isinstance(content, list) else ([_text(content)] if content else [])
        blocks += [_tool_use(call) for call in row.tool_calls if isinstance(call, dict)]
        return {**dict(row.extra or {}), "role": row.role, "content": blocks}
    message: dict[str, Any] = {**dict(row.extra or {}), "role": row.role}
    message["content"] = None if (row.tool_calls and content == "") else content
    if row.refusal and not dialect.anthropic_blocks:
        message["refusal"] = row.refusal
    if row.tool_calls:
        message["tool_calls"] = row.tool_calls
    if row.role == "tool":
        message["tool_call_id"] = row.tool_call_id
    return message


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _tool_use(call: dict) -> dict:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = {}
    return {
        "type": "tool_use",
        "id": call.get("id", ""),
        "name": function.get("name", ""),
        "input": arguments if isinstance(arguments, dict) else {},
    }


def _wire_part(part: Any, dialect: Dialect, attachments: Mapping[str, Any]) -> Any:
    if not (isinstance(part, dict) and part.get("type") == ATTACHMENT):
        return part  # text, and parts we keep as they came (a remote image URL, say)
    attachment = attachments.get(str(part.get(ATTACHMENT)))
    if attachment is None:
        return _text("[an attachment that is no longer stored]")
    mark = _MARK.format(attachment.public_id)
    if dialect.anthropic_blocks:
        kind = "image" if attachment.is_image else "document"
        source = {"type": "base64", "media_type": attachment.media_type, "data": mark}
        return {"type": kind, "source": source}
    data_url = f"data:{attachment.media_type};base64,{mark}"
    if attachment.is_image:
        image_url = {"url": data_url}
        if isinstance(part.get("detail"), str):
            image_url["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image_url}
    return {"type": "file", "file": {"filename": attachment.filename, "file_data": data_url}}


@dataclass(frozen=True)
class Encoded:
    """A request body: the bytes to send, and the text to store with its splices."""

    wire: bytes
    stored: str
    splices: list[dict[str, Any]]


def mark_ids(text: str) -> set[str]:
    """The public ids of the attachments marked in an encoded body."""
    ids, position = set(), 0
    while (start := text.find(_ENCODED_MARK_START, position)) != -1:
        start += len(_ENCODED_MARK_START)
        position = text.find(_ENCODED_MARK_END, start)
        ids.add(text[start:position])
    return ids


def encode(text: str, attachments: Mapping[str, Any]) -> Encoded:
    """Replace each attachment mark in the encoded body `text` by its base64.

    The stored text is the wire text without the base64; each splice says at
    which offset of the stored text which attachment's base64 goes.
    """
    if _ENCODED_MARK_START not in text:
        return Encoded(wire=text.encode(), stored=text, splices=[])
    stored: list[str] = []
    wire: list[str] = []
    splices: list[dict[str, Any]] = []
    offset = position = 0
    while (start := text.find(_ENCODED_MARK_START, position)) != -1:
        end = text.find(_ENCODED_MARK_END, start + len(_ENCODED_MARK_START))
        public_id = text[start + len(_ENCODED_MARK_START) : end]
        piece = text[position:start]
        stored.append(piece)
        wire.append(piece)
        offset += len(piece)
        wire.append(base64_of(attachments[public_id]))
        splices.append({"at": offset, "attachment": public_id})
        position = end + len(_ENCODED_MARK_END)
    stored.append(text[position:])
    wire.append(text[position:])
    return Encoded(wire="".join(wire).encode(), stored="".join(stored), splices=splices)


def base64_of(attachment: Any) -> str:
    return base64.b64encode(bytes(attachment.data)).decode()


def splice_in(text: str, splices: list[dict[str, Any]], attachments: Mapping[str, Any]) -> str:
    """The body as sent: `text` with each splice's base64 put back at its offset."""

    def base64_or_nothing(attachment: Any) -> str:
        return base64_of(attachment) if attachment is not None else ""

    return _filled(text, splices, attachments, base64_or_nothing)


def shown(text: str, splices: list[dict[str, Any]], attachments: Mapping[str, Any]) -> str:
    """The body for a page: each cut-out base64 named instead of inlined."""

    def named(attachment: Any) -> str:
        name = attachment.filename if attachment is not None else "an attachment"
        size = 4 * -(-attachment.size // 3) if attachment is not None else 0
        return f"<base64 of {name}: {size:,} characters; the download has them>"

    return _filled(text, splices, attachments, named)


def _filled(
    text: str,
    splices: list[dict[str, Any]],
    attachments: Mapping[str, Any],
    fill: Callable[[Any], str],
) -> str:
    pieces, position = [], 0
    for splice in splices:
        at = splice["at"]
        pieces.append(text[position:at])
        pieces.append(fill(attachments.get(str(splice["attachment"]))))
        position = at
    pieces.append(text[position:])
    return "".join(pieces)


def projection(content: Any) -> str:
    """The text of a content (a string, or the text of its parts) for titles and Markdown."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


@dataclass(frozen=True)
class Parsed:
    """A wire message as Message fields; `files` are the files inlined in its parts,
    (part index, bytes, filename), for the caller to store and reference instead."""

    role: str
    content: str
    parts: list | None
    tool_calls: list | None
    tool_call_id: str
    refusal: str
    extra: dict
    files: list[tuple[int, bytes, str]]


def parse_message(message: dict) -> Parsed:
    """A message of a request body (typed in raw mode, or imported) as we store it.

    Only a checked subset is read (the caller made its strings storable): a role
    we know, content as a string or parts, tool calls as a list. Inline base64
    files come out as `files`; every other part is kept as it is.
    """
    content = message.get("content")
    parts = content if isinstance(content, list) else None
    files = []
    for index, part in enumerate(parts or []):
        found = _inline_file(part)
        if found is not None:
            files.append((index, *found))
    tool_calls = message.get("tool_calls")
    return Parsed(
        role=str(message.get("role")),
        content=projection(content),
        parts=list(parts) if parts is not None else None,
        tool_calls=tool_calls if isinstance(tool_calls, list) and tool_calls else None,
        tool_call_id=str(message.get("tool_call_id") or "")[:200],
        refusal=message.get("refusal") if isinstance(message.get("refusal"), str) else "",
        extra={key: value for key, value in message.items() if key not in OWN_KEYS},
        files=files,
    )


def _inline_file(part: Any) -> tuple[bytes, str] | None:
    """The bytes and a file name of a part that inlines a file as base64, else None."""
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind == "image_url" and isinstance(part.get("image_url"), dict):
        return _data_url(part["image_url"].get("url"), "image")
    if kind == "file" and isinstance(part.get("file"), dict):
        name = part["file"].get("filename")
        found = _data_url(part["file"].get("file_data"), "file")
        return (found[0], name if isinstance(name, str) and name else found[1]) if found else None
    if kind in ("image", "document") and isinstance(part.get("source"), dict):
        source = part["source"]
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            data = _base64(source["data"])
            return (data, kind) if data is not None else None
    return None


def _data_url(url: Any, name: str) -> tuple[bytes, str] | None:
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    if not header.endswith(";base64"):
        return None
    decoded = _base64(data)
    return (decoded, name) if decoded is not None else None


def _base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def with_attachment(part: Any, public_id: str) -> dict:
    """The part that references a stored attachment in place of an inlined file."""
    reference = {"type": ATTACHMENT, ATTACHMENT: public_id}
    image_url = part.get("image_url") if isinstance(part, dict) else None
    if isinstance(image_url, dict) and isinstance(image_url.get("detail"), str):
        reference["detail"] = image_url["detail"]
    return reference
