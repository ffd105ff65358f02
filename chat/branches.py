"""Branches of a conversation's message tree: regenerate, edit, switch, delete.

Nothing here overwrites a message. Regenerating adds a sibling reply, editing
adds a sibling user message with its own reply, and the conversation's
current_leaf says which branch is on screen. Siblings are ordered by
(created, id), the order the "2 / 3" controls count in.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from . import conversations, generation
from .models import Conversation, Message

REGENERATE_KEY_PREFIX = "r:"


@dataclass(frozen=True)
class BranchPosition:
    """Where a message stands among its siblings (1-based), with its neighbours."""

    index: int
    count: int
    previous: Message | None
    next: Message | None


# --- Reading the tree --------------------------------------------------------


def branches_attach(*, conversation: Conversation, messages: list[Message]) -> None:
    """Give each message `.branch`: a BranchPosition, or None when it has no siblings.

    One query for all the messages' siblings.
    """
    parent_ids = {message.parent_id for message in messages}
    has_root = None in parent_ids
    query = Q(parent_id__in=parent_ids - {None})
    if has_root:
        query |= Q(parent__isnull=True)
    siblings = defaultdict(list)
    for sibling in conversation.messages.filter(query).only("id", "public_id", "parent_id"):
        siblings[sibling.parent_id].append(sibling)
    for message in messages:
        group = siblings.get(message.parent_id, [])
        ids = [sibling.id for sibling in group]
        if len(group) < 2 or message.id not in ids:
            message.branch = None
            continue
        at = ids.index(message.id)
        message.branch = BranchPosition(
            index=at + 1,
            count=len(group),
            previous=group[at - 1] if at > 0 else None,
            next=group[at + 1] if at + 1 < len(group) else None,
        )


def tree_children(*, conversation: Conversation) -> dict[int | None, list[Message]]:
    """Every message of the conversation by its parent's id (None: the roots), in order."""
    children: dict[int | None, list[Message]] = defaultdict(list)
    for message in conversation.messages.all():
        children[message.parent_id].append(message)
    return children


def subtree(children: dict[int | None, list[Message]], root: Message) -> list[Message]:
    """`root` and everything below it."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(children.get(node.id, []))
    return found


def newest_leaf(children: dict[int | None, list[Message]], root: Message) -> Message:
    """The most recently created leaf under `root` (the branch last added to there)."""
    leaves = [node for node in subtree(children, root) if not children.get(node.id)]
    return max(leaves, key=lambda node: (node.created, node.id))


# --- Changing what is on screen ---------------------------------------------


def branch_switch(*, conversation: Conversation, message: Message) -> Message:
    """Show the branch through `message`: its newest leaf becomes the current leaf."""
    leaf = newest_leaf(tree_children(conversation=conversation), message)
    conversation.current_leaf = leaf
    conversation.save(update_fields=["current_leaf", "updated"])
    return leaf


def branch_delete(*, conversation: Conversation, message: Message) -> None:
    """Delete `message` and everything below it, nothing else.

    When the branch on screen goes, the nearest sibling's branch is shown (the
    one before it, else the one after), or the parent when it had none.
    """
    children = tree_children(conversation=conversation)
    doomed_nodes = subtree(children, message)
    if any(node.status == Message.Status.PENDING for node in doomed_nodes):
        # Its generation is still writing to it; let it end (or Stop it) first.
        raise ValidationError("A reply in this branch is still being generated.")
    doomed = {node.id for node in doomed_nodes}
    with transaction.atomic():
        if conversation.current_leaf_id in doomed or conversation.current_leaf_id is None:
            conversation.current_leaf = _leaf_after_delete(children, message)
            conversation.save(update_fields=["current_leaf", "updated"])
        Message.objects.filter(pk=message.pk).delete()  # the subtree goes by cascade


def _leaf_after_delete(
    children: dict[int | None, list[Message]], message: Message
) -> Message | None:
    siblings = [node for node in children.get(message.parent_id, []) if node.id != message.id]
    before = [node for node in siblings if (node.created, node.id) < (message.created, message.id)]
    nearest = before[-1] if before else (siblings[0] if siblings else None)
    if nearest is not None:
        return newest_leaf(children, nearest)
    return message.parent


# --- New branches ------------------------------------------------------------


def reply_regenerate(
    *, conversation: Conversation, reply: Message, idempotency_key: str, parameters: dict
) -> Message:
    """A new reply beside `reply` (the form path); returns it, complete or failed."""
    new_reply, created = reply_regenerate_start(
        conversation=conversation,
        reply=reply,
        idempotency_key=idempotency_key,
        parameters=parameters,
    )
    if created:
        generation.reply_generate(reply=new_reply)
    return new_reply


def reply_regenerate_start(
    *, conversation: Conversation, reply: Message, idempotency_key: str, parameters: dict
) -> tuple[Message, bool]:
    """Save the panel's parameters and a pending sibling of `reply`, before any call.

    The earlier reply stays. Returns (new reply, created); created is False when
    this idempotency key already regenerated, and the reply is that one.
    """
    if reply.role != Message.Role.ASSISTANT or reply.status == Message.Status.PENDING:
        raise ValidationError("Only a finished reply can be regenerated.")
    # Regenerate posts the chat form's token; stored as it is, it would block the Send that
    # reuses it when a regeneration's stream broke before the page got a fresh one.
    idempotency_key = REGENERATE_KEY_PREFIX + idempotency_key

    def insert() -> Message:
        new_reply = generation.reply_placeholder(
            conversation=conversation, parent=reply.parent, idempotency_key=idempotency_key
        )
        generation.generation_commit(
            conversation=conversation, leaf=new_reply, parameters=parameters
        )
        return new_reply

    return generation.start_once(
        insert,
        existing=lambda: _regenerated_for_key(conversation, idempotency_key),
        conversation=conversation,
        idempotency_key=idempotency_key,
    )


def _regenerated_for_key(conversation: Conversation, idempotency_key: str) -> Message | None:
    return conversation.messages.filter(
        idempotency_key=idempotency_key, role=Message.Role.ASSISTANT
    ).first()


def message_edit(
    *, conversation: Conversation, original: Message, content: str, idempotency_key: str
) -> Message:
    """Edit a message as a new branch (the form path); returns the reply, or the edited
    copy when nothing is asked of the model (an assistant message)."""
    message, created = message_edit_start(
        conversation=conversation,
        original=original,
        content=content,
        idempotency_key=idempotency_key,
    )
    if created and message.status == Message.Status.PENDING:
        generation.reply_generate(reply=message)
    return message


def message_edit_start(
    *, conversation: Conversation, original: Message, content: str, idempotency_key: str
) -> tuple[Message, bool]:
    """A sibling of `original` with the new text; its pending reply unless it is an
    assistant message (what the model should have said: the user goes on from it).

    Any message can be edited, a generated reply too. The original and everything
    after it stay, one branch control away. Files, tool calls and the tool-call id
    are kept; the text replaces the text. The reply uses the saved parameters.
    """
    if original.status == Message.Status.PENDING:
        raise ValidationError("A reply that is still being generated cannot be edited.")
    parts = None
    if original.parts is not None:
        kept = [part for part in original.parts if not (isinstance(part, dict) and "text" in part)]
        parts = ([{"type": "text", "text": content}] if content else []) + kept
    draft = conversations.Draft(
        content=content,
        role=original.role,
        parts=parts,
        attachments=tuple(original.attachments.all()) if parts is not None else (),
        tool_calls=original.tool_calls,
        tool_call_id=original.tool_call_id,
        extra=original.extra,
    )
    return generation.exchange_start(
        conversation=conversation,
        parent_id=original.parent_id,
        drafts=[draft],
        idempotency_key=idempotency_key,
        parameters=None,
        generate=original.role != Message.Role.ASSISTANT,
    )
