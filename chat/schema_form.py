"""The parameter panel built from a model's request schema, and the check before sending.

Each schema property becomes a form field named `schema__<property>`: numbers and
integers as number inputs (the range and default in the help text), string enums
as selects, booleans as a three-way select (not sent / true / false: "only set
fields are sent" needs a third state), arrays of strings as one-per-line lists,
and everything else (objects, anyOf/oneOf, arrays of objects: `thinking`,
`response_format`, `tools`) as a JSON field. The description is the help text.
A response_format that offers json_schema gets its own editor instead of the JSON
field (chat/structured_output.py), with the same value; so do function `tools`, and
`tool_choice` becomes a select of its forms and the functions tools define
(chat/tools_editor.py). The three tool parameters sit together, last.

The common parameters keep their own columns and fields (temperature, top_p,
max_tokens, stop); the schema only sets their help text and is checked against
them. Schema fields are stored in the conversation's `extra_params`, so saving
needs no new columns.

Ranges and enums are not enforced by the fields themselves: `check` validates the
body before sending and names the field, and "Send anyway" skips that check (the
upstream's answer is the truth). Only type errors (text in a number box, broken
JSON) always stop a submit, since there is nothing sensible to send.

A schema comes from the upstream (chat/catalogue.py reads it with SchemaReader), so
these functions also take keyword values of the wrong type: such a keyword is
ignored, never an error.
"""

import json
import math
from dataclasses import dataclass
from typing import Any

from django import forms

from . import storable
from .catalogue import ModelSchema

FIELD_PREFIX = "schema__"
# Chosen by the app (the conversation, streaming) or shown as the common fields.
APP_CONTROLLED = {"model", "messages", "stream", "stream_options"}
# The panel's own System prompt: sent as this field where the schema has it (chat/wire.py).
PANEL_OWNED = {"system"}
COMMON = ("temperature", "top_p", "max_tokens", "stop")
MAX_HELP_CHARS = 160
# Real tool and response schemas nest an array of objects a few levels down; 16 leaves
# room for them while bounding what the checks and the pages walk.
MAX_JSON_DEPTH = 16


@dataclass(frozen=True)
class Param:
    """One schema property shown as a form field."""

    name: str
    schema: dict[str, Any]
    # number, integer, enum, boolean, text, list, json, and the editors: response_format,
    # tools, tool_choice
    kind: str

    @property
    def field_name(self) -> str:
        return FIELD_PREFIX + self.name


def params_of(schema: ModelSchema | None) -> list[Param]:
    """The schema's properties that get their own field, simple controls first."""
    if schema is None:
        return []
    params = [
        Param(name=name, schema=spec, kind=_kind(name, spec))
        for name, spec in schema.properties.items()
        if name not in APP_CONTROLLED | PANEL_OWNED
        and name not in COMMON
        and isinstance(spec, dict)
    ]
    return sorted(params, key=_place)


# Side by side at the end of the panel: the tools, then what chooses among them.
TOOL_PARAMS = ("tools", "tool_choice", "parallel_tool_calls")
EDITORS = ("json", "response_format", "tools", "tool_choice")


def _place(param: Param) -> tuple[int, int]:
    if param.name in TOOL_PARAMS:
        return (2, TOOL_PARAMS.index(param.name))
    return (1 if param.kind in EDITORS else 0, 0)


def _kind(name: str, spec: dict[str, Any]) -> str:
    # The editors build on this module (parse_json), so they are imported when used.
    from . import structured_output, tools_editor

    if structured_output.takes(name, spec):
        return "response_format"
    if tools_editor.takes(name, spec):
        return "tools"
    if tools_editor.takes_choice(name, spec):
        return "tool_choice"
    return kind_of(spec)


def kind_of(spec: dict[str, Any]) -> str:
    kind = spec.get("type")
    enum = _list(spec, "enum")
    if enum and kind in (None, "string") and all(isinstance(v, str) for v in enum):
        return "enum"
    if kind in ("boolean", "integer", "number"):
        return kind
    if kind == "string":
        return "text"
    items = spec.get("items") if isinstance(spec.get("items"), dict) else {}
    if kind == "array" and items.get("type") == "string" and "enum" not in items:
        return "list"
    return "json"


def help_text(spec: dict[str, Any]) -> str:
    """Range, default and limits first (what a user needs at a glance), then the description."""
    facts = []
    low, high = _limit(spec, "minimum"), _limit(spec, "maximum")
    if low is not None and high is not None:
        facts.append(f"Range {_number(low)}–{_number(high)}.")
    elif low is not None:
        facts.append(f"At least {_number(low)}.")
    elif high is not None:
        facts.append(f"At most {_number(high)}.")
    if "default" in spec:
        default = _as_json(spec["default"])
        if default is not None and len(default) <= MAX_HELP_CHARS:
            facts.append(f"Default {default}.")
    if _count(spec, "maxItems") is not None:
        facts.append(f"At most {spec['maxItems']} items.")
    description = spec.get("description")
    description = " ".join(description.split()) if isinstance(description, str) else ""
    if len(description) > MAX_HELP_CHARS:
        description = description[: MAX_HELP_CHARS - 1].rstrip() + "…"
    return " ".join(filter(None, [*facts, description]))


def make_field(param: Param) -> forms.Field:
    label, help_ = param.name, help_text(param.schema)
    common = {"label": label, "required": False, "help_text": help_}
    kind = param.kind
    if kind == "number":
        return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}), **common)
    if kind == "integer":
        return forms.IntegerField(**common)
    if kind == "enum":
        choices = [("", "— not sent —"), *((v, v) for v in param.schema["enum"])]
        return forms.TypedChoiceField(choices=choices, empty_value=None, **common)
    if kind == "boolean":
        return forms.TypedChoiceField(
            choices=[("", "— not sent —"), ("true", "true"), ("false", "false")],
            coerce=lambda value: value == "true",
            empty_value=None,
            **common,
        )
    if kind == "text":
        return forms.CharField(strip=False, max_length=20_000, empty_value=None, **common)
    if kind == "list":
        return ListField(widget=forms.Textarea(attrs={"rows": 2}), **common)
    if kind == "response_format":
        from . import structured_output  # see _kind

        return structured_output.editor_field(param)
    if kind in ("tools", "tool_choice"):
        from . import tools_editor  # see _kind

        if kind == "tools":
            return tools_editor.editor_field(param)
        return tools_editor.choice_field(param)
    return JsonField(
        accepts_string=accepts_string(param.schema),
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "json"}),
        **common,
    )


class ListField(forms.CharField):
    """One string per line; blank lines ignored; empty means not sent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(map(str, value)) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str] | None:
        lines = [line for line in str(value or "").splitlines() if line.strip()]
        return lines or None


class JsonField(forms.CharField):
    """A JSON value; when the schema accepts a string, plain text is taken as that string."""

    MAX_BYTES = 16_384

    def __init__(self, *, accepts_string: bool = False, **kwargs: Any) -> None:
        self.accepts_string = accepts_string
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if value is None or isinstance(value, str):  # empty, or the text as typed
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)

    def to_python(self, value: Any) -> Any:
        text = str(value or "").strip()
        if not text:
            return None
        if (
            self.accepts_string
            and len(text.encode()) <= self.MAX_BYTES
            and not _parses_as_json(text)
        ):
            return text  # plain text where the schema takes a string (tool_choice: auto)
        return parse_json(text, name=self.label, max_bytes=self.MAX_BYTES)


def accepts_string(spec: dict[str, Any]) -> bool:
    if spec.get("type") == "string":
        return True
    return any(
        isinstance(branch, dict) and accepts_string(branch)
        for branch in (*_list(spec, "anyOf"), *_list(spec, "oneOf"))
    )


def representable(param: Param, value: Any) -> bool:
    """Whether a stored value can be shown in the param's field without changing it."""
    kind = param.kind
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "response_format":
        from . import structured_output  # see _kind

        return structured_output.shows(param, value)
    if kind in ("tools", "tool_choice"):
        from . import tools_editor  # see _kind

        if kind == "tools":
            return tools_editor.shows(param, value)
        return tools_editor.shows_choice(param, value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "enum":
        return value in _list(param.schema, "enum")
    if kind == "text":
        return isinstance(value, str) and value != ""
    if kind == "list":
        return (
            isinstance(value, list)
            and bool(value)
            and all(isinstance(v, str) and v.strip() and "\n" not in v for v in value)
        )
    # A string in a JSON field that also accepts strings would come back as that string,
    # unless it happens to parse as JSON.
    if isinstance(value, str):
        return accepts_string(param.schema) and not _parses_as_json(value)
    return value is not None


def split_stored(
    params: list[Param], extra_params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stored extra_params → (initial values of schema fields, what stays free JSON)."""
    by_name = {param.name: param for param in params}
    fields, free = {}, {}
    for key, value in extra_params.items():
        param = by_name.get(key)
        if param is not None and representable(param, value):
            # The boolean select's choices are the strings "true" and "false".
            fields[param.field_name] = json.dumps(value) if param.kind == "boolean" else value
        else:
            free[key] = value
    return fields, free


# --- The check before sending -------------------------------------------------


def check(value: Any, spec: Any, path: str) -> list[str]:
    """Problems with `value` against a JSON-schema subset (OpenAPI 3.0), each naming its path."""
    if not isinstance(spec, dict) or not spec:
        return []
    if value is None:
        return [] if spec.get("nullable") else [f"{path}: must not be null."]
    for combinator in ("anyOf", "oneOf"):
        branches = [b for b in _list(spec, combinator) if isinstance(b, dict)]
        if branches and not any(_fits(value, branch, path) for branch in branches):
            allowed = "; ".join(filter(None, (_describe(b) for b in branches)))
            return [f"{path}: must be {allowed or 'one of the allowed forms'}."]
    kind = spec.get("type")
    if isinstance(kind, str) and kind and not _has_type(value, kind):
        return [f"{path}: must be {_article(kind)}."]
    enum = spec.get("enum")
    if isinstance(enum, list) and value not in enum:
        return [f"{path}: must be {_describe({'enum': enum})}, not {json.dumps(value)}."]
    return [*_check_number(value, spec, path), *_check_container(value, spec, path)]


def _fits(value: Any, branch: dict[str, Any], path: str) -> bool:
    if set(branch) <= {"nullable", "description"} and branch.get("nullable"):
        return value is None  # OpenAPI's {"nullable": true} branch: null only
    return not check(value, branch, path)


def _check_number(value: Any, spec: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return []
    problems = []
    low, high = _limit(spec, "minimum"), _limit(spec, "maximum")
    if low is not None and value < low:
        problems.append(f"{path}: must be at least {_number(low)}.")
    if high is not None and value > high:
        problems.append(f"{path}: must be at most {_number(high)}.")
    return problems


def _check_container(value: Any, spec: dict[str, Any], path: str) -> list[str]:
    problems = []
    if isinstance(value, str):
        most, least = _count(spec, "maxLength"), _count(spec, "minLength")
        if most is not None and len(value) > most:
            problems.append(f"{path}: must be at most {most} characters.")
        if least is not None and len(value) < least:
            problems.append(f"{path}: must be at least {least} characters.")
    if isinstance(value, list):
        most, least = _count(spec, "maxItems"), _count(spec, "minItems")
        if most is not None and len(value) > most:
            problems.append(f"{path}: at most {most} items.")
        if least is not None and len(value) < least:
            problems.append(f"{path}: at least {least} items.")
        for index, item in enumerate(value):
            problems += check(item, spec.get("items"), f"{path}[{index}]")
    if isinstance(value, dict):
        properties = spec.get("properties") if isinstance(spec.get("properties"), dict) else {}
        for name in _list(spec, "required"):
            if isinstance(name, str) and name not in value:
                problems.append(f"{path}.{name}: is required.")
        extra = spec.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                problems += check(item, properties[name], f"{path}.{name}")
            elif extra is False:
                problems.append(f"{path}.{name}: is not an allowed key.")
            elif isinstance(extra, dict):
                problems += check(item, extra, f"{path}.{name}")
    return problems


def _has_type(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    expected = {"string": str, "boolean": bool, "array": list, "object": dict}.get(kind)
    return expected is None or isinstance(value, expected)


def _describe(spec: dict[str, Any]) -> str:
    if _list(spec, "enum"):
        return "one of " + ", ".join(_as_json(v) or "?" for v in spec["enum"])
    if isinstance(spec.get("type"), str):
        properties = spec.get("properties")
        inner = properties.get("type") if isinstance(properties, dict) else None
        if spec["type"] == "object" and isinstance(inner, dict) and _list(inner, "enum"):
            return "an object with type " + " or ".join(_as_json(v) or "?" for v in inner["enum"])
        return _article(spec["type"])
    return ""


def _article(kind: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object"}.get(
        kind, f"a {kind}"
    )


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _list(spec: dict[str, Any], key: str) -> list[Any]:
    """A keyword whose value must be a list (enum, required, anyOf...); [] otherwise."""
    value = spec.get(key)
    return value if isinstance(value, list) else []


def _limit(spec: dict[str, Any], key: str) -> int | float | None:
    """minimum / maximum, when it is a finite number."""
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def _count(spec: dict[str, Any], key: str) -> int | None:
    """minLength, maxItems and the like, when a whole number."""
    value = spec.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_json(value: Any) -> str | None:
    try:
        return json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        return None


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def parse_json(text: str, *, name: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON a user typed, or a ValidationError that says what is wrong with it.

    Strict JSON: Python's parser also takes NaN and Infinity (and turns 1e400 into
    infinity), which neither database stores nor the upstream parses; and neither
    database stores a NUL character or an unpaired surrogate, which JSON escapes
    can spell (a lone surrogate cannot even be written into the page as UTF-8).
    """
    if len(text.encode(errors="surrogatepass")) > max_bytes:
        raise forms.ValidationError(f"{name}: at most {max_bytes:,} bytes.")
    too_deep = f"{name}: nests deeper than {max_depth} levels."
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotStrictJson as error:
        raise forms.ValidationError(f"{name}: {error}") from None
    except json.JSONDecodeError as error:
        raise forms.ValidationError(
            f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    except ValueError:  # an integer past Python's conversion limit (thousands of digits)
        raise forms.ValidationError(f"{name}: a number has too many digits.") from None
    except RecursionError:
        raise forms.ValidationError(too_deep) from None
    if json_depth(value) > max_depth:
        raise forms.ValidationError(too_deep)
    if problem := storable.problem(value):
        raise forms.ValidationError(f"{name}: {problem}")
    return value


class _NotStrictJson(ValueError):
    pass


def _refuse_constant(constant: str) -> Any:
    raise _NotStrictJson(f"{constant} is not a JSON number; write a number or null.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotStrictJson(f"{text} is too large for a number; write a smaller one.")
    return value


def json_depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (iterative: hostile input can nest thousands deep)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest
