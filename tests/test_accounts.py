"""Sign up, log in, log out."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

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
