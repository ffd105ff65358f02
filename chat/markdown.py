"""Model output to safe HTML: Markdown rendered server-side, then sanitized last.

Raw HTML in the source is escaped by the parser, and nh3's allowlist runs on the
final HTML, so whatever the parser or highlighter emits, no script, event
handler, remote image or `javascript:` link reaches the page.

The text is chosen by whoever controls the model or the import file, so its cost
is bounded too. Text longer than MAX_MARKDOWN_CHARS, or nested deeper than the
parser renders (it would drop the rest), is shown as received. Code is
highlighted only in a language on the HIGHLIGHT_LANGUAGES allowlist, in blocks up
to MAX_HIGHLIGHT_CHARS, and within HIGHLIGHT_TIME_BUDGET seconds of CPU per
message: on chosen input most Pygments lexers, Python's too, take time growing
with the square of the block, and the budget is checked between tokens
(bench/highlight_lexers.py measures both). Past the budget, code is shown plain.
The HTML is cached, bounded by its total size (MARKDOWN_CACHE_BYTES).
"""

import hashlib
import io
import sys
import threading
import time
from collections import OrderedDict
from contextvars import ContextVar
from functools import lru_cache
from html import escape
from typing import NamedTuple

import nh3
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.util import ClassNotFound

from chat.formatting import as_received, too_deep, too_large

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "code", "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody",
    "tr", "th", "td", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "span": {"class"}, "ol": {"start"}}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

_formatter = HtmlFormatter(nowrap=True)
# When the message being rendered must stop highlighting (this thread's CPU time).
_highlight_deadline: ContextVar[float] = ContextVar("highlight_deadline", default=0.0)
_TOKENS_PER_CLOCK_CHECK = 64


def _highlight(code: str, language: str, _attrs: str) -> str:
    """Highlighted HTML for a fence, or "" for markdown-it to escape the code itself."""
    lexer = _allowed_lexer(language.strip())
    if lexer is None or len(code) > settings.MAX_HIGHLIGHT_CHARS:
        return ""
    deadline = _highlight_deadline.get()
    tokens = []
    for count, token in enumerate(lexer.get_tokens(code)):
        tokens.append(token)
        if count % _TOKENS_PER_CLOCK_CHECK == 0 and time.thread_time() > deadline:
            return ""
    html = io.StringIO()
    _formatter.format(tokens, html)
    return html.getvalue()


def _allowed_lexer(language: str) -> Lexer | None:
    # Only allowlisted names are looked up: a message may name thousands of others.
    name = language.lower()
    allowed = _allowed_aliases(tuple(settings.HIGHLIGHT_LANGUAGES))
    return _lexer(name) if name in allowed else None


@lru_cache(maxsize=8)
def _allowed_aliases(languages: tuple[str, ...]) -> frozenset[str]:
    """Every alias of each allowlisted lexer, so that "py" counts as "python".

    From Pygments' table of lexers: loading each lexer to ask it would take the
    first message's highlighting budget.
    """
    wanted = {language.lower() for language in languages}
    return frozenset(
        alias
        for _name, aliases, _files, _types in get_all_lexers(plugins=False)
        if wanted.intersection(aliases)
        for alias in aliases
    )


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
# markdown-it's own guard: blocks nested this deep are dropped, with all that follows.
_MAX_NESTING = _parser.options["maxNesting"]


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
    limit = settings.MAX_MARKDOWN_CHARS
    if len(text) > limit:
        return as_received(text, too_large(limit))
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()
    html = _cache.get(key)
    if html is None:
        html = _render(text)
        _cache.put(key, html)
    return html


def _render(text: str) -> SafeString:
    env: dict = {}
    tokens = _parser.parse(text, env)
    if any(token.level >= _MAX_NESTING - 1 for token in tokens):
        return as_received(text, too_deep(_MAX_NESTING - 1))
    budget = _highlight_deadline.set(time.thread_time() + settings.HIGHLIGHT_TIME_BUDGET)
    try:
        html = _parser.renderer.render(tokens, _parser.options, env)
    finally:
        _highlight_deadline.reset(budget)
    return mark_safe(sanitize(html))  # noqa: S308 - sanitized just above


class CacheInfo(NamedTuple):
    hits: int
    misses: int  # each one a render
    entries: int
    bytes: int


class _SizedCache:
    """Rendered HTML by its text's digest: a reply renders the same every time, and a
    shared one may be viewed often. The least recently used goes first once the
    HTML held passes MARKDOWN_CACHE_BYTES (threads render at once: one lock)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[bytes, SafeString] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> SafeString | None:
        with self._lock:
            html = self._entries.get(key)
            if html is None:
                self._misses += 1
            else:
                self._hits += 1
                self._entries.move_to_end(key)
            return html

    def put(self, key: bytes, html: SafeString) -> None:
        size, capacity = sys.getsizeof(html), settings.MARKDOWN_CACHE_BYTES
        with self._lock:
            if key in self._entries or size > capacity:
                return
            self._entries[key] = html
            self._bytes += size
            while self._bytes > capacity:
                _, gone = self._entries.popitem(last=False)
                self._bytes -= sys.getsizeof(gone)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._entries), self._bytes)


_cache = _SizedCache()


def cache_info() -> CacheInfo:
    """How the render cache has done in this process (renders are its misses)."""
    return _cache.info()


def highlight_css() -> str:
    """The stylesheet for highlighted code (static/css/highlight.css is made from this)."""
    return _formatter.get_style_defs(".md pre")
