"""The token view of a reply's log probabilities (a choice's `logprobs`).

The object is the upstream's, so every piece is checked where it is read: `content`
must be a list, each entry a dict with a string token (or, failing that, UTF-8
`bytes`) and a number for `logprob`. A bad entry is left out and counted, a logprob
that is no number (NaN, a string) shows as unknown, and at most MAX_TOKENS tokens and
MAX_ALTERNATIVES alternatives each are shown, so a hostile reply cannot make a page of
megabytes. Model text is escaped by the template, like everything else.

Reference: https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices
"""

import math
from dataclasses import dataclass
from typing import Any

MAX_TOKENS = 4_000
MAX_ALTERNATIVES = 10
MAX_TOKEN_CHARS = 200
# Probability floors of shades 0 (the model was sure) to 4 (it was not): a token at
# 95% is left plain, one at 20% stands out.
SHADE_FLOORS = (0.9, 0.7, 0.5, 0.25)

# How whitespace and control characters are drawn so that they can be seen: in the
# running text a newline still breaks the line after its mark.
_VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍", " ": "␣"}
_INLINE = {"\n": "↵\n", "\t": "⇥", "\r": "␍"}
# Embeddings, overrides and isolates: they would reorder the text around them.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class Alternative:
    text: str
    probability: float | None

    @property
    def label(self) -> str:
        return visible(self.text)

    @property
    def percent(self) -> str:
        return percent(self.probability)


@dataclass(frozen=True)
class Token:
    """One token of the reply: its text, how likely the model found it, and what else."""

    text: str
    probability: float | None  # exp(logprob), 0..1; None when the upstream sent no number
    alternatives: list[Alternative]
    more_alternatives: int = 0  # alternatives beyond MAX_ALTERNATIVES, not shown

    @property
    def shade(self) -> str:
        """0 (likely) to 4 (unlikely), or "unknown": the CSS class is shade-<this>."""
        if self.probability is None:
            return "unknown"
        return str(sum(self.probability < floor for floor in SHADE_FLOORS))

    @property
    def shown(self) -> str:
        """The text in the running reply: newlines and tabs marked, a blank token as dots."""
        text = _controls_visible(self.text, _INLINE)
        return text.replace(" ", "·") if text and not text.strip(" ") else text

    @property
    def label(self) -> str:
        return visible(self.text)

    @property
    def percent(self) -> str:
        return percent(self.probability)


class Tokens(list[Token]):
    """The tokens shown, and how many the upstream sent (`total`) and how many were unusable."""

    def __init__(self, tokens: list[Token], *, total: int, skipped: int) -> None:
        super().__init__(tokens)
        self.total = total
        self.skipped = skipped

    @property
    def cut(self) -> bool:
        return self.total > MAX_TOKENS


def tokens(logprobs: Any) -> Tokens | None:
    """The tokens of a choice's `logprobs` object, or None when it holds none."""
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list) or not content:
        return None
    shown, skipped = [], 0
    for entry in content[:MAX_TOKENS]:
        token = _token(entry)
        if token is None:
            skipped += 1
        else:
            shown.append(token)
    if not shown:
        return None
    return Tokens(shown, total=len(content), skipped=skipped)


def _token(entry: Any) -> Token | None:
    if not isinstance(entry, dict):
        return None
    text = _text(entry)
    if text is None:
        return None
    top = entry.get("top_logprobs")
    top = top if isinstance(top, list) else []
    alternatives = []
    for item in top[:MAX_ALTERNATIVES]:
        alternative_text = _text(item) if isinstance(item, dict) else None
        if alternative_text is not None:
            alternatives.append(
                Alternative(text=alternative_text, probability=probability(item.get("logprob")))
            )
    return Token(
        text=text,
        probability=probability(entry.get("logprob")),
        alternatives=alternatives,
        more_alternatives=max(0, len(top) - MAX_ALTERNATIVES),
    )


def _text(entry: dict[str, Any]) -> str | None:
    """The token's text: `token`, else its UTF-8 `bytes`; cut to MAX_TOKEN_CHARS."""
    text = entry.get("token")
    if not isinstance(text, str):
        raw = entry.get("bytes")
        if not (
            isinstance(raw, list)
            and len(raw) <= 4 * MAX_TOKEN_CHARS
            and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in raw)
        ):
            return None
        text = bytes(raw).decode("utf-8", errors="replace")
    if len(text) > MAX_TOKEN_CHARS:
        text = text[: MAX_TOKEN_CHARS - 1] + "…"
    return text


def probability(logprob: Any) -> float | None:
    """exp(logprob) within 0..1, or None for what is not a number (NaN, +inf, a string)."""
    if isinstance(logprob, bool) or not isinstance(logprob, int | float):
        return None
    try:
        value = float(logprob)
    except OverflowError:  # an integer of hundreds of digits
        return 0.0 if logprob < 0 else None
    if math.isnan(value) or value == math.inf:
        return None
    return math.exp(min(value, 0.0))  # a logprob above 0 is rounding: certain


def percent(value: float | None) -> str:
    if value is None:
        return "?"
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{value * 100:.1f}%"


def visible(text: str) -> str:
    """The text with every space, newline, tab and control character drawn."""
    return _controls_visible(text, _VISIBLE) or "∅"


def _controls_visible(text: str, marks: dict[str, str]) -> str:
    return "".join(_mark(ch, marks) for ch in text)


def _mark(ch: str, marks: dict[str, str]) -> str:
    if ch in marks:
        return marks[ch]
    code = ord(ch)
    if code < 0x20:  # the other C0 controls have pictures in the U+2400 block
        return chr(0x2400 + code)
    if code == 0x7F:
        return "␡"
    if 0x80 <= code < 0xA0 or ch in _BIDI:  # C1 controls have none; bidi ones reorder text
        return "\ufffd"
    return ch
