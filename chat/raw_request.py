"""Raw request mode: the whole JSON body of the next request, written by the user.

The body is sent byte for byte as typed, streamed when it says "stream": true.
Its messages after those the conversation already has become the new messages
on screen (a body that rewrites earlier ones starts a branch where it departs).
What can be mapped back to the parameter panel is: model, temperature, top_p,
max_tokens, stop as the common fields, the system message as the system prompt,
every other key (except messages) as extra parameters.
"""

import json
from typing import Any

from django import forms
from django.conf import settings

from . import limits, wire
from .schema_form import MAX_JSON_DEPTH, parse_json

MAX_RAW_BYTES = 512 * 1024


def parse(text: str) -> dict[str, Any]:
    """The body as a dict, or a ValidationError that says what is wrong with it."""
    # The messages array nests a few levels below the parameters.
    body = parse_json(
        text, name="The raw body", max_bytes=MAX_RAW_BYTES, max_depth=MAX_JSON_DEPTH + 4
    )
    if not isinstance(body, dict):
        raise forms.ValidationError("The raw body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"].strip():
        raise forms.ValidationError('The raw body needs a "model" string.')
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise forms.ValidationError('The raw body needs a non-empty "messages" array.')
    if len(messages) > settings.MAX_MESSAGES_PER_CONVERSATION:
        raise forms.ValidationError(
            f"The raw body has {len(messages):,} messages; a conversation holds at most "
            f"{settings.MAX_MESSAGES_PER_CONVERSATION:,}."
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in wire.ALL_ROLES:
            raise forms.ValidationError(
                f"messages[{index}] must be an object whose role is one of "
                f"{', '.join(wire.ALL_ROLES)}."
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise forms.ValidationError(
                f"messages[{index}].content must be a string, a list of parts or null."
            )
        for position, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == wire.ATTACHMENT:
                raise forms.ValidationError(
                    f'messages[{index}].content[{position}]: "attachment" parts are how the '
                    "app refers to its stored files; attach the file, or inline it as a data "
                    "URL (image_url or file)."
                )
        if len(wire.projection(content)) > settings.MAX_MESSAGE_CHARS:
            raise forms.ValidationError(
                f"messages[{index}] is longer than {settings.MAX_MESSAGE_CHARS:,} characters."
            )
    problems = limits.output_caps_problems(model=body["model"].strip(), values=body)
    if problems:
        raise forms.ValidationError(list(problems.values()))
    return body


def new_messages(body: dict[str, Any], path: list[Any]) -> tuple[int, list[dict]]:
    """How many of the conversation's messages on screen (`path`, root first) the
    body repeats, and the body's messages after them: the new ones.

    A leading system message is the system prompt (the panel's), not a message.
    When the body repeats them all, at least its last message is new: sending a
    body twice adds its last message twice, as sending a message twice would.
    """
    messages = list(body["messages"])
    if (
        messages
        and messages[0].get("role") == "system"
        and isinstance(messages[0].get("content"), str)
    ):
        messages = messages[1:]
    common = 0
    for message, existing in zip(messages, path, strict=False):
        if not _same(message, existing):
            break
        common += 1
    if common == len(messages):
        common -= 1
    return common, messages[common:]


def _same(message: dict[str, Any], existing: Any) -> bool:
    return (
        message.get("role") == existing.role
        and wire.projection(message.get("content")) == existing.content
        and (message.get("tool_calls") or None) == (existing.tool_calls or None)
        and str(message.get("tool_call_id") or "") == existing.tool_call_id
    )


def to_parameters(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The panel's values for a raw body: what maps, mapped; the rest as extra parameters."""
    mapped = dict(current)
    mapped["model"] = body["model"].strip()[:200]
    system = [
        m.get("content")
        for m in body["messages"]
        if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str)
    ]
    mapped["system_prompt"] = system[0] if system else ""
    mapped["temperature"] = _number(body.get("temperature"), low=0)
    mapped["top_p"] = _number(body.get("top_p"), low=0, high=1)
    max_tokens = body.get("max_tokens")
    mapped["max_tokens"] = (
        max_tokens
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
        else None
    )
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    mapped["stop"] = (
        stop if isinstance(stop, list) and all(isinstance(s, str) for s in stop) else []
    )
    unmapped = {
        key: value
        for key, value in body.items()
        if key not in {"model", "messages", "stream"}
        and not (
            key in {"temperature", "top_p", "max_tokens", "stop"}
            and mapped.get(key) not in (None, [])
        )
    }
    mapped["extra_params"] = unmapped
    return mapped


def preview(payload: dict[str, Any]) -> str:
    """The body the form would send, with an empty user message to write in."""
    body = {**payload, "messages": [*payload["messages"], {"role": "user", "content": ""}]}
    return json.dumps(body, indent=2, ensure_ascii=False)


def _number(value: Any, *, low: float, high: float | None = None) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if value < low or (high is not None and value > high):
        return None
    return float(value)
