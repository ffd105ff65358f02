"""Model output to safe HTML: Markdown rendered server-side, then sanitized last.

Raw HTML in the source is escaped by the parser, and nh3's allowlist runs on the
final HTML, so whatever the parser or highlighter emits, no script, event
handler, remote image or `javascript:` link reaches the page.
"""

from functools import lru_cache
from html import escape

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody",
    "tr", "th", "td", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "span": {"class"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, language: str, _attrs: str) -> str:
    lexer = _lexer(language.strip())
    if lexer is None:
        return ""  # markdown-it then escapes the code itself
    return highlight(code, lexer, _formatter)


@lru_cache(maxsize=64)
def _lexer(language: str) -> Lexer | None:
    """Finding a lexer searches every one Pygments has: once per language is enough."""
    try:
        return get_lexer_by_name(language) if language else None
    except ClassNotFound:
        return None


def _image_as_link(self, tokens, idx, options, env) -> str:
    # Remote images would leak the reader's IP and break the offline promise:
    # show the alt text as a link the reader may choose to follow.
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = token.attrGet("src") or ""
    return f'<a href="{escape(src)}">[image: {escape(alt)}]</a>'


_parser = (
    MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    .enable("table")
    .enable("strikethrough")
)
_parser.add_render_rule("image", _image_as_link)


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )


def render_markdown(text: str) -> SafeString:
    """Untrusted Markdown to HTML that is safe to put in a page."""
    if len(text) <= CACHED_TEXT_CHARS:
        return _render_cached(text)
    return _render(text)


# A reply renders the same every time, and a long conversation has hundreds:
# keep the most recent (worst case about CACHE_SIZE * CACHED_TEXT_CHARS * 3 bytes).
CACHE_SIZE = 2048
CACHED_TEXT_CHARS = 16_384


def _render(text: str) -> SafeString:
    return mark_safe(sanitize(_parser.render(text)))  # noqa: S308 - sanitized just above


_render_cached = lru_cache(maxsize=CACHE_SIZE)(_render)


def highlight_css() -> str:
    """The stylesheet for highlighted code (static/css/highlight.css is made from this)."""
    return _formatter.get_style_defs(".md pre")
