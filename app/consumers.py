"""The dashboard's WebSocket: a snapshot from the database, then live events, and staff commands.

Protocol (version 1) in docs/protocol.md. Handlers of channel-layer messages are named after their
message types (``conductor.events`` -> ``conductor_events``); browser commands are in COMMANDS.
"""

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.db import DatabaseError

from . import actions, fanout
from .backoff import one_line
from .bridge import DASHBOARD_GROUP
from .snapshot import build_snapshot, task_state
from .task import Task, TaskActionError

logger = logging.getLogger("conductor.consumers")

PROTOCOL = 1
MAX_MESSAGE = 64 * 1024
CLOSE_FORBIDDEN = 4003
CREATE_FIELDS = {"func", "args_in", "name", "run_in", "kill_time", "loop", "interval", "db_use"}
#: Seconds between tries to reach a channel layer that went away.
LAYER_RETRY = 1.0


class CommandRefused(Exception):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    layer_problem = ""

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

    async def _join(self) -> bool:
        """Join the dashboards' group; False (and the reason kept) while the layer cannot be reached."""
        try:
            await self.channel_layer.group_add(DASHBOARD_GROUP, self.channel_name)
        except Exception as exc:
            self.layer_problem = _layer_down(exc)
            return False
        await fanout.rejoin(self.channel_layer)  # the process's feed of runners' frames, likewise
        self.layer_problem = ""
        return True

    async def connect(self) -> None:
        user = self.scope.get("user")
        allowed = bool(user and user.is_authenticated and user.is_staff)
        if allowed:
            allowed = await database_sync_to_async(user.has_perm)("conductor.view_task")
        await self.accept()  # accepted first, so that the close code reaches the page
        if not allowed:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._join()
        await fanout.subscribe(self, self.channel_layer)  # runners' frames, through this process's feed
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await fanout.unsubscribe(self, self.channel_layer)
        try:
            await self.channel_layer.group_discard(DASHBOARD_GROUP, self.channel_name)
        except Exception as exc:  # the layer is gone; its group expires by itself
            logger.info("Leaving the dashboard group failed: %s", exc)

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
        if not isinstance(content, dict):
            await self.send_error(None, 'A message must be a JSON object with a "type".')
            return
        request = content.get("id")
        kind = content.get("type")
        command = COMMANDS.get(kind) if isinstance(kind, str) else None
        if command is None:
            known = ", ".join(sorted(COMMANDS))
            await self.send_error(
                request, f"Unknown type {content.get('type')!r}; known types: {known}.", "type"
            )
            return
        try:
            reply = await self._run_command(command, content)
        except CommandRefused as exc:
            await self.send_error(request, str(exc), exc.field)
            return
        except DatabaseError as exc:  # the page stays open on what it shows, and asks again later
            # Each open page asks every few seconds: a line per question would flood the log.
            logger.debug("Dashboard command refused, the database is unreachable: %s", one_line(str(exc)))
            await self.send_error(request, _database_down(exc))
            return
        if reply is not None:
            await self.send_json({"type": "reply", "id": request, "ok": True, **reply})

    async def _run_command(self, command: tuple[str, Any], content: dict) -> dict | None:
        permission, handler = command
        if not await database_sync_to_async(self.scope["user"].has_perm)(permission):
            raise CommandRefused(f"You need the {permission} permission for {content['type']}.")
        return await handler(self, content)

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
        task_pk = _whole_number(content, "task")
        return {"message": await self._act(_on_task, action, task_pk, field="task")}

    async def cmd_create(self, content: dict) -> dict:
        unknown = set(content) - CREATE_FIELDS - {"type", "id"}
        if unknown:
            raise CommandRefused(
                f"Unknown fields {sorted(unknown)}; a task takes {sorted(CREATE_FIELDS)}.", sorted(unknown)[0]
            )
        fields = {key: content[key] for key in CREATE_FIELDS if key in content}
        fields.setdefault("name", str(fields.get("func", "new_task")).rpartition(".")[2] or "new_task")
        try:
            task = await database_sync_to_async(actions.create)(fields, conn=self.channel_name)
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise CommandRefused(f"{field}: {' '.join(messages)}", field) from exc
        except (TypeError, ValueError) as exc:
            raise CommandRefused(str(exc)) from exc
        return {"message": f"{task.name} created", "task": task_state(task)}

    async def cmd_run_command(self, content: dict) -> dict | None:
        """cancel and stack: handled by the runner that owns the run's thread."""
        action = actions.cancel if content["type"] == "cancel" else actions.request_stack
        run_pk = _whole_number(content, "run")
        who = (self.scope["user"].get_username(), self.channel_name, content.get("id"))
        message = await self._act(_on_run, action, run_pk, *who, field="run")
        return {"message": message} if content["type"] == "cancel" else None  # stack: the runner answers

    async def _act(self, function: Any, *args: Any, field: str) -> Any:
        try:
            return await database_sync_to_async(function)(*args)
        except TaskActionError as exc:
            raise CommandRefused(str(exc), field) from exc

    # From the channel layer -------------------------------------------------------------------

    async def conductor_events(self, message: dict) -> None:
        """Events from web processes (actions); runners' frames come through app/fanout.py."""
        forwarded = {"type": "events", "events": message["events"]}
        if "seq" in message:  # from a runner's bridge: a gap tells the page it missed some
            forwarded.update(source=message["source"], seq=message["seq"])
        await self.send_json(forwarded)

    async def task_result(self, message: dict) -> None:
        await self.send_json({**message, "type": "task.result"})

    async def thread_stack(self, message: dict) -> None:
        await self.send_json({**message, "type": "stack", "id": message.get("request")})

    async def command_failed(self, message: dict) -> None:
        await self.send_error(message.get("request"), message["error"], "run")


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


def _whole_number(content: dict, field: str) -> int:
    value = content.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandRefused(f"{field!r} must be a whole number (an id), got {value!r}.", field)
    return value


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

COMMANDS = {
    "snapshot": ("conductor.view_task", DashboardConsumer.cmd_snapshot),
    "ping": ("conductor.view_task", DashboardConsumer.cmd_ping),
    "stack": ("conductor.view_task", DashboardConsumer.cmd_run_command),
    "cancel": ("conductor.change_task", DashboardConsumer.cmd_run_command),
    "create": ("conductor.add_task", DashboardConsumer.cmd_create),
    **{action: ("conductor.change_task", DashboardConsumer.cmd_task_action) for action in TASK_ACTIONS},
}
