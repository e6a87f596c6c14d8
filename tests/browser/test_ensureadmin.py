"""``manage.py ensureadmin``: someone can always log in to the dashboard, never with a fixed password."""

import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def ensureadmin() -> str:
    out = io.StringIO()
    call_command("ensureadmin", stdout=out)
    return out.getvalue()


def test_creates_admin_with_a_random_password_shown_once():
    first = ensureadmin()
    match = re.fullmatch(
        r"Dashboard login: admin / (\S+) \(shown once; change it with manage.py changepassword admin\)\n",
        first,
    )
    assert match, first
    password = match.group(1)
    assert len(password) >= 16
    user = authenticate(username="admin", password=password)
    assert user is not None
    assert user.is_superuser
    assert user.is_staff

    again = ensureadmin()
    assert password not in again
    assert again.startswith("Dashboard login: admin (superuser).")
    assert "manage.py changepassword admin" in again
    assert get_user_model().objects.count() == 1


def test_passwords_differ_between_databases():
    first = ensureadmin()
    get_user_model().objects.all().delete()
    second = ensureadmin()
    assert first != second


def test_names_existing_superusers_and_creates_nobody():
    get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-secret-password")
    out = ensureadmin()
    assert out.startswith("Dashboard login: ops (superuser).")
    assert "manage.py changepassword ops" in out
    assert not get_user_model().objects.filter(username="admin").exists()
