"""The dashboard's WebSocket: a snapshot from the database, then live events, and staff commands.

Protocol in docs/protocol.md, its browser-to-server messages declared in app/protocol.py. Handlers of
channel-layer messages are named after their message types (``conductor.events`` -> ``conductor_events``);
browser commands are in HANDLERS. Every command re-reads the session's user first (app/access.py).
"""

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils.crypto import constant_time_compare

from . import access, actions, fanout, protocol
from .backoff import one_line
from .bridge import DASHBOARD_GROUP
from .protocol import CLOSE_FORBIDDEN, CLOSE_SIGNED_OUT, Refused
from .snapshot import build_snapshot, task_state
from .task import Task, TaskActionError

logger = logging.getLogger("conductor.consumers")

MAX_MESSAGE = 64 * 1024
#: Seconds between tries to reach a channel layer that went away.
LAYER_RETRY = 1.0
SIGNED_OUT = (
    "Signed out: log in again. (No session signs in active staff now: a logout, an expired session, a "
    "changed password, or an account no longer active or no longer staff.)"
)
NOT_ALLOWED = "You may not view the dashboard: it needs the conductor.view_task permission."


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    layer_problem = ""
    session_key: str | None = None
    user_group = ""  # this user's sockets (app/access.py), joined once the user is known
    closing = False  # closed by the server: nothing more is sent or carried out

    # channels assigns the layer's receive before connect(); it is wrapped so that losing the layer
    # (Redis down) leaves the page on its database view, refreshed on request, instead of closing it.
    @property
    def channel_receive(self) -> Any:
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        self._layer_receive = receive

    async def _receive_from_layer(self) -> dict:
        while True:
            try:
                return await self._layer_receive()
            except Exception as exc:
                if not self.layer_problem:
                    logger.warning("Dashboard %s lost the channel layer: %s", self.channel_name, exc)
                self.layer_problem = _layer_down(exc)
                await asyncio.sleep(LAYER_RETRY)
                if await self._join():  # back: a restarted Redis has forgotten the group
                    await self.send_snapshot()

    def _groups(self) -> list[str]:
        return [group for group in (DASHBOARD_GROUP, self.user_group) if group]

    async def _join(self) -> bool:
        """Join the dashboards' and the user's groups; False (and the reason kept) while the layer cannot
        be reached."""
        try:
            for group in self._groups():
                await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:
            self.layer_problem = _layer_down(exc)
            return False
        await fanout.rejoin(self.channel_layer)  # the process's feed of runners' frames, likewise
        self.layer_problem = ""
        return True

    async def connect(self) -> None:
        await self.accept()  # accepted first, so that the close code reaches the page
        self.session_key = self.scope["session"].session_key
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.user_group = access.user_group(user.pk)
            with contextlib.suppress(Exception):  # without a layer, commands still check the session
                await self.channel_layer.group_add(self.user_group, self.channel_name)
        # Checked once in the user's group, so that no logout is missed, and before any event is sent.
        if not await self.still_allowed():
            return
        await self._join()
        await fanout.subscribe(self, self.channel_layer)  # runners' frames, through this process's feed
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await fanout.unsubscribe(self, self.channel_layer)
        try:
            for group in self._groups():
                await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as exc:  # the layer is gone; its group expires by itself
            logger.info("Leaving the dashboard group failed: %s", exc)

    async def still_allowed(self) -> bool:
        """Whether the session signs in active staff who may view the dashboard, read afresh now.

        When not, the page is told why and the socket closed: 4001 (signed out) when logging in (again,
        or as someone else) helps, 4003 when staff lacks the permission to view the dashboard.
        """
        user = await database_sync_to_async(access.session_user)(self.session_key)
        if user is None or not user.is_staff:
            await self.close_with(CLOSE_SIGNED_OUT, SIGNED_OUT)
            return False
        if not await database_sync_to_async(user.has_perm)(protocol.VIEW):
            await self.close_with(CLOSE_FORBIDDEN, NOT_ALLOWED)
            return False
        self.scope["user"] = user  # with today's permissions, for the command and the snapshot
        return True

    async def close_with(self, code: int, reason: str = "") -> None:
        if reason:
            await self.send_error(None, reason)
        self.closing = True
        await self.close(code=code)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if not self.closing:  # events may still arrive for a socket the server has closed
            await super().send(text_data, bytes_data, close)

    async def send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(build_snapshot)(self.scope["user"])
        if self.layer_problem:  # the database view still works; say why news does not come
            snapshot["live"] = {"ok": False, "reason": self.layer_problem}
        await self.send_json(snapshot)

    # From the browser -------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send_error(None, "Send JSON text messages, not binary ones.")
        elif len(text_data) > MAX_MESSAGE:
            await self.send_error(
                None, f"Message too large ({len(text_data)} characters; at most {MAX_MESSAGE})."
            )
        else:
            try:
                content = json.loads(text_data, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as exc:
                await self.send_error(None, f"Not JSON: {exc}.")
                return
            await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        request = content.get("id") if isinstance(content, dict) else None
        try:
            if self.closing or not await self.still_allowed():
                return
            reply = await self.carry_out(content)
        except Refused as exc:
            await self.send_error(request, str(exc), exc.field)
            return
        except DatabaseError as exc:  # the page stays open on what it shows, and asks again later
            # Each open page asks every few seconds: a line per question would flood the log.
            logger.debug("Dashboard command refused, the database is unreachable: %s", one_line(str(exc)))
            await self.send_error(request, _database_down(exc))
            return
        if reply is not None:
            await self.send_json({"type": "reply", "id": request, "ok": True, **reply})

    async def carry_out(self, content: Any) -> dict | None:
        """A known command, allowed to this user now, whose fields match its declaration: its reply."""
        kind = protocol.command_of(content)
        permission = protocol.COMMANDS[kind].permission
        if not await database_sync_to_async(self.scope["user"].has_perm)(permission):
            raise Refused(f"You need the {permission} permission for {kind}.")
        protocol.validate(content)
        return await HANDLERS[kind](self, content)

    async def send_error(self, request: Any, message: str, field: str | None = None) -> None:
        await self.send_json({"type": "error", "id": request, "error": message, "field": field})

    # Commands ---------------------------------------------------------------------------------

    async def cmd_snapshot(self, content: dict) -> None:
        await self._join()  # renews the membership too: a restarted Redis forgets it
        await self.send_snapshot()

    async def cmd_ping(self, content: dict) -> dict:
        return {"pong": True}

    async def cmd_task_action(self, content: dict) -> dict:
        action = TASK_ACTIONS[content["type"]]
        return {"message": await self._act(_on_task, action, content["task"], field="task")}

    async def cmd_create(self, content: dict) -> dict:
        fields = protocol.task_values(
            {key: value for key, value in content.items() if key not in protocol.ENVELOPE}
        )
        fields.setdefault("name", (fields["func"].rpartition(".")[2] or "new_task")[:200])
        try:
            task = await database_sync_to_async(actions.create)(fields, conn=self.channel_name)
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise Refused(f"{field}: {' '.join(messages)}", field) from exc
        except (TypeError, ValueError) as exc:
            raise Refused(str(exc)) from exc
        return {"message": f"{task.name} created", "task": task_state(task)}

    async def cmd_run_command(self, content: dict) -> dict | None:
        """cancel and stack: handled by the runner that owns the run's thread."""
        action = actions.cancel if content["type"] == "cancel" else actions.request_stack
        who = (self.scope["user"].get_username(), self.channel_name, content.get("id"))
        message = await self._act(_on_run, action, content["run"], *who, field="run")
        return {"message": message} if content["type"] == "cancel" else None  # stack: the runner answers

    async def _act(self, function: Any, *args: Any, field: str) -> Any:
        try:
            return await database_sync_to_async(function)(*args)
        except TaskActionError as exc:
            raise Refused(str(exc), field) from exc

    # From the channel layer -------------------------------------------------------------------

    async def conductor_events(self, message: dict) -> None:
        """A frame of events sent to a group of this socket's. Runners' and web processes' frames alike
        normally reach pages through app/fanout.py; a frame is sent on as it is, encoded once."""
        await self.send(text_data=message["frame"])

    async def task_result(self, message: dict) -> None:
        await self.send_json({**message, "type": "task.result"})

    async def thread_stack(self, message: dict) -> None:
        await self.send_json({**message, "type": "stack", "id": message.get("request")})

    async def command_failed(self, message: dict) -> None:
        await self.send_error(message.get("request"), message["error"], "run")

    async def conductor_recheck(self, message: dict) -> None:
        """The user logged out, or changed (app/access.py): close unless the session still allows."""
        if self.closing:
            return
        ended = message.get("ended_session")
        if ended and self.session_key and constant_time_compare(ended, access.fingerprint(self.session_key)):
            await self.close_with(CLOSE_SIGNED_OUT, SIGNED_OUT)  # Django deletes the session after the signal
        else:
            await self.still_allowed()


def _layer_down(exc: BaseException) -> str:
    return (
        f"Live updates paused: the channel layer (Redis) cannot be reached ({type(exc).__name__}: {exc}). "
        "The page shows the database and refreshes it every few seconds."
    )


def _database_down(exc: BaseException) -> str:
    return (
        f"The database cannot be reached ({one_line(str(exc))}). Runners keep their tasks going and record "
        "them once it is back; the page shows what it last knew and asks again every few seconds."
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (numbers must be finite)")


def _on_task(action: Any, task_pk: int) -> str:
    try:
        task = Task.objects.get(pk=task_pk)
    except Task.DoesNotExist:
        raise TaskActionError(f"There is no task {task_pk}.") from None
    return action(task)


def _on_run(action: Any, run_pk: int, *args: Any) -> Any:
    return action(actions.running_run(run_pk), *args)


TASK_ACTIONS = {
    "run_now": actions.run_now,
    "stop_loop": actions.stop_loop,
    "pause": actions.pause,
    "resume": actions.resume,
}

#: Each command of app/protocol.py's COMMANDS, carried out once it is allowed and valid.
HANDLERS = {
    "snapshot": DashboardConsumer.cmd_snapshot,
    "ping": DashboardConsumer.cmd_ping,
    "stack": DashboardConsumer.cmd_run_command,
    "cancel": DashboardConsumer.cmd_run_command,
    "create": DashboardConsumer.cmd_create,
    **dict.fromkeys(TASK_ACTIONS, DashboardConsumer.cmd_task_action),
}
