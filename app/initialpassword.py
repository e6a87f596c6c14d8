"""A password that Conductor generated (``manage.py ensureadmin``), kept as its hash until it is changed.

While a user's password hash is still this one, the dashboard and the admin ask them to change it: a
generated password may have been read from a terminal's scrollback or a file.
"""

from django.conf import settings
from django.db import models


class InitialPasswordQuerySet(models.QuerySet):
    def still_in_use(self, user: models.Model) -> bool:
        """Whether ``user`` still logs in with the password Conductor generated for them."""
        return self.filter(user_id=user.pk, password=user.password).exists()


class InitialPassword(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    password = models.CharField(max_length=128, help_text="The hash of the generated password.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InitialPasswordQuerySet.as_manager()

    def __str__(self) -> str:
        return f"generated password of user {self.user_id}"
