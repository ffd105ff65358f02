"""Compare runs: one prompt to several models or parameter sets, against the demo upstream."""

import json

import pytest
from django.urls import reverse

from chat import branches, compare, conversations, generation
from chat.models import ApiCall, CompareColumn, CompareRun, Message
from tests.helpers import panel, send, sent_bodies

pytestmark = pytest.mark.django_db

FAULT_MODEL = "demo/fault:status=500"


def run_compare(conversation, *columns, key="compare-1", text="Compare this"):
    return compare.compare_send(
        conversation=conversation,
        content=text,
        idempotency_key=key,
        parameter_sets=list(columns),
    )


def replies_of(run):
    return [col.reply for col in compare.compare_columns(run=run)]


def test_it_answers_one_prompt_with_every_column_as_siblings(conversation, upstream):
    run = run_compare(
        conversation,
        panel("demo/alpha", temperature=0.1),
        panel("demo/beta", max_tokens=5),
        panel("demo/gamma", extra_params={"top_k": 3}),
    )

    replies = replies_of(run)
    assert [reply.status for reply in replies] == ["complete"] * 3
    assert {reply.parent_id for reply in replies} == {run.prompt_id}
    bodies = sorted(sent_bodies(upstream), key=lambda body: body["model"])
    assert [body["model"] for body in bodies] == ["demo/alpha", "demo/beta", "demo/gamma"]
    assert bodies[0]["temperature"] == 0.1
    assert bodies[1]["max_tokens"] == 5
    assert bodies[2]["top_k"] == 3
    assert all(body["messages"] == [{"role": "user", "content": "Compare this"}] for body in bodies)
    branches.branches_attach(conversation=conversation, messages=replies)
    assert [reply.branch.index for reply in replies] == [1, 2, 3]


def test_it_sends_the_conversation_so_far_with_the_prompt(conversation, alice_client, upstream):
    send(alice_client, conversation, "Earlier")
    conversation.refresh_from_db()

    run_compare(conversation, panel("demo/alpha"), panel("demo/beta"))

    assert len(sent_bodies(upstream)) == 3  # the earlier send, then one per column
    for body in sent_bodies(upstream)[1:]:
        roles = [message["role"] for message in body["messages"]]
        assert roles == ["user", "assistant", "user"]
        assert body["messages"][-1]["content"] == "Compare this"


def test_it_keeps_the_other_columns_when_one_fails(conversation):
    run = run_compare(conversation, panel("demo/alpha"), panel(FAULT_MODEL), panel("demo/beta"))

    alpha, fault, beta = replies_of(run)
    assert alpha.status == beta.status == Message.Status.COMPLETE
    assert alpha.content and beta.content
    assert fault.status == Message.Status.FAILED
    calls = ApiCall.objects.filter(message=fault)
    assert calls.count() == 3  # 500 is retried automatically, then given up
    assert all(call.http_status == 500 for call in calls)


def test_it_retries_a_failed_column_with_its_own_parameters(conversation, upstream):
    run = run_compare(
        conversation,
        panel("demo/alpha"),
        panel("demo/echo", extra_params={"demo_fault": "status=503,fail_times=3"}),
    )
    _, failed = replies_of(run)
    assert failed.status == Message.Status.FAILED
    sent_before = len(upstream.chat_requests())

    retried = generation.reply_retry(reply=failed)

    assert retried.pk == failed.pk
    assert retried.status == Message.Status.COMPLETE
    (body,) = sent_bodies(upstream)[sent_before:]
    assert body["demo_fault"] == "status=503,fail_times=3"  # the column's, not the panel's
    assert replies_of(run)[0].status == Message.Status.COMPLETE


def test_it_saves_the_run_with_each_columns_parameters(conversation):
    run = run_compare(
        conversation, panel("demo/alpha", temperature=0.3), panel("demo/beta", top_p=0.5)
    )

    saved = CompareRun.objects.get(pk=run.pk)
    columns = list(saved.columns.all())
    assert [(col.position, col.model) for col in columns] == [(0, "demo/alpha"), (1, "demo/beta")]
    assert columns[0].temperature == 0.3 and columns[1].top_p == 0.5
    assert saved.prompt.content == "Compare this"
    assert saved.chosen is None


def test_it_starts_one_run_per_submit(conversation, upstream):
    first = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"), key="same")
    again = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"), key="same")

    assert first.pk == again.pk
    assert CompareRun.objects.count() == 1
    assert len(upstream.chat_requests()) == 2


def test_a_compare_with_a_token_a_send_used_still_runs(conversation, alice_client):
    # Only a hand-made form does this: the tokens of compares and sends are kept apart.
    send(alice_client, conversation, "Hello", idempotency_key="used")
    conversation.refresh_from_db()

    run = run_compare(conversation, panel("demo/a"), panel("demo/b"), key="used")

    assert run.prompt.content == "Compare this"
    assert Message.objects.filter(role="user").count() == 2


def test_it_refuses_fewer_than_two_or_more_than_four_columns(conversation):
    for count in (1, 5):
        with pytest.raises(compare.ValidationError):
            run_compare(conversation, *[panel()] * count, key=f"k{count}")
    assert not Message.objects.exists()


def test_it_continues_with_the_chosen_reply_and_keeps_the_others(conversation, upstream):
    run = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"))
    alpha, beta = replies_of(run)

    compare.compare_choose(run=run, reply=beta)

    conversation.refresh_from_db()
    run.refresh_from_db()
    assert conversation.current_leaf == beta
    assert run.chosen == beta
    assert Message.objects.filter(pk=alpha.pk).exists()
    reply = generation.message_send(
        conversation=conversation,
        drafts=[conversations.Draft(content="Go on")],
        idempotency_key="next",
        parameters=panel(),
    )
    assert reply.parent.parent_id == beta.pk
    contents = [m["content"] for m in sent_bodies(upstream)[-1]["messages"]]
    assert contents[1] == beta.content


def test_it_refuses_a_reply_from_outside_the_run(conversation, alice_client):
    send(alice_client, conversation, "Hello")
    conversation.refresh_from_db()
    outsider = Message.objects.get(role="assistant")
    run = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"))

    with pytest.raises(compare.ValidationError):
        compare.compare_choose(run=run, reply=outsider)


def test_it_refuses_to_continue_from_a_failed_column(conversation):
    run = run_compare(conversation, panel("demo/alpha"), panel(FAULT_MODEL))
    _, failed = replies_of(run)

    with pytest.raises(compare.ValidationError):
        compare.compare_choose(run=run, reply=failed)
    run.refresh_from_db()
    assert run.chosen is None


def test_it_lets_a_column_be_claimed_once(conversation):
    run, created = compare.compare_start(
        conversation=conversation,
        content="Hi",
        idempotency_key="k",
        parameter_sets=[panel(), panel()],
        claim=False,
    )
    first = run.columns.first()

    assert created
    assert compare.compare_column_claim(column=first) is True
    assert compare.compare_column_claim(column=first) is False


def test_it_removes_a_deleted_column_reply_only(conversation):
    run = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"))
    alpha, beta = replies_of(run)

    branches.branch_delete(conversation=conversation, message=alpha)

    assert replies_of(run) == [None, beta]
    assert CompareColumn.objects.filter(run=run).count() == 2


# --- Through the pages -------------------------------------------------------


def compare_form(prompt="Compare this", key="page-key", **columns):
    data = {"content": prompt, "idempotency_key": key}
    for number in range(1, 5):
        for name in ("model", "system_prompt", "temperature", "top_p", "max_tokens", "stop"):
            data[f"column-{number}-{name}"] = ""
        data[f"column-{number}-extra_params"] = ""
    for name, value in columns.items():
        number, field = name.split("__")
        data[f"column-{number[1:]}-{field}"] = value
    return data


def test_it_compares_through_the_form_and_redirects_to_the_run(alice_client, conversation):
    url = reverse("compare_new", args=[conversation.public_id])
    response = alice_client.post(
        url,
        compare_form(c1__model="demo/alpha", c2__model=FAULT_MODEL, c2__temperature="0.4"),
    )

    run = CompareRun.objects.get()
    assert response.status_code == 302
    assert response.url == run.get_absolute_url()
    page = alice_client.get(response.url).content.decode()
    assert "demo/alpha" in page and FAULT_MODEL in page
    assert "<dt>temperature</dt><dd>0.4</dd>" in page  # the column's header
    assert page.count("Continue with this reply") == 1  # not from the failed column
    assert "Retry" in page  # the failed column
    assert page.count('class="inspector"') == 2  # each column has its own
    assert "Latency" in page and "Cost" in page


def test_it_keeps_the_form_when_fewer_than_two_columns_are_filled(alice_client, conversation):
    url = reverse("compare_new", args=[conversation.public_id])
    response = alice_client.post(url, compare_form("My prompt", c1__model="demo/alpha"))

    assert response.status_code == 400
    page = response.content.decode()
    assert "Fill in the model of at least 2 columns" in page
    assert "My prompt" in page
    assert not Message.objects.exists()


def test_it_shows_a_column_error_next_to_its_field(alice_client, conversation):
    url = reverse("compare_new", args=[conversation.public_id])
    response = alice_client.post(
        url,
        compare_form(c1__model="demo/a", c2__model="demo/b", c2__extra_params='{"model": 1}'),
    )

    assert response.status_code == 400
    assert "cannot be set here" in response.content.decode()
    assert not Message.objects.exists()


def test_it_starts_a_run_for_the_script_without_generating(alice_client, conversation, upstream):
    url = reverse("compare_start", args=[conversation.public_id])
    response = alice_client.post(url, compare_form(c1__model="demo/a", c2__model="demo/b"))

    run = CompareRun.objects.get()
    assert response.status_code == 201
    assert json.loads(response.content) == {"url": run.get_absolute_url()}
    assert upstream.chat_requests() == []
    page = alice_client.get(run.get_absolute_url()).content.decode()
    assert page.count("data-stream-url=") == 2
    again = alice_client.post(url, compare_form(c1__model="demo/a", c2__model="demo/b"))
    assert again.status_code == 200
    assert CompareRun.objects.count() == 1


def test_it_streams_each_column_once(alice_client, conversation):
    alice_client.post(
        reverse("compare_start", args=[conversation.public_id]),
        compare_form(c1__model="demo/a", c2__model=FAULT_MODEL),
    )
    run = CompareRun.objects.get()

    def stream(position):
        url = reverse(
            "compare_column_stream", args=[conversation.public_id, run.public_id, position]
        )
        return alice_client.post(url)

    first = stream(0)
    body = b"".join(first.streaming_content).decode()
    assert "event: start" in body and "event: delta" in body and "event: done" in body
    assert stream(0).status_code == 409
    failing = b"".join(stream(1).streaming_content).decode()
    assert '"status": "failed"' in failing
    statuses = [reply.status for reply in replies_of(run)]
    assert statuses == ["complete", "failed"]


def test_it_chooses_a_reply_from_the_page(alice_client, conversation):
    run = run_compare(conversation, panel("demo/alpha"), panel("demo/beta"))
    _, beta = replies_of(run)

    response = alice_client.post(
        reverse("compare_choose", args=[conversation.public_id, run.public_id, beta.public_id])
    )

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.current_leaf == beta
    page = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert "Compared side by side" in page
    assert "2 / 2" in page
    assert "The conversation continues from this reply" in (
        alice_client.get(run.get_absolute_url()).content.decode()
    )


def test_it_retries_a_compare_column_and_returns_to_the_run(alice_client, conversation):
    run = run_compare(conversation, panel("demo/alpha"), panel(FAULT_MODEL))
    _, failed = replies_of(run)

    response = alice_client.post(
        reverse("reply_retry", args=[conversation.public_id, failed.public_id]),
        {"return_to": "compare"},
    )

    assert response.status_code == 302
    assert response.url.startswith(run.get_absolute_url())
