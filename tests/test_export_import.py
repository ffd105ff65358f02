"""Export (JSON and Markdown) and import: round trips, and files that must be refused."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chat import exports
from chat.models import ApiCall, Conversation, Message
from tests.conftest import TEST_API_KEY
from tests.helpers import send

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice, alice_client):
    """Two exchanges, then a second branch from the first user message."""
    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="Travel ideas")
    parameters = {
        "system_prompt": "Be brief.",
        "temperature": "0.7",
        "extra_params": '{"top_k": 40}',
    }
    send(alice_client, conversation, "Where should I go in May?", **parameters)
    send(alice_client, conversation, "And in June?", **parameters)
    conversation.refresh_from_db()
    first_question = conversation.messages.get(content="Where should I go in May?")
    Message.objects.create(
        conversation=conversation,
        parent=first_question,
        role=Message.Role.ASSISTANT,
        content="Another answer, on a second branch.",
    )
    return conversation


def download(client: Client, name: str, *args) -> bytes:
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return b"".join(response.streaming_content) if response.streaming else response.content


def upload(client: Client, data: bytes, name: str = "export.json"):
    file = SimpleUploadedFile(name, data, content_type="application/json")
    return client.post(reverse("conversations_import"), {"file": file})


def comparable(document: dict) -> dict:
    """A conversation document without what an import renews: ids and timestamps."""
    ids = {message["id"]: index for index, message in enumerate(document["messages"])}
    return {
        **{key: document[key] for key in ("title", "model", "system_prompt", "parameters")},
        "current_leaf": ids[document["current_leaf"]],
        "messages": [
            {
                **{k: v for k, v in message.items() if k not in {"id", "parent", "created"}},
                "parent": ids.get(message["parent"]),
                "calls": [
                    {k: v for k, v in call.items() if k != "created"} for call in message["calls"]
                ],
            }
            for message in document["messages"]
        ],
    }


def test_it_exports_one_conversation_with_every_branch_and_call(alice_client, conversation):
    response = alice_client.get(reverse("conversation_export_json", args=[conversation.public_id]))
    document = json.loads(b"".join(response.streaming_content))

    assert response["Content-Disposition"] == 'attachment; filename="travel-ideas.json"'
    assert (document["format"], document["version"]) == ("playground.conversations", 2)
    [exported] = document["conversations"]
    assert exported["model"] == "demo/echo"
    assert exported["system_prompt"] == "Be brief."
    assert exported["parameters"]["temperature"] == 0.7
    assert exported["parameters"]["extra_params"] == {"top_k": 40}
    assert len(exported["messages"]) == 5  # two exchanges and the second branch
    calls = [call for message in exported["messages"] for call in message["calls"]]
    assert len(calls) == 2
    first_call = ApiCall.objects.filter(conversation=conversation).first()
    assert calls[0]["request_body"] == first_call.request_body  # byte for byte
    assert calls[0]["request_headers"]["Authorization"] == "Bearer [redacted]"


def test_the_export_never_contains_the_api_key(alice_client, conversation):
    single = download(alice_client, "conversation_export_json", conversation.public_id)
    everything = download(alice_client, "conversations_export")
    markdown = download(alice_client, "conversation_export_md", conversation.public_id)

    for data in (single, everything, markdown):
        assert TEST_API_KEY.encode() not in data


def test_export_then_import_gives_back_equal_content(alice_client, bob_client, bob, conversation):
    data = download(alice_client, "conversation_export_json", conversation.public_id)

    response = upload(bob_client, data)

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response.url == copy.get_absolute_url()
    [original] = json.loads(data)["conversations"]
    again = download(bob_client, "conversation_export_json", copy.public_id)
    [imported] = json.loads(again)["conversations"]
    assert comparable(imported) == comparable(original)
    assert {m["id"] for m in imported["messages"]}.isdisjoint(
        {m["id"] for m in original["messages"]}
    )  # new ids: the file's only link messages together
    assert bob_client.get(copy.get_absolute_url()).status_code == 200


def test_exporting_everything_and_importing_it_copies_every_conversation(
    alice_client, alice, bob_client, bob, conversation
):
    Conversation.objects.create(owner=alice, model="openai/gpt-4o", title="Empty one")
    data = download(alice_client, "conversations_export")

    response = upload(bob_client, data)

    assert response.status_code == 302 and response.url == reverse("conversation_list")
    assert sorted(Conversation.objects.filter(owner=bob).values_list("title", flat=True)) == [
        "Empty one",
        "Travel ideas",
    ]
    assert Message.objects.filter(conversation__owner=bob).count() == 5
    assert "Imported 2 conversations" in bob_client.get(response.url).content.decode()


def test_the_markdown_export_is_the_branch_on_screen(alice_client, conversation):
    text = download(alice_client, "conversation_export_md", conversation.public_id).decode()

    assert text.startswith("# Travel ideas\n")
    assert "- Model: `demo/echo`" in text and "- temperature: `0.7`" in text
    assert "## System prompt\n\nBe brief." in text
    assert text.index("Where should I go in May?") < text.index("And in June?")
    assert "second branch" not in text


def test_nobody_else_can_export_a_conversation(bob_client, client, conversation):
    for name in ("conversation_export_json", "conversation_export_md"):
        assert bob_client.get(reverse(name, args=[conversation.public_id])).status_code == 404
        assert client.get(reverse(name, args=[conversation.public_id])).status_code == 302
    everything = download(bob_client, "conversations_export")
    assert json.loads(everything)["conversations"] == []


def valid_file(**conversation_changes) -> dict:
    conversation = {
        "title": "Imported",
        "model": "demo/echo",
        "system_prompt": "",
        "parameters": {"temperature": 0.5, "stop": [], "extra_params": {}},
        "current_leaf": "b",
        "messages": [
            {"id": "a", "parent": None, "role": "user", "content": "Hi"},
            {
                "id": "b",
                "parent": "a",
                "role": "assistant",
                "status": "complete",
                "content": "Hello",
                "calls": [{"request_body": '{"model":"demo/echo"}', "http_status": 200}],
            },
        ],
    }
    conversation.update(conversation_changes)
    return {"format": "playground.conversations", "version": 1, "conversations": [conversation]}


def encode(document: dict) -> bytes:
    return json.dumps(document).encode()


def test_a_minimal_hand_written_file_imports(bob_client, bob):
    response = upload(bob_client, encode(valid_file()))

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302
    assert [m.content for m in copy.messages.all()] == ["Hi", "Hello"]
    assert copy.current_leaf.content == "Hello"
    assert copy.temperature == 0.5


def with_message(change: dict, index: int = 1) -> dict:
    document = valid_file()
    document["conversations"][0]["messages"][index].update(change)
    return document


def with_call(change: dict) -> dict:
    document = valid_file()
    document["conversations"][0]["messages"][1]["calls"][0].update(change)
    return document


def without_content() -> dict:
    document = valid_file()
    del document["conversations"][0]["messages"][0]["content"]
    return document


def deeply_nested(depth: int) -> bytes:
    document = valid_file()
    document["conversations"][0]["parameters"]["extra_params"] = {"x": 0}
    text = encode(document).decode()
    return text.replace('{"x": 0}', "[" * depth + "]" * depth).encode()


REFUSED = {
    "not JSON": (b"{not json", "not valid JSON"),
    "not UTF-8": ("café".encode("latin-1"), "not UTF-8"),
    "an array": (b"[]", "file: must be a JSON object, not an array"),
    "another format": (
        encode({**valid_file(), "format": "something-else"}),
        'file.format: expected "playground.conversations"',
    ),
    "a newer version": (encode({**valid_file(), "version": 3}), "format version 3"),
    "no conversations": (encode({**valid_file(), "conversations": []}), "has no conversations"),
    "a missing field": (
        encode(without_content()),
        'conversations[0].messages[0]: the field "content" is missing',
    ),
    "an owner in the file": (
        encode(valid_file(owner=1)),
        'conversations[0]: unknown field "owner"',
    ),
    "an unknown role": (
        encode(with_message({"role": "robot"})),
        "conversations[0].messages[1].role: must be one of system, developer, user, assistant, "
        "tool, not 'robot'",
    ),
    "a version 2 field in a version 1 file": (
        encode(with_message({"parts": []})),
        'conversations[0].messages[1]: unknown field "parts"',
    ),
    "files in a version 1 file": (
        encode({**valid_file(), "attachments": {}}),
        'file: unknown field "attachments"',
    ),
    "an unknown status": (encode(with_message({"status": "done"})), "messages[1].status"),
    "a parent that comes later": (
        encode(with_message({"parent": "b"}, index=0)),
        "conversations[0].messages[0].parent: 'b' is not the id of an earlier message",
    ),
    "a message that is its own parent": (
        encode(with_message({"parent": "b"})),
        "messages[1].parent: 'b' is not the id of an earlier message",
    ),
    "duplicate ids": (encode(with_message({"id": "a"})), "messages[1].id: must be a unique"),
    "a parent that is not an id": (
        encode(with_message({"parent": ["a"]})),
        "messages[1].parent: [&#x27;a&#x27;] is not the id of an earlier message",
    ),
    "a leaf that is not an id": (
        encode(valid_file(current_leaf={"id": "b"})),
        "conversations[0].current_leaf: no message has the id {&#x27;id&#x27;: &#x27;b&#x27;}",
    ),
    "a leaf that does not exist": (
        encode(valid_file(current_leaf="zzz")),
        "conversations[0].current_leaf: no message has the id 'zzz'",
    ),
    "temperature out of range": (
        encode(valid_file(parameters={"temperature": 9})),
        "conversations[0].parameters.temperature: Ensure this value is less than or equal to 2",
    ),
    "a temperature that is text": (
        encode(valid_file(parameters={"temperature": "hot"})),
        "parameters.temperature: must be a number or null",
    ),
    "a reserved extra parameter": (
        encode(valid_file(parameters={"extra_params": {"stream": True}})),
        'parameters.extra_params: "stream" cannot be set here',
    ),
    "an empty model": (encode(valid_file(model="")), "conversations[0].model: This field"),
    "a huge message": (
        encode(with_message({"content": "x" * 100_001}, index=0)),
        "messages[0].content: 100,001 characters; at most 100,000",
    ),
    "deep nesting": (deeply_nested(100), "nests deeper than 64 levels"),
    "nesting deeper than Python's parser": (deeply_nested(100_000), "nests deeper"),
    "calls on a user message": (
        encode(with_message({"calls": [{"request_body": "{}"}]}, index=0)),
        "messages[0].calls: only assistant messages have calls",
    ),
    "a bad HTTP status": (
        encode(with_call({"http_status": 999})),
        "calls[0].http_status: must be a whole number from 100 to 599",
    ),
    "a negative token count": (encode(with_call({"total_tokens": -1})), "calls[0].total_tokens"),
    "a cost that is not a number": (
        encode(with_call({"usd_spent": "lots"})),
        "calls[0].usd_spent: must be a decimal number",
    ),
    "header values that are not text": (
        encode(with_call({"request_headers": {"X": 1}})),
        "calls[0].request_headers.X: must be a string",
    ),
}


@pytest.mark.parametrize("data, problem", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_file_is_refused_with_a_clear_error_and_nothing_saved(bob_client, data, problem):
    response = upload(bob_client, data)

    page = response.content.decode()
    assert response.status_code == 400
    assert "Nothing was imported." in page
    assert problem.replace("'", "&#x27;").replace('"', "&quot;") in page
    assert not Conversation.objects.exists()
    assert not Message.objects.exists() and not ApiCall.objects.exists()


def test_one_bad_conversation_means_none_is_imported(bob_client):
    document = valid_file()
    broken = valid_file(title=42)["conversations"][0]
    document["conversations"].append(broken)

    response = upload(bob_client, encode(document))

    assert response.status_code == 400
    assert "conversations[1].title: must be a string, not a number" in response.content.decode()
    assert not Conversation.objects.exists()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(bob_client, settings):
    settings.MAX_IMPORT_BYTES = 1_000

    response = upload(bob_client, encode(valid_file(title="x" * 2_000)))

    assert response.status_code == 400
    assert "The file is larger than 1000\xa0bytes" in response.content.decode()
    assert not Conversation.objects.exists()


def test_too_many_conversations_in_one_file_are_refused(bob_client, settings):
    settings.MAX_IMPORT_CONVERSATIONS = 2
    document = valid_file()
    document["conversations"] *= 3

    response = upload(bob_client, encode(document))

    assert "3 conversations; at most 2 per file" in response.content.decode()
    assert not Conversation.objects.exists()


def test_a_key_left_in_an_imported_file_is_not_stored(bob_client):
    response = upload(
        bob_client,
        encode(with_call({"request_headers": {"authorization": "Bearer sk-leaked-123"}})),
    )

    assert response.status_code == 302
    call = ApiCall.objects.get()
    assert call.request_headers == {"authorization": "Bearer [redacted]"}


def test_a_reply_still_generating_in_the_file_arrives_interrupted(bob_client):
    upload(bob_client, encode(with_message({"status": "pending"})))

    assert Message.objects.get(role="assistant").status == Message.Status.INTERRUPTED


def test_importing_needs_an_account_and_a_csrf_token(bob):
    assert Client().get(reverse("conversations_import")).status_code == 302
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    file = SimpleUploadedFile("export.json", encode(valid_file()))

    response = client.post(reverse("conversations_import"), {"file": file})

    assert response.status_code == 403
    assert not Conversation.objects.exists()


def test_the_parser_refuses_what_it_does_not_know_at_every_level():
    with pytest.raises(exports.ImportRejected, match=r"messages\[1\].calls\[0\]: unknown field"):
        exports.parse_export(encode(with_call({"public_id": "x"})))


def test_a_compare_run_survives_export_and_import(alice_client, bob_client, bob, alice):
    from chat import compare

    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="Runs")
    column = {"system_prompt": "", "top_p": None, "max_tokens": None, "stop": []}
    run = compare.compare_send(
        conversation=conversation,
        content="Compare us",
        idempotency_key="export-run",
        parameter_sets=[
            {**column, "model": "demo/alpha", "temperature": 0.3, "extra_params": {}},
            {**column, "model": "demo/beta", "temperature": None, "extra_params": {"seed": 7}},
        ],
    )
    compare.compare_choose(run=run, reply=compare.compare_columns(run=run)[1].reply)
    data = download(alice_client, "conversation_export_json", conversation.public_id)

    upload(bob_client, data)

    [copy] = Conversation.objects.get(owner=bob).compare_runs.all()
    columns = list(copy.columns.all())
    assert [(c.position, c.model, c.temperature, c.extra_params) for c in columns] == [
        (0, "demo/alpha", 0.3, {}),
        (1, "demo/beta", None, {"seed": 7}),
    ]
    assert copy.prompt.content == "Compare us"
    assert copy.chosen.compare_column == columns[1]
    assert copy.conversation.current_leaf == copy.chosen


def with_run(run: dict) -> dict:
    document = valid_file()
    document["conversations"][0]["compare_runs"] = [run]
    return document


RUN_COLUMN = {"position": 0, "model": "demo/echo", "replies": ["b"]}


@pytest.mark.parametrize(
    "run, problem",
    [
        ({"prompt": "b", "columns": [RUN_COLUMN]}, "compare_runs[0].prompt: 'b' is not a user"),
        ({"prompt": ["a"], "columns": [RUN_COLUMN]}, "compare_runs[0].prompt: ['a'] is not a user"),
        (
            {"prompt": "a", "columns": [RUN_COLUMN], "chosen": ["b"]},
            "compare_runs[0].chosen: ['b'] is not one of the run",
        ),
        (
            {"prompt": "a", "columns": [{**RUN_COLUMN, "replies": ["a"]}]},
            "columns[0].replies: 'a' is not a reply to the prompt",
        ),
        (
            {"prompt": "a", "columns": [RUN_COLUMN], "chosen": "a"},
            "compare_runs[0].chosen: 'a' is not one of the run",
        ),
        ({"prompt": "a", "columns": [RUN_COLUMN] * 5}, "columns: 1 to 4 columns"),
        (
            {"prompt": "a", "columns": [RUN_COLUMN, {**RUN_COLUMN, "replies": []}]},
            "columns[1].position: must be a unique",
        ),
        (
            {"prompt": "a", "columns": [{**RUN_COLUMN, "parameters": {"temperature": 5}}]},
            "columns[0].parameters.temperature: Ensure this value",
        ),
    ],
)
def test_a_bad_compare_run_is_refused(bob_client, run, problem):
    response = upload(bob_client, encode(with_run(run)))

    assert response.status_code == 400
    assert problem.replace("'", "&#x27;") in response.content.decode()
    assert not Conversation.objects.exists()
