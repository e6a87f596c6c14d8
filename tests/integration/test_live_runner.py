"""A real Runner in this process, its ChannelBridge on the test's event loop, and dashboards on the socket.

The in-memory channel layer is only ever used from the test's loop: the bridge runs there (not on a loop
of its own), the consumers run there, and the runner thread reaches it only through the bridge.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from app.bridge import ChannelBridge, runner_group
from app.runner import Runner, RunnerOptions
from app.status import RunStatus, TaskStatus
from app.task import Task
from app.taskrun import TaskRun
from tests import functions, live_functions
from tests.conftest import RunningRunner, wait_until
from tests.integration.test_consumers import ask, dashboard, db, editor, make_task, next_of, viewer

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layer"),
]

TIMEOUT = 20


@asynccontextmanager
async def live_runner(**options: Any) -> AsyncIterator[RunningRunner]:
    """A Runner on a thread, publishing through a ChannelBridge that lives on this test's loop."""
    bridge = ChannelBridge(loop=asyncio.get_running_loop()).start()
    options.setdefault("poll", 0.2)
    options.setdefault("worker_id", f"live-{secrets.token_hex(4)}")
    running = RunningRunner(Runner(RunnerOptions(**options), bridge=bridge))
    try:
        await asyncio.to_thread(running.start)  # the loop keeps serving the bridge meanwhile
        yield running
    finally:
        try:
            if running.thread.is_alive():
                await asyncio.to_thread(running.stop)
        finally:
            await bridge.aclose()
            await asyncio.sleep(0.01)  # let the cancellations reach the bridge's tasks


class Stream:
    """Everything one dashboard receives, with waits for what a test expects."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.messages: list[dict] = []

    @property
    def events(self) -> list[dict]:
        return [event for m in self.messages if m["type"] == "events" for event in m["events"]]

    def of(self, kind: str, **match: Any) -> list[dict]:
        return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]

    async def until(self, done: Callable[["Stream"], Any], timeout: float = TIMEOUT) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (found := done(self)):
            left = deadline - loop.time()
            if left <= 0:
                got = [e["type"] for e in self.events]
                raise AssertionError(f"not received within {timeout} s; got {got}")
            self.messages.append(await self.page.receive_json_from(timeout=left))
        return found

    async def event(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict:
        return (await self.until(lambda s: s.of(kind, **match), timeout))[0]

    async def message(self, kind: str) -> dict:
        return (await self.until(lambda s: [m for m in s.messages if m["type"] == kind]))[0]

    async def ask(self, **content: Any) -> dict:
        """Send a command; its reply or error. Runners' frames reach the page on their own (app/fanout.py),
        so events the command causes may come before the reply: they are kept, not skipped."""
        answered = len([m for m in self.messages if m["type"] in ("reply", "error")])
        await self.page.send_json_to(content)
        return (
            await self.until(lambda s: [m for m in s.messages if m["type"] in ("reply", "error")][answered:])
        )[0]


def run_of(task_pk: int) -> TaskRun:
    return TaskRun.objects.select_related("task").get(task_id=task_pk)


def saved(func: Any, **fields: Any) -> Task:
    task = Task(func=func, **fields)
    task.save()
    return task


async def test_a_task_created_on_the_socket_runs_and_its_result_comes_back():
    async with (
        dashboard(await db(editor)()) as page,
        live_runner() as running,
        dashboard(await db(viewer)()) as other,
    ):
        mine, theirs = Stream(page), Stream(other)
        reply = await mine.ask(type="create", id="new", func="tests.functions.add", args_in={"a": 40, "b": 2})
        pk = reply["task"]["id"]
        finished = await mine.event("task.finished", task=pk)
        result = await mine.message("task.result")
        await theirs.event("task.finished", task=pk)
        while not await other.receive_nothing(timeout=0.3):  # anything more for the other page
            theirs.messages.append(await other.receive_json_from())

    with pytest.raises(RuntimeError, match="would block its own loop"):
        running.runner.bridge.stop()  # called from its own loop it refuses, rather than deadlock
    worker = running.runner.worker_id
    claimed = mine.of("task.claimed", task=pk)[0]
    started = mine.of("thread.started", task=pk)[0]
    run = claimed["run"]
    order = [e for e in mine.events if e.get("task") == pk and e["type"] != "task.changed"]
    kinds = [e["type"] for e in order]
    assert kinds.index("task.claimed") < kinds.index("thread.started") < kinds.index("task.finished")
    assert "thread.finished" in kinds
    for event in order:
        assert event["runner"] == worker
        assert event["run"] == run
        assert event["task_id"] == reply["task"]["task_id"]
        assert isinstance(event["at"], float)
    assert claimed["state"]["status"] == "running"
    assert claimed["state"]["id"] == pk
    assert started["thread"] == f"add#{run}"
    assert isinstance(started["ident"], int)
    assert started["daemon"] is True

    assert finished["status"] == "finished"
    assert finished["output"] == 42
    assert finished["error"] == ""
    assert finished["duration"] >= 0
    assert finished["state"]["status"] == "finished"
    assert finished["state"]["output"] == 42
    assert finished["state"]["last_status"] == "finished"
    assert finished["run_state"]["id"] == run
    assert finished["run_state"]["status"] == "finished"
    assert finished["run_state"]["thread_name"] == f"add#{run}"
    assert finished["run_state"]["log_tail"] == ""

    assert result["type"] == "task.result"
    assert (result["task"], result["run"], result["status"], result["output"]) == (pk, run, "finished", 42)
    assert result["error"] == ""
    assert result["duration"] >= 0
    assert "task.result" not in [m["type"] for m in theirs.messages]  # for the asker only
    stored = await db(run_of)(pk)
    assert stored.status == RunStatus.FINISHED
    assert stored.task.conn  # the creating socket's channel


async def test_stack_shows_what_a_running_task_is_doing(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    args = {"started": str(started), "release": str(release)}
    task = await db(saved)(functions.touch_then_wait, args_in=args, name="waiter")
    async with dashboard(await db(viewer)()) as page, live_runner():
        await asyncio.to_thread(wait_until, started.exists)
        run = await db(run_of)(task.pk)
        await page.send_json_to({"type": "stack", "run": run.pk, "id": "where?"})
        stack = await next_of(page, "stack", "error")
        assert stack["type"] == "stack"
        assert stack["id"] == "where?"
        assert stack["run"] == run.pk
        assert stack["thread"] == f"waiter#{run.pk}"
        assert isinstance(stack["at"], float)
        text = stack["stack"]
        assert "touch_then_wait" in text
        assert "wait_for_file" in text
        assert text.rindex("wait_for_file") > text.rindex("touch_then_wait")  # innermost call last
        Path(release).touch()
        await Stream(page).event("task.finished", task=task.pk)


async def test_printed_text_arrives_live_as_run_log_events():
    task = await db(saved)("server.demo.tasks.slow_job", args_in={"seconds": 0.9, "steps": 3})
    async with dashboard(await db(viewer)()) as page, live_runner():
        stream = Stream(page)
        await stream.event("run.log", task=task.pk)
        assert not stream.of("task.finished", task=task.pk)  # the first line came while it ran
        finished = await stream.event("task.finished", task=task.pk)
    logs = stream.of("run.log", task=task.pk)
    assert len(logs) >= 2
    assert "".join(e["text"] for e in logs) == "step 1/3 done\nstep 2/3 done\nstep 3/3 done\n"
    assert all(e["run"] == finished["run"] and e["task_id"] == task.task_id for e in logs)
    assert finished["run_state"]["log_tail"] == "step 1/3 done\nstep 2/3 done\nstep 3/3 done\n"
    assert (await db(run_of)(task.pk)).log == finished["run_state"]["log_tail"]


async def test_every_runner_event_names_its_runner_and_task():
    task = await db(saved)(live_functions.in_steps, args_in={"steps": 2, "pause": 0.05}, name="stepper")
    async with dashboard(await db(viewer)()) as page, live_runner() as running:
        stream = Stream(page)
        await stream.event("task.finished", task=task.pk)
    mine = [e for e in stream.events if e.get("task") == task.pk]
    assert {e["type"] for e in mine} >= {"run.progress", "task.claimed", "task.finished"}
    for event in mine:
        assert event.get("runner") == running.runner.worker_id, event["type"]
        assert (event.get("name"), event.get("task_id"), event.get("run")) == (
            "stepper",
            task.task_id,
            mine[0]["run"],
        ), event["type"]


async def test_run_state_stays_an_object_for_non_ascii_output():
    task = await db(saved)(functions.say, args_in={"text": "é" * 1500})
    async with dashboard(await db(viewer)()) as page, live_runner():
        finished = await Stream(page).event("task.finished", task=task.pk)
    assert finished["output"] == "é" * 1500
    assert isinstance(finished["run_state"], dict)
    assert finished["run_state"]["log_tail"].endswith("é\n")


async def test_cancel_of_a_task_that_cooperates():
    task = await db(saved)(live_functions.until_cancelled, name="patient")
    async with dashboard(await db(editor)()) as page, live_runner():
        stream = Stream(page)
        started = await stream.event("thread.started", task=task.pk)
        run = started["run"]
        reply = await stream.ask(type="cancel", run=run, id="stop it")
        assert reply == {
            "type": "reply", "id": "stop it", "ok": True,
            "message": f"Cancel of run {run} (patient) requested",
        }  # fmt: skip
        requested = await stream.event("run.cancel_requested", run=run)
        cancelled = await stream.event("task.cancelled", task=task.pk, timeout=4)  # within CANCEL_GRACE
    assert requested["by"] == "editor"
    assert cancelled["status"] == "cancelled"
    assert cancelled["output"] == "stopped cleanly"
    assert cancelled["error"] == ""
    assert cancelled["state"]["status"] == "stopped"
    assert cancelled["run_state"]["status"] == "cancelled"
    stored = await db(run_of)(task.pk)
    assert stored.status == RunStatus.CANCELLED
    assert stored.output == "stopped cleanly"
    assert stored.task.status == TaskStatus.STOPPED
    assert stored.task.last_status == RunStatus.CANCELLED


async def test_cancel_of_a_task_that_ignores_it_interrupts_it_after_the_grace():
    task = await db(saved)(functions.busy, args_in={"seconds": 60}, name="stubborn")
    with override_settings(CONDUCTOR={"CANCEL_GRACE": 0.3}):
        async with dashboard(await db(editor)()) as page, live_runner():
            stream = Stream(page)
            run = (await stream.event("thread.started", task=task.pk))["run"]
            assert (await stream.ask(type="cancel", run=run))["ok"] is True
            cancelled = await stream.event("task.cancelled", task=task.pk, timeout=10)
            again = await stream.ask(type="cancel", run=run)  # the run has ended by now
            assert again["type"] == "error"
            assert again["error"] == f"Run {run} is not running on a runner."
    assert cancelled["status"] == "cancelled"
    assert cancelled["duration"] < 10  # it did not run its 60 seconds
    assert "interrupted after the grace period" in cancelled["error"]
    stored = await db(run_of)(task.pk)
    assert stored.status == RunStatus.CANCELLED
    assert stored.task.status == TaskStatus.STOPPED
    assert "Cancelled, and interrupted after the grace period" in stored.error


async def test_a_command_for_a_run_the_runner_does_not_have_is_answered_with_an_error():
    async with dashboard(await db(editor)()) as page, live_runner() as running:

        def orphan() -> TaskRun:  # open on this runner's row, but no thread of it runs it
            task = make_task(name="orphan", run_in=3600)
            return TaskRun.objects.create(task=task, runner=running.runner.record)

        run = await db(orphan)()
        layer = running.runner.bridge.layer
        await until(lambda: runner_group(running.runner.worker_id) in layer.groups)  # it listens
        reply = await ask(page, type="cancel", run=run.pk, id=11)
        assert reply["ok"] is True
        error = await next_of(page, "error")
        assert error == {
            "type": "error", "id": 11, "field": "run", "error": "that run is not running on this runner",
        }  # fmt: skip
        await page.send_json_to({"type": "stack", "run": run.pk, "id": 12})
        error = await next_of(page, "error", "stack")
        assert (error["type"], error["id"], error["field"]) == ("error", 12, "run")


async def test_progress_arrives_live_and_the_run_keeps_the_last_one():
    task = await db(saved)(live_functions.in_steps, args_in={"steps": 4, "pause": 0.15}, name="stepper")
    async with dashboard(await db(viewer)()) as page, live_runner():
        stream = Stream(page)
        first = await stream.event("run.progress", task=task.pk)
        assert not stream.of("task.finished", task=task.pk)  # live, while it runs
        finished = await stream.event("task.finished", task=task.pk)
    progress = stream.of("run.progress", task=task.pk)
    assert first["progress"] == 0.25
    assert first["message"] == "step 1 of 4"
    assert [e["progress"] for e in progress] == [0.25, 0.5, 0.75, 1.0]  # 0.15 s apart: none throttled
    assert progress[-1]["message"] == "step 4 of 4"
    assert all(e["run"] == finished["run"] and e["name"] == "stepper" for e in progress)
    assert finished["run_state"]["progress"] == 1.0
    assert finished["run_state"]["progress_message"] == "step 4 of 4"
    stored = await db(run_of)(task.pk)
    assert (stored.progress, stored.progress_message) == (1.0, "step 4 of 4")


async def until(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` on this loop until it holds; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"not met within {timeout} s"
        await asyncio.sleep(0.01)


async def snapshot_showing(page: Any, wanted: Callable[[list[dict]], Any], timeout: float = TIMEOUT) -> dict:
    """Snapshots asked for until one's threads show ``wanted`` (the runner's next heartbeat wrote it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await page.send_json_to({"type": "snapshot"})
        snapshot = await next_of(page, "snapshot")
        if wanted(snapshot["threads"]):
            return snapshot
        assert asyncio.get_running_loop().time() < deadline, "no snapshot showed it"
        await page.receive_nothing(timeout=0.05)


async def test_heartbeat_shows_a_running_threads_progress_in_the_snapshot():
    task = await db(saved)(live_functions.in_steps, args_in={"steps": 2, "pause": 1.0}, name="slow-steps")
    with override_settings(CONDUCTOR={"HEARTBEAT": 0.2}):
        async with dashboard(await db(viewer)()) as page, live_runner():
            stream = Stream(page)
            await stream.event("run.progress", task=task.pk)
            await stream.event("runner.heartbeat")
            snapshot = await snapshot_showing(page, lambda threads: [t for t in threads if t["progress"]])
    [thread] = [t for t in snapshot["threads"] if t["task"] == task.pk]
    assert thread["name"] == f"slow-steps#{thread['run']}"
    assert thread["alive"] is True
    assert thread["state"] == "running"
    assert thread["progress"] == 0.5
    assert thread["progress_message"] == "step 1 of 2"
