"""'Get code': Python, JavaScript, the OpenAI SDK and cURL that send the stored request body.

Each snippet posts the same bytes the app sent (the SDK: the same JSON, which it encodes
itself), to the configured base URL, with a key placeholder in place of the real key (as
the provider's own examples do). A streamed call's snippets read the event stream and
print the text as it arrives; the others print the response.

The URL is always the configured upstream's (`client.chat_url()`), never a
call's stored one: an imported call's URL is whatever the file said, and a
share page's snippet would otherwise tell its readers to send their key there.

Attachments are stored once, so a stored body has each one's base64 cut out, and
`splices` say where it goes: (character offset in the body text, file name). The
snippets read each file from the current directory and put its base64 back there.
"""

import itertools
import json
import pprint
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import formatting
from .client import chat_url, encode_body

KEY_PLACEHOLDER = "<YOUR_API_KEY>"

# The request-body parameters of the OpenAI SDK's `client.chat.completions.create()`
# (openai 3.51; its other keyword arguments, extra_* and timeout, are not body keys). Any
# other key of a body goes in `extra_body`. A test compares this with the installed SDK.
OPENAI_CREATE_PARAMETERS = frozenset(
    {
        "messages",
        "model",
        "audio",
        "frequency_penalty",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "modalities",
        "moderation",
        "n",
        "parallel_tool_calls",
        "prediction",
        "presence_penalty",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning_effort",
        "response_format",
        "safety_identifier",
        "seed",
        "service_tier",
        "stop",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "verbosity",
        "web_search_options",
    }
)

# Linux refuses a command-line argument over 128 KiB ("Argument list too long"), so a
# larger body is written to a file by the shell's built-in printf and sent from there.
CURL_ARGUMENT_LIMIT = 100_000

WIDTH = 88


def all_snippets(*, body: str, splices: Sequence[tuple[int, str]] = ()) -> dict[str, str]:
    """The snippets for a stored request body, sent to the configured upstream.

    `splices` are (offset, file name): the base64 of that file's bytes goes at that
    character offset of `body` to give the body that was sent. Raises ValueError for an
    offset outside the body.
    """
    stored = _Body.of(body, splices)
    url = chat_url()
    return {
        "Python": _python(url, stored),
        "JavaScript": _javascript(url, stored),
        "OpenAI SDK (Python)": _openai(settings.UPSTREAM_BASE_URL, stored),
        "cURL": _curl(url, stored),
    }


# --------------------------------------------------------------------------- the body


@dataclass(frozen=True)
class _File:
    """Where an attachment's base64 goes, read from this file (a bare name)."""

    name: str


@dataclass(frozen=True)
class _Spliced:
    """A JSON string holding attachments: its text pieces and files, in order."""

    parts: tuple[str | _File, ...]

    def __repr__(self) -> str:  # how pprint writes it into Python code
        return " + ".join(_python_item(part) for part in self.parts)


_VERBATIM = object()  # not laid out as code: quoted as it is


@dataclass(frozen=True)
class _Body:
    parts: tuple[str | _File, ...]  # the body as sent: text pieces and files, in order
    value: Any  # the parsed JSON (strings with files as _Spliced), or _VERBATIM
    canonical: bool  # our own compact encoding of `value` gives exactly the bytes sent
    streamed: bool
    chat_object: bool  # a JSON object with "model" and "messages" (what the SDK sends)
    files: tuple[str, ...]  # each file once, in order

    @classmethod
    def of(cls, body: str, splices: Sequence[tuple[int, str]]) -> "_Body":
        ordered = sorted(splices, key=lambda splice: splice[0])
        if any(not 0 <= offset <= len(body) for offset, _ in ordered):
            raise ValueError("A splice offset is outside the request body.")
        files = [_File(_file_name(name, index)) for index, (_, name) in enumerate(ordered)]
        offsets = [0, *(offset for offset, _ in ordered), len(body)]
        texts = [body[start:end] for start, end in itertools.pairwise(offsets)]
        pieces = [texts[0]]
        for file, text in zip(files, texts[1:], strict=True):
            pieces += [file, text]
        # Each file is marked by a token the body does not hold, so that the marked text
        # can be parsed and laid out as code, each mark becoming a read of its file.
        mark = "SPLICE"
        while mark in body:
            mark += "X"
        marked = texts[0] + "".join(
            f"<<{mark}:{index}>>{text}" for index, text in enumerate(texts[1:])
        )
        parsed = _loads(marked)
        value, canonical = _VERBATIM, False
        if parsed is not _VERBATIM and formatting.fits(marked) and _finite(parsed):
            seen: list[int] = []
            try:
                value = _with_files(parsed, mark, files, seen)
            except _Unsplicable:
                value = _VERBATIM
            if sorted(seen) != list(range(len(files))):
                value = _VERBATIM  # a mark in no string, or one twice (see _with_files)
            canonical = value is not _VERBATIM and encode_body(parsed).decode() == marked
        return cls(
            parts=tuple(piece for piece in pieces if piece != ""),
            value=value,
            canonical=canonical,
            streamed=isinstance(parsed, dict) and parsed.get("stream") is True,
            chat_object=isinstance(parsed, dict) and {"model", "messages"} <= parsed.keys(),
            files=tuple(dict.fromkeys(file.name for file in files)),
        )


class _Unsplicable(Exception):
    """A file's mark is where no file can be read into as code (in a key)."""


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _VERBATIM


def _with_files(value: Any, mark: str, files: list[_File], seen: list[int]) -> Any:
    """`value` with each string holding marks turned into _Spliced (depth is bounded by
    formatting.fits, so recursion is safe)."""
    if isinstance(value, dict):
        if any(mark in key for key in value):
            raise _Unsplicable
        return {key: _with_files(item, mark, files, seen) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_files(item, mark, files, seen) for item in value]
    if isinstance(value, str) and mark in value:
        pieces = re.split(f"<<{mark}:([0-9]{{1,6}})>>", value)
        texts, numbers = pieces[::2], pieces[1::2]
        if any(mark in text for text in texts) or any(int(n) >= len(files) for n in numbers):
            raise _Unsplicable  # a look-alike of a mark, written with escapes in the body
        seen += [int(n) for n in numbers]
        parts = []
        for text, number in zip(texts, [*numbers, None], strict=True):
            parts += [text] if number is None else [text, files[int(number)]]
        return _Spliced(tuple(part for part in parts if part != ""))
    return value


def _finite(value: Any) -> bool:
    """Python has no literal for NaN or infinity (JSON parses 1e999 as inf)."""
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def _file_name(name: str, index: int) -> str:
    """A bare file name: a share reader's snippet must not read ~/.ssh/id_rsa or $(...)."""
    bare = re.split(r"[\\/]", name)[-1]
    safe = re.sub(r"[^\w.-]", "_", bare).lstrip(".")[:100]
    return safe or f"attachment-{index + 1}"


def _files_note(files: tuple[str, ...], comment: str) -> str:
    return f"{comment} Attachments are read from the current directory: {', '.join(files)}\n"


# --------------------------------------------------------------------------- Python


PYTHON_B64 = (
    "def b64(path):\n"
    "    # An attachment as it was sent: the file's bytes in base64.\n"
    '    with open(path, "rb") as file:\n'
    "        return base64.b64encode(file.read()).decode()\n\n\n"
)

PYTHON_STREAM_READER = (
    "if not response.ok:\n"
    '    raise SystemExit(f"HTTP {response.status_code}: {response.text}")\n'
    '# Server-sent events: each "data:" line holds a chunk, until "data: [DONE]"\n'
    "# (or the end of the connection). iter_lines also splits \\r\\n lines.\n"
    "for line in response.iter_lines():\n"
    '    if not line.startswith(b"data:"):\n'
    "        continue  # the blank lines between events, and comments\n"
    '    data = line.removeprefix(b"data:").strip()\n'
    '    if data == b"[DONE]":\n'
    "        break\n"
    "    chunk = json.loads(data)\n"
    '    if "error" in chunk:\n'
    "        raise SystemExit(f\"Error event: {chunk['error']}\")\n"
    '    for choice in chunk.get("choices") or []:\n'
    '        print((choice.get("delta") or {}).get("content") or "", end="", flush=True)\n'
    "print()\n"
)


def _python(url: str, body: _Body) -> str:
    if body.canonical:
        payload = pprint.pformat(body.value, sort_dicts=False, width=WIDTH)
        preamble = f"payload = {payload}\n\n"
        data = 'json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()'
    else:
        preamble = f"body = {_python_concat(body.parts)}\n\n"
        data = "body.encode()"
    stream_argument = "    stream=True,\n" if body.streamed else ""
    reader = (
        PYTHON_STREAM_READER
        if body.streamed
        else "print(json.dumps(response.json(), indent=2, ensure_ascii=False))\n"
    )
    return (
        f"{_python_head(body, standard=['json'], third_party='import requests')}"
        f"{preamble}"
        "response = requests.post(\n"
        f"    {url!r},\n"
        "    headers={\n"
        f'        "Authorization": "Bearer {KEY_PLACEHOLDER}",  # your key here\n'
        '        "Content-Type": "application/json",\n'
        "    },\n"
        f"    data={data},\n"
        f"{stream_argument}"
        "    timeout=120,\n"
        ")\n"
        f"{reader}"
    )


def _python_head(body: _Body, *, standard: list[str], third_party: str) -> str:
    """The imports (base64 too for attachments), and the helper that reads the files."""
    modules = sorted([*standard, *(["base64"] if body.files else [])])
    head = "".join(f"import {module}\n" for module in modules)
    head += ("\n" if head else "") + f"{third_party}\n\n"
    if body.files:
        head += f"\n{_files_note(body.files, '#')}{PYTHON_B64}"
    return head


def _python_item(part: str | _File) -> str:
    return f"b64({part.name!r})" if isinstance(part, _File) else repr(part)


def _python_concat(parts: tuple[str | _File, ...]) -> str:
    """The parts as one Python expression: string literals and reads of the files."""
    if len(parts) <= 1:
        return _python_item(parts[0]) if parts else "''"
    return "(\n    " + "\n    + ".join(_python_item(part) for part in parts) + "\n)"


# --------------------------------------------------------------------------- JavaScript


JAVASCRIPT_STREAM_READER = """\
if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
// Server-sent events, each ending with a blank line (\\n\\n or \\r\\n\\r\\n), until
// "data: [DONE]" or the end of the connection.
const reader = response.body.getReader();
const decoder = new TextDecoder();
let buffer = '';
read: for (;;) {
  const { value, done } = await reader.read();
  buffer += decoder.decode(value, { stream: !done });
  const events = buffer.split(/\\r\\n\\r\\n|\\n\\n|\\r\\r/);
  buffer = done ? '' : events.pop();
  for (const event of events) {
    const data = event
      .split(/\\r\\n|\\r|\\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice('data:'.length).trim())
      .join('\\n');
    if (data === '[DONE]') break read;
    if (!data) continue; // comments only
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Error(`Error event: ${JSON.stringify(chunk.error)}`);
    for (const choice of chunk.choices ?? []) {
      process.stdout.write(choice.delta?.content ?? '');
    }
  }
  if (done) break;
}
await reader.cancel();
process.stdout.write('\\n');
"""


def _javascript(url: str, body: _Body) -> str:
    if body.canonical and _json_stringify_matches(body.value):
        preamble = f"const payload = {_javascript_literal(body.value)};\n\n"
        body_expression = "JSON.stringify(payload)"
    elif len(body.parts) > 1:
        joined = " +\n  ".join(_javascript_item(part) for part in body.parts)
        preamble = f"const body =\n  {joined};\n\n"
        body_expression = "body"
    else:
        preamble = ""
        body_expression = _javascript_item(body.parts[0]) if body.parts else '""'
    helper = (
        "import fs from 'node:fs';\n\n"
        + _files_note(body.files, "//")
        + "const b64 = (path) => fs.readFileSync(path).toString('base64');\n\n"
        if body.files
        else ""
    )
    reader = (
        JAVASCRIPT_STREAM_READER
        if body.streamed
        else "console.log(JSON.stringify(await response.json(), null, 2));\n"
    )
    return (
        f"{helper}"
        f"{preamble}"
        f"const response = await fetch({json.dumps(url)}, {{\n"
        "  method: 'POST',\n"
        "  headers: {\n"
        f"    'Authorization': 'Bearer {KEY_PLACEHOLDER}', // your key here\n"
        "    'Content-Type': 'application/json',\n"
        "  },\n"
        f"  {'body' if body_expression == 'body' else f'body: {body_expression}'},\n"
        "});\n"
        f"{reader}"
    )


def _javascript_item(part: str | _File) -> str:
    if isinstance(part, _File):
        return f"b64({json.dumps(part.name, ensure_ascii=False)})"
    return json.dumps(part, ensure_ascii=False)


def _javascript_literal(value: Any) -> str:
    """`value` as an indented JavaScript literal; a _Spliced string as a concatenation."""
    spliced: list[_Spliced] = []

    def placeholder(item: Any) -> str:
        spliced.append(item)
        return f"<<SPLICED:{len(spliced) - 1}>>"

    text = json.dumps(_replace_spliced(value, placeholder), indent=2, ensure_ascii=False)
    for index, item in enumerate(spliced):
        expression = " + ".join(_javascript_item(part) for part in item.parts)
        text = text.replace(json.dumps(f"<<SPLICED:{index}>>"), expression, 1)
    return text


def _replace_spliced(value: Any, replace: Any) -> Any:
    if isinstance(value, dict):
        return {key: _replace_spliced(item, replace) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_spliced(item, replace) for item in value]
    return replace(value) if isinstance(value, _Spliced) else value


MAX_SAFE_INTEGER = 2**53 - 1
ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def _json_stringify_matches(value: Any) -> bool:
    """Whether JSON.stringify of `value` as a JavaScript literal gives our encoding.

    It would not for: floats Python writes with an exponent and JavaScript without (1e-05,
    1e+16) or whole ones (1.0 -> 1); integers past 2**53, which lose digits; a
    "__proto__" key, which a literal takes as the prototype; and keys like "1", which
    JavaScript objects put first.
    """
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INTEGER
    if isinstance(value, float):
        return not value.is_integer() and 1e-4 <= abs(value) < 1e16
    if isinstance(value, dict):
        if any(key == "__proto__" or ARRAY_INDEX.fullmatch(key) for key in value):
            return False
        return all(_json_stringify_matches(item) for item in value.values())
    if isinstance(value, list):
        return all(_json_stringify_matches(item) for item in value)
    return True


# --------------------------------------------------------------------------- OpenAI SDK


OPENAI_STREAM_READER = (
    "for chunk in stream:\n"
    "    for choice in chunk.choices:\n"
    '        print(choice.delta.content or "", end="", flush=True)\n'
    "print()\n"
)
OPENAI_PRINT = "print(completion.choices[0].message.content)\n"


def _openai(base_url: str, body: _Body) -> str:
    if not body.chat_object:
        return (
            "# The OpenAI SDK sends only a JSON object with model and messages, and this\n"
            "# body is not one. The Python snippet sends it as it is.\n"
        )
    result = "stream" if body.streamed else "completion"
    reader = OPENAI_STREAM_READER if body.streamed else OPENAI_PRINT
    client = (
        f'client = OpenAI(base_url={base_url!r}, api_key="{KEY_PLACEHOLDER}")  # your key here\n'
    )
    if isinstance(body.value, dict) and {"model", "messages"} <= body.value.keys():
        known = {key: item for key, item in body.value.items() if _sdk_argument(key, item)}
        extra = {key: item for key, item in body.value.items() if key not in known}
        arguments = [*known.items(), *([("extra_body", extra)] if extra else [])]
        return (
            f"{_python_head(body, standard=[], third_party='from openai import OpenAI')}"
            f"{client}\n"
            f"{result} = client.chat.completions.create(\n"
            f"{''.join(_python_argument(key, item) for key, item in arguments)}"
            ")\n"
            f"{reader}"
        )
    # Too large or deep to lay out as code: the body as it is, its keys handed over as
    # they are (extra_body is sent without any change). The SDK insists on model and
    # messages, so they go by name; stream too, as it decides what create() returns.
    stream_argument = '    stream=payload.pop("stream"),\n' if body.streamed else ""
    return (
        f"{_python_head(body, standard=['json'], third_party='from openai import OpenAI')}"
        f"body = {_python_concat(body.parts)}\n"
        "payload = json.loads(body)\n\n"
        f"{client}\n"
        f"{result} = client.chat.completions.create(\n"
        '    model=payload.pop("model"),\n'
        '    messages=payload.pop("messages"),\n'
        f"{stream_argument}"
        "    extra_body=payload,  # every other key, sent as it is\n"
        ")\n"
        f"{reader}"
    )


def _sdk_argument(key: str, value: Any) -> bool:
    """Whether a body key goes to create() by name: one it knows, and `stream` only as a
    bool (a truthy string would make the SDK read a stream the snippet does not expect)."""
    return key in OPENAI_CREATE_PARAMETERS and (key != "stream" or isinstance(value, bool))


def _python_argument(key: str, value: Any) -> str:
    prefix = f"    {key}="
    text = pprint.pformat(value, sort_dicts=False, width=max(40, WIDTH - len(prefix)))
    return prefix + text.replace("\n", "\n" + " " * len(prefix)) + ",\n"


# --------------------------------------------------------------------------- cURL


def _curl(url: str, body: _Body) -> str:
    text = body.parts[0] if len(body.parts) == 1 and isinstance(body.parts[0], str) else None
    request = (
        f"curl {'-N ' if body.streamed else ''}{shlex.quote(url)} \\\n"
        f"  -H {shlex.quote(f'Authorization: Bearer {KEY_PLACEHOLDER}')} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
    )
    if not body.parts:
        return f"{request}  --data-raw ''\n"
    if text is not None and len(text.encode()) <= CURL_ARGUMENT_LIMIT:
        return f"{request}  --data-raw {shlex.quote(text)}\n"
    lines = [
        f"  base64 < {shlex.quote(part.name)} | tr -d '\\n'"
        if isinstance(part, _File)
        else f"  printf '%s' {shlex.quote(part)}"
        for part in body.parts
    ]
    note = (
        _files_note(body.files, "#")
        + "# The body is built in body.json, each one's base64 in place.\n"
        if body.files
        else "# The body goes through a file: it is too long for one command-line argument.\n"
    )
    return (
        f"{note}"
        "{\n" + "\n".join(lines) + "\n} > body.json\n\n"
        f"{request}"
        "  --data-binary @body.json\n"
    )
