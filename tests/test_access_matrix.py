"""Every URL, every method, every persona: the status each one gets.

The matrix below has one row per named URL in the URLconf (the admin has its own tests in
test_admin.py). A URL added without a row fails `test_every_url_has_a_row`, so nobody can add
a page without deciding who may use it.

Personas: the owner (alice, whose objects the URLs name), another signed-in user (bob), an
anonymous visitor, and a share-link holder (an anonymous visitor who has the share URL).
"""

from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from chat.models import ApiCall, Conversation, Message, Share
from chat.sharing import share_create

pytestmark = pytest.mark.django_db

PERSONAS = ("owner", "other", "anonymous", "holder")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LOGIN = 302  # a visitor who must log in is sent to the login page


@dataclass(frozen=True)
class Row:
    """Expected status per persona (owner, other, anonymous, holder) for each allowed method."""

    args: tuple[str, ...]
    allowed: dict[str, tuple[int, int, int, int]]
    login_required: bool = True


OWNED = (200, 404, LOGIN, LOGIN)  # a page of alice's: others get 404, visitors log in
OWNED_FORM = (400, 404, LOGIN, LOGIN)  # an empty POST to one of alice's forms
OWNED_ACTION = (302, 404, LOGIN, LOGIN)
MINE = (200, 200, LOGIN, LOGIN)  # each signed-in user sees their own
PUBLIC = (200, 200, 200, 200)

MATRIX: dict[str, Row] = {
    # Django's form views take PUT as POST (ProcessFormView.put); CSRF guards both.
    "login": Row((), {"GET": PUBLIC, "POST": PUBLIC, "PUT": PUBLIC}, login_required=False),
    "logout": Row((), {"POST": (302, 302, 302, 302)}, login_required=False),
    "password_change": Row((), {"GET": MINE, "POST": MINE, "PUT": MINE}),
    "password_change_done": Row((), {"GET": MINE}),
    "home": Row((), {"GET": (302, 302, 302, 302)}, login_required=False),
    "signup": Row((), {"GET": PUBLIC, "POST": PUBLIC}, login_required=False),
    "conversation_list": Row((), {"GET": MINE}),
    "conversation_create": Row((), {"POST": (302, 302, LOGIN, LOGIN)}),
    "conversations_export": Row((), {"GET": MINE}),
    "conversations_import": Row((), {"GET": MINE, "POST": (400, 400, LOGIN, LOGIN)}),
    "conversation_detail": Row(("conversation",), {"GET": OWNED}),
    "message_send": Row(("conversation",), {"POST": OWNED_FORM}),
    "message_stream": Row(("conversation",), {"POST": OWNED_FORM}),
    "parameters_save": Row(("conversation",), {"POST": OWNED_FORM}),
    "conversation_rename": Row(("conversation",), {"POST": OWNED_FORM}),
    "conversation_delete": Row(("conversation",), {"GET": OWNED, "POST": OWNED_ACTION}),
    "conversation_export_json": Row(("conversation",), {"GET": OWNED}),
    "conversation_export_md": Row(("conversation",), {"GET": OWNED}),
    "share_create": Row(("conversation",), {"POST": OWNED_ACTION}),
    "message_fragment": Row(("conversation", "reply"), {"GET": OWNED}),
    "reply_retry": Row(("conversation", "reply"), {"POST": OWNED_ACTION}),
    "reply_stop": Row(("conversation", "reply"), {"POST": (204, 404, LOGIN, LOGIN)}),
    "call_detail": Row(("call",), {"GET": OWNED}),
    "call_record": Row(("call",), {"GET": OWNED}),
    "call_download": Row(("call", "request"), {"GET": OWNED}),
    "share_list": Row((), {"GET": MINE}),
    "share_update": Row(("share",), {"POST": OWNED_ACTION}),
    "share_settings": Row(("share",), {"POST": OWNED_ACTION}),
    "share_revoke": Row(("share",), {"POST": OWNED_ACTION}),
    "shared_conversation": Row(("token",), {"GET": PUBLIC}, login_required=False),
    # Anyone signed in may copy a shared conversation; a visitor logs in first.
    "share_continue": Row(
        ("token",), {"GET": MINE, "POST": (302, 302, LOGIN, LOGIN)}, login_required=False
    ),
}


def url_names(patterns=None, prefix: str = "") -> set[str]:
    """Every named URL of the site except the admin's."""
    names = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name != "admin":
                names |= url_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def test_every_url_has_a_row():
    assert url_names() == set(MATRIX), "Add the new URL to MATRIX, with who may use it."


@pytest.fixture
def world(alice, bob):
    """Alice's objects that the URLs name: a conversation with a failed reply, its call, a share."""
    conversation = Conversation.objects.create(owner=alice, model="demo/echo", title="Alice's")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="failed"
    )
    conversation.current_leaf = reply
    conversation.save()
    call = ApiCall.objects.create(
        conversation=conversation, message=reply, url="http://x/v1", request_body="{}"
    )
    share = share_create(conversation=conversation, show_inspector=True, expires_in=None)
    return {"conversation": conversation, "reply": reply, "call": call, "share": share}


def build_url(name: str, world: dict) -> str:
    values = {
        "conversation": world["conversation"].public_id,
        "reply": world["reply"].public_id,
        "call": world["call"].public_id,
        "share": world["share"].public_id,
        "token": world["share"].token,
        "request": "request",
    }
    return reverse(name, args=[values[arg] for arg in MATRIX[name].args])


def client_for(persona: str, alice, bob, share: Share) -> Client:
    client = Client()
    if persona == "owner":
        client.force_login(alice)
    elif persona == "other":
        client.force_login(bob)
    elif persona == "holder":
        assert client.get(share.get_absolute_url()).status_code == 200
    return client


def expected_status(row: Row, method: str, persona: str) -> int:
    if method in row.allowed:
        return row.allowed[method][PERSONAS.index(persona)]
    signed_in = persona in {"owner", "other"}
    return 405 if signed_in or not row.login_required else LOGIN


CASES = [
    (name, method, persona) for name in sorted(MATRIX) for method in METHODS for persona in PERSONAS
]


@pytest.mark.parametrize("name, method, persona", CASES)
def test_each_persona_gets_the_expected_status(name, method, persona, world, alice, bob):
    client = client_for(persona, alice, bob, world["share"])
    url = build_url(name, world)

    response = client.generic(method, url)

    expected = expected_status(MATRIX[name], method, persona)
    assert response.status_code == expected, f"{method} {url} as {persona}: {response.status_code}"
    if expected == LOGIN and persona in {"anonymous", "holder"} and MATRIX[name].login_required:
        assert response.url.startswith(reverse("login"))
