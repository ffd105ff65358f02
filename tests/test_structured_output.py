"""The response_format editor, and a reply checked against the format it asked for."""

import json
import time

import pytest
from django.template.loader import render_to_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import schema_form, structured_output
from chat.forms import ParametersForm
from chat.models import Conversation, Message
from chat.structured_output import check
from tests.helpers import send, sent_bodies

pytestmark = pytest.mark.django_db

GPT = "openai/gpt-4o"  # its schema's response_format offers text, json_object and json_schema
FIELD = "schema__response_format"
SCHEMA = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}


@pytest.fixture
def conversation(alice):
    return Conversation.objects.create(owner=alice, model=GPT)


def editor(**parts) -> dict[str, str]:
    """What the editor's inputs post (an unticked checkbox posts nothing)."""
    return {f"{FIELD}_{key}": value for key, value in parts.items()}


def bound(**parts) -> ParametersForm:
    form = ParametersForm({"model": GPT, **editor(**parts)})
    form.is_valid()
    return form


def as_json_field(text: str):
    """What the plain JSON field of response_format makes of the same object typed out."""
    return schema_form.JsonField(label="response_format").clean(text)


def response_format(schema=SCHEMA, name="answer", **more) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, **more}}


# --- The editor -------------------------------------------------------------------


def test_it_replaces_the_json_field_of_a_response_format_that_offers_json_schema():
    form = ParametersForm(initial={"model": GPT})

    field = form.fields[FIELD]
    assert isinstance(field, structured_output.EditorField)
    assert field.types == ["text", "json_object", "json_schema"]
    page = str(form[FIELD].parts[0].html)
    assert 'name="schema__response_format_type"' in page


def test_it_leaves_the_json_field_where_the_schema_has_no_json_schema_type():
    form = ParametersForm(initial={"model": "demo/echo"})  # text and json_object only

    assert isinstance(form.fields[FIELD], schema_form.JsonField)


def test_it_sends_exactly_what_the_json_field_would():
    form = bound(
        type="json_schema", name="answer", strict="on", schema=json.dumps(SCHEMA, indent=2)
    )

    typed = json.dumps(response_format(strict=True))
    assert form.cleaned_data[FIELD] == as_json_field(typed)
    assert form.cleaned_data["extra_params"] == {"response_format": as_json_field(typed)}
    assert list(form.cleaned_data[FIELD]["json_schema"]) == ["name", "schema", "strict"]


def test_it_sends_the_response_format_the_editor_built(alice_client, conversation, upstream):
    response = send(
        alice_client,
        conversation,
        "List two fruits",
        model=GPT,
        **editor(
            type="json_schema", name="fruits", description="Two fruits", schema=json.dumps(SCHEMA)
        ),
    )

    assert response.status_code == 302
    (body,) = sent_bodies(upstream)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "fruits", "description": "Two fruits", "schema": SCHEMA},
    }
    conversation.refresh_from_db()
    assert conversation.extra_params["response_format"] == body["response_format"]


@pytest.mark.parametrize("kind", ["text", "json_object"])
def test_a_type_without_a_schema_is_sent_alone(kind):
    # Left-over name and schema (no JavaScript hides them) are not sent with these types.
    form = bound(type=kind, name="left over", schema="{nope")

    assert form.is_valid()
    assert form.cleaned_data[FIELD] == as_json_field(json.dumps({"type": kind}))


def test_no_type_sends_no_response_format():
    form = bound(type="", name="answer", schema="{}")

    assert form.is_valid()
    assert "response_format" not in form.cleaned_data["extra_params"]


@pytest.mark.parametrize(
    ("parts", "part", "error"),
    [
        ({"schema": "{nope"}, "schema", "Schema: Not valid JSON: Expecting property name"),
        ({"schema": "[1, 2]"}, "schema", "Schema: must be a JSON object"),
        ({"schema": '{"a": NaN}'}, "schema", "Schema: NaN is not a JSON number"),
        ({"schema": '{"a": ' * 15 + "1" + "}" * 15}, "schema", "Schema: nests deeper than 14"),
        ({"schema": json.dumps({"d": "x" * 17_000})}, "schema", "Schema: at most 16,384 bytes."),
        (
            {"schema": '{"type": "strin"}'},
            "schema",
            "Schema: not a valid JSON Schema: $.type: 'strin' is not valid",
        ),
        (
            {"schema": '{"properties": {"a": {"pattern": "("}}}'},
            "schema",
            "Schema: not a valid JSON Schema: $.properties.a.pattern: '(' is not a 'regex'",
        ),
        ({"description": "a\x00b"}, "description", "Description: contains a NUL character"),
        ({"description": "x" * 2_001}, "description", "Description: at most 2,000 characters."),
        ({"name": ""}, "name", "Name: required for json_schema."),
        ({"name": "my answer"}, "name", "Name: only letters"),
        ({"name": "x" * 65}, "name", "Name: only letters"),
        ({"name": "naïve"}, "name", "Name: only letters"),
        ({"type": "xml"}, "type", "Type: choose one of text, json_object, json_schema."),
    ],
)
def test_a_bad_part_is_refused_on_its_own_input(parts, part, error):
    form = bound(**{"type": "json_schema", "name": "answer", "schema": "{}", **parts})

    assert not form.is_valid()
    (shown,) = [p for p in form[FIELD].parts if p.key == part]
    assert any(message.startswith(error) for message in shown.errors), shown.errors
    assert 'aria-invalid="true"' in shown.html


def test_a_refused_editor_keeps_the_text_and_sends_nothing(alice_client, conversation, upstream):
    bad_schema = '{"type": "object", "properties": {"n": {"type": "integr"}}}'

    response = send(
        alice_client,
        conversation,
        "Keep this message",
        model=GPT,
        **editor(type="json_schema", name="bad name", strict="on", schema=bad_schema),
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert "Keep this message" in page
    assert 'value="bad name"' in page
    assert "&quot;integr&quot;" in page  # the schema's text, as typed
    assert 'name="schema__response_format_strict" id="id_schema__response_format_strict"' in page
    assert "checked" in page.split('name="schema__response_format_strict"')[1].split(">")[0]
    assert "Name: only letters" in page and "not a valid JSON Schema" in page
    assert upstream.chat_requests() == []
    assert not Message.objects.exists()


def test_the_editor_works_without_javascript_as_one_fieldset(alice_client, conversation):
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    editor_html = page.split('<fieldset class="field response-format')[1].split("</fieldset>")[0]
    for key in ("type", "name", "description", "strict", "schema"):
        assert f'<label for="id_{FIELD}_{key}">' in editor_html
        assert f'id="id_{FIELD}_{key}_help"' in editor_html
    assert f'name="{FIELD}"' not in page  # no JSON textarea beside it


def test_a_stored_response_format_shows_in_the_editor(alice_client, conversation):
    stored = response_format(strict=True)
    conversation.extra_params = {"response_format": stored, "x_custom": 7}
    conversation.save()

    initial = ParametersForm.initial_for(conversation)
    page = alice_client.get(conversation.get_absolute_url()).content.decode()

    assert initial[FIELD] == stored
    assert json.loads(initial["extra_params"]) == {"x_custom": 7}
    assert '<option value="json_schema" selected>' in page
    assert 'value="answer"' in page
    assert "&quot;additionalProperties&quot;: false" in page
    # Saved again untouched, it is the same value.
    form = ParametersForm(
        {
            "model": GPT,
            **editor(
                type="json_schema", name="answer", strict="on", schema=json.dumps(SCHEMA, indent=2)
            ),
        }
    )
    assert form.is_valid() and form.cleaned_data[FIELD] == stored


@pytest.mark.parametrize(
    "stored",
    [
        response_format(strict=False),  # an unticked box would drop it
        {"type": "json_schema", "json_schema": {"name": "a"}, "extra": 1},
        {"type": "json_schema", "json_schema": {"name": "a b"}},
        {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "strin"}}},
        {"type": "json_schema", "json_schema": {"name": "a", "description": ""}},
        {"type": "text", "json_schema": {}},
        {"type": "xml"},
        "json_object",
    ],
)
def test_a_stored_value_the_editor_cannot_show_as_it_is_stays_free_json(conversation, stored):
    conversation.extra_params = {"response_format": stored}
    conversation.save()

    initial = ParametersForm.initial_for(conversation)

    assert FIELD not in initial
    assert json.loads(initial["extra_params"]) == {"response_format": stored}


def test_free_json_still_wins_over_the_editor():
    form = ParametersForm(
        {
            "model": GPT,
            "extra_params": '{"response_format": {"type": "json_object"}}',
            **editor(type="text"),
        }
    )

    assert form.is_valid()
    assert form.cleaned_data["extra_params"]["response_format"] == {"type": "json_object"}


def test_an_error_from_the_models_schema_shows_on_the_whole_editor():
    form = bound(type="json_object")
    form.add_error(FIELD, "response_format: must be an object with type text.")

    html = render_to_string("chat/_response_format_field.html", {"field": form[FIELD]})

    assert 'class="field response-format has-error"' in html
    assert "response_format: must be an object with type text." in html


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


@PROPERTY
@given(
    kind=st.one_of(st.sampled_from(["", "text", "json_object", "json_schema"]), st.text()),
    name=st.one_of(st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True), st.text()),
    description=st.text(max_size=50),
    strict=st.sampled_from([None, "on", "", "false"]),
    schema=st.one_of(st.text(), json_values.map(json.dumps), st.just(json.dumps(SCHEMA))),
)
def test_whatever_the_editor_posts_it_cleans_or_refuses_and_a_clean_value_shows_again(
    conversation, kind, name, description, strict, schema
):
    parts = {"type": kind, "name": name, "description": description, "schema": schema}
    if strict is not None:
        parts["strict"] = strict
    form = bound(**parts)
    str(form[FIELD].parts)  # renders, valid or not

    if form.is_valid() and FIELD in form.cleaned_data and form.cleaned_data[FIELD]:
        value = form.cleaned_data[FIELD]
        conversation.extra_params = {"response_format": value}
        assert ParametersForm.initial_for(conversation)[FIELD] == value


@PROPERTY
@given(schema=json_values, content=st.one_of(st.text(), json_values.map(json.dumps)))
def test_check_never_fails_whatever_the_schema_and_the_reply(schema, content):
    result = check(response_format=response_format(schema), content=content)

    assert result.valid == (not result.errors and not result.parse_error and not result.not_checked)
    render(result)


# --- The check of a reply -------------------------------------------------------------


def test_it_checks_nothing_for_plain_text():
    assert check(response_format=None, content="hi") is None
    assert check(response_format={"type": "text"}, content="hi") is None
    assert check(response_format="json_schema", content="{}") is None


def test_a_reply_that_fits_the_schema_is_valid():
    result = check(response_format=response_format(), content='{"items": [{"name": "fig"}]}')

    assert result.valid and result.name == "answer"
    assert result.errors == [] and result.parse_error == "" and result.not_checked == ""


def test_each_problem_is_named_by_its_json_path():
    content = '{"items": [{"name": "a"}, {"name": "b"}, {"name": 3}, {}], "extra": 1}'

    result = check(response_format=response_format(), content=content)

    assert not result.valid
    paths = dict(result.errors)
    assert paths["$.items[2].name"] == "3 is not of type 'string'"
    assert paths["$.items[3]"] == "'name' is a required property"
    assert "Additional properties are not allowed" in paths["$"]


def test_a_reply_that_is_not_json_says_where():
    result = check(response_format=response_format(), content='{"items": [}')

    assert not result.valid
    assert result.parse_error == "Expecting value (line 1, column 12)."


@pytest.mark.parametrize(
    ("content", "valid"), [('{"a": [1]}', True), ("Sure! {}", False), ("[NaN]", False)]
)
def test_a_json_object_request_gets_valid_json_or_not(content, valid):
    result = check(response_format={"type": "json_object"}, content=content)

    assert result.kind == "json_object" and result.valid is valid


def test_a_json_schema_without_a_schema_takes_any_json():
    result = check(response_format={"type": "json_schema", "json_schema": {"name": "x"}},
                   content="[1]")  # fmt: skip

    assert result.valid


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (json.dumps(["x" * 70_000]), "the reply is longer than 65,536 characters."),
        ("[" * 40 + "]" * 40, "it nests deeper than 32 levels."),
        ("[" * 100_000, "the reply is longer than"),
        ("[" * 60_000 + "]" * 5_000, "it nests deeper than 32 levels."),
        ("1" * 5_000, "a number in it has too many digits."),
    ],
)
def test_a_hostile_reply_is_reported_as_not_checked(content, reason):
    result = check(response_format=response_format(), content=content)

    assert not result.valid and result.not_checked.startswith(reason)


def test_a_reply_that_would_take_long_to_check_is_stopped():
    # Each (valid) item fits only the last of 40 branches: ~400,000 keyword evaluations.
    schema = {"type": "array", "items": {"anyOf": [
        {"type": "object", "required": [f"k{n}"], "properties": {f"k{n}": {"type": "integer"}}}
        for n in range(40)
    ]}}  # fmt: skip
    content = json.dumps([{"k39": 1}] * 3_000)

    started = time.monotonic()
    result = check(response_format=response_format(schema), content=content)

    assert result.not_checked == "checking it took too long; it was stopped."
    assert time.monotonic() - started < 2


def test_unique_items_among_thousands_of_objects_is_quick():
    # jsonschema's own check compares every pair of unsortable items: ~50 s for these.
    content = json.dumps([{"n": n} for n in range(4_000)] + [{"n": 7.0}])

    started = time.monotonic()
    result = check(response_format=response_format({"uniqueItems": True}), content=content)

    assert result.errors == [("$", "items 7 and 4000 are equal.")]
    assert time.monotonic() - started < 2


def test_unique_items_follows_json_schema_equality():
    unique = response_format({"uniqueItems": True})

    assert not check(response_format=unique, content='[{"a": 1, "b": 2}, {"b": 2, "a": 1.0}]').valid
    assert check(response_format=unique, content="[1, true]").valid
    assert check(response_format=unique, content="[0, false, [], {}]").valid


def test_a_pattern_is_not_run_on_a_reply_and_says_so():
    # A catastrophic backtracking pattern: Python's re would take hours on this reply.
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
    content = json.dumps({"code": "a" * 60 + "!"})

    started = time.monotonic()
    result = check(response_format=response_format(schema), content=content)
    html = render_to_string("chat/_structured_check.html", {"check": result})

    assert result.valid and result.patterns_skipped
    assert time.monotonic() - started < 1
    assert "rules were not checked" in html


def test_a_schema_with_pattern_properties_is_not_checked():
    schema = {"patternProperties": {"^(a+)+$": {"type": "string"}}}

    result = check(response_format=response_format(schema), content='{"' + "a" * 60 + '!": 1}')

    assert not result.valid and "patternProperties" in result.not_checked


def test_a_remote_reference_is_never_fetched(upstream):
    schema = {"$ref": f"{upstream.base_url}/schemas/evil.json"}

    result = check(response_format=response_format(schema), content="{}")

    assert "cannot be followed" in result.not_checked
    assert upstream.requests == []


def test_a_local_reference_is_followed_and_a_loop_is_reported():
    defs = {"$defs": {"name": {"type": "string"}}, "properties": {"n": {"$ref": "#/$defs/name"}}}
    loop = {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}

    assert not check(response_format=response_format(defs), content='{"n": 1}').valid
    assert check(response_format=response_format(defs), content='{"n": "x"}').valid
    looped = check(response_format=response_format(loop), content="1")
    assert looped.not_checked == "the schema refers to itself without end."


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "strin"}, "the request's schema is not a valid JSON Schema: $.type"),
        ("object", "the request's schema is not a JSON object."),
        ({"enum": ["x" * 70_000]}, "the request's schema is larger than 65,536 bytes."),
    ],
)
def test_a_stored_schema_that_cannot_be_used_is_said_so(schema, reason):
    result = check(response_format=response_format(schema), content="{}")

    assert result.not_checked.startswith(reason)


def test_many_problems_are_cut_to_the_first_ones():
    content = json.dumps({"items": [{}] * 50})

    result = check(response_format=response_format(), content=content)

    assert len(result.errors) == structured_output.MAX_ERRORS and result.errors_cut


def test_a_huge_value_in_a_problem_is_shortened():
    content = json.dumps({"items": "x" * 60_000})

    result = check(response_format=response_format(), content=content)

    ((path, message),) = result.errors
    assert path == "$.items" and len(message) <= structured_output.MAX_MESSAGE_CHARS


# --- The partial ------------------------------------------------------------------


def render(result) -> str:
    return render_to_string("chat/_structured_check.html", {"check": result})


def test_the_partial_says_valid_against_the_schema_name():
    html = render(check(response_format=response_format(), content='{"items": []}'))

    assert "Valid against <code>answer</code>." in html


def test_the_partial_lists_each_problem_with_its_path_escaped():
    content = json.dumps({"items": [{"name": "<script>alert(1)</script>"}, {}],
                          "<img src=x>": 1})  # fmt: skip

    html = render(check(response_format=response_format(), content=content))

    assert "Not valid against <code>answer</code>:" in html
    assert "<li><code>$.items[1]</code>: &#x27;name&#x27; is a required property</li>" in html
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x&gt;" in html


def test_the_partial_escapes_a_hostile_schema_name():
    html = render(check(response_format=response_format(name="<b>x</b>"), content="{}"))

    assert "Not valid against <code>&lt;b&gt;x&lt;/b&gt;</code>" in html and "<b>" not in html


def test_the_partial_says_where_a_reply_is_not_json():
    html = render(check(response_format=response_format(), content="{"))

    assert "Not JSON: Expecting property name enclosed in double quotes (line 1" in html


@pytest.mark.parametrize(
    ("content", "text"), [("{}", "Valid JSON."), ("not json", "Not JSON: Expecting value")]
)
def test_the_partial_of_a_json_object_request(content, text):
    assert text in render(check(response_format={"type": "json_object"}, content=content))


def test_the_partial_of_a_reply_not_checked_says_why():
    html = render(check(response_format=response_format(), content="[" * 40 + "]" * 40))

    assert "Not checked against <code>answer</code>: it nests deeper than 32 levels." in html


def test_the_partial_renders_nothing_for_plain_text():
    assert render(None).strip() == ""
