"""Share links: who can see what, snapshots, update, revoke, expiry, continue."""

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import ApiCall, Attachment, Conversation, Message, Share
from tests.conftest import TEST_API_KEY
from tests.helpers import png_bytes, send

pytestmark = pytest.mark.django_db

IMAGE = png_bytes(5, 4, seed=11)


@pytest.fixture
def conversation(alice, alice_client):
    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="Shared plan")
    send(alice_client, conversation, "What is a share link?", temperature="0.3", stop="END")
    conversation.refresh_from_db()
    return conversation


def share_it(client: Client, conversation: Conversation, **options) -> Share:
    data = {"expires_in": "", "show_inspector": "on", **options}
    response = client.post(reverse("share_create", args=[conversation.public_id]), data)
    assert response.status_code == 302
    return Share.objects.filter(conversation=conversation).latest("created")


def test_a_share_link_carries_at_least_128_random_bits(alice_client, conversation):
    share = share_it(alice_client, conversation)
    other = share_it(alice_client, conversation)

    assert len(share.token) >= 22  # URL-safe base64: 6 bits per character, so 22 = 132 bits
    assert share.token != other.token
    assert share.get_absolute_url() == f"/s/{share.token}/"


def test_anyone_with_the_link_reads_the_snapshot_without_logging_in(
    alice_client, alice, conversation
):
    Conversation.objects.create(owner=alice, model="m", title="Alice's other secret chat")
    share = share_it(alice_client, conversation)

    response = Client().get(share.get_absolute_url())

    page = response.content.decode()
    assert response.status_code == 200
    assert "What is a share link?" in page
    assert "<dt>Model</dt><dd><code>demo/echo</code></dd>" in page  # the sidebar
    assert "<dt>temperature</dt><dd><code>0.3</code></dd>" in page
    assert "<dt>stop</dt><dd><code>[&quot;END&quot;]</code></dd>" in page
    assert "&quot;temperature&quot;: 0.3" in page  # the inspector's request body
    assert "Get code" in page and "YOUR_API_KEY" in page
    assert "other secret chat" not in page
    assert TEST_API_KEY not in page
    assert 'name="content"' not in page  # read-only: no message box


def test_the_shared_page_offers_no_actions_even_on_a_failed_reply(alice_client, conversation):
    send(alice_client, conversation, "This one fails", model="demo/fault:status=500")
    share = share_it(alice_client, conversation)

    page = Client().get(share.get_absolute_url()).content.decode()

    assert "The upstream answered 500" in page  # the failure is shown...
    assert ">Retry</button>" not in page and "/retry/" not in page  # ...with nothing to press
    assert "Regenerate" not in page and "/delete/" not in page


def test_the_shared_page_is_not_indexed_cached_or_leaked_through_referer(
    alice_client, conversation
):
    share = share_it(alice_client, conversation)

    response = Client().get(share.get_absolute_url())

    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in response.content.decode()
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


def test_another_signed_in_user_can_read_but_not_manage_the_link(
    alice_client, bob_client, conversation
):
    share = share_it(alice_client, conversation)

    assert bob_client.get(share.get_absolute_url()).status_code == 200
    for name in ("share_update", "share_settings", "share_revoke"):
        response = bob_client.post(reverse(name, args=[share.public_id]), {"expires_in": "1h"})
        assert response.status_code == 404, name
    assert share.token not in bob_client.get(reverse("share_list")).content.decode()
    share.refresh_from_db()
    assert share.revoked_at is None and share.expires_at is None


def test_only_the_owner_can_share_a_conversation(bob_client, conversation):
    response = bob_client.post(reverse("share_create", args=[conversation.public_id]))

    assert response.status_code == 404
    assert not Share.objects.exists()


def test_sharing_needs_a_csrf_token(alice, conversation):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(reverse("share_create", args=[conversation.public_id]))

    assert response.status_code == 403
    assert not Share.objects.exists()


def test_a_revoked_link_stops_working_at_once(alice_client, conversation):
    share = share_it(alice_client, conversation)
    visitor = Client()
    assert visitor.get(share.get_absolute_url()).status_code == 200

    alice_client.post(reverse("share_revoke", args=[share.public_id]))

    assert visitor.get(share.get_absolute_url()).status_code == 404
    assert visitor.get(reverse("share_continue", args=[share.token])).status_code == 404
    listing = alice_client.get(reverse("share_list")).content.decode()
    assert "Revoked" in listing


def test_an_expired_link_stops_working(alice_client, conversation):
    share = share_it(alice_client, conversation, expires_in="1h")
    assert share.expires_at - timezone.now() > timedelta(minutes=59)
    assert Client().get(share.get_absolute_url()).status_code == 200

    Share.objects.filter(pk=share.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert Client().get(share.get_absolute_url()).status_code == 404
    assert "Expired" in alice_client.get(reverse("share_list")).content.decode()


def test_an_unknown_link_is_not_found(client):
    assert client.get(reverse("shared_conversation", args=["x" * 32])).status_code == 404


def test_the_snapshot_does_not_change_when_the_conversation_goes_on(alice_client, conversation):
    share = share_it(alice_client, conversation)

    send(alice_client, conversation, "A message after sharing")
    alice_client.post(
        reverse("conversation_rename", args=[conversation.public_id]), {"title": "Renamed"}
    )

    page = Client().get(share.get_absolute_url()).content.decode()
    assert "What is a share link?" in page
    assert "A message after sharing" not in page
    assert "Renamed" not in page and "Shared plan" in page


def test_update_shows_the_conversation_as_it_is_now_at_the_same_url(alice_client, conversation):
    share = share_it(alice_client, conversation)
    url = share.get_absolute_url()
    send(alice_client, conversation, "A message after sharing")

    alice_client.post(reverse("share_update", args=[share.public_id]))

    share.refresh_from_db()
    assert share.get_absolute_url() == url
    assert "A message after sharing" in Client().get(url).content.decode()


def test_the_owner_can_hide_the_raw_json_and_get_code(alice_client, conversation):
    share = share_it(alice_client, conversation, show_inspector="")

    page = Client().get(share.get_absolute_url()).content.decode()

    assert "What is a share link?" in page
    assert "&quot;temperature&quot;" not in page
    assert "Get code" not in page and "Inspect" not in page


def test_the_owner_changes_expiry_and_inspector_on_an_existing_link(alice_client, conversation):
    share = share_it(alice_client, conversation)
    url = reverse("share_settings", args=[share.public_id])

    alice_client.post(url, {"expires_in": "7d"})  # an unticked box is absent from the form
    share.refresh_from_db()
    assert share.show_inspector is False
    assert timedelta(days=6) < share.expires_at - timezone.now() <= timedelta(days=7)

    alice_client.post(url, {"expires_in": "keep", "show_inspector": "on"})
    kept = Share.objects.get(pk=share.pk)
    assert kept.expires_at == share.expires_at and kept.show_inspector is True

    alice_client.post(url, {"expires_in": "", "show_inspector": "on"})
    assert Share.objects.get(pk=share.pk).expires_at is None


def test_the_shared_links_page_lists_every_link_with_its_state(alice_client, conversation):
    active = share_it(alice_client, conversation)
    revoked = share_it(alice_client, conversation)
    alice_client.post(reverse("share_revoke", args=[revoked.public_id]))

    page = alice_client.get(reverse("share_list")).content.decode()

    assert f"/s/{active.token}/" in page
    assert f"share-{revoked.public_id}" in page and "Revoked" in page
    assert f"/s/{revoked.token}/" not in page  # a dead link is not offered for copying


def test_a_visitor_who_is_not_signed_in_is_sent_to_log_in_and_comes_back(
    alice_client, conversation
):
    share = share_it(alice_client, conversation)
    continue_url = reverse("share_continue", args=[share.token])

    response = Client().get(continue_url)

    assert response.status_code == 302
    assert response.url == f"{reverse('login')}?next={continue_url}"


def test_signing_up_from_a_share_link_comes_back_to_continue(alice_client, conversation):
    share = share_it(alice_client, conversation)
    continue_url = reverse("share_continue", args=[share.token])
    visitor = Client()

    page = visitor.get(f"{reverse('signup')}?next={continue_url}").content.decode()
    response = visitor.post(
        reverse("signup"),
        {
            "username": "carol",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "next": continue_url,
        },
    )

    assert f'name="next" value="{continue_url}"' in page
    assert response.status_code == 302 and response.url == continue_url
    assert "Make my copy" in visitor.get(continue_url).content.decode()


def test_signing_up_never_redirects_to_another_site(client):
    response = client.post(
        reverse("signup"),
        {
            "username": "mallory",
            "password1": "a-long-password-9",
            "password2": "a-long-password-9",
            "next": "https://evil.example/",
        },
    )

    assert response.status_code == 302 and response.url == reverse("conversation_list")


def test_continuing_makes_an_independent_copy_for_the_visitor(
    alice_client, bob_client, bob, conversation
):
    share = share_it(alice_client, conversation)
    original_messages = Message.objects.filter(conversation=conversation).count()

    response = bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302 and response.url == copy.get_absolute_url()
    assert (copy.title, copy.model, copy.temperature, copy.stop) == (
        "Shared plan",
        "demo/echo",
        0.3,
        ["END"],
    )
    copied = list(copy.messages.values_list("role", "content"))
    assert copied == list(conversation.messages.values_list("role", "content"))
    assert ApiCall.objects.filter(conversation=copy).count() == 1
    assert copy.current_leaf.content == conversation.current_leaf.content

    send(bob_client, copy, "Bob goes on in his copy")
    assert Message.objects.filter(conversation=conversation).count() == original_messages
    assert "Bob goes on" not in Client().get(share.get_absolute_url()).content.decode()


def test_continuing_without_the_inspector_copies_no_raw_calls(
    alice_client, bob_client, bob, conversation
):
    share = share_it(alice_client, conversation, show_inspector="")

    bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    assert copy.messages.count() == 2
    assert not ApiCall.objects.filter(conversation=copy).exists()


def test_deleting_the_conversation_ends_its_links(alice_client, conversation):
    share = share_it(alice_client, conversation)

    alice_client.post(reverse("conversation_delete", args=[conversation.public_id]))

    assert Client().get(share.get_absolute_url()).status_code == 404


@pytest.fixture
def compare_run(conversation):
    from chat import compare

    column = {"system_prompt": "", "top_p": None, "max_tokens": None, "stop": []}
    return compare.compare_send(
        conversation=conversation,
        content="Which is better?",
        idempotency_key="compare-share",
        parameter_sets=[
            {**column, "model": "demo/alpha", "temperature": 0.2, "extra_params": {}},
            {**column, "model": "demo/beta", "temperature": None, "extra_params": {"top_k": 3}},
        ],
    )


def test_a_comparison_is_shared_side_by_side(alice_client, conversation, compare_run):
    url = reverse("compare_share", args=[conversation.public_id, compare_run.public_id])
    alice_client.post(url, {"show_inspector": "on"})
    share = Share.objects.get(compare_run=compare_run)

    response = Client().get(share.get_absolute_url())

    page = response.content.decode()
    assert response.status_code == 200
    assert "Compared side by side" in page
    assert "What is a share link?" in page  # the conversation before the prompt
    assert "Which is better?" in page
    assert 'aria-label="Column 1: demo/alpha"' in page
    assert "<dt>temperature</dt><dd>0.2</dd>" in page  # each column's header
    assert 'aria-label="Column 2: demo/beta"' in page and "<dt>top_k</dt><dd>3</dd>" in page
    assert page.count('class="message assistant') == 3  # one before, one per column
    assert "Continue with this reply" not in page  # read-only
    assert "Comparison in" in alice_client.get(reverse("share_list")).content.decode()


def test_continuing_a_shared_comparison_copies_the_run(
    alice_client, bob_client, bob, conversation, compare_run
):
    url = reverse("compare_share", args=[conversation.public_id, compare_run.public_id])
    alice_client.post(url, {"show_inspector": "on"})
    share = Share.objects.get(compare_run=compare_run)

    bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    [run] = copy.compare_runs.all()
    assert run.prompt.content == "Which is better?"
    assert [column.model for column in run.columns.all()] == ["demo/alpha", "demo/beta"]
    assert all(column.generation_started for column in run.columns.all())
    assert run.columns.get(position=1).extra_params == {"top_k": 3}
    assert Message.objects.filter(compare_column__run=run).count() == 2
    assert copy.current_leaf.compare_column.position == 0


def test_only_the_owner_can_share_a_comparison(bob_client, conversation, compare_run):
    url = reverse("compare_share", args=[conversation.public_id, compare_run.public_id])

    assert bob_client.post(url).status_code == 404
    assert not Share.objects.exists()


# --- The upstream's response headers: hidden unless the owner shows them --------

UPSTREAM_HEADER = "BaseHTTP/"  # the demo upstream's Server header, in no request header


def test_a_share_page_hides_the_upstreams_response_headers_by_default(alice_client, conversation):
    assert UPSTREAM_HEADER in str(ApiCall.objects.get().response_headers)
    share = share_it(alice_client, conversation)

    page = Client().get(share.get_absolute_url()).content.decode()

    assert "&quot;temperature&quot;: 0.3" in page  # the raw JSON is still shown
    assert UPSTREAM_HEADER not in page
    assert share.show_response_headers is False


def test_the_owner_can_show_the_response_headers_on_a_share_page(alice_client, conversation):
    share = share_it(alice_client, conversation, show_response_headers="on")

    page = Client().get(share.get_absolute_url()).content.decode()

    assert UPSTREAM_HEADER in page


def test_the_owner_shows_and_hides_the_headers_of_an_existing_link(alice_client, conversation):
    share = share_it(alice_client, conversation)
    url = reverse("share_settings", args=[share.public_id])

    alice_client.post(
        url, {"expires_in": "keep", "show_inspector": "on", "show_response_headers": "on"}
    )
    shown = Client().get(share.get_absolute_url()).content.decode()
    listing = alice_client.get(reverse("share_list")).content.decode()
    alice_client.post(url, {"expires_in": "keep", "show_inspector": "on"})
    hidden = Client().get(share.get_absolute_url()).content.decode()

    assert UPSTREAM_HEADER in shown
    assert "response headers shown" in listing
    assert UPSTREAM_HEADER not in hidden


def test_continuing_a_link_that_hides_the_headers_copies_the_calls_without_them(
    alice_client, bob_client, conversation
):
    share = share_it(alice_client, conversation)

    bob_client.post(reverse("share_continue", args=[share.token]))

    copied = ApiCall.objects.exclude(conversation=conversation).get()
    assert copied.response_headers == {}
    assert copied.request_body == ApiCall.objects.get(conversation=conversation).request_body


# --- Files on a share page: the snapshot's own copy, at the share's own URLs -----------


@pytest.fixture
def with_image(alice_client, conversation):
    """The conversation, its next turn carrying an image (sent again by the turn after)."""
    from tests.test_message_structure import send_files, upload

    send_files(alice_client, conversation, files=[upload("cat.png", IMAGE)])
    send(alice_client, conversation, "And again?")
    conversation.refresh_from_db()
    return Attachment.objects.get()


def shared_file_url(share: Share, sha256: str) -> str:
    return reverse("shared_file", args=[share.token, sha256])


def test_a_share_page_shows_the_thumbnail_from_the_share_never_from_the_owners_files(
    alice_client, conversation, with_image
):
    share = share_it(alice_client, conversation)

    page = Client().get(share.get_absolute_url()).content.decode()

    url = shared_file_url(share, with_image.sha256)
    assert f'<img class="thumb" src="{url}"' in page and 'width="5" height="4"' in page
    assert reverse("attachment_file", args=[with_image.public_id]) not in page
    assert 'src="/files/' not in page and 'href="/files/' not in page
    assert str(with_image.public_id) not in page  # the owner's ids stay the owner's


def test_the_share_serves_its_copy_of_the_file_to_anyone_with_the_link(
    alice_client, conversation, with_image
):
    share = share_it(alice_client, conversation)
    Attachment.objects.update(data=b"changed since")  # the snapshot keeps its own copy

    response = Client().get(shared_file_url(share, with_image.sha256))

    assert response.status_code == 200
    assert response.content == IMAGE and response["Content-Type"] == "image/png"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"] and "immutable" not in response["Cache-Control"]
    assert response["Content-Disposition"] == "inline; filename*=UTF-8''cat.png"


def test_a_revoked_or_expired_share_serves_its_files_no_more(
    alice_client, conversation, with_image
):
    revoked = share_it(alice_client, conversation)
    expired = share_it(alice_client, conversation, expires_in="1h")
    assert Client().get(shared_file_url(revoked, with_image.sha256)).status_code == 200

    alice_client.post(reverse("share_revoke", args=[revoked.public_id]))
    Share.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    for share in (revoked, expired):
        assert Client().get(shared_file_url(share, with_image.sha256)).status_code == 404


def test_a_share_serves_only_the_files_its_snapshot_holds(alice, alice_client, conversation):
    from chat.attachments import attachment_store, sniff

    share = share_it(alice_client, conversation)  # before any file was attached
    other = png_bytes(7, 7, seed=2)
    stored = attachment_store(owner=alice, filename="other.png", data=other, sniffed=sniff(other))

    for sha in (stored.sha256, "0" * 64, "not-a-sha", "A" * 64):
        assert Client().get(shared_file_url(share, sha)).status_code == 404


def test_the_shared_inspector_names_the_file_and_get_code_reads_it(
    alice_client, conversation, with_image
):
    share = share_it(alice_client, conversation)

    page = Client().get(share.get_absolute_url()).content.decode()

    encoded = base64.b64encode(IMAGE).decode()
    assert f"&lt;base64 of cat.png: {len(encoded):,} characters; the download has them&gt;" in page
    assert encoded not in page
    assert "b64(" in page and "cat.png" in page  # the Python snippet reads the file


def test_continuing_a_share_copies_its_files_into_the_visitors_account(
    alice_client, bob_client, bob, conversation, with_image, upstream
):
    share = share_it(alice_client, conversation)

    bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    mine = Attachment.objects.get(owner=bob)
    assert bytes(mine.data) == IMAGE and mine.filename == "cat.png" and mine != with_image
    question = copy.messages.get(parts__isnull=False)
    assert question.parts[-1] == {"type": "attachment", "attachment": str(mine.public_id)}
    assert list(question.attachments.all()) == [mine]
    originals = ApiCall.objects.filter(conversation=conversation).order_by("created", "id")
    copies = ApiCall.objects.filter(conversation=copy).order_by("created", "id")
    assert [c.sent_body() for c in copies] == [c.sent_body() for c in originals]
    page = bob_client.get(copy.get_absolute_url()).content.decode()
    assert reverse("attachment_file", args=[mine.public_id]) in page

    upstream.clear()
    send(bob_client, copy, "Bob asks about it too")
    assert base64.b64encode(IMAGE).decode() in upstream.chat_requests()[0].body.decode()


def test_continuing_a_share_without_its_calls_still_copies_the_files_shown(
    alice_client, bob_client, bob, conversation, with_image
):
    share = share_it(alice_client, conversation, show_inspector="")

    bob_client.post(reverse("share_continue", args=[share.token]))

    copy = Conversation.objects.get(owner=bob)
    assert not ApiCall.objects.filter(conversation=copy).exists()
    assert bytes(Attachment.objects.get(owner=bob).data) == IMAGE


def test_a_share_shows_every_kind_of_message_from_its_snapshot(alice_client, conversation):
    from tests.test_tools_and_choices import TOOLS, post_results

    send(alice_client, conversation, "Answer in haiku.", role="developer", add_only="on")
    send(alice_client, conversation, "4", role="assistant", add_only="on")
    send(alice_client, conversation, "Weather?", extra_params=TOOLS)
    conversation.refresh_from_db()
    post_results(alice_client, conversation, conversation.current_leaf, "sunny")
    send(alice_client, conversation, "Please [refuse]", extra_params="")
    share = share_it(alice_client, conversation)

    page = Client().get(share.get_absolute_url()).content.decode()

    call_id = Message.objects.get(tool_calls__isnull=False).tool_calls[0]["id"]
    assert "Answer in haiku." in page and "written by you" in page
    assert "get_weather" in page and f"Result of tool call <code>{call_id}</code>" in page
    assert 'class="refusal"' in page and "demo refusal" in page


def test_a_share_taken_before_files_were_kept_still_shows_and_continues(
    alice_client, bob_client, bob, conversation
):
    """A snapshot in format version 1: each message's text, no version, no files."""
    share = share_it(alice_client, conversation)
    v1 = json.loads((Path(__file__).parent / "fixtures" / "export-v1.json").read_bytes())
    Share.objects.filter(pk=share.pk).update(snapshot=v1["conversations"][0])

    page = Client().get(share.get_absolute_url()).content.decode()
    response = bob_client.post(reverse("share_continue", args=[share.token]))

    assert "Where should I go in May?" in page
    assert 'class="message user written' in page  # a user's message, as the migration has it
    assert response.status_code == 302
    copy = Conversation.objects.get(owner=bob)
    assert copy.messages.count() == len(v1["conversations"][0]["messages"])
