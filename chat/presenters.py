"""What a message shows beyond its text: parts and files, tool calls, choices.

Computed here, in Python, for the templates (which only loop and print): the
conversation page, a message fragment, compare columns and share pages all
present a message through `messages_present`.
"""

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from . import formatting, logprobs, structured_output, wire
from .models import Attachment

MAX_PART_CHARS = 4_000  # a part we do not know, shown as its JSON up to this
MAX_ANNOTATIONS_SHOWN = 50


@dataclass(frozen=True)
class ShownPart:
    """One content part as the page shows it."""

    kind: str  # text, image, file, remote, other
    text: str = ""
    url: str = ""
    name: str = ""
    detail: str = ""  # type, size and pixel dimensions, for the caption
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ToolCard:
    """A tool call of an assistant message: its name, arguments laid out, and id."""

    call_id: str
    name: str
    arguments: str
    arguments_valid: bool


def messages_present(
    messages: list[Any],
    *,
    attachments: Mapping[str, Any] | None = None,
    url_for: Callable[[Any], str] | None = None,
) -> None:
    """Give each message `.shown_parts` (None for plain text), `.tool_cards`, `.annotations`
    (each as JSON text),
    `.choice_label`, `.logprob_tokens` (its token view, when it has logprobs) and
    `.structured_check` (a reply checked against its call's response_format).

    `attachments` maps public id to an attachment (looked up here, in one query,
    when not given); `url_for(attachment)` is where the page loads its bytes: the
    owner's file URL unless given (a share page serves its snapshot's copies).
    """
    url_for = url_for or owner_file_url
    if attachments is None:
        # Only the files of these messages' owner: a part names an id, and a raw body
        # could name anyone's.
        ids = wire.attachment_ids(messages)
        conversations = {message.conversation_id for message in messages}
        found = (
            Attachment.objects.filter(
                public_id__in=ids, owner__conversations__in=conversations
            ).defer("data")
            if ids
            else []
        )
        attachments = {str(attachment.public_id): attachment for attachment in found}
    for message in messages:
        message.shown_parts = (
            [_shown(part, attachments, url_for) for part in message.parts]
            if message.parts is not None
            else None
        )
        message.tool_cards = tool_cards_of(message)
        message.choice_label = (
            f"Choice {message.choice_index + 1}" if message.choice_index is not None else ""
        )
        message.logprob_tokens = logprobs.tokens(message.logprobs) if message.logprobs else None
        annotations = (message.extra or {}).get("annotations")
        message.annotations = (
            [_json(item) for item in annotations[:MAX_ANNOTATIONS_SHOWN]]
            if isinstance(annotations, list)
            else []
        )
        message.structured_check = _structured_check(message)


def owner_file_url(attachment: Any) -> str:
    return reverse("attachment_file", args=[attachment.public_id])


def _structured_check(message: Any) -> "structured_output.Check | None":
    """A finished reply checked against the response_format its call asked for."""
    call = getattr(message, "last_call", None)
    if message.status == "pending" or call is None or not call.response_format:
        return None
    return structured_output.check(response_format=call.response_format, content=message.content)


def _shown(part: Any, attachments: Mapping[str, Any], url_for: Callable[[Any], str]) -> ShownPart:
    if not isinstance(part, dict):
        return ShownPart(kind="other", text=_json(part))
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return ShownPart(kind="text", text=part["text"])
    if kind == wire.ATTACHMENT:
        attachment = attachments.get(str(part.get(wire.ATTACHMENT)))
        if attachment is None:
            return ShownPart(kind="other", text="An attachment that is no longer stored.")
        size = [attachment.media_type, str(filesizeformat(attachment.size))]
        if attachment.width and attachment.height:
            size.append(f"{attachment.width}×{attachment.height}")
        return ShownPart(
            kind="image" if attachment.is_image else "file",
            url=url_for(attachment),
            name=attachment.filename,
            detail=", ".join(size),
            width=attachment.width,
            height=attachment.height,
        )
    if kind == "image_url" and isinstance(part.get("image_url"), dict):
        url = part["image_url"].get("url")
        if isinstance(url, str) and not url.startswith("data:"):
            # Never loaded by the page: the reader's browser would call a stranger's server.
            return ShownPart(kind="remote", text=url[:2000], name="A remote image, not loaded")
    return ShownPart(kind="other", text=_json(part))


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    if len(text) > MAX_PART_CHARS:
        return text[:MAX_PART_CHARS] + "\n… (cut here; the call record has all of it)"
    return text


def tool_cards_of(message: Any) -> list[ToolCard]:
    return [_card(call) for call in message.tool_calls or []]


def _card(call: Any) -> ToolCard:
    if not isinstance(call, dict):
        return ToolCard(call_id="", name="?", arguments=_json(call), arguments_valid=False)
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    arguments = function.get("arguments")
    arguments = arguments if isinstance(arguments, str) else _json(arguments)
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
        valid = True
    except ValueError:
        parsed, valid = None, False
    shown = (
        json.dumps(parsed, ensure_ascii=False, indent=2)
        if valid and formatting.fits(arguments)
        else arguments
    )
    return ToolCard(
        call_id=str(call.get("id") or ""),
        name=str(function.get("name") or "?"),
        arguments=shown,
        arguments_valid=valid,
    )
