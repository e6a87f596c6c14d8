"""app/access.py: reading a session's user afresh, and the group names of a user's sockets.

The signals closing real sockets are tested through the ASGI stack in tests/integration/test_consumers.py
and across processes in tests/acceptance/test_signout.py.
"""

import re

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from app.access import fingerprint, session_user, user_group
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

CHANNELS_GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]{1,99}$")  # what channels accepts


@pytest.mark.parametrize(
    "pk", [1, 2**62, "0f8fad5b-d9cb-469f-a165-70867728950e", "ada@example.com", "é" * 200]
)
def test_every_primary_key_makes_a_valid_group_of_its_own(pk):
    assert CHANNELS_GROUP_NAME.match(user_group(pk))
    assert user_group(pk) != user_group(f"{pk}x")


def test_a_session_key_travels_only_as_a_fingerprint():
    assert fingerprint("abc") == fingerprint("abc") != fingerprint("abd")
    assert "abc" not in fingerprint("abc")


def session_of(user, **overrides) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.update(overrides)
    session.create()
    return session.session_key


def test_the_sessions_user_is_read_afresh():
    user = make_user("ada")
    key = session_of(user)
    assert session_user(key) == user
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    assert session_user(key) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {HASH_SESSION_KEY: "not-the-hash"},
        {HASH_SESSION_KEY: ""},
        {BACKEND_SESSION_KEY: "somewhere.else.Backend"},  # a backend no longer configured
        {SESSION_KEY: "not a number"},
        {SESSION_KEY: "987654"},  # no such user
    ],
)
def test_a_session_that_no_longer_signs_anyone_in_gives_no_user(overrides):
    assert session_user(session_of(make_user("ada"), **overrides)) is None


def test_no_key_or_an_unknown_key_gives_no_user():
    assert session_user(None) is None
    assert session_user("") is None
    assert session_user("x" * 32) is None


def test_the_check_never_deletes_the_session():
    """Unlike django.contrib.auth.get_user: a socket's look must not sign the browser out."""
    key = session_of(make_user("ada"), **{HASH_SESSION_KEY: "stale"})
    assert session_user(key) is None
    assert SessionStore().exists(key)


def test_a_session_signed_with_a_rotated_secret_key_still_counts(settings):
    user = make_user("ada")
    key = session_of(user)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert session_user(key) == user
