"""``manage.py ensureadmin``: make sure someone can log in to the dashboard, never with a fixed password
and never by changing a user that exists."""

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import IntegrityError, transaction

from ... import privatefiles
from ...initialpassword import InitialPassword

USERNAME = "admin"
PASSWORD_FILE_NAME = "admin-password"


def default_password_file() -> Path:
    """Beside the generated secret key: the project's VAR_DIR (this repository's settings have one,
    CONDUCTOR_VAR_DIR), else BASE_DIR/var."""
    var_dir = getattr(settings, "VAR_DIR", None) or Path(settings.BASE_DIR) / "var"
    return Path(var_dir) / PASSWORD_FILE_NAME


class Command(BaseCommand):
    help = (
        f"Create the superuser '{USERNAME}' with a random password if there is no active superuser and no "
        f"user '{USERNAME}'; otherwise say who can log in. The password is printed only to a terminal, "
        "else written to a file that only this system user can read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password-file",
            type=Path,
            help="Write the new password to this file (mode 0600) even when stdout is a terminal. "
            f"Default when stdout is not a terminal: {default_password_file()}.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        found = self._superusers() or self._existing_admin()
        self.stdout.write(found or self._create(options["password_file"]))

    def _superusers(self) -> str:
        superusers = get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("pk")
        names = [user.get_username() for user in superusers[:5]]
        if not names:
            return ""
        more = " and others" if superusers.count() > len(names) else ""
        return (
            f"Dashboard login: {', '.join(names)}{more} (superuser). Forgot the password? "
            f"manage.py changepassword {names[0]}"
        )

    def _existing_admin(self) -> str:
        """Someone made this user on purpose: promoting it or resetting its password is not ours to do."""
        users = get_user_model()
        user = users.objects.filter(**{users.USERNAME_FIELD: USERNAME}).first()
        if user is None:
            return ""
        kind = "an inactive superuser" if user.is_superuser else "not a superuser"
        return (
            f"There is no active superuser. The user '{USERNAME}' exists ({kind}); ensureadmin leaves it as "
            "it is. To log in to the dashboard, create a superuser: manage.py createsuperuser"
        )

    def _create(self, password_file: Path | None) -> str:
        password = secrets.token_urlsafe(16)
        try:
            with transaction.atomic():
                user = get_user_model().objects.create_superuser(USERNAME, email="", password=password)
                InitialPassword.objects.create(user=user, password=user.password)
                # Inside the transaction: a password that cannot be handed over leaves no user behind.
                return self._hand_over(password, password_file)
        except IntegrityError:  # another ensureadmin created it meanwhile
            return self._superusers() or self._existing_admin()

    def _hand_over(self, password: str, password_file: Path | None) -> str:
        """On a terminal, show it; elsewhere (journald, CI and container logs) only say where it is."""
        change = (
            "change it after logging in (the dashboard and the admin ask until you do), or with "
            f"manage.py changepassword {USERNAME}"
        )
        if password_file is None and self.stdout.isatty():
            return f"Dashboard login: {USERNAME} / {password} (shown once; {change})"
        path = password_file or default_password_file()
        privatefiles.replace(path, password + "\n")
        return (
            f"Dashboard login: {USERNAME}; the password is in {path} (readable only by this system user). "
            f"Then {change}, and delete the file."
        )
