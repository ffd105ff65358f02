from django import template
from django.utils.safestring import SafeString

from chat import formatting
from chat.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return render_markdown(text or "")


@register.filter
def stream_event_rows(events: list[dict], download_url: str = "") -> SafeString:
    """The inspector's rows for a streamed call's events, up to the display bound."""
    return formatting.stream_event_rows(events, download_url)


@register.filter
def formatted_json(value: str | dict | list | None, download_url: str = "") -> SafeString:
    """A <pre> of indented JSON, or of the text unindented past the formatting limits
    (up to the display bound, then a note with `download_url`)."""
    return formatting.format_json(value, download_url)


@register.filter
def formatted_body(text: str | None) -> SafeString:
    """The formatted view beside a body shown exactly: indented JSON, or why there is none."""
    return formatting.formatted_body(text)


@register.filter
def raw_text(text: str | None, download_url: str = "") -> SafeString:
    """A <pre> of stored text exactly, up to the display bound, then a note."""
    return formatting.raw_text(text, download_url)


@register.filter
def event_count(events: list[dict]) -> int:
    """How many events a streamed call has, also when a page loaded only the first."""
    return formatting.total_length(events)
