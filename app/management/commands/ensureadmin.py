"""``manage.py ensureadmin``: make sure someone can log in to the dashboard, never with a fixed password."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Create the superuser 'admin' with a random password (printed once) if there is no superuser; "
        "otherwise say who can log in."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        superusers = users.objects.filter(is_superuser=True, is_active=True).order_by("pk")
        names = [user.get_username() for user in superusers[:5]]
        if names:
            more = " and others" if superusers.count() > len(names) else ""
            self.stdout.write(
                f"Dashboard login: {', '.join(names)}{more} (superuser). Forgot the password? "
                f"manage.py changepassword {names[0]}"
            )
            return
        password = secrets.token_urlsafe(12)
        if users.objects.filter(**{users.USERNAME_FIELD: USERNAME}).exists():
            # An 'admin' that is not (or no longer) an active superuser: make it one, with a new password.
            user = users.objects.get(**{users.USERNAME_FIELD: USERNAME})
            user.is_superuser = user.is_staff = user.is_active = True
            user.set_password(password)
            user.save()
        else:
            users.objects.create_superuser(USERNAME, email="", password=password)
        self.stdout.write(
            f"Dashboard login: {USERNAME} / {password} "
            f"(shown once; change it with manage.py changepassword {USERNAME})"
        )
