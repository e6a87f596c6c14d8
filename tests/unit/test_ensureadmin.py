"""``manage.py ensureadmin``: someone can always log in to the dashboard, never with a fixed password, never
by changing a user that exists, and never with the password in a log.

Output to a StringIO is what a pipe, journald or a CI log gets (not a terminal); a real pseudo-terminal
stands for an operator at a shell.
"""

import io
import os
import re
import select
import stat
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.urls import reverse

from app.initialpassword import InitialPassword

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("conductor:dashboard")
ADMIN_INDEX = reverse("admin:index")
PASSWORD_CHANGE = reverse("admin:password_change")
FILE_OUTPUT = re.compile(
    r"Dashboard login: admin; the password is in (\S+) \(readable only by this system user\)\. "
    r"Then change it after logging in .*, and delete the file\.\n"
)


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path: Path) -> Path:
    """The project's VAR_DIR, in a directory of the test's own (that does not exist yet)."""
    settings.VAR_DIR = tmp_path / "var"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.VAR_DIR


def ensureadmin(*args: str) -> str:
    out = io.StringIO()
    call_command("ensureadmin", *args, stdout=out)
    return out.getvalue()


def ensureadmin_on_a_terminal(*args: str) -> str:
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as terminal:
            call_command("ensureadmin", *args, stdout=terminal)
        return read_lines(leader).replace("\r\n", "\n")
    finally:
        os.close(leader)
        os.close(follower)


def read_lines(leader: int, timeout: float = 5.0) -> str:
    """What the terminal shows, up to its last line's end: one read of a pseudo-terminal may return the
    text without its line ending, which the terminal hands over a moment later."""
    output = b""
    while not output.endswith(b"\n"):
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            break
        output += os.read(leader, 65536)
    return output.decode()


def password_file_of(output: str) -> Path:
    match = FILE_OUTPUT.fullmatch(output)
    assert match, output
    return Path(match.group(1))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- creating admin ---------------------------------------------------------------------------------


def test_piped_it_writes_the_password_to_a_private_file_and_prints_only_its_path(var_dir):
    output = ensureadmin()

    path = password_file_of(output)
    assert path == var_dir / "admin-password"
    assert mode(var_dir) == 0o700
    assert mode(path) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 20
    assert password not in output
    user = authenticate(username="admin", password=password)
    assert user is not None
    assert (user.is_superuser, user.is_staff, user.is_active) == (True, True, True)
    assert list(var_dir.iterdir()) == [path]  # nothing staged left behind


def test_on_a_terminal_it_shows_the_password_once_and_writes_no_file(var_dir):
    output = ensureadmin_on_a_terminal()

    match = re.fullmatch(
        r"Dashboard login: admin / (\S+) \(shown once; change it after logging in .*\)\n", output
    )
    assert match, output
    assert authenticate(username="admin", password=match.group(1)) is not None
    assert not var_dir.exists()


def test_password_file_option_writes_there_even_on_a_terminal(tmp_path):
    path = tmp_path / "secrets" / "first-login"

    output = ensureadmin_on_a_terminal("--password-file", str(path))

    assert password_file_of(output) == path
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert path.read_text().strip() not in output
    assert authenticate(username="admin", password=path.read_text().strip()) is not None


def test_a_project_without_var_dir_gets_the_file_under_base_dir(settings, tmp_path):
    del settings.VAR_DIR
    settings.BASE_DIR = tmp_path / "project"

    assert password_file_of(ensureadmin()) == tmp_path / "project" / "var" / "admin-password"


def test_a_stale_password_file_is_replaced(var_dir):
    var_dir.mkdir()
    (var_dir / "admin-password").write_text("from an earlier database\n")

    path = password_file_of(ensureadmin())

    assert authenticate(username="admin", password=path.read_text().strip()) is not None
    assert mode(path) == 0o600


def test_a_symlink_planted_at_the_password_file_is_replaced_not_followed(var_dir, tmp_path):
    target = tmp_path / "world-readable"
    target.write_text("")
    target.chmod(0o644)
    var_dir.mkdir()
    (var_dir / "admin-password").symlink_to(target)

    path = password_file_of(ensureadmin())

    assert target.read_text() == ""
    assert not path.is_symlink()
    assert mode(path) == 0o600


def test_the_generated_password_is_recorded_as_its_hash():
    path = password_file_of(ensureadmin())

    user = get_user_model().objects.get(username="admin")
    initial = InitialPassword.objects.get()
    assert initial.user == user
    assert initial.password == user.password
    assert path.read_text().strip() not in initial.password
    assert InitialPassword.objects.still_in_use(user)


def test_a_second_run_names_admin_and_creates_nobody(var_dir):
    first = password_file_of(ensureadmin()).read_text()

    again = ensureadmin()

    assert again.startswith("Dashboard login: admin (superuser).")
    assert "manage.py changepassword admin" in again
    assert first.strip() not in again
    assert (var_dir / "admin-password").read_text() == first
    assert get_user_model().objects.count() == 1


def test_passwords_differ_between_databases():
    first = password_file_of(ensureadmin()).read_text()
    get_user_model().objects.all().delete()
    second = password_file_of(ensureadmin()).read_text()
    assert first != second


def test_names_existing_superusers_and_creates_nobody(var_dir):
    get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-secret-password")
    out = ensureadmin()
    assert out.startswith("Dashboard login: ops (superuser).")
    assert "manage.py changepassword ops" in out
    assert not get_user_model().objects.filter(username="admin").exists()
    assert not var_dir.exists()


# --- an existing user named admin is never changed --------------------------------------------------


def account(user) -> tuple:
    user.refresh_from_db()
    return (user.password, user.is_superuser, user.is_staff, user.is_active, user.last_login,
            list(user.user_permissions.all()), list(user.groups.all()))  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ({}, "not a superuser"),
        ({"is_staff": True}, "not a superuser"),
        ({"is_superuser": True, "is_staff": True, "is_active": False}, "an inactive superuser"),
    ],
)
def test_an_existing_admin_is_left_as_it_is_and_the_way_to_a_superuser_is_named(var_dir, flags, kind):
    user = get_user_model().objects.create_user("admin", password="their-own-password", **flags)
    before = account(user)

    output = ensureadmin()

    assert account(user) == before
    assert f"The user 'admin' exists ({kind}); ensureadmin leaves it as it is." in output
    assert "manage.py createsuperuser" in output
    assert get_user_model().objects.count() == 1
    assert not InitialPassword.objects.exists()
    assert not var_dir.exists()


# --- the banner: until the generated password is changed --------------------------------------------


def banner_on(client, url: str) -> bool:
    response = client.get(url)
    assert response.status_code == 200, url
    html = response.content.decode()
    shown = 'data-testid="password-banner"' in html
    assert not shown or f'href="{PASSWORD_CHANGE}"' in html
    return shown


def test_the_banner_shows_until_the_generated_password_is_changed(client):
    password = password_file_of(ensureadmin()).read_text().strip()
    assert client.login(username="admin", password=password)

    assert banner_on(client, DASHBOARD)
    assert banner_on(client, ADMIN_INDEX)

    new = "a-Brand-new-passphrase"
    changed = client.post(
        PASSWORD_CHANGE, {"old_password": password, "new_password1": new, "new_password2": new}
    )
    assert changed.status_code == 302, changed.context["form"].errors

    assert not banner_on(client, DASHBOARD)
    assert not banner_on(client, ADMIN_INDEX)


def test_a_password_set_elsewhere_ends_the_banner_too(client):
    """As manage.py changepassword does."""
    ensureadmin()
    user = get_user_model().objects.get(username="admin")
    user.set_password("a-Brand-new-passphrase")
    user.save()

    assert client.login(username="admin", password="a-Brand-new-passphrase")
    assert not banner_on(client, DASHBOARD)
    assert not banner_on(client, ADMIN_INDEX)


def test_other_users_never_see_the_banner(client):
    ensureadmin()
    other = get_user_model().objects.create_superuser("ops", "", "a-long-secret-password")
    client.force_login(other)

    assert not banner_on(client, DASHBOARD)
    assert not banner_on(client, ADMIN_INDEX)
