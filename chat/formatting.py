"""Stored calls shown on a page: the exact text first, and a formatted view beside it.

A call's record shows each body exactly as sent or received (`raw_text`, through
`shown_exact`); indented JSON is a second view, labelled as not the bytes
(`formatted_body`), so what is read as "the request" is never a re-encoding of it.

Formatting must never cost much more than the text itself. Indenting JSON repeats
its depth on every line (18 KB nested 9,000 deep become 162 MB), so the depth is
checked before anything is indented, without recursion, and the indented text is
built only up to a size. Past either limit there is no formatted view, only a note
saying why (the exact text is beside it); the owner's download links still give it
byte for byte.

A page shows at most MAX_SHOWN_CHARS of one stored body (as received, or the stream's
events): a reply may be megabytes (up to UPSTREAM_MAX_REPLY_BYTES), and a page of it
costs the worker tens of times its size. Past that bound the page shows the first part
and a note saying how much there is and where the whole of it is.
"""

import json
from typing import Any

from django.conf import settings
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from . import storable


class Head(str):
    """The first part of a stored text too long to load for a page, knowing the whole
    text's length (`total`)."""

    total: int

    def __new__(cls, text: str, total: int) -> "Head":
        head = super().__new__(cls, text)
        head.total = total
        return head


class EventsHead(list):
    """The first of a stream's events, knowing how many there are (`total`)."""

    def __init__(self, events: list[dict], total: int) -> None:
        super().__init__(events)
        self.total = total


def total_length(value: str | list) -> int:
    """The whole length of a stored text or event list, also when only its head is loaded."""
    return getattr(value, "total", len(value))


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


def shown_note(shown: int, total: int, unit: str, download_url: str) -> SafeString:
    """The note under a stored body cut at MAX_SHOWN_CHARS: how much is shown, and where
    the rest is (the owner's download link; a share page has none)."""
    if download_url:
        where = format_html('<a href="{}" download>Download the whole body</a>.', download_url)
    else:
        where = "The whole of it is in the owner's record."
    return format_html(
        '<p class="format-note shown-note">Showing the first {} of {} {}. {}</p>',
        f"{shown:,}",
        f"{total:,}",
        unit,
        where,
    )


def shown_exact(text: str, limit: int) -> SafeString:
    """What a page shows of a stored body as its exact text: the first `limit`
    characters, escaped.

    The one place that decides it, for every page that shows a call (the
    inspector, the call page, share pages), so that a change to what is shown
    (say, long runs cut out and named in their place) is made once."""
    return escape(text[:limit])


def raw_text(
    text: str | None, download_url: str = "", css_class: str = "raw", total: int | None = None
) -> SafeString:
    """Stored text exactly, escaped, in a <pre>, up to MAX_SHOWN_CHARS (then a note).

    `total` is the whole text's length when `text` is already only its beginning."""
    text, limit = text or "", settings.MAX_SHOWN_CHARS
    total = total_length(text) if total is None else total
    pre = format_html('<pre class="{}">{}</pre>', css_class, shown_exact(text, limit))
    if total <= limit:
        return pre
    return pre + shown_note(limit, total, "characters", download_url)


def _shown_unindented(
    text: str, reason: str, download_url: str, total: int | None = None
) -> SafeString:
    note = format_html('<p class="format-note">Shown unindented: {}.</p>', reason)
    return note + raw_text(text, download_url, "unindented", total)


NOT_JSON = "not JSON"


def _indented_text(text: str) -> tuple[str | None, str]:
    """JSON text indented for reading, or None and the reason it is not."""
    limit, depth_limit = settings.MAX_FORMAT_CHARS, settings.MAX_FORMAT_DEPTH
    if total_length(text) > limit:
        return None, too_large(limit)
    try:
        value = json.loads(text)
    except RecursionError:  # nested deeper than the parser goes
        return None, too_deep(depth_limit)
    except ValueError:
        return None, NOT_JSON
    if nests_deeper_than(value, depth_limit):
        return None, too_deep(depth_limit)
    indented = _indented(value, limit)
    return indented, "" if indented is not None else too_large(limit)


EMPTY_BODY_NOTE = mark_safe('<p class="format-note">No formatted view: the body is empty.</p>')


def formatted_body(text: str | None) -> SafeString:
    """The formatted view of a body shown exactly beside it: the JSON indented, in a
    <pre>, or a note saying why there is none (not JSON, or past MAX_FORMAT_CHARS or
    MAX_FORMAT_DEPTH); the exact text is never repeated here."""
    if not text:
        return EMPTY_BODY_NOTE
    indented, reason = _indented_text(text)
    if indented is None:
        return format_html('<p class="format-note">No formatted view: {}.</p>', reason)
    return format_html('<pre class="json">{}</pre>', indented)


def format_json(value: str | dict | list | None, download_url: str = "") -> SafeString:
    """A value the app built (a streamed call's assembled response), indented, in a <pre>.

    Text that is not JSON is shown unchanged; JSON deeper than MAX_FORMAT_DEPTH, or
    larger than MAX_FORMAT_CHARS before or after indenting, unindented, since this is
    its only view. Text shown unindented stops at MAX_SHOWN_CHARS, with a note (and
    `download_url`, for the rest).
    """
    if isinstance(value, str) or value is None:
        text = value or ""
        indented, reason = _indented_text(text)
        if indented is not None:
            return format_html('<pre class="json">{}</pre>', indented)
        if reason == NOT_JSON:
            return raw_text(text, download_url, "json")
        return _shown_unindented(text, reason, download_url)
    limit, depth_limit = settings.MAX_FORMAT_CHARS, settings.MAX_FORMAT_DEPTH
    if nests_deeper_than(value, depth_limit):
        reason = too_deep(depth_limit)
    else:
        indented = _indented(value, limit)
        if indented is not None:
            return format_html('<pre class="json">{}</pre>', indented)
        reason = too_large(limit)
    head, total = _compact(value, settings.MAX_SHOWN_CHARS)
    return _shown_unindented(head, reason, download_url, total)


def stream_event_rows(events: list[dict], download_url: str = "") -> SafeString:
    """The inspector's rows for a streamed call's server-sent events, escaped, while
    their data adds up to MAX_SHOWN_CHARS (the event that passes it is cut), then a
    row with the note.

    Built here rather than by a {% for %} loop: the template engine's work per
    variable made that loop nearly half of rendering a finished reply (1.2 of
    2.7 ms for a short reply's 58 events), and every stream ends with that render.
    Django's format_html_join would do the same at three times the cost (0.8 ms
    against 0.26 ms), so each event's data is escaped here instead.
    """
    rows, budget, partial = [], settings.MAX_SHOWN_CHARS, False
    for event in events:
        if budget <= 0:
            break
        data = event["data"]
        if len(data) > budget:
            data, partial = data[:budget], True
        budget -= len(data)
        at = int(event["at_ms"])
        rows.append(f"<tr><td>+{at} ms</td><td><code>{escape(data)}</code></td></tr>")
    html = mark_safe("".join(rows))  # noqa: S308 - the only text, each event's data, is escaped
    if len(rows) == total_length(events) and not partial:
        return html
    unit = "events (the last of them in part)" if partial else "events"
    note = shown_note(len(rows), total_length(events), unit, download_url)
    return html + format_html('<tr class="shown-note"><td colspan="2">{}</td></tr>', note)


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
    # Decoding a raw body's "\ud800" escape gives a lone surrogate, which the page
    # cannot encode: the indented copy gets U+FFFD (the text as received keeps the escape).
    return storable.text("".join(parts))


def _compact(value: Any, limit: int) -> tuple[str, int]:
    """The first `limit` characters of `value` as compact JSON, and the whole length."""
    try:
        # One string, briefly: the C encoder is the one that takes values nested deeper
        # than Python's stack allows generators (iterencode) to go.
        text = json.dumps(value, ensure_ascii=False)
    except RecursionError:  # deeper than the encoder goes: nothing to show but the note
        return "", 0
    return storable.text(text[:limit]), len(text)
