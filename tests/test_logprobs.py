"""The token view of a reply's log probabilities, from well-formed and hostile objects."""

import math

import pytest
from django.template.loader import render_to_string

from chat import logprobs
from chat.logprobs import tokens


def entry(token="Hi", logprob=-0.01, top=None, **more) -> dict:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()) if isinstance(token, str) else None,
        "top_logprobs": top if top is not None else [],
        **more,
    }


GOOD = {
    "content": [
        entry(
            "Hello", -0.01, [{"token": "Hello", "logprob": -0.01}, {"token": "Hi", "logprob": -5}]
        ),
        entry(",", -0.5, [{"token": ",", "logprob": -0.5}, {"token": "!", "logprob": -1.2}]),
        entry(" world", -2.0),
        entry("\n", math.log(0.8)),
    ],
    "refusal": None,
}


def render(parsed, prefix="m1") -> str:
    return render_to_string("chat/_logprobs.html", {"tokens": parsed, "prefix": prefix})


def test_it_reads_each_token_with_its_probability_and_alternatives():
    parsed = tokens(GOOD)

    assert [t.text for t in parsed] == ["Hello", ",", " world", "\n"]
    hello = parsed[0]
    assert hello.probability == pytest.approx(math.exp(-0.01))
    assert [(a.text, a.percent) for a in hello.alternatives] == [("Hello", "99.0%"), ("Hi", "0.7%")]
    assert parsed.total == 4 and not parsed.cut and parsed.skipped == 0


@pytest.mark.parametrize(
    ("probability", "shade"),
    [(0.99, "0"), (0.9, "0"), (0.8, "1"), (0.6, "2"), (0.3, "3"), (0.1, "4"), (0.0, "4")],
)
def test_the_shade_grows_as_the_probability_falls(probability, shade):
    logprob = math.log(probability) if probability else -math.inf

    (token,) = tokens({"content": [entry("x", logprob)]})

    assert token.shade == shade


@pytest.mark.parametrize(
    "logprobs_object",
    [
        None,
        [],
        "x",
        5,
        {},
        {"content": None},
        {"content": "abc"},
        {"content": {"a": 1}},
        {"content": []},
        {"content": [1, "x", None]},
    ],
)
def test_no_usable_tokens_give_none(logprobs_object):
    assert tokens(logprobs_object) is None


@pytest.mark.parametrize(
    ("logprob", "probability"),
    [
        (float("nan"), None),
        (float("inf"), None),
        ("-0.1", None),
        (True, None),
        (None, None),
        (0.5, 1.0),  # above 0 is rounding: certain
        (-(10**400), 0.0),
        (10**400, None),
        (-math.inf, 0.0),
    ],
)
def test_a_logprob_that_is_no_probability_shows_as_unknown(logprob, probability):
    (token,) = tokens({"content": [entry("x", logprob)]})

    assert token.probability == probability
    if probability is None:
        assert token.shade == "unknown" and token.percent == "?"


def test_bad_entries_are_left_out_and_counted():
    content = [entry("a"), 7, {"token": 5, "logprob": -1}, {"logprob": -1}, entry("b")]

    parsed = tokens({"content": content})

    assert [t.text for t in parsed] == ["a", "b"] and parsed.skipped == 3


def test_a_token_without_a_string_is_read_from_its_bytes():
    parsed = tokens(
        {
            "content": [
                {"token": None, "logprob": -1, "bytes": [0xC3, 0xA9]},
                {"token": None, "logprob": -1, "bytes": [0xE2, 0x80]},
                {"token": None, "logprob": -1, "bytes": [256, -1]},
                {"token": None, "logprob": -1, "bytes": [True]},
            ]
        }
    )

    assert [t.text for t in parsed] == ["é", "\ufffd"] and parsed.skipped == 2


def test_a_huge_count_is_cut_with_a_note():
    parsed = tokens({"content": [entry("a")] * 100_000})

    assert len(parsed) == logprobs.MAX_TOKENS and parsed.total == 100_000 and parsed.cut
    assert "Showing the first 4000 of 100000 tokens." in render(parsed)


def test_long_tokens_and_many_alternatives_are_cut():
    top = [{"token": f"t{n}", "logprob": -n} for n in range(50)] + ["junk", {"token": 3}]

    (token,) = tokens({"content": [entry("x" * 10_000, -1, top)]})

    assert len(token.text) == logprobs.MAX_TOKEN_CHARS and token.text.endswith("…")
    assert len(token.alternatives) == logprobs.MAX_ALTERNATIVES
    assert token.more_alternatives == 42


def test_bad_alternatives_are_left_out():
    top = [5, {"token": "ok", "logprob": "x"}, {"logprob": -1}, {"token": "b", "logprob": -1}]

    (token,) = tokens({"content": [entry("x", -1, top)]})

    assert [(a.text, a.percent) for a in token.alternatives] == [("ok", "?"), ("b", "36.8%")]


def test_whitespace_and_controls_are_visible():
    parsed = tokens(
        {"content": [entry(t) for t in [" the", "\n\n", "  ", "\t", "a\x00b\x1b", "x\u202ey", ""]]}
    )

    assert [t.shown for t in parsed] == [" the", "↵\n↵\n", "··", "⇥", "a␀b␛", "x\ufffdy", ""]
    assert [t.label for t in parsed] == ["␣the", "↵↵", "␣␣", "⇥", "a␀b␛", "x\ufffdy", "∅"]


def test_the_partial_shows_each_token_focusable_with_its_alternatives():
    html = render(tokens(GOOD))

    assert html.count('class="tok shade-') == 4
    assert '<span class="tok shade-0" tabindex="0" aria-describedby="m1-tok-1">Hello' in html
    assert 'role="tooltip" id="m1-tok-1"' in html
    assert "<code>Hi</code> 0.7%" in html
    assert '<span class="tok shade-1" tabindex="0" aria-describedby="m1-tok-4">↵\n' in html
    # The same without hover or focus: a table.
    assert "<summary>Tokens as a table</summary>" in html
    assert (
        "<td><code>,</code></td><td>60.7%</td><td><code>,</code> 60.7%, <code>!</code> 30.1%</td>"
        in html
    )


def test_the_partial_keeps_no_whitespace_between_tokens():
    html = render(tokens(GOOD))

    running = html.split('<div class="tokens">')[1].split("</div>")[0]
    assert "</span> <span" not in running and "</span>\n<span" not in running


def test_the_partial_escapes_model_text():
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>"'
    parsed = tokens({"content": [entry(hostile, -1, [{"token": hostile, "logprob": -2}])]})

    html = render(parsed, prefix='"><b>')

    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_partial_says_how_many_tokens_were_left_out():
    html = render(tokens({"content": [entry("a"), 7, 8]}))

    assert "2 tokens could not be read and are left out." in html


def test_the_partial_renders_nothing_without_tokens():
    assert render(None).strip() == ""
