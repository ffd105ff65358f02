"""Text the databases can store: no NUL character, no unpaired surrogate.

PostgreSQL refuses both in text and in jsonb; SQLite stores a NUL but Python
cannot encode a lone surrogate for it, nor for the page (UTF-8). JSON escapes
(`\\u0000`, `\\ud800`) can spell either, so anything parsed from JSON can hold them.
"""

import re
from typing import Any

UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    """`value` with each NUL and unpaired surrogate replaced by U+FFFD.

    The one way text that came from outside is made storable: every string from the
    upstream that is stored goes through here (raw bodies keep their JSON escapes, so
    nothing received is lost), and so does what an import or an export carries.
    """
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    if not value.isascii() and _SURROGATE.search(value):
        # A pair split across two pieces (two stream deltas) joins up again; a lone half
        # is replaced.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def json_value(value: Any) -> Any:
    """`value` (decoded JSON) with every string, keys included, made storable."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(str(key)): json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_value(item) for item in value]
    return value
