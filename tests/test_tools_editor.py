"""The tools editor and the tool_choice select: the value they send, their errors, the round trip."""

import dataclasses
import json

import pytest
from django.template.loader import render_to_string
from django.utils.html import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import catalogue, schema_form, tools_editor
from chat.forms import ParametersForm
from chat.models import Conversation, Message
from tests.helpers import send, sent_bodies

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"  # OpenAI-shaped tools, with strict
CLAUDE = "anthropic/claude-sonnet-4.5"  # Anthropic-shaped tools ({name, input_schema})
FIELD = "schema__tools"
CHOICE = "schema__tool_choice"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"],
}
TIME_SCHEMA = {"type": "object", "properties": {"zone": {"type": "string"}}}


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, model=GPT)


def slots(*functions: dict) -> dict[str, str]:
    """What the editor's slots post, slot by slot (an unticked checkbox posts nothing)."""
    data = {}
    for index, function in enumerate(functions):
        for part, value in function.items():
            if part in ("strict", "remove"):
                if value:
                    data[f"{FIELD}_{index}_{part}"] = "on"
            else:
                data[f"{FIELD}_{index}_{part}"] = (
                    value if isinstance(value, str) else json.dumps(value)
                )
    return data


def bound(model: str = GPT, *functions: dict, **data: str) -> ParametersForm:
    form = ParametersForm({"model": model, **slots(*functions), **data})
    form.is_valid()
    return form


def as_json_field(value) -> list:
    """What the plain JSON field of tools makes of the same list typed out."""
    return schema_form.JsonField(label="tools").clean(json.dumps(value, indent=2))


def openai_tool(name, parameters=WEATHER_SCHEMA, **more) -> dict:
    return {"type": "function", "function": {"name": name, **more, "parameters": parameters}}


def slot_of(form: ParametersForm, number: int) -> tools_editor.SlotView:
    return form[FIELD].slots[number - 1]


def part_of(form: ParametersForm, number: int, key: str):
    (part,) = [part for part in slot_of(form, number).parts if part.key == key]
    return part


# --- Which schemas get the editor ---------------------------------------------------


def test_it_replaces_the_json_field_of_tools_and_reads_the_shape_from_the_schema():
    gpt, claude = ParametersForm(initial={"model": GPT}), ParametersForm(initial={"model": CLAUDE})

    assert gpt.fields[FIELD].style == tools_editor.Style(anthropic=False, strict=True)
    assert claude.fields[FIELD].style == tools_editor.Style(anthropic=True, strict=False)
    assert "schema__tools" not in ParametersForm(initial={"model": "demo/echo"}).fields
    part_keys = [part.key for part in claude[FIELD].slots[0].parts]
    assert part_keys == ["name", "description", "parameters"]  # no strict for Claude


def test_claudes_swapped_tools_and_tool_choice_are_read_under_their_own_names():
    properties = catalogue.schema_for(CLAUDE).properties

    assert properties["tools"]["type"] == "array"
    assert set(properties["tools"]["items"]["required"]) == {"name", "input_schema"}
    assert properties["tools"]["description"].startswith("Definitions of tools")
    kinds = [b["properties"]["type"]["enum"] for b in properties["tool_choice"]["anyOf"]]
    assert kinds == [["auto"], ["any"], ["tool"], ["none"]]
    assert properties["tool_choice"]["description"].startswith("Controls which")
    # A document that says it the right way round is left as it is.
    gpt = catalogue.schema_for(GPT).properties
    assert "function" in gpt["tools"]["items"]["properties"]


def test_the_tool_parameters_sit_together_at_the_end_of_the_panel():
    names = [param.name for param in ParametersForm(initial={"model": GPT}).params]

    assert names[-3:] == ["tools", "tool_choice", "parallel_tool_calls"]


# --- The value it sends ----------------------------------------------------------------


def test_it_sends_exactly_what_the_json_field_would_in_openais_shape():
    form = bound(
        GPT,
        {"name": "get_weather", "description": " The weather. ", "parameters": WEATHER_SCHEMA},
        {"name": "get_time", "parameters": json.dumps(TIME_SCHEMA, indent=4), "strict": True},
    )

    expected = [
        openai_tool("get_weather", description="The weather."),
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": TIME_SCHEMA, "strict": True},
        },
    ]
    assert form.is_valid(), form.errors
    assert form.cleaned_data[FIELD] == as_json_field(expected)
    assert form.cleaned_data["extra_params"] == {"tools": as_json_field(expected)}
    assert list(form.cleaned_data[FIELD][0]["function"]) == ["name", "description", "parameters"]


def test_claude_gets_anthropics_shape():
    form = bound(
        CLAUDE,
        {"name": "get_weather", "description": "The weather.", "parameters": WEATHER_SCHEMA},
        {"name": "get_time", "parameters": TIME_SCHEMA, "strict": True},  # Claude lists no strict
    )

    expected = [
        {"name": "get_weather", "description": "The weather.", "input_schema": WEATHER_SCHEMA},
        {"name": "get_time", "input_schema": TIME_SCHEMA},
    ]
    assert form.is_valid(), form.errors
    assert form.cleaned_data["extra_params"] == {"tools": as_json_field(expected)}


def test_a_blank_slot_is_ignored_and_the_numbers_stay_those_of_the_slots():
    form = bound(
        GPT,
        {"name": "get_weather", "parameters": WEATHER_SCHEMA},
        {"name": "  ", "description": "", "parameters": "\n", "strict": True},
        {"name": "bad name", "parameters": TIME_SCHEMA},
    )

    assert part_of(form, 3, "name").errors[0].startswith("Function 3: name: only letters")
    assert slot_of(form, 2).blank and not any(part.errors for part in slot_of(form, 2).parts)
    assert bound(GPT, {"name": "a", "parameters": TIME_SCHEMA}, {}).cleaned_data[FIELD] == [
        openai_tool("a", TIME_SCHEMA)
    ]


def test_a_removed_function_is_neither_checked_nor_sent():
    form = bound(
        GPT,
        {"name": "not valid!", "parameters": "{nope", "remove": True},
        {"name": "get_time", "parameters": TIME_SCHEMA},
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["extra_params"] == {"tools": [openai_tool("get_time", TIME_SCHEMA)]}


def test_no_function_sends_no_tools():
    form = bound(GPT, {"name": "", "parameters": ""}, {"name": "x", "remove": True})

    assert form.is_valid()
    assert "tools" not in form.cleaned_data["extra_params"]


@pytest.mark.parametrize(
    ("function", "part", "error"),
    [
        ({"name": "my tool"}, "name", "Function 2: name: only letters a–z and A–Z, digits"),
        ({"name": "x" * 65}, "name", "Function 2: name: only letters"),
        ({"name": "naïve"}, "name", "Function 2: name: only letters"),
        ({"name": "", "description": "No name"}, "name", "Function 2: name: required."),
        (
            {"name": "get_weather"},
            "name",
            "Function 2: name: get_weather is already the name of function 1",
        ),
        (
            {"parameters": "{nope"},
            "parameters",
            "Function 2: parameters: Not valid JSON: Expecting property name",
        ),
        ({"parameters": '{"a": NaN}'}, "parameters", "Function 2: parameters: NaN is not a JSON"),
        (
            {"parameters": '{"type": "strin"}'},
            "parameters",
            "Function 2: parameters: not a valid JSON Schema: $.type: 'strin' is not valid",
        ),
        (
            {"parameters": '{"type": "object", "properties": {"a": {"pattern": "("}}}'},
            "parameters",
            "Function 2: parameters: not a valid JSON Schema: $.properties.a.pattern",
        ),
        (
            {"parameters": '{"type": "string"}'},
            "parameters",
            'Function 2: parameters: must describe an object: {"type": "object"',
        ),
        ({"parameters": "[1, 2]"}, "parameters", "Function 2: parameters: must be a JSON object"),
        (
            {"parameters": '{"type": "object", "a": ' * 14 + "1" + "}" * 14},
            "parameters",
            "Function 2: parameters: nests deeper than 13 levels.",
        ),
        (
            {"parameters": json.dumps({"type": "object", "d": "x" * 17_000})},
            "parameters",
            "Function 2: parameters: at most 16,384 bytes.",
        ),
        ({"description": "a\x00b"}, "description", "Function 2: description: contains a NUL"),
        ({"description": "x" * 4_001}, "description", "Function 2: description: at most 4,000"),
    ],
)
def test_a_bad_input_is_refused_on_that_input_with_its_text_kept(function, part, error):
    second = {"name": "get_time", "parameters": TIME_SCHEMA, **function}
    form = bound(GPT, {"name": "get_weather", "parameters": WEATHER_SCHEMA}, second)

    assert not form.is_valid()
    shown = part_of(form, 2, part)
    assert [message for message in shown.errors if message.startswith(error)], shown.errors
    assert 'aria-invalid="true"' in shown.html
    assert not any(p.errors for p in slot_of(form, 1).parts)
    typed = second[part] if isinstance(second[part], str) else json.dumps(second[part])
    html = render_to_string("chat/_tools_field.html", {"field": form[FIELD]})
    assert escape(typed) in html


def test_the_whole_list_has_the_json_fields_bounds():
    many = [{"name": f"f{number}", "parameters": TIME_SCHEMA} for number in range(129)]
    big = {"type": "object", "description": "x" * 9_000}

    too_many = bound(GPT, *many)
    too_big = bound(GPT, {"name": "a", "parameters": big}, {"name": "b", "parameters": big})

    assert too_many[FIELD].general_errors == ["Tools: at most 128 functions; there are 129."]
    assert too_big[FIELD].general_errors[0].startswith("Tools: at most 16,384 bytes in all")


def test_an_error_from_the_models_schema_lands_on_the_function_it_names():
    # The provider's GPT-4o document makes parameters required; the check names tools[0],
    # the first function sent, which is the editor's second slot.
    form = bound(GPT, {"name": "gone", "remove": True}, {"name": "no_parameters"})

    assert not form.is_valid()
    (error,) = slot_of(form, 2).errors
    assert error.startswith("tools[0].function.parameters: is required.")
    assert "Send anyway" in error
    assert form.schema_failed


def test_a_refused_editor_keeps_everything_typed_and_sends_nothing(
    alice_client, conversation, upstream
):
    response = send(
        alice_client,
        conversation,
        "Keep this message",
        model=GPT,
        **slots(
            {"name": "get_weather", "description": "Weather <b>now</b>", "parameters": "{nope"},
            {"name": "get weather", "parameters": TIME_SCHEMA, "strict": True, "remove": False},
        ),
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Keep this message" in page
    assert "Weather &lt;b&gt;now&lt;/b&gt;</textarea>" in page and "{nope</textarea>" in page
    assert 'value="get weather"' in page
    strict = page.split(f'name="{FIELD}_1_strict"')[1].split(">")[0]
    assert "checked" in strict
    assert "Function 1: parameters: Not valid JSON" in page
    assert "Function 2: name: only letters" in page
    assert "Function 3 (new)" in page  # a blank slot after what was typed
    assert upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_the_editor_works_without_javascript(alice_client, conversation):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    editor = page.split('<fieldset class="field tools-editor')[1].split('class="add-function"')[0]
    assert "Function 1 (new)" in editor
    for key in ("name", "description", "parameters", "strict"):
        assert f'<label for="id_{FIELD}_0_{key}">' in editor
        assert f'id="id_{FIELD}_0_{key}_help"' in editor
    assert f"{FIELD}_0_remove" not in editor  # nothing to remove in a blank slot
    assert f'name="{FIELD}"' not in page  # no JSON textarea beside it
    assert '<button type="button" class="add-function" hidden>' in page  # JavaScript shows it


# --- Stored values ---------------------------------------------------------------------


def posted_back(form: ParametersForm) -> dict[str, str]:
    """What the browser posts back for the editor as drawn from the form's initial value."""
    shown = form[FIELD].posted
    return slots(*(dataclasses.asdict(slot) for slot in shown))


@pytest.mark.parametrize(
    ("model", "stored"),
    [
        (
            GPT,
            [
                openai_tool("get_weather", description="Line one.\nLine two."),
                {
                    "type": "function",
                    "function": {"name": "get_time", "parameters": TIME_SCHEMA, "strict": True},
                },
            ],
        ),
        (CLAUDE, [{"name": "get_weather", "description": "W", "input_schema": WEATHER_SCHEMA}]),
    ],
)
def test_stored_tools_show_in_the_editor_and_save_back_unchanged(
    alice_client, conversation, model, stored
):
    conversation.model = model
    conversation.extra_params = {"tools": stored, "x_custom": 7}
    conversation.save()

    initial = ParametersForm.initial_for(conversation)
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert initial[FIELD] == stored
    assert json.loads(initial["extra_params"]) == {"x_custom": 7}
    assert 'value="get_weather"' in page
    assert f"Function {len(stored) + 1} (new)" in page
    assert f'name="{FIELD}_0_remove"' in page
    again = bound(model, **posted_back(ParametersForm(initial=initial)))
    # Browsers post textarea line breaks as CRLF.
    crlf = {key: value.replace("\n", "\r\n") for key, value in posted_back(again).items()}
    assert again.cleaned_data[FIELD] == stored
    assert bound(model, **crlf).cleaned_data[FIELD] == stored


@pytest.mark.parametrize(
    ("model", "stored"),
    [
        (GPT, [openai_tool("a", strict=False)]),  # an unticked box would drop it
        (GPT, [{**openai_tool("a"), "extra": 1}]),
        (GPT, [{"type": "function", "function": {"name": "a", "parameters": TIME_SCHEMA, "x": 1}}]),
        (GPT, [openai_tool("a"), openai_tool("a")]),
        (GPT, [openai_tool("a b")]),
        (GPT, [openai_tool("a", description="")]),
        (GPT, [openai_tool("a", description=" padded ")]),
        (GPT, [openai_tool("a", {"type": "string"})]),
        (GPT, [openai_tool("a", {"type": "strin"})]),
        (GPT, [openai_tool("a", {})]),
        (GPT, [{"name": "a", "input_schema": TIME_SCHEMA}]),  # Anthropic's shape
        (GPT, []),
        (GPT, "get_weather"),
        (GPT, [openai_tool("a", description="a\rb")]),
        (CLAUDE, [openai_tool("a")]),
        (CLAUDE, [{"name": "a", "input_schema": TIME_SCHEMA, "strict": True}]),
        (CLAUDE, [{"name": "a", "input_schema": TIME_SCHEMA, "cache_control": {}}]),
    ],
)
def test_a_stored_value_the_editor_cannot_show_as_it_is_stays_free_json(
    conversation, model, stored
):
    conversation.model = model
    conversation.extra_params = {"tools": stored}

    initial = ParametersForm.initial_for(conversation)

    assert FIELD not in initial
    assert json.loads(initial["extra_params"]) == {"tools": stored}


def test_free_json_still_wins_over_the_editor():
    free = {"tools": [openai_tool("from_json", TIME_SCHEMA)]}
    form = bound(
        GPT, {"name": "from_editor", "parameters": TIME_SCHEMA}, extra_params=json.dumps(free)
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["extra_params"]["tools"] == free["tools"]


# --- tool_choice -------------------------------------------------------------------------


def options(form: ParametersForm) -> list[tuple[str, str]]:
    html = str(form[CHOICE])
    return [
        (chunk.split('"')[0], chunk.split(">")[1].split("<")[0])
        for chunk in html.split('<option value="')[1:]
    ]


def test_tool_choice_offers_the_words_and_the_functions_tools_define(conversation):
    conversation.extra_params = {"tools": [openai_tool("get_weather"), openai_tool("get_time")]}

    form = ParametersForm(initial=ParametersForm.initial_for(conversation))

    assert options(form) == [
        ("", "— not sent —"),
        ("none", "none: no tool calls"),
        ("auto", "auto: the model decides"),
        ("required", "required: at least one tool call"),
        ("function:get_weather", "get_weather"),
        ("function:get_time", "get_time"),
    ]
    assert 'optgroup label="Call this function"' in str(form[CHOICE])


def test_tool_choice_offers_functions_from_the_free_json_and_as_posted():
    free = json.dumps({"tools": [openai_tool("in_json")]})
    form = bound(GPT, {"name": "typed", "parameters": TIME_SCHEMA}, extra_params=free)

    assert [value for value, _ in options(form)][-2:] == ["function:typed", "function:in_json"]


@pytest.mark.parametrize(
    ("model", "posted", "sent"),
    [
        (GPT, "auto", "auto"),
        (GPT, "required", "required"),
        (GPT, "function:get_weather", {"type": "function", "function": {"name": "get_weather"}}),
        (CLAUDE, "auto", {"type": "auto"}),
        (CLAUDE, "any", {"type": "any"}),
        (CLAUDE, "function:get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_sends_the_form_the_schema_describes(model, posted, sent):
    form = bound(model, {"name": "get_weather", "parameters": WEATHER_SCHEMA}, **{CHOICE: posted})

    assert form.is_valid(), form.errors
    assert form.cleaned_data["extra_params"]["tool_choice"] == sent


@pytest.mark.parametrize(("model", "posted"), [(GPT, "any"), (CLAUDE, "required"), (GPT, "x")])
def test_a_tool_choice_the_schema_does_not_describe_is_refused(model, posted):
    form = bound(model, **{CHOICE: posted})

    assert form.errors[CHOICE][0].startswith("tool_choice: choose ")
    assert "Extra parameters" in form.errors[CHOICE][0]


def test_a_tool_choice_naming_a_function_that_is_not_sent_is_refused_unless_sent_anyway():
    renamed = bound(
        GPT, {"name": "get_time", "parameters": TIME_SCHEMA}, **{CHOICE: "function:get_weather"}
    )
    alone = bound(GPT, **{CHOICE: "function:get_weather"})
    anyway = bound(GPT, **{CHOICE: "function:get_weather", "send_anyway": "on"})
    named = {"type": "function", "function": {"name": "x"}}
    in_json = bound(GPT, extra_params=json.dumps({"tool_choice": named}))

    assert renamed.errors[CHOICE][0].startswith(
        "tool_choice: names the function get_weather, which is not one of the tools."
    )
    assert alone.errors[CHOICE][0].startswith("tool_choice: names the function get_weather, but")
    assert renamed.schema_failed
    assert ("function:get_weather", "get_weather") in options(renamed)  # the choice is kept
    assert anyway.is_valid()
    assert in_json.errors["extra_params"][0].startswith("tool_choice: names the function x")


@pytest.mark.parametrize(
    ("model", "stored", "shown"),
    [
        (GPT, "none", "none"),
        (GPT, {"type": "function", "function": {"name": "get_weather"}}, "function:get_weather"),
        (CLAUDE, {"type": "any"}, "any"),
        (CLAUDE, {"type": "tool", "name": "get_weather"}, "function:get_weather"),
    ],
)
def test_a_stored_tool_choice_shows_in_its_select(conversation, model, stored, shown):
    conversation.model = model
    conversation.extra_params = {"tool_choice": stored}

    form = ParametersForm(initial=ParametersForm.initial_for(conversation))

    assert f'<option value="{shown}" selected>' in str(form[CHOICE])


@pytest.mark.parametrize(
    ("model", "stored"),
    [
        (GPT, {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}),
        (GPT, {"type": "function", "function": {"name": "a", "x": 1}}),
        (GPT, {"type": "auto"}),
        (CLAUDE, "auto"),
        (CLAUDE, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_a_stored_tool_choice_the_select_cannot_send_stays_free_json(conversation, model, stored):
    conversation.model = model
    conversation.extra_params = {"tool_choice": stored}

    initial = ParametersForm.initial_for(conversation)

    assert CHOICE not in initial
    assert json.loads(initial["extra_params"]) == {"tool_choice": stored}


# --- Through the chat form to the demo upstream ------------------------------------------


@pytest.mark.parametrize(
    ("model", "tool_choice", "sent_tools", "sent_choice"),
    [
        (
            GPT,
            "function:get_time",
            [
                openai_tool("get_weather", description="The weather."),
                {
                    "type": "function",
                    "function": {"name": "get_time", "parameters": TIME_SCHEMA, "strict": True},
                },
            ],
            {"type": "function", "function": {"name": "get_time"}},
        ),
        (
            CLAUDE,
            "function:get_time",
            [
                {
                    "name": "get_weather",
                    "description": "The weather.",
                    "input_schema": WEATHER_SCHEMA,
                },
                {"name": "get_time", "input_schema": TIME_SCHEMA},
            ],
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
def test_the_tools_the_editor_built_reach_the_upstream_and_it_calls_one(
    alice_client, conversation, upstream, model, tool_choice, sent_tools, sent_choice
):
    response = send(
        alice_client,
        conversation,
        "What time is it?",
        model=model,
        **slots(
            {"name": "get_weather", "description": "The weather.", "parameters": WEATHER_SCHEMA},
            {"name": "get_time", "parameters": TIME_SCHEMA, "strict": True},
            {"name": ""},
        ),
        **{CHOICE: tool_choice},
    )

    assert response.status_code == 302, response.content.decode()[-3000:]
    (body,) = sent_bodies(upstream)
    assert body["tools"] == sent_tools
    assert body["tool_choice"] == sent_choice
    reply = Message.objects.get(role="assistant")
    assert reply.finish_reason == "tool_calls"
    (call,) = reply.tool_calls
    assert call["function"]["name"] == "get_time"
    assert json.loads(call["function"]["arguments"]) == {"zone": "demo"}
    conversation.refresh_from_db()
    assert conversation.extra_params == {"tools": sent_tools, "tool_choice": sent_choice}
    # Drawn again, the editor and the select show what was sent.
    initial = ParametersForm.initial_for(conversation)
    assert initial[FIELD] == sent_tools and CHOICE in initial


# --- Whatever is posted ------------------------------------------------------------------

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
posted_functions = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True), st.text()),
        "description": st.text(max_size=50),
        "parameters": st.one_of(
            st.text(), json_values.map(json.dumps), st.just(json.dumps(TIME_SCHEMA))
        ),
        "strict": st.booleans(),
        "remove": st.booleans(),
    },
)


@PROPERTY
@given(
    model=st.sampled_from([GPT, CLAUDE]),
    functions=st.lists(posted_functions, max_size=4),
    choice=st.one_of(st.sampled_from(["", "auto", "any", "function:a"]), st.text(max_size=10)),
)
def test_whatever_the_editor_posts_it_cleans_or_refuses_and_a_clean_value_shows_again(
    conversation, model, functions, choice
):
    form = bound(model, *functions, **{CHOICE: choice})
    render_to_string("chat/_tools_field.html", {"field": form[FIELD]})  # valid or not
    str(form[CHOICE])

    value = form.cleaned_data.get(FIELD) if form.is_valid() else None
    if value:
        assert value == as_json_field(value)
        conversation.model = model
        conversation.extra_params = {"tools": value}
        assert ParametersForm.initial_for(conversation)[FIELD] == value


def test_a_parameters_schema_with_an_array_of_objects_is_taken():
    """A common shape: a list of objects, each with typed properties (seven levels)."""
    items = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
        },
    }
    schema = {"type": "object", "properties": {"rows": items}}

    form = bound(GPT, {"name": "save_rows", "parameters": schema})

    assert form.is_valid(), form.errors
    assert form.cleaned_data[FIELD] == [openai_tool("save_rows", parameters=schema)]
