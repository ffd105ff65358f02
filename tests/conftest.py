"""Shared fixtures: the demo upstream over real HTTP, and the personas.

The only thing faked is the upstream, and it is faked by the same real HTTP
server the offline demo uses, on a free port on 127.0.0.1.
"""

import os

import pytest
from django.core.cache import cache
from django.test import Client

from chat.demo_upstream import DemoUpstream
from chat.models import Conversation

# Playwright's sync API runs an event loop in the test thread; Django's ORM is
# used synchronously beside it in the tests (GUIDE §5).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

TEST_API_KEY = "sk-test-PLAYGROUND-SECRET-4242"


@pytest.fixture(scope="session")
def demo_upstream():
    server = DemoUpstream().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def upstream(request, settings):
    """Point the app at the demo upstream (when a test uses the database or HTTP)."""
    server = request.getfixturevalue("demo_upstream")
    server.clear()
    cache.clear()
    settings.UPSTREAM_BASE_URL = server.base_url
    settings.UPSTREAM_API_KEY = TEST_API_KEY
    settings.UPSTREAM_DEMO = False
    settings.UPSTREAM_READ_TIMEOUT = 5.0
    settings.UPSTREAM_CONNECT_TIMEOUT = 2.0
    settings.UPSTREAM_RETRY_MAX_WAIT = 0.05
    # Real password hashing costs ~0.5 s per user; the tests don't test it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return server


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def conversation(alice):
    """Alice's conversation with the demo's echo model (test files override it as they need)."""
    return Conversation.objects.create(owner=alice, model="demo/echo")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob) -> Client:
    client = Client()
    client.force_login(bob)
    return client
