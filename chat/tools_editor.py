"""Tools: the editor of a model's `tools`, and the `tool_choice` select beside it.

The editor stands in for the JSON field of `tools` where the model's schema describes
function tools: a list of functions, each with a name, a description, a parameters
schema and, where the schema lists it, strict. The schema also says the shape a tool
takes: OpenAI's `{"type": "function", "function": {name, description, parameters,
strict}}`, or Anthropic's `{name, description, input_schema}` (Claude's document). The
editor cleans to the very list the JSON field would have parsed from the same tools
typed out, and within that field's bounds (16,384 bytes, 8 levels), so the merge into
extra_params, the check against the schema and the stored request are the ones every
parameter goes through.

It needs no JavaScript: the page draws the functions there are plus one blank slot
(left blank, it is ignored) and a "remove" box for each function; the inputs post as
`<name>_<slot>_<part>`. JavaScript may add blank slots (static/js/parameters.js).
A stored value the editor cannot show unchanged stays in the free JSON, as for every
field (schema_form.split_stored).

`tool_choice` becomes a select of the forms the schema describes: its words (auto,
none, required; Anthropic's are objects, {"type": "auto"}) and "call this function"
for each function defined in tools. Other forms go in the free JSON.
"""

import copy
import dataclasses
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django import forms
from django.conf import settings
from django.forms.boundfield import BoundField

from . import schema_form, storable, structured_output
from .structured_output import Part

# OpenAI's rule for function names; Anthropic's tool names follow the same one.
# Reference: https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools
NAME = structured_output.NAME
# Reference: the same page: "A max of 128 functions are supported."
MAX_FUNCTIONS = 128
MAX_DESCRIPTION_CHARS = 4_000
# The JSON field's bounds: what the editor makes could have been typed there.
MAX_BYTES = schema_form.JsonField.MAX_BYTES
MAX_DEPTH = schema_form.MAX_JSON_DEPTH
PARTS = ("name", "description", "parameters", "strict", "remove")
_SLOT_KEY = re.compile(r"_(\d{1,4})_(" + "|".join(PARTS) + ")")
_SCHEMA_PATH = re.compile(r"tools\[(\d+)\]")
CALL_PREFIX = "function:"  # a tool_choice option that names a function


# --- What the schema says ------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """The shape of one tool in a model's schema."""

    anthropic: bool  # {name, description, input_schema}, not {"type": "function", ...}
    strict: bool  # the schema lists `strict`

    @property
    def schema_key(self) -> str:
        return "input_schema" if self.anthropic else "parameters"

    @property
    def schema_depth(self) -> int:
        """How deep the parameters schema may nest for the list to nest MAX_DEPTH deep."""
        return MAX_DEPTH - (2 if self.anthropic else 3)  # tools[i](.function).parameters


def style_of(spec: Any) -> Style | None:
    """How the schema describes a tool, when it describes function tools; None otherwise."""
    if not isinstance(spec, dict) or spec.get("type") != "array":
        return None
    for item in _branches(spec.get("items")):
        properties = _properties(item)
        if isinstance(properties.get("function"), dict):
            return Style(anthropic=False, strict="strict" in _properties(properties["function"]))
        if "input_schema" in properties and "name" in properties:
            return Style(anthropic=True, strict="strict" in properties)
    return None


def takes(name: str, spec: Any) -> bool:
    return name == "tools" and style_of(spec) is not None


@dataclass(frozen=True)
class ChoiceForms:
    """The tool_choice forms a schema describes, by the key its select posts."""

    constants: dict[str, Any]  # "auto" → "auto" (OpenAI) or {"type": "auto"} (Anthropic)
    named: str  # "function": {"type": "function", "function": {"name": ...}}; "tool": Anthropic's

    def named_value(self, name: str) -> dict[str, Any]:
        if self.named == "tool":
            return {"type": "tool", "name": name}
        return {"type": "function", "function": {"name": name}}


def choice_forms_of(spec: Any) -> ChoiceForms | None:
    """The forms, when there is more than a plain string enum (that is a select already)."""
    constants: dict[str, Any] = {}
    named = ""
    for branch in _branches(spec):
        if branch.get("type") in (None, "string") and not _properties(branch):
            for word in _list(branch, "enum"):
                if isinstance(word, str) and NAME.fullmatch(word):
                    constants.setdefault(word, word)
            continue
        properties = _properties(branch)
        kind = properties.get("type") if isinstance(properties.get("type"), dict) else {}
        only_type = set(_list(branch, "required")) <= {"type"}
        for word in _list(kind, "enum"):
            if word == "function" and "function" in properties:
                named = named or "function"
            elif word == "tool" and "name" in properties:
                named = named or "tool"
            elif isinstance(word, str) and NAME.fullmatch(word) and only_type:
                constants.setdefault(word, {"type": word})
    if not named and all(isinstance(value, str) for value in constants.values()):
        return None
    return ChoiceForms(constants=dict(list(constants.items())[:20]), named=named)


def takes_choice(name: str, spec: Any) -> bool:
    return name == "tool_choice" and choice_forms_of(spec) is not None


# --- The tools editor ----------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """What one slot of the editor holds: as posted, or as a stored tool shows."""

    name: str = ""
    description: str = ""
    parameters: str = ""
    strict: bool = False
    remove: bool = False

    @property
    def blank(self) -> bool:
        return not (self.name.strip() or self.description.strip() or self.parameters.strip())

    @property
    def kept(self) -> bool:
        """Whether the slot makes a tool (a blank or removed one is ignored)."""
        return not (self.blank or self.remove)


PART_TEXT = {  # key: (label, help)
    "name": ("Name", "Letters, digits, _ and -, at most 64; each function's own."),
    "description": ("Description", "Optional: what the function does, shown to the model."),
    "parameters": (
        "Parameters (JSON Schema)",
        'A JSON Schema (draft 2020-12) of the arguments, {"type": "object", ...}.',
    ),
    "strict": ("Strict", "Strict adherence (the upstream then takes only a JSON Schema subset)."),
    "remove": ("Remove", "Drop this function when the form is saved or sent."),
}


class ToolsWidget(forms.Widget):
    """Reads the slots posted as <name>_<slot>_<part>, in slot order (no JavaScript needed)."""

    def __init__(self, *, style: Style) -> None:
        super().__init__()
        self.inputs = {
            "name": forms.TextInput(
                attrs={"maxlength": 64, "autocomplete": "off", "spellcheck": "false"}
            ),
            "description": forms.Textarea(attrs={"rows": 2, "maxlength": MAX_DESCRIPTION_CHARS}),
            "parameters": forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "json"}),
            "strict": forms.CheckboxInput(),
            "remove": forms.CheckboxInput(),
        }
        if not style.strict:
            del self.inputs["strict"]

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[Slot]:
        # The keys are bounded by DATA_UPLOAD_MAX_NUMBER_FIELDS.
        posted: dict[int, dict[str, Any]] = {}
        for key in data:
            if isinstance(key, str) and key.startswith(name):
                match = _SLOT_KEY.fullmatch(key, len(name))
                if match and match[2] in self.inputs:
                    index, part = int(match[1]), match[2]
                    value = self.inputs[part].value_from_datadict(data, files, key)
                    posted.setdefault(index, {})[part] = value
        return [_posted_slot(posted[index]) for index in sorted(posted)]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return not self.value_from_datadict(data, files, name)


def _posted_slot(parts: dict[str, Any]) -> Slot:
    def text(key: str) -> str:
        value = parts.get(key)
        return value if isinstance(value, str) else ""

    return Slot(
        name=text("name"),
        description=_lines(text("description")),
        parameters=text("parameters"),
        strict=parts.get("strict") is True,
        remove=parts.get("remove") is True,
    )


@dataclass(frozen=True)
class SlotView:
    """One slot as the template draws it: a fieldset of parts."""

    number: int  # 1-based, as errors name it ("Function 2: ...")
    blank: bool
    parts: list[Part]
    errors: list[str]

    @property
    def legend(self) -> str:
        return f"Function {self.number}" + (" (new)" if self.blank else "")


class ToolsBoundField(BoundField):
    """Hands the template each slot with its parts, labels and errors."""

    @cached_property
    def posted(self) -> list[Slot]:
        """The slots as posted, or as the initial value shows (read once per page)."""
        return list(self.value())

    @property
    def slots(self) -> list[SlotView]:
        slots = list(self.posted)
        if not slots or not slots[-1].blank:
            slots.append(Slot())  # the "add a function" slot
        errors = self._errors_by_place()
        widget = self.field.widget
        style = self.field.style
        views = []
        for position, slot in enumerate(slots):
            parts = []
            for key, sub in widget.inputs.items():
                if key == "remove" and slot.blank:
                    continue  # nothing to remove yet
                label, help_ = PART_TEXT[key]
                if key == "parameters" and style.anthropic:
                    label = "Input schema (JSON Schema)"
                sub_id = f"{self.auto_id}_{position}_{key}" if self.auto_id else ""
                attrs = {"id": sub_id, "aria-describedby": f"{sub_id}_help"} if sub_id else {}
                part_errors = errors.get((position, key), [])
                if part_errors:
                    attrs["aria-invalid"] = "true"
                html = sub.render(
                    f"{self.html_name}_{position}_{key}",
                    getattr(slot, key),
                    attrs,
                    self.form.renderer,
                )
                parts.append(Part(key, label, help_, sub_id, html, part_errors))
            views.append(SlotView(position + 1, slot.blank, parts, errors.get((position, ""), [])))
        return views

    @property
    def general_errors(self) -> list[str]:
        """Errors of the whole list (its size, too many functions)."""
        return self._errors_by_place().get((None, ""), [])

    @property
    def function_names(self) -> list[str]:
        """The names of the functions the editor holds (for the tool_choice select)."""
        return _unique(
            slot.name.strip()
            for slot in self.posted
            if slot.kept and NAME.fullmatch(slot.name.strip())
        )

    def _errors_by_place(self) -> dict[tuple[int | None, str], list[str]]:
        """Errors by (slot position, part); the model schema's own check names a tool by
        its index in the list sent (`tools[1]...`), which is the index among kept slots."""
        kept = [position for position, slot in enumerate(self.posted) if slot.kept]
        by_place: dict[tuple[int | None, str], list[str]] = {}
        for error in self.errors.as_data():
            place: tuple[int | None, str] = (None, "")
            code = error.code or ""
            if code.startswith("slot:"):
                _, position, part = code.split(":")
                place = (int(position), part)
            elif match := _SCHEMA_PATH.match(error.messages[0] if error.messages else ""):
                index = int(match[1])
                if index < len(kept):
                    place = (kept[index], "")
            by_place.setdefault(place, []).extend(error.messages)
        return by_place


class ToolsField(forms.Field):
    """`tools` from the editor's slots; None when no slot holds a function (not sent)."""

    bound_field_class = ToolsBoundField
    editor_template = "chat/_tools_field.html"

    def __init__(self, *, style: Style, **kwargs: Any) -> None:
        self.style = style
        kwargs.setdefault("widget", ToolsWidget(style=style))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> list[Slot]:
        if isinstance(value, list) and all(isinstance(slot, Slot) for slot in value):
            return value
        return slots_of(value, self.style) or []

    def to_python(self, value: Any) -> list[dict[str, Any]] | None:
        if not (isinstance(value, list) and all(isinstance(slot, Slot) for slot in value)):
            return None  # the widget always reads a list of slots
        tools, errors, first_with = [], [], {}
        for position, slot in enumerate(value):
            if not slot.kept:
                continue
            tool, slot_errors = self._tool(position, slot, first_with)
            errors += slot_errors
            if tool is not None:
                tools.append(tool)
        kept = sum(slot.kept for slot in value)
        if kept > MAX_FUNCTIONS:
            errors.append(
                forms.ValidationError(
                    f"Tools: at most {MAX_FUNCTIONS} functions; there are {kept}."
                )
            )
        if errors:
            raise forms.ValidationError(errors)
        if not tools:
            return None
        size = len(json.dumps(tools, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_BYTES:
            raise forms.ValidationError(
                f"Tools: at most {MAX_BYTES:,} bytes in all as compact JSON (the JSON field's "
                f"limit); these are {size:,}."
            )
        return tools

    def _tool(
        self, position: int, slot: Slot, first_with: dict[str, int]
    ) -> tuple[dict[str, Any] | None, list[forms.ValidationError]]:
        """One tool in the schema's shape, or the errors of its slot, each on its part."""
        number = position + 1

        def error(part: str, message: str) -> forms.ValidationError:
            return forms.ValidationError(message, code=f"slot:{position}:{part}")

        errors = []
        name = slot.name.strip()
        if not name:
            errors.append(error("name", f"Function {number}: name: required."))
        elif not NAME.fullmatch(name):
            errors.append(
                error(
                    "name",
                    f"Function {number}: name: only letters a–z and A–Z, digits, _ and -, "
                    "at most 64 characters.",
                )
            )
        elif name in first_with:
            errors.append(
                error(
                    "name",
                    f"Function {number}: name: {name} is already the name of function "
                    f"{first_with[name]}; each function needs its own.",
                )
            )
        else:
            first_with[name] = number
        description = slot.description.strip()
        if len(description) > MAX_DESCRIPTION_CHARS:
            errors.append(
                error(
                    "description",
                    f"Function {number}: description: at most {MAX_DESCRIPTION_CHARS:,} "
                    "characters.",
                )
            )
        elif problem := storable.problem(description):
            errors.append(error("description", f"Function {number}: description: {problem}"))
        schema_name = f"Function {number}: {self.style.schema_key}"
        schema = None
        try:
            schema = structured_output.schema_of(
                slot.parameters, name=schema_name, max_depth=self.style.schema_depth
            )
        except forms.ValidationError as problem:
            errors += [error("parameters", message) for message in problem.messages]
        else:
            if schema is not None and schema.get("type") != "object":
                errors.append(
                    error(
                        "parameters",
                        f'{schema_name}: must describe an object: {{"type": "object", '
                        '"properties": {...}} (the arguments are an object).',
                    )
                )
        if errors:
            return None, errors
        # The keys in the order of the provider's documents.
        definition: dict[str, Any] = {"name": name}
        if description:
            definition["description"] = description
        if schema is not None:
            definition[self.style.schema_key] = schema
        if slot.strict and self.style.strict:
            definition["strict"] = True
        if self.style.anthropic:
            return definition, []
        return {"type": "function", "function": definition}, []


def slots_of(tools: Any, style: Style) -> list[Slot] | None:
    """The slots that show a stored tools list; None when one of its items has another shape.
    (Whether saving them gives the same list back is `shows`'s question.)"""
    if not isinstance(tools, list):
        return None
    slots = []
    for tool in tools:
        definition = _definition(tool, style)
        if definition is None:
            return None
        schema = definition.get(style.schema_key)
        try:
            text = "" if schema is None else json.dumps(schema, indent=2, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            return None
        name, description = definition.get("name"), definition.get("description", "")
        slots.append(
            Slot(
                name=name if isinstance(name, str) else "",
                description=description if isinstance(description, str) else "",
                parameters=text,
                strict=definition.get("strict") is True,
            )
        )
    return slots


def _definition(tool: Any, style: Style) -> dict[str, Any] | None:
    """The dict holding a tool's name and schema, in the style's shape."""
    if not isinstance(tool, dict):
        return None
    if style.anthropic:
        return tool
    if set(tool) != {"type", "function"} or tool["type"] != "function":
        return None
    return tool["function"] if isinstance(tool["function"], dict) else None


def editor_field(param: schema_form.Param) -> ToolsField:
    style = style_of(param.schema)
    assert style is not None  # schema_form asked `takes` first
    return ToolsField(
        style=style, label=param.name, required=False, help_text=schema_form.help_text(param.schema)
    )


def shows(param: schema_form.Param, value: Any) -> bool:
    """Whether the editor can show a stored tools list so that saving keeps it as it is."""
    if not isinstance(value, list) or not value or len(value) > MAX_FUNCTIONS:
        return False
    field = editor_field(param)
    slots = slots_of(value, field.style)
    if slots is None:
        return False
    # As a browser posts them back: a textarea's line breaks come back as CRLF.
    slots = [dataclasses.replace(slot, description=_lines(slot.description)) for slot in slots]
    try:
        return field.clean(slots) == value
    except (forms.ValidationError, TypeError, ValueError, RecursionError):
        return False


def names_in(tools: Any) -> list[str]:
    """The function names in a tools list of either shape."""
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        definition = tool.get("function") if isinstance(tool.get("function"), dict) else tool
        name = definition.get("name")
        if isinstance(name, str) and NAME.fullmatch(name):
            names.append(name)
    return _unique(names)


# --- tool_choice ---------------------------------------------------------------------

WORDS = {
    "auto": "auto: the model decides",
    "none": "none: no tool calls",
    "required": "required: at least one tool call",
    "any": "any: at least one tool call",
}


class ToolChoiceBoundField(BoundField):
    """Fills the select with the functions the form's tools define, when it is drawn."""

    def as_widget(self, widget: Any = None, attrs: Any = None, only_initial: bool = False) -> Any:
        current = self.value()
        names = defined_names(self.form)
        if isinstance(current, str) and current.startswith(CALL_PREFIX):
            names = _unique([*names, current.removeprefix(CALL_PREFIX)])
        self.field.widget.choices = self.field.choices_for(names)
        return super().as_widget(widget, attrs, only_initial)


class ToolChoiceField(forms.Field):
    """tool_choice from its select: a word, or a call of one function; None is not sent."""

    bound_field_class = ToolChoiceBoundField

    def __init__(self, *, choice_forms: ChoiceForms, **kwargs: Any) -> None:
        self.forms = choice_forms
        # parameters.js offers the functions typed in the editor in a select so marked.
        attrs = {"data-calls-functions": ""} if choice_forms.named else {}
        kwargs.setdefault("widget", forms.Select(attrs=attrs))
        super().__init__(**kwargs)

    def choices_for(self, names: list[str]) -> list[Any]:
        choices: list[Any] = [("", "— not sent —")]
        choices += [(word, WORDS.get(word, word)) for word in self.forms.constants]
        if self.forms.named and names:
            choices.append(("Call this function", [(CALL_PREFIX + name, name) for name in names]))
        return choices

    def prepare_value(self, value: Any) -> Any:
        return self.key_of(value) if not isinstance(value, str) else value

    def to_python(self, value: Any) -> Any:
        key = value.strip() if isinstance(value, str) else ""
        if not key:
            return None
        if key in self.forms.constants:
            return copy.deepcopy(self.forms.constants[key])
        name = key.removeprefix(CALL_PREFIX)
        if self.forms.named and key.startswith(CALL_PREFIX) and NAME.fullmatch(name):
            return self.forms.named_value(name)
        offered = ", ".join(self.forms.constants)
        also = " or a function from tools" if self.forms.named else ""
        raise forms.ValidationError(
            f"{self.label}: choose {offered}{also}; any other form goes in Extra parameters."
        )

    def key_of(self, value: Any) -> str | None:
        """The option that sends exactly `value`, if there is one."""
        for key, constant in self.forms.constants.items():
            if type(value) is type(constant) and value == constant:
                return key
        name = _named(value)
        if self.forms.named and name and value == self.forms.named_value(name):
            return CALL_PREFIX + name
        return None


def choice_field(param: schema_form.Param) -> ToolChoiceField:
    choice_forms = choice_forms_of(param.schema)
    assert choice_forms is not None  # schema_form asked `takes_choice` first
    return ToolChoiceField(
        choice_forms=choice_forms,
        label=param.name,
        required=False,
        help_text=(
            "Offers the functions in tools (without JavaScript, once saved); other forms go "
            "in Extra parameters. " + schema_form.help_text(param.schema)
        ),
    )


def shows_choice(param: schema_form.Param, value: Any) -> bool:
    return choice_field(param).key_of(value) is not None


def defined_names(form: forms.Form) -> list[str]:
    """The functions the form's tools define: in the editor, or in the free JSON."""
    names = []
    tools_name = schema_form.FIELD_PREFIX + "tools"
    if isinstance(form.fields.get(tools_name), ToolsField):
        names += form[tools_name].function_names
    if form.is_bound:
        text = form.data.get(form.add_prefix("extra_params"))
    else:
        text = form.initial.get("extra_params")
    try:
        free = schema_form.parse_json(
            str(text or "{}"), name="Extra parameters", max_bytes=settings.MAX_EXTRA_PARAMS_BYTES
        )
    except forms.ValidationError:
        free = None
    if isinstance(free, dict):
        names += names_in(free.get("tools"))
    return _unique(names)[:MAX_FUNCTIONS]


def choice_problem(params: dict[str, Any]) -> str:
    """What is wrong with a tool_choice that names a function the tools do not define."""
    name = _named(params.get("tool_choice"))
    if name is None or name in names_in(params.get("tools")):
        return ""
    if not params.get("tools"):
        return f"tool_choice: names the function {name}, but no tools are sent."
    return f"tool_choice: names the function {name}, which is not one of the tools."


def _named(choice: Any) -> str | None:
    """The function a tool_choice names, in OpenAI's or Anthropic's shape."""
    if not isinstance(choice, dict):
        return None
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, dict):
        name = function.get("name")
    elif choice.get("type") == "tool":
        name = choice.get("name")
    else:
        return None
    return name if isinstance(name, str) else None


# --- Reading schemas -----------------------------------------------------------------


def _branches(spec: Any) -> list[dict[str, Any]]:
    if not isinstance(spec, dict):
        return []
    branches = [spec, *_list(spec, "anyOf"), *_list(spec, "oneOf")]
    return [branch for branch in branches if isinstance(branch, dict)]


def _properties(spec: Any) -> dict[str, Any]:
    properties = spec.get("properties") if isinstance(spec, dict) else None
    return properties if isinstance(properties, dict) else {}


def _list(spec: dict[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    return value if isinstance(value, list) else []


def _lines(text: str) -> str:
    """A textarea's text with its line breaks as they are stored: browsers post each as
    CRLF (and a lone CR in the page is read as a line break)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unique(names: Any) -> list[str]:
    return list(dict.fromkeys(names))
