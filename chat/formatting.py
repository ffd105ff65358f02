"""Stored text made readable, within limits: indented JSON, or the text as received.

Formatting must never cost much more than the text itself. Indenting JSON repeats
its depth on every line (18 KB nested 9,000 deep become 162 MB), so the depth is
checked before anything is indented, without recursion, and the indented text is
built only up to a size. Past either limit the exact text is shown, escaped, with
a note saying why; the owner's download links still give it byte for byte.
"""

import json
from typing import Any

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .client import storable


def too_deep(limit: int) -> str:
    return f"too deep to format (more than {limit:,} levels)"


def too_large(limit: int) -> str:
    return f"too large to format (more than {limit:,} characters)"


def as_received(text: str, reason: str) -> SafeString:
    """`text` exactly, escaped, under a note saying why it is not formatted."""
    return format_html(
        '<p class="format-note">Shown as received: {}.</p><pre class="as-received">{}</pre>',
        reason,
        text,
    )


def format_json(value: str | dict | list | None) -> SafeString:
    """JSON text (or a decoded value) indented for reading, in a <pre>.

    Text that is not JSON is shown unchanged; JSON deeper than MAX_FORMAT_DEPTH,
    or larger than MAX_FORMAT_CHARS before or after indenting, as received.
    """
    limit, depth_limit = settings.MAX_FORMAT_CHARS, settings.MAX_FORMAT_DEPTH
    if isinstance(value, str) or value is None:
        text = value or ""
        if len(text) > limit:
            return as_received(text, too_large(limit))
        try:
            value = json.loads(text)
        except RecursionError:  # nested deeper than the parser goes
            return as_received(text, too_deep(depth_limit))
        except ValueError:
            return format_html('<pre class="json">{}</pre>', text)
    else:
        text = None  # the received text of a decoded value is its compact form
    if nests_deeper_than(value, depth_limit):
        return as_received(_compact(value) if text is None else text, too_deep(depth_limit))
    indented = _indented(value, limit)
    if indented is None:
        return as_received(_compact(value) if text is None else text, too_large(limit))
    # Decoding turns a raw body's "\ud800" escape into a lone surrogate the page cannot
    # encode (h/client's storable; restored when merging h/render's formatted_json).
    return format_html('<pre class="json">{}</pre>', storable(indented))


def fits(text: str) -> bool:
    """Whether JSON text is within the limits for laying it out (indenting, or as code)."""
    if len(text) > settings.MAX_FORMAT_CHARS:
        return False
    try:
        return not nests_deeper_than(json.loads(text), settings.MAX_FORMAT_DEPTH)
    except (RecursionError, ValueError):
        return False


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in `value` nest more than `limit` levels (a loop, not
    recursion: the value may be nested deeper than Python's stack)."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _indented(value: Any, limit: int) -> str | None:
    """`value` indented by two spaces; None once that passes `limit` characters."""
    parts, size = [], 0
    for part in json.JSONEncoder(indent=2, ensure_ascii=False).iterencode(value):
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return "".join(parts)


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:  # deeper than the encoder goes: nothing to show but the note
        return ""
