"""'Get code': Python, JavaScript and cURL that send exactly the stored request body.

Each snippet posts the same bytes the app sent, to the configured base URL, with a
key placeholder in place of the real key (as the provider's own examples do).

The URL is always the configured upstream's (`client.chat_url()`), never a
call's stored one: an imported call's URL is whatever the file said, and a
share page's snippet would otherwise tell its readers to send their key there.
"""

import json
import pprint
import shlex
from typing import Any

from . import formatting
from .client import chat_url, encode_body

KEY_PLACEHOLDER = "<YOUR_API_KEY>"


def python_snippet(*, url: str, body: str) -> str:
    if _is_canonical(body):
        payload = pprint.pformat(json.loads(body), sort_dicts=False, width=88)
        data_line = (
            '    data=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),'
        )
        preamble = f"payload = {payload}\n\n"
    else:
        data_line = "    data=body.encode(),"
        preamble = f"body = {body!r}\n\n"
    return (
        "import json\n\nimport requests\n\n"
        f"{preamble}"
        "response = requests.post(\n"
        f"    {url!r},\n"
        "    headers={\n"
        f'        "Authorization": "Bearer {KEY_PLACEHOLDER}",  # your key here\n'
        '        "Content-Type": "application/json",\n'
        "    },\n"
        f"{data_line}\n"
        "    timeout=120,\n"
        ")\n"
        "print(json.dumps(response.json(), indent=2, ensure_ascii=False))\n"
    )


def javascript_snippet(*, url: str, body: str) -> str:
    if _is_canonical(body) and _json_stringify_matches(json.loads(body)):
        preamble = (
            f"const payload = {json.dumps(json.loads(body), indent=2, ensure_ascii=False)};\n\n"
        )
        body_expression = "JSON.stringify(payload)"
    else:
        preamble = ""
        body_expression = json.dumps(body, ensure_ascii=False)
    return (
        f"{preamble}"
        f"const response = await fetch({json.dumps(url)}, {{\n"
        "  method: 'POST',\n"
        "  headers: {\n"
        f"    'Authorization': 'Bearer {KEY_PLACEHOLDER}', // your key here\n"
        "    'Content-Type': 'application/json',\n"
        "  },\n"
        f"  body: {body_expression},\n"
        "});\n"
        "console.log(JSON.stringify(await response.json(), null, 2));\n"
    )


def curl_snippet(*, url: str, body: str) -> str:
    return (
        f"curl {shlex.quote(url)} \\\n"
        f"  -H {shlex.quote(f'Authorization: Bearer {KEY_PLACEHOLDER}')} \\\n"
        "  -H 'Content-Type: application/json' \\\n"
        f"  --data-raw {shlex.quote(body)}\n"
    )


def all_snippets(*, body: str) -> dict[str, str]:
    """The three snippets for a request body, sent to the configured upstream."""
    url = chat_url()
    return {
        "Python": python_snippet(url=url, body=body),
        "JavaScript": javascript_snippet(url=url, body=body),
        "cURL": curl_snippet(url=url, body=body),
    }


def _is_canonical(body: str) -> bool:
    """True when re-encoding the parsed body gives the same bytes (our own encoding),
    and it is small and shallow enough to lay out as code (else it is quoted as is)."""
    if not formatting.fits(body):
        return False
    try:
        return encode_body(json.loads(body)).decode() == body
    except ValueError:
        return False


def _json_stringify_matches(value: Any) -> bool:
    """JSON.stringify formats numbers differently from Python for some floats (1.0 -> 1)."""
    if isinstance(value, float):
        return not value.is_integer() and 1e-6 <= abs(value) < 1e16
    if isinstance(value, dict):
        return all(_json_stringify_matches(item) for item in value.values())
    if isinstance(value, list):
        return all(_json_stringify_matches(item) for item in value)
    return True
