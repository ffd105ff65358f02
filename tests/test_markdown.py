"""Model output is rendered as Markdown and sanitized: nothing active survives."""

from html.parser import HTMLParser

import pytest

from chat.markdown import ALLOWED_TAGS, render_markdown, sanitize


class ElementCollector(HTMLParser):
    """The real elements and attributes in a piece of HTML (escaped text is not one)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {name: value or "" for name, value in attrs}))


def elements_of(html: str) -> list[tuple[str, dict[str, str]]]:
    collector = ElementCollector()
    collector.feed(html)
    return collector.elements


def assert_nothing_active(html: str) -> None:
    """Only allowlisted tags and attributes, and links only to http(s) or mailto."""
    for tag, attributes in elements_of(html):
        assert tag in ALLOWED_TAGS
        assert set(attributes) <= {"href", "title", "class", "start", "rel"}, attributes
        href = attributes.get("href", "").strip().lower()
        assert not href or href.startswith(("http:", "https:", "mailto:")), href


def test_it_renders_markdown_and_highlights_code():
    html = render_markdown("**bold** and `x`\n\n```python\ndef f():\n    return 1\n```")

    assert "<strong>bold</strong>" in html
    assert "<code>x</code>" in html
    assert '<pre><code class="language-python"><span class="k">def</span>' in html


def test_it_renders_tables_and_strikethrough():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |\n\n~~gone~~")

    assert "<table>" in html and "<td>1</td>" in html
    assert "<s>gone</s>" in html


def test_unknown_code_languages_are_escaped_not_highlighted():
    html = render_markdown("```nosuchlang\n<script>alert(1)</script>\n```")

    assert "&lt;script&gt;" in html
    assert "<script>" not in html


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<iframe src='https://evil.example'></iframe>",
        '<a href="javascript:alert(1)">x</a>',
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[click](vbscript:msgbox(1))",
        "<svg onload=alert(1)>",
        '<div style="background:url(https://evil.example/x)">x</div>',
    ],
)
def test_it_neutralises_active_content(payload):
    assert_nothing_active(render_markdown(payload))


def test_remote_images_become_links_not_requests():
    html = render_markdown("![a cat](https://example.com/cat.png)")

    assert "<img" not in html
    assert 'href="https://example.com/cat.png"' in html
    assert "[image: a cat]" in html


def test_links_cannot_leak_the_referrer_or_the_opener():
    html = render_markdown("[docs](https://docs.aimlapi.com)")

    assert 'rel="noopener noreferrer nofollow"' in html


@pytest.mark.parametrize(
    "html",
    [
        '<a href="javascript:alert(1)" onclick="alert(1)">x</a>',
        '<img src="https://evil.example/pixel.png">',
        "<script>alert(1)</script>",
        '<span class="k" style="background:url(https://evil.example)">x</span>',
        '<svg><a xlink:href="javascript:alert(1)">x</a></svg>',
    ],
)
def test_the_sanitizer_alone_removes_what_the_parser_might_let_through(html):
    # The last step on every reply: it must hold even if the parser or highlighter changes.
    assert_nothing_active(sanitize(html))


def test_the_sanitizer_keeps_highlighted_code():
    html = render_markdown("```python\nx = 1\n```")

    assert sanitize(html) == html
    assert '<span class="n">x</span>' in html
