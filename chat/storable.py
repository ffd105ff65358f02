"""Text the databases can store: no NUL character, no unpaired surrogate.

PostgreSQL refuses both in text and in jsonb; SQLite stores a NUL but Python
cannot encode a lone surrogate for it, nor for the page (UTF-8). JSON escapes
(`\\u0000`, `\\ud800`) can spell either, so anything parsed from JSON can hold them.
"""

import re
from typing import Any

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def problem(value: Any) -> str:
    """What cannot be stored in a parsed JSON value's strings or keys, as a sentence; or ""."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and (found := UNSTORABLE.search(item)):
            if found.group() == "\x00":
                return "contains a NUL character (\\u0000), which cannot be stored. Remove it."
            return (
                f"contains an unpaired surrogate (\\u{ord(found.group()):04x}), which is not a "
                "character. Remove it, or write both halves of the pair."
            )
    return ""


def text(value: str) -> str:
    """`value` with each NUL and unpaired surrogate replaced by U+FFFD."""
    return UNSTORABLE.sub(REPLACEMENT, value) if UNSTORABLE.search(value) else value
