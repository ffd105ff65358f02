"""Structured output: the `response_format` editor, and the check of a reply against it.

The editor stands in for the JSON field of `response_format` when a model's schema
offers the json_schema type: a type select and, for json_schema, name, description,
strict and schema. It cleans to the very value the JSON field would have parsed from
the same object typed out (`{"type": "json_schema", "json_schema": {"name": ...,
"schema": {...}, "strict": true}}`), so the merge into extra_params, the schema check
and the stored request are the ones every other parameter goes through. A stored
value the editor cannot show unchanged (strict false, an extra key) stays in the free
JSON, as any unrepresentable value does (schema_form.split_stored).

`check` reads a reply against the format its request asked for. The reply is the
upstream's (hostile) and the schema the user's, so the check is bounded: the reply's
size and depth, a budget of steps and time for the validation, no `$ref` ever fetched
(jsonschema's default registry would fetch remote ones), `uniqueItems` in n log n,
and no regular expression run on the reply (Python's `re` cannot be stopped, and a
reply can make a backtracking pattern run for minutes): `pattern` is skipped and
said so, a schema with `patternProperties` is not checked.
"""

import functools
import json
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import referencing
import referencing.exceptions
from django import forms
from django.forms.boundfield import BoundField
from django.utils.safestring import SafeString
from jsonschema import Draft202012Validator, SchemaError, validators
from jsonschema import ValidationError as SchemaViolation

from . import schema_form, storable

TYPES = ("text", "json_object", "json_schema")
# The upstream's own rule for json_schema.name.
# Reference: https://platform.openai.com/docs/api-reference/chat/create#chat-create-response_format
NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_DESCRIPTION_CHARS = 2_000
MAX_SCHEMA_BYTES = schema_form.JsonField.MAX_BYTES
# The JSON field takes response_format nesting MAX_JSON_DEPTH deep; the schema sits two
# levels down (response_format → json_schema → schema).
MAX_SCHEMA_DEPTH = schema_form.MAX_JSON_DEPTH - 2

# The check of a reply. A structured reply of 16k tokens is about 64 KB, and checking
# one takes up to ~0.2 s (jsonschema evaluates ~100,000 keywords a second).
MAX_CONTENT_CHARS = 64 * 1024
MAX_CONTENT_DEPTH = 32
# A schema in a stored request may have come from a raw body (512 KB).
MAX_CHECKED_SCHEMA_BYTES = 64 * 1024
MAX_CHECKED_SCHEMA_DEPTH = 32
MAX_STEPS = 200_000  # keyword evaluations
TIME_LIMIT_SECONDS = 0.5
MAX_ERRORS = 20
MAX_PATH_CHARS = 200
MAX_MESSAGE_CHARS = 300
MAX_NAME_CHARS = 100


# --- The editor ----------------------------------------------------------------


def offered_types(spec: Any) -> list[str]:
    """The response_format types a parameter's schema lists (its branches' type enums)."""
    if not isinstance(spec, dict):
        return []
    branches = [spec, *_list(spec, "oneOf"), *_list(spec, "anyOf")]
    found = set()
    for branch in branches:
        properties = branch.get("properties") if isinstance(branch, dict) else None
        kind = properties.get("type") if isinstance(properties, dict) else None
        if isinstance(kind, dict):
            found.update(value for value in _list(kind, "enum") if isinstance(value, str))
    return [kind for kind in TYPES if kind in found]


def takes(name: str, spec: Any) -> bool:
    """Whether a schema property gets the editor: response_format offering json_schema."""
    return name == "response_format" and "json_schema" in offered_types(spec)


@dataclass(frozen=True)
class Part:
    """One input of the editor, rendered with its own label, help and errors."""

    key: str
    label: str
    help: str
    id: str
    html: SafeString
    errors: list[str]

    @property
    def is_checkbox(self) -> bool:
        return self.key in CHECKBOXES


# The parts shown as a checkbox with its label after it (chat/tools_editor.py has "remove").
CHECKBOXES = frozenset({"strict", "remove"})


PARTS = {  # key: (label, help)
    "type": (
        "Type",
        "text: plain replies; json_object: any JSON; json_schema: JSON that fits the schema "
        "below. Name, description, strict and schema are sent only with json_schema.",
    ),
    "name": ("Name", "Required for json_schema: letters, digits, _ and -, at most 64."),
    "description": ("Description", "Optional: what the format is for, shown to the model."),
    "strict": ("Strict", "Strict adherence (the upstream then takes only a JSON Schema subset)."),
    "schema": ("Schema (JSON)", "A JSON Schema (draft 2020-12), checked before sending."),
}


class EditorWidget(forms.MultiWidget):
    """The editor's inputs, posted as <name>_type, <name>_name, ... (no JavaScript needed)."""

    def __init__(self, *, types: list[str]) -> None:
        widgets = {
            "type": forms.Select(choices=[("", "— not sent —"), *((t, t) for t in types)]),
            "name": forms.TextInput(
                attrs={"maxlength": 64, "autocomplete": "off", "spellcheck": "false"}
            ),
            "description": forms.TextInput(attrs={"maxlength": MAX_DESCRIPTION_CHARS}),
            "strict": forms.CheckboxInput(),
            "schema": forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "json"}),
        }
        super().__init__(widgets)

    def decompress(self, value: Any) -> list[Any]:
        if not isinstance(value, dict):
            return [None, None, None, False, None]
        spec = value.get("json_schema") if isinstance(value.get("json_schema"), dict) else {}
        schema = spec.get("schema")
        return [
            value.get("type"),
            spec.get("name"),
            spec.get("description"),
            spec.get("strict") is True,
            None if schema is None else json.dumps(schema, indent=2, ensure_ascii=False),
        ]


class EditorBoundField(BoundField):
    """Hands the template each input with its label, so the editor is a plain fieldset."""

    @property
    def parts(self) -> list[Part]:
        widget = self.field.widget
        value = self.value()
        values = value if isinstance(value, list) else widget.decompress(value)
        by_part = self._errors_by_part()
        parts = []
        for key, sub, sub_value in zip(PARTS, widget.widgets, values, strict=True):
            label, help_ = PARTS[key]
            sub_id = f"{self.auto_id}_{key}" if self.auto_id else ""
            attrs = {"id": sub_id, "aria-describedby": f"{sub_id}_help"} if sub_id else {}
            if by_part.get(key):
                attrs["aria-invalid"] = "true"
            html = sub.render(f"{self.html_name}_{key}", sub_value, attrs, self.form.renderer)
            parts.append(Part(key, label, help_, sub_id, html, by_part.get(key, [])))
        return parts

    @property
    def general_errors(self) -> list[str]:
        """Errors that belong to no one input (the check against the model's schema)."""
        return self._errors_by_part().get("", [])

    def _errors_by_part(self) -> dict[str, list[str]]:
        by_part: dict[str, list[str]] = {}
        for error in self.errors.as_data():
            key = error.code if error.code in PARTS else ""
            by_part.setdefault(key, []).extend(error.messages)
        return by_part


class EditorField(forms.Field):
    """response_format from the editor's inputs; None when no type is chosen (not sent)."""

    bound_field_class = EditorBoundField
    editor_template = "chat/_response_format_field.html"

    def __init__(self, *, types: list[str], **kwargs: Any) -> None:
        self.types = types
        kwargs.setdefault("widget", EditorWidget(types=types))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):  # an initial value, already a response_format
            return value
        if not isinstance(value, list | tuple) or len(value) != len(PARTS):
            value = [""] * len(PARTS)
        kind, name, description, strict, schema_text = value
        kind = str(kind or "")
        if not kind:
            return None
        if kind not in self.types:
            raise forms.ValidationError(
                f"Type: choose one of {', '.join(self.types)}.", code="type"
            )
        if kind != "json_schema":
            return {"type": kind}
        errors = []
        name = str(name or "").strip()
        if not name:
            errors.append(forms.ValidationError("Name: required for json_schema.", code="name"))
        elif not NAME.fullmatch(name):
            errors.append(
                forms.ValidationError(
                    "Name: only letters a–z and A–Z, digits, _ and -, at most 64 characters.",
                    code="name",
                )
            )
        description = str(description or "").strip()
        if len(description) > MAX_DESCRIPTION_CHARS:
            errors.append(
                forms.ValidationError(
                    f"Description: at most {MAX_DESCRIPTION_CHARS:,} characters.",
                    code="description",
                )
            )
        elif problem := storable.problem(description):
            errors.append(forms.ValidationError(f"Description: {problem}", code="description"))
        schema = None
        try:
            schema = schema_of(str(schema_text or ""))
        except forms.ValidationError as error:
            errors += [forms.ValidationError(message, code="schema") for message in error.messages]
        if errors:
            raise forms.ValidationError(errors)
        # The keys in the order of the upstream's schema: name, description, schema, strict.
        json_schema: dict[str, Any] = {"name": name}
        if description:
            json_schema["description"] = description
        if schema is not None:
            json_schema["schema"] = schema
        if strict:
            json_schema["strict"] = True
        return {"type": "json_schema", "json_schema": json_schema}


def schema_of(
    text: str, *, name: str = "Schema", max_depth: int = MAX_SCHEMA_DEPTH
) -> dict[str, Any] | None:
    """A JSON Schema typed in an editor (None when blank), or a ValidationError naming the
    problem, each message starting with `name` (the tools editor checks its parameters here)."""
    text = text.strip()
    if not text:
        return None
    try:
        schema = schema_form.parse_json(
            text, name=name, max_bytes=MAX_SCHEMA_BYTES, max_depth=max_depth
        )
    except forms.ValidationError as error:
        raise forms.ValidationError(
            [m if m.startswith(name) else f"{name}: {m}" for m in error.messages]
        ) from None
    if not isinstance(schema, dict):
        raise forms.ValidationError(
            f'{name}: must be a JSON object, like {{"type": "object", "properties": {{...}}}}.'
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise forms.ValidationError(
            f"{name}: not a valid JSON Schema: {_where(error)}: {_short(error.message)}"
        ) from None
    return schema


def editor_field(param: schema_form.Param) -> EditorField:
    return EditorField(
        types=offered_types(param.schema),
        label=param.name,
        required=False,
        help_text=schema_form.help_text(param.schema),
    )


def shows(param: schema_form.Param, value: Any) -> bool:
    """Whether the editor can show a stored response_format so that saving keeps it as it is."""
    if not isinstance(value, dict) or value.get("type") not in offered_types(param.schema):
        return False
    if value["type"] != "json_schema":
        return set(value) == {"type"}
    spec = value.get("json_schema")
    if set(value) != {"type", "json_schema"} or not isinstance(spec, dict):
        return False
    if not set(spec) <= {"name", "description", "schema", "strict"}:
        return False
    name, description = spec.get("name"), spec.get("description", "x")
    if not (
        isinstance(name, str)
        and NAME.fullmatch(name)
        and isinstance(description, str)
        and description == description.strip() != ""
        and spec.get("strict", True) is True
    ):
        return False
    if "schema" not in spec:
        return True
    # The schema must come back from its textarea as it is: an object within the bounds.
    try:
        text = json.dumps(spec["schema"], indent=2, ensure_ascii=False)
        return schema_of(text) == spec["schema"]
    except (forms.ValidationError, TypeError, ValueError, RecursionError):
        return False


# --- The check of a reply --------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What a reply is, measured against the format its request asked for.

    `kind` is the requested type (json_schema or json_object), `name` the schema's name.
    Not valid means one of: `not_checked` (why the reply could not be checked within
    the bounds), `parse_error` (not JSON), or `errors` ((JSON path, message) pairs).
    """

    kind: str
    valid: bool
    name: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    parse_error: str = ""
    not_checked: str = ""
    errors_cut: bool = False  # more than MAX_ERRORS problems: the first ones are listed
    patterns_skipped: bool = False  # a `pattern` applied and was not run


def check(*, response_format: Any, content: str) -> Check | None:
    """The reply `content` against the request's `response_format`; None for plain text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        _, problem = _parse(content)
        return Check(kind="json_object", valid=not problem, **problem)
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    spec = spec if isinstance(spec, dict) else {}
    name = spec.get("name") if isinstance(spec.get("name"), str) else ""
    verdict = functools.partial(Check, kind="json_schema", name=name[:MAX_NAME_CHARS])
    value, problem = _parse(content)
    if problem:
        return verdict(valid=False, **problem)
    schema = spec.get("schema", {})  # the upstream's schema makes it optional: any JSON
    validator, schema_problem = _validator_for(schema)
    if validator is None:
        return verdict(valid=False, not_checked=schema_problem)
    budget = _Budget()
    running = _BUDGET.set(budget)
    try:
        found = list(islice(validator.iter_errors(value), MAX_ERRORS + 1))
    except _OverBudget:
        return verdict(valid=False, not_checked="checking it took too long; it was stopped.")
    except RecursionError:
        return verdict(valid=False, not_checked="the schema refers to itself without end.")
    except referencing.exceptions.Unresolvable as error:
        ref = getattr(error, "ref", None) or getattr(getattr(error, "_wrapped", None), "ref", "")
        return verdict(
            valid=False,
            not_checked=f"the schema's reference {_short(str(ref), 100)!r} cannot be "
            "followed (only references inside the schema are).",
        )
    finally:
        _BUDGET.reset(running)
    errors = [(_where(error), _short(error.message)) for error in found[:MAX_ERRORS]]
    return verdict(
        valid=not errors,
        errors=errors,
        errors_cut=len(found) > MAX_ERRORS,
        patterns_skipped=budget.patterns_skipped,
    )


class _NotJson(ValueError):
    pass


def _refuse_constant(constant: str) -> Any:
    raise _NotJson(f"{constant} is not a JSON value.")


def _parse(content: Any) -> tuple[Any, dict[str, str]]:
    """The reply's JSON value, or the Check fields that say why there is none."""
    if not isinstance(content, str):
        return None, {"not_checked": "the reply has no text."}
    if len(content) > MAX_CONTENT_CHARS:
        return None, {"not_checked": f"the reply is longer than {MAX_CONTENT_CHARS:,} characters."}
    try:
        value = json.loads(content, parse_constant=_refuse_constant)
    except _NotJson as error:
        return None, {"parse_error": str(error)}
    except json.JSONDecodeError as error:
        return None, {"parse_error": f"{error.msg} (line {error.lineno}, column {error.colno})."}
    except ValueError:  # an integer past Python's conversion limit
        return None, {"not_checked": "a number in it has too many digits."}
    except RecursionError:
        return None, {"not_checked": f"it nests deeper than {MAX_CONTENT_DEPTH} levels."}
    if schema_form.json_depth(value) > MAX_CONTENT_DEPTH:
        return None, {"not_checked": f"it nests deeper than {MAX_CONTENT_DEPTH} levels."}
    return value, {}


def _validator_for(schema: Any) -> tuple[Any, str]:
    """A validator for a stored request's schema, or why its replies cannot be checked."""
    if not isinstance(schema, dict | bool):
        return None, "the request's schema is not a JSON object."
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return None, "the request's schema cannot be read."
    if len(text) > MAX_CHECKED_SCHEMA_BYTES:
        return None, f"the request's schema is larger than {MAX_CHECKED_SCHEMA_BYTES:,} bytes."
    if schema_form.json_depth(schema) > MAX_CHECKED_SCHEMA_DEPTH:
        return None, f"the request's schema nests deeper than {MAX_CHECKED_SCHEMA_DEPTH} levels."
    return _compiled(text)


@functools.lru_cache(maxsize=32)
def _compiled(schema_text: str) -> tuple[Any, str]:
    """Cached by the schema's text: every reply of a conversation is checked against one."""
    schema = json.loads(schema_text)
    if _has_key(schema, "patternProperties"):
        return None, (
            "the schema uses patternProperties, whose regular expressions are not run on "
            "replies (a reply could make one run for minutes)."
        )
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return None, (
            f"the request's schema is not a valid JSON Schema: {_where(error)}: "
            f"{_short(error.message)}"
        )
    # An empty registry: a $ref outside the schema is never fetched.
    return _ReplyValidator(schema, registry=referencing.Registry()), ""


def _has_key(value: Any, key: str) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _OverBudget(Exception):
    pass


class _Budget:
    """Steps and time for one check; each keyword evaluation spends a step."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + TIME_LIMIT_SECONDS
        self.patterns_skipped = False

    def spend(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS or (self.steps % 64 == 0 and time.monotonic() > self.deadline):
            raise _OverBudget


# The check running in this thread (or task); keyword functions get no other context.
_BUDGET: ContextVar[_Budget | None] = ContextVar("structured_output_budget", default=None)


def _budgeted(keyword: Any) -> Any:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        budget = _BUDGET.get()
        if budget is None:
            raise _OverBudget  # only check() runs these, within a budget
        budget.spend()
        return keyword(validator, value, instance, schema)

    return run


def _pattern_not_run(validator: Any, pattern: Any, instance: Any, schema: Any) -> Any:
    budget = _BUDGET.get()
    if budget is not None and isinstance(instance, str):
        budget.patterns_skipped = True
    return ()


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Any:
    """uniqueItems by sorting canonical texts (jsonschema's fallback compares every pair)."""
    if unique is not True or not isinstance(instance, list):
        return
    first_at: dict[str, int] = {}
    for index, item in enumerate(instance):
        key = json.dumps(_canonical(item), sort_keys=True)
        if key in first_at:
            yield SchemaViolation(f"items {first_at[key]} and {index} are equal.")
            return
        first_at[key] = index


def _canonical(value: Any) -> Any:
    """JSON Schema equality: 1 equals 1.0, true does not equal 1, key order does not count."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


_ReplyValidator = validators.extend(
    Draft202012Validator,
    {
        **{key: _budgeted(keyword) for key, keyword in Draft202012Validator.VALIDATORS.items()},
        "uniqueItems": _budgeted(_unique_items),
        "pattern": _budgeted(_pattern_not_run),
    },
)


def _where(error: SchemaViolation | SchemaError) -> str:
    return _short(error.json_path, MAX_PATH_CHARS)


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list(spec: dict[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    return value if isinstance(value, list) else []
