"""Conversations and their message tree, and drafts of the messages the user adds to it.

Nothing here calls the upstream: chat/generation.py starts and runs replies.
"""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from . import attachments, storable, wire
from .models import Attachment, Conversation, Message, PanelParameters

# Everything the parameter panel holds, as stored on a conversation, compare column or preset.
PANEL_FIELDS = PanelParameters.field_names()


def conversation_create(*, owner: Any) -> Conversation:
    """A new conversation, starting from the owner's most recent settings."""
    previous = Conversation.objects.filter(owner=owner).order_by("-updated").first()
    conversation = Conversation(owner=owner, model=settings.DEFAULT_MODEL)
    if previous is not None:
        parameters_copy(source=previous, target=conversation)
    conversation.save()
    return conversation


def parameters_copy(*, source: PanelParameters, target: PanelParameters) -> None:
    """The panel's values (model, system prompt, parameters) from one holder to another."""
    for name in PANEL_FIELDS:
        setattr(target, name, getattr(source, name))


def conversation_rename(*, conversation: Conversation, title: str) -> None:
    conversation.title = title
    conversation.save(update_fields=["title", "updated"])


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


def conversation_update_parameters(*, conversation: Conversation, parameters: dict) -> None:
    """Save the parameter panel with the conversation (keys: ParametersForm's fields)."""
    parameters_set(target=conversation, parameters=parameters)
    conversation.save()


def parameters_set(*, target: PanelParameters, parameters: dict) -> None:
    """The panel's values from its cleaned data onto `target`, unsaved (fields: PANEL_FIELDS)."""
    for name in PANEL_FIELDS:
        setattr(target, name, parameters[name])


def conversation_path(*, conversation: Conversation) -> list[Message]:
    """The messages on screen: from the root to the current leaf."""
    return message_path(conversation=conversation, leaf_id=conversation.current_leaf_id)


def conversation_window(*, conversation: Conversation, size: int) -> tuple[list[Message], int]:
    """The last `size` messages on screen, and how many earlier ones are left out."""
    ids = _path_ids(conversation, conversation.current_leaf_id)
    hidden = max(0, len(ids) - size)
    return _messages_in_order(ids[hidden:]), hidden


def message_path(*, conversation: Conversation, leaf_id: int | None) -> list[Message]:
    """The messages from the root to `leaf_id`."""
    return _messages_in_order(_path_ids(conversation, leaf_id))


def _path_ids(conversation: Conversation, leaf_id: int | None) -> list[int]:
    """The ids from the root to `leaf_id`, walked over (id, parent) pairs only."""
    parents = dict(conversation.messages.values_list("id", "parent_id"))
    path = []
    node = leaf_id if leaf_id in parents else None
    while node is not None:
        path.append(node)
        node = parents.get(node)
    path.reverse()
    return path


def _messages_in_order(ids: list[int]) -> list[Message]:
    by_id = Message.objects.in_bulk(ids)
    return [by_id[message_id] for message_id in ids]


def messages_check_room(*, conversation: Conversation, adding: int) -> None:
    if conversation.messages.count() + adding > settings.MAX_MESSAGES_PER_CONVERSATION:
        raise ValidationError(
            f"This conversation has reached {settings.MAX_MESSAGES_PER_CONVERSATION:,} "
            "messages. Start a new conversation to go on."
        )


def title_from(content: str) -> str:
    first_line = content.strip().splitlines()[0]
    return first_line[:60] + ("…" if len(first_line) > 60 else "")


@dataclass(frozen=True)
class Draft:
    """A message written by the user, of any role, to be added to the tree.

    `parts` is the API's content as a list of parts (attachments referenced by
    id, chat/wire.py), or None for plain text.
    """

    content: str = ""
    role: str = Message.Role.USER
    parts: list | None = None
    attachments: tuple[Attachment, ...] = ()
    tool_calls: list | None = None
    tool_call_id: str = ""
    refusal: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def with_files(cls, *, content: str, role: str, attachments: list[Attachment]) -> "Draft":
        """The typed text, then each attached file as its own part."""
        if not attachments:
            return cls(content=content, role=role)
        parts = ([{"type": "text", "text": content}] if content else []) + [
            {"type": wire.ATTACHMENT, wire.ATTACHMENT: str(attachment.public_id)}
            for attachment in attachments
        ]
        return cls(content=content, role=role, parts=parts, attachments=tuple(attachments))


def draft_from_form(*, owner: Any, content: str, role: str, files: list) -> Draft:
    """The chat form's message: its text, and its files (checked by the form) stored once."""
    stored = [
        attachments.attachment_store(owner=owner, filename=name, data=data, sniffed=sniffed)
        for name, data, sniffed in files
    ]
    return Draft.with_files(content=content, role=role, attachments=stored)


def draft_from_wire(*, owner: Any, message: dict) -> Draft:
    """A message as the API carries it (a raw body's, an import's), files inlined in its
    parts stored as attachments (once) and referenced instead; a part whose file we
    do not take (another type, over the size limit) is kept as it is."""
    parsed = wire.parse_message(storable.json_value(message))
    parts = parsed.parts
    stored = []
    for index, data, name in parsed.files:
        sniffed = attachments.sniff(data)
        if sniffed is None or len(data) > settings.MAX_ATTACHMENT_BYTES:
            continue
        filename = name if "." in name else f"{name}.{sniffed.media_type.split('/')[-1]}"
        attachment = attachments.attachment_store(
            owner=owner, filename=filename, data=data, sniffed=sniffed
        )
        parts[index] = wire.with_attachment(parts[index], str(attachment.public_id))
        stored.append(attachment)
    return Draft(
        content=parsed.content,
        role=parsed.role,
        parts=parts,
        attachments=tuple(stored),
        tool_calls=parsed.tool_calls,
        tool_call_id=parsed.tool_call_id,
        refusal=parsed.refusal,
        extra=parsed.extra,
    )
