"""Sign up (open, by invitation or closed), log in, log out, and their throttles."""

import re
from datetime import timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat.models import Invitation

pytestmark = pytest.mark.django_db


def test_it_signs_up_and_logs_in_at_once():
    client = Client()
    response = client.post(
        reverse("signup"),
        {
            "username": "carol",
            "password1": "a-long-passphrase-9",
            "password2": "a-long-passphrase-9",
        },
    )

    assert response.status_code == 302
    assert get_user_model().objects.filter(username="carol").exists()
    assert client.get(reverse("conversation_list")).status_code == 200


def test_it_explains_a_bad_signup():
    response = Client().post(
        reverse("signup"), {"username": "dave", "password1": "x", "password2": "y"}
    )

    assert response.status_code == 200
    assert "The two password fields didn’t match." in response.content.decode()


def test_it_logs_in_and_out(alice):
    client = Client()
    response = client.post(reverse("login"), {"username": "alice", "password": "alice-password-1"})
    assert response.status_code == 302

    client.post(reverse("logout"))

    assert client.get(reverse("conversation_list")).status_code == 302


def test_the_login_page_says_how_to_get_in():
    page = Client().get(reverse("login")).content.decode()

    assert "Sign up" in page
    assert reverse("signup") in page


# --- Who may sign up: SIGNUP_MODE and invitations ---------------------------------

PASSWORD = "a-long-passphrase-9"


def sign_up(client: Client, username: str = "carol", invite: str = "", password2=PASSWORD):
    data = {"username": username, "password1": PASSWORD, "password2": password2}
    if invite:
        data["invite"] = invite
    return client.post(reverse("signup"), data)


def invitation_link(*arguments: str) -> str:
    out = StringIO()
    call_command("invite", *arguments, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["invite"][0]


@pytest.fixture
def by_invitation(settings):
    settings.SIGNUP_MODE = "invite"


def test_with_sign_up_closed_nobody_signs_up_and_the_pages_say_so(settings):
    settings.SIGNUP_MODE = "closed"
    client = Client()

    page = client.get(reverse("signup"))
    response = sign_up(client)
    login_page = client.get(reverse("login")).content.decode()

    assert page.status_code == response.status_code == 403
    assert "Sign-up is closed on this server" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()
    assert reverse("signup") not in login_page
    assert "Ask the operator of this server for an account" in login_page


def test_by_invitation_a_visitor_without_a_link_cannot_sign_up(by_invitation):
    response = sign_up(Client())

    assert response.status_code == 403
    assert "Sign-up on this server is by invitation" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_by_invitation_a_visitor_without_a_link_learns_nothing_about_usernames(
    by_invitation, alice
):
    page = sign_up(Client(), username="alice").content.decode()

    assert "already exists" not in page
    assert 'name="username"' not in page  # no form at all


def test_the_invite_command_prints_a_link_that_makes_one_account(by_invitation):
    link = invitation_link("--note", "for carol")
    client = Client()

    form = client.get(link)
    response = sign_up(client, invite=token_of(link))

    assert f"/accounts/signup/?invite={token_of(link)}" in link
    assert form.status_code == 200
    assert f'name="invite" value="{token_of(link)}"' in form.content.decode()
    assert response.status_code == 302
    carol = get_user_model().objects.get(username="carol")
    invitation = Invitation.objects.get()
    assert invitation.used_by == carol and invitation.used_at is not None
    assert invitation.note == "for carol"


def test_the_invite_command_makes_several_links_for_the_sites_address(by_invitation):
    links = invitation_link("--count", "2", "--base-url", "https://play.example.com/").split()

    assert [link.split("=")[0] for link in links] == [
        "https://play.example.com/accounts/signup/?invite"
    ] * 2
    assert len({token_of(link) for link in links}) == 2
    assert all(len(token_of(link)) >= 43 for link in links)  # 256 random bits


def test_an_invitation_link_works_only_once(by_invitation):
    token = token_of(invitation_link())
    sign_up(Client(), "carol", invite=token)

    again = sign_up(Client(), "dave", invite=token)

    assert again.status_code == 403
    assert "This invitation link has already been used" in again.content.decode()
    assert not get_user_model().objects.filter(username="dave").exists()


def test_an_expired_invitation_link_is_refused(by_invitation):
    token = token_of(invitation_link("--days", "1"))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = sign_up(Client(), invite=token)

    assert response.status_code == 403
    assert "This invitation link has expired" in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_an_unknown_invitation_link_is_refused(by_invitation):
    response = Client().get(reverse("signup") + "?invite=made-up")

    assert response.status_code == 403
    assert "This invitation link is not valid" in response.content.decode()


def test_a_sign_up_that_fails_its_form_keeps_the_invitation(by_invitation):
    token = token_of(invitation_link())

    failed = sign_up(Client(), invite=token, password2="something-else-9")
    succeeded = sign_up(Client(), invite=token)

    assert failed.status_code == 200
    assert "The two password fields didn’t match." in failed.content.decode()
    assert succeeded.status_code == 302


def test_two_sign_ups_with_one_link_at_the_same_moment_make_one_account(by_invitation):
    token = token_of(invitation_link())
    Invitation.objects.update(used_at=timezone.now())  # the other sign-up won the claim

    response = sign_up(Client(), invite=token)

    assert response.status_code == 403
    assert get_user_model().objects.count() == 0


# --- Throttles: sign-up per address, log-in per username and per address -----------


def test_sign_up_attempts_are_limited_per_address_with_when_to_try_again(settings):
    settings.SIGNUPS_PER_IP_PER_HOUR = 2
    client = Client()
    sign_up(client, "carol")
    sign_up(client, "dave", password2="a mismatch, still an attempt")

    response = sign_up(client, "erin")

    page = response.content.decode()
    assert response.status_code == 429
    assert "Too many sign-up attempts from your network. Try again in" in page
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert 'value="erin"' in page  # what was typed is kept, but the password
    assert PASSWORD not in page
    assert not get_user_model().objects.filter(username="erin").exists()


def test_another_address_can_still_sign_up(settings):
    settings.SIGNUPS_PER_IP_PER_HOUR = 1
    sign_up(Client(), "carol")

    elsewhere = sign_up(Client(REMOTE_ADDR="203.0.113.9"), "dave")

    assert elsewhere.status_code == 302


def log_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def test_after_too_many_failures_a_username_cannot_log_in_for_a_while(settings, alice):
    settings.LOGIN_FAILURES_PER_USERNAME = 3
    for attempt in range(3):
        assert (
            log_in(Client(REMOTE_ADDR=f"198.51.100.{attempt}"), "alice", "wrong").status_code == 200
        )

    client = Client()
    response = log_in(client, "alice", "alice-password-1")  # even the right password waits

    page = response.content.decode()
    assert response.status_code == 429
    assert re.search(
        r"Too many failed log-ins for this username\. Try again in \d+ (minute|second)", page
    )
    assert 1 <= int(response["Retry-After"]) <= 15 * 60
    assert 'value="alice"' in page and "alice-password-1" not in page
    assert client.get(reverse("conversation_list")).status_code == 302  # not logged in


def test_after_too_many_failures_an_address_cannot_log_in_for_a_while(settings, alice):
    settings.LOGIN_FAILURES_PER_IP = 3
    client = Client()
    for name in ("mallory", "trent", "victor"):
        log_in(client, name, "guess")

    response = log_in(client, "alice", "alice-password-1")
    elsewhere = log_in(Client(REMOTE_ADDR="203.0.113.9"), "alice", "alice-password-1")

    assert response.status_code == 429
    assert "Too many failed log-ins from your network" in response.content.decode()
    assert elsewhere.status_code == 302


def test_behind_a_proxy_the_configured_header_names_the_client(settings, alice):
    settings.LOGIN_FAILURES_PER_IP = 2
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    proxy = Client()  # every request comes from the proxy's address
    for _ in range(2):
        proxy.post(
            reverse("login"),
            {"username": "x", "password": "y"},
            headers={"X-Forwarded-For": "spoofed, 198.51.100.7"},
        )

    blocked = proxy.post(
        reverse("login"),
        {"username": "alice", "password": "alice-password-1"},
        headers={"X-Forwarded-For": "198.51.100.7"},
    )
    other = proxy.post(
        reverse("login"),
        {"username": "alice", "password": "alice-password-1"},
        headers={"X-Forwarded-For": "198.51.100.8"},
    )

    assert blocked.status_code == 429
    assert other.status_code == 302


def test_successful_log_ins_do_not_count(settings, alice):
    settings.LOGIN_FAILURES_PER_USERNAME = 1

    for _ in range(3):
        assert log_in(Client(), "alice", "alice-password-1").status_code == 302
