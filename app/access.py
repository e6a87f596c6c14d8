"""Who a dashboard socket speaks for, now: its session re-read, and signals that close revoked sockets.

A socket's user is read at connect, but a session ends (logout), a password changes (the session's auth
hash no longer matches) and staff status is taken away while the socket stays open. So every command
re-reads the session and the user (``session_user``), and these signals tell a user's open sockets at
once, through the channel layer (Redis across processes), to check again:

- ``user_logged_out``: the message names the ending session (a hash of its key), because Django sends
  the signal before it deletes the session;
- ``post_save`` and ``post_delete`` of the user model: whatever changed (password, ``is_active``,
  ``is_staff``), the socket re-validates rather than guess; only a save of ``last_login`` alone, which
  every login makes, tells nobody;
- ``m2m_changed`` of the user's permissions and groups: a socket that lost ``view_task`` closes.

Each socket joins its user's group (``user_group``) at connect. Messages go after the transaction
commits, so a socket never re-reads the user before the change is visible. A session deleted without a
signal (``clearsessions``, the shell) is noticed at the socket's next command; the page asks for a
snapshot at least once a minute.
"""

import hashlib
import logging
import re
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.utils.crypto import constant_time_compare

logger = logging.getLogger("conductor.access")

#: The channel-layer message a user's sockets get when they must check their session again.
RECHECK = "conductor.recheck"
_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def user_group(user_pk: Any) -> str:
    """The channel-layer group of one user's open dashboard sockets."""
    text = str(user_pk)
    # Group names allow few characters; a primary key of another shape (an e-mail) is hashed.
    return f"conductor.user.{text if _GROUP_SAFE.match(text) else fingerprint(text)[:32]}"


def fingerprint(session_key: str) -> str:
    """What travels through the channel layer instead of a session key, which is a credential."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def session_user(session_key: str | None) -> Any:
    """The active user the session signs in now, or None.

    None when the session is gone or expired, its user deleted or inactive, or its auth hash no longer
    matches (a changed password). Read-only, unlike ``django.contrib.auth.get_user``, which deletes a
    session whose hash does not match: a socket's check must not sign a browser out by itself.
    """
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_pk = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_pk)
    if user is None or not getattr(user, "is_active", True):
        return None
    return user if _hash_matches(session.get(HASH_SESSION_KEY), user) else None


def _hash_matches(session_hash: str | None, user: Any) -> bool:
    if not hasattr(user, "get_session_auth_hash"):
        return True  # a user model without password-bound sessions
    if not session_hash:
        return False
    fallbacks = getattr(user, "get_session_auth_fallback_hash", lambda: ())()
    return any(constant_time_compare(session_hash, h) for h in (user.get_session_auth_hash(), *fallbacks))


# Signals ----------------------------------------------------------------------------------------------


def tell_sockets(user_pk: Any, ended_session: str | None = None, using: str | None = None) -> None:
    """Once the current transaction commits, make the user's open sockets check their session again."""
    message = {"type": RECHECK, "ended_session": ended_session}
    transaction.on_commit(lambda: _group_send(user_group(user_pk), message), using=using)


def _group_send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a logout or a save must not fail for want of Redis; commands re-check anyway
        logger.warning("Could not tell %s to check its session again", group, exc_info=True)


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if user is None:
        return
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    tell_sockets(user.pk, ended_session=fingerprint(session_key) if session_key else None)


def on_user_changed(
    sender: Any, instance: Any, using: str | None = None, update_fields: Any = None, **kwargs: Any
) -> None:
    if update_fields is not None and set(update_fields) == {"last_login"}:
        return  # every login writes only this (update_last_login): nothing a socket depends on
    tell_sockets(instance.pk, using=using)


def on_memberships_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set | None, using: str, **kwargs: Any
) -> None:
    if not action.startswith("post_"):
        return
    # Forward (user.groups.remove(...)): the instance is the user; reverse: pk_set holds users' keys.
    for user_pk in (pk_set or ()) if reverse else (instance.pk,):
        tell_sockets(user_pk, using=using)


def connect_signals() -> None:
    """Connect the receivers (from AppConfig.ready); each under a dispatch_uid, so only once."""
    user_model = get_user_model()
    user_logged_out.connect(on_logged_out, dispatch_uid="conductor.access.logged_out")
    post_save.connect(on_user_changed, sender=user_model, dispatch_uid="conductor.access.user_saved")
    post_delete.connect(on_user_changed, sender=user_model, dispatch_uid="conductor.access.user_deleted")
    for relation in ("user_permissions", "groups"):
        through = getattr(getattr(user_model, relation, None), "through", None)
        if through is not None:  # a custom user model may have neither
            m2m_changed.connect(
                on_memberships_changed, sender=through, dispatch_uid=f"conductor.access.{relation}"
            )
