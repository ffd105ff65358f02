"""How Pygments lexers behave on hostile input: the measurements behind the
`HIGHLIGHT_LANGUAGES` allowlist and the highlighting budget (chat/markdown.py).

    .venv/bin/python bench/highlight_lexers.py [--languages python,usd] [--largest 65536]

A code fence may name any lexer, and many take time that grows with the square
of the input on text chosen for them (even Python's, on lines of blanks). The
app therefore highlights a code block only if its language is on the allowlist,
the block is at most MAX_HIGHLIGHT_CHARS, and the message's highlighting stays
within HIGHLIGHT_TIME_BUDGET; past the budget, code is shown plain. The budget is
checked between tokens, so what it cannot cut short is one token: a lexer is fit
for the allowlist when its longest single step stays short at the size cap.

For each lexer this tries many hostile inputs (each printable character
repeated, openers of strings and comments repeated, nested brackets, random
text) at 1 and 4 KiB, keeps the one projected to be slowest at 64 KiB,
then times that one from 8 KiB up, doubling, to `--largest` (a run is cut short
after STOP_SECONDS, shown as ">1000"). It prints per lexer: the worst input, the
milliseconds at each size, its growth per doubling from 1 to 4 KiB (about 2 is
linear, 4 quadratic), the longest single step (one token) at the largest
size, and a verdict: "keep" when that step is at most KEEP_STEP_MS.

Highlighting is Pygments' lexer and the app's HTML formatter, as chat/markdown.py
runs them. Re-run this after upgrading Pygments.
"""

import argparse
import gc
import io
import random
import string
import sys
import time

from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name

# The languages people paste most: the candidates for the allowlist.
CANDIDATES = [
    "python", "pycon", "javascript", "typescript", "jsx", "tsx", "json", "json5", "yaml",
    "toml", "ini", "bash", "console", "powershell", "batch", "html", "xml", "css", "scss",
    "sass", "less", "sql", "postgresql", "mysql", "c", "cpp", "csharp", "java", "kotlin", "go",
    "rust", "ruby", "php", "swift", "scala", "haskell", "lua", "perl", "r", "dart", "docker",
    "make", "diff", "markdown", "text", "graphql", "nginx", "elixir", "erlang", "julia",
    "objective-c", "matlab", "latex", "zig", "clojure", "fsharp", "ocaml", "vbnet", "groovy",
    "terraform", "protobuf", "cmake", "nix", "solidity", "nasm", "wast", "django", "properties",
    "apacheconf", "http", "rst", "fortran", "pascal", "scheme", "lisp", "elm", "d", "verilog",
    "awk", "vim", "tcl", "coffeescript",
]  # fmt: skip
# Found slow before (issue 18): shown for reference, never candidates.
KNOWN_SLOW = ["usd", "urlencoded", "typoscript", "ucode", "yara"]

SCREEN_SIZES = (1_024, 4_096)
SCREEN_CAP = 0.2  # seconds: a screening run is cut short there (its time is then a floor)
STOP_SECONDS = 1.0  # seconds: a measured run is cut short there
KEEP_STEP_MS = 20.0  # the longest single token at the largest size

_formatter = HtmlFormatter(nowrap=True)


def hostile_inputs() -> dict[str, str]:
    """A repeating unit per input; `make(unit, n)` repeats it to n characters."""
    units = {f"{char!r}*": char for char in string.printable + "\u00e9\u00a0\u200b"}
    for opener in (
        '"a', "'a", "`a", "\\a", "/*a", "<!--", "#a", "$a", "${", "$(", "(*", "{-", "--",
        "<<", "{{", "{%", "<?", "<%", "a:", "a=", "@a", 'r"', 'f"', '"""', "'''", "a.",
        "1e", "0x", " -", "\n ", "\n\t", "a\n", "::", "([{<", "[1,", "a b", "- ", "* ",
        "# ", "> ", "a\\\n", '"\\', "'\\", "/a", "//", ";a", "%a", "!a", "&a", "|a",
    ):  # fmt: skip
        units[f"{opener!r}*"] = opener
    rng = random.Random(18)
    units["random printable"] = "".join(rng.choice(string.printable) for _ in range(4096))
    units["random bytes"] = bytes(rng.randrange(256) for _ in range(4096)).decode("latin-1")
    return units


def make(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def highlight_timed(lexer, text: str, cap: float = float("inf")) -> tuple[float, float, bool]:
    """(seconds, longest single step in seconds, finished) to lex and format `text`,
    giving up after `cap` seconds (the steps seen by then are measured all the same)."""
    # CPU time of this thread: other processes on a busy machine do not count.
    start = last = time.thread_time()
    longest = 0.0
    tokens = []
    for token in lexer.get_tokens(text):
        now = time.thread_time()
        longest = max(longest, now - last)
        tokens.append(token)
        last = now
        if now - start > cap:
            return now - start, longest, False
    _formatter.format(tokens, io.StringIO())
    return time.thread_time() - start, longest, True


def worst_input(lexer, units: dict[str, str]) -> tuple[str, float]:
    """The input projected to take longest at 64 KiB from its times at the screen sizes,
    and its growth per doubling between them."""
    worst, projected, worst_growth = "'a'*", 0.0, 1.0
    small, large = SCREEN_SIZES
    for name, unit in units.items():
        t_small = highlight_timed(lexer, make(unit, small), SCREEN_CAP)[0]
        t_large = highlight_timed(lexer, make(unit, large), SCREEN_CAP)[0]
        growth = max(t_large / max(t_small, 1e-4), 1.0)  # per quadrupling
        at_64k = t_large * growth**2  # four more doublings
        if at_64k > projected:
            worst, projected, worst_growth = name, at_64k, growth**0.5
    return worst, worst_growth


def measure(name: str, units: dict[str, str], largest: int) -> dict:
    lexer = get_lexer_by_name(name)
    worst, growth = worst_input(lexer, units)
    times: dict[int, float | None] = {}  # None: cut short after STOP_SECONDS
    size, step = 8_192, 0.0
    while size <= largest:
        took, step, finished = highlight_timed(lexer, make(units[worst], size), STOP_SECONDS)
        if finished and took < 0.5:  # the best of two, when that is cheap
            again = highlight_timed(lexer, make(units[worst], size), STOP_SECONDS)
            took, step = min(took, again[0]), min(step, again[1])
        times[size] = took if finished else None
        size *= 2
    return {"name": name, "worst": worst, "times": times, "growth": growth, "step": step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--languages", help="comma-separated lexer names (default: candidates)")
    parser.add_argument("--largest", type=int, default=65_536)
    args = parser.parse_args()
    names = args.languages.split(",") if args.languages else CANDIDATES + KNOWN_SLOW
    units = hostile_inputs()
    gc.disable()  # a collection would be counted as some token's step
    sizes = []
    size = 8_192
    while size <= args.largest:
        sizes.append(size)
        size *= 2
    header = [
        "lexer",
        "worst input",
        *(f"{s // 1024} KiB ms" for s in sizes),
        "x per doubling (1-4 KiB)",
        "longest step ms",
        "verdict",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    kept = []
    for name in names:
        row = measure(name, units, args.largest)
        cells = [
            f">{STOP_SECONDS * 1000:.0f}" if took is None else f"{took * 1000:.0f}"
            for took in row["times"].values()
        ]
        step_ms = row["step"] * 1000
        if name in KNOWN_SLOW and not args.languages:
            verdict = "not a candidate"
        elif step_ms <= KEEP_STEP_MS:
            verdict = "keep"
            kept.append(name)
        else:
            verdict = "REFUSE"
        worst = row["worst"].replace("|", "\\|")
        line = [name, f"`{worst}`", *cells, f"{row['growth']:.1f}", f"{step_ms:.1f}", verdict]
        print("| " + " | ".join(line) + " |", flush=True)
    print(f"\nkept ({len(kept)}): {' '.join(kept)}", file=sys.stderr)


if __name__ == "__main__":
    main()
