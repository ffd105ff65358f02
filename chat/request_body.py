"""The request body a reply is asked with, from its conversation and parameters."""

import json
from dataclasses import dataclass
from typing import Any

from django.db import connection

from . import catalogue, client, storable, wire
from .models import Attachment, Conversation, Message, PanelParameters

# The role and content of the messages from the root to a leaf, walked up the
# parent links in the database. Failed and unfinished replies have no text worth
# sending back to the model.
_PATH_CONTEXT_SQL = """
WITH RECURSIVE path (id, depth) AS (
    SELECT id, 0 FROM chat_message WHERE id = %s AND conversation_id = %s
    UNION ALL
    SELECT parent.parent_id, path.depth + 1
    FROM chat_message parent JOIN path ON parent.id = path.id
    WHERE parent.parent_id IS NOT NULL
)
SELECT message.role, message.content, message.parts, message.tool_calls,
    message.tool_call_id, message.refusal, message.extra
FROM chat_message message JOIN path ON message.id = path.id
WHERE message.status NOT IN (%s, %s)
ORDER BY path.depth DESC
"""


def _path_context(conversation: Conversation, leaf_id: int | None) -> list[wire.Row]:
    """The conversation up to `leaf_id`, as what each message sends.

    One recursive query, in SQL because the ORM has no recursive queries: it
    runs before every call, and message_path's two ORM queries took 1.0 ms
    here against 0.05 ms for this one (docs/performance.md).
    """
    if leaf_id is None:
        return []
    unusable = [Message.Status.FAILED.value, Message.Status.PENDING.value]
    with connection.cursor() as cursor:
        cursor.execute(_PATH_CONTEXT_SQL, [leaf_id, conversation.pk, *unusable])
        return [
            wire.Row(
                role=role,
                content=content,
                parts=_json(parts),
                tool_calls=_json(tool_calls),
                tool_call_id=tool_call_id,
                refusal=refusal,
                extra=_json(extra),
            )
            for role, content, parts, tool_calls, tool_call_id, refusal, extra in cursor.fetchall()
        ]


def _json(value: Any) -> Any:
    """A JSON column as a raw query returns it: text on both databases (Django's loaders)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def attachments_by_id(
    *, owner_id: int, ids: set[str], with_data: bool = False
) -> dict[str, Attachment]:
    """The owner's attachments among `ids`, by public id (no query for none); their bytes
    only `with_data` (a request body is shaped without them, and filled in once)."""
    ids = {value for value in ids if wire.is_attachment_id(value)}
    if not ids:
        return {}
    found = Attachment.objects.filter(owner_id=owner_id, public_id__in=ids)
    found = found if with_data else found.defer("data")
    return {str(attachment.public_id): attachment for attachment in found}


@dataclass(frozen=True)
class ChatRequest:
    """A request body: parsed (for its model and stream flag) and as the text to send.

    The text is the user's own for a raw body, byte for byte, else our encoding of
    `payload`; attachments are marks in it until `generation._call_record` puts them in.
    """

    payload: dict[str, Any]
    text: str
    raw: bool = False  # the user's own text: sent as it is, never searched for marks

    @classmethod
    def of(cls, payload: dict[str, Any]) -> "ChatRequest":
        return cls(payload=payload, text=client.encode_body(payload).decode())

    @property
    def streamed(self) -> bool:
        return self.payload.get("stream") is True


def build_payload(
    *, conversation: Conversation, leaf_id: int | None, parameters: PanelParameters | None = None
) -> dict[str, Any]:
    """The request body: only what the user set, extra parameters merged last.

    The parameters are the conversation's unless a parameter set (a compare
    column) is given.
    """
    parameters = conversation if parameters is None else parameters
    dialect = wire.dialect_for(catalogue.schema_for(parameters.model))
    rows = _path_context(conversation, leaf_id)
    ids = wire.attachment_ids(rows)
    attachments = attachments_by_id(owner_id=conversation.owner_id, ids=ids)
    payload: dict[str, Any] = {"model": parameters.model}
    messages = wire.to_wire(rows, dialect, attachments)
    extra = dict(parameters.extra_params)
    if parameters.system_prompt:
        # Where the model's schema puts it, never in both places.
        if dialect.system_field:
            payload["system"] = parameters.system_prompt
            extra.pop("system", None)
        else:
            messages.insert(0, {"role": "system", "content": parameters.system_prompt})
    payload["messages"] = messages
    for name in ("temperature", "top_p", "max_tokens"):
        value = getattr(parameters, name)
        if value is not None:
            payload[name] = value
    if parameters.stop:
        payload["stop"] = parameters.stop
    payload.update(extra)
    return payload


def request_for(reply: Message) -> ChatRequest:
    """A reply is asked with the user's raw body when they wrote one (raw request mode),
    else with its compare column's parameters, else the conversation's."""
    parent = reply.parent
    if parent is not None and parent.raw_body:
        return ChatRequest(payload=json.loads(parent.raw_body), text=parent.raw_body, raw=True)
    return ChatRequest.of(
        build_payload(
            conversation=reply.conversation,
            leaf_id=reply.parent_id,
            parameters=reply.compare_column,
        )
    )


def response_format(payload: dict[str, Any]) -> dict | None:
    value = payload.get("response_format")
    return storable.json_value(value) if isinstance(value, dict) else None
