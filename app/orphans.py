"""What process-isolated runs leave on their host, and how recovery clears it once their runner is dead.

Each run in a child process has a temp folder ``conductor-run-<parent pid>-<random>`` (the child writes
its result there). As soon as the child exists, its parent writes ``child.json`` into that folder: the
child's pid, which is also its process group (it leads a session of its own), and its start time in
clock ticks since boot, which tells it apart from a later process that got the same pid. So the folder
is the state recovery needs, kept where recovery on the same host finds it without the database, and
it lives exactly as long as the run's files: the parent removes it when the run ends, the child when
it outlives its parent (app/lifeline.py), and ``reap()`` when both died (a parent-death SIGKILL leaves
the child no time to).

Standard library only: imported by app/runnerprocess.py (a model module) and by the parent's side of
app/isolation.py.
"""

import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

FOLDER_PREFIX = "conductor-run-"
CHILD_FILE = "child.json"
_OWNED_FOLDER = re.compile(rf"^{FOLDER_PREFIX}(\d+)-")
#: Index of ``starttime`` (field 22 of /proc/<pid>/stat) among the fields after the command name.
_START_TIME_FIELD = 19


def folder_prefix() -> str:
    """The prefix of this process's run folders: recovery reads the owner's pid from it."""
    return f"{FOLDER_PREFIX}{os.getpid()}-"


def record_child(folder: Path, pid: int) -> None:
    """Note in the run's folder which process (group) runs it, for recovery if this process dies."""
    path = folder / CHILD_FILE
    partial = folder / f"{CHILD_FILE}.partial"
    partial.write_text(json.dumps({"pid": pid, "start_time": start_time(pid)}))
    os.replace(partial, path)  # recovery never reads half a record


def reap(temp_dir: str | None = None) -> list[int]:
    """Kill the child groups whose parents are dead and remove their run folders; the groups killed."""
    killed = []
    for folder in Path(temp_dir or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        owner = _owner(folder.name)
        if owner is None or is_running(owner):
            continue
        group = _recorded_child(folder)
        if group is not None and _kill_group(*group):
            killed.append(group[0])
        shutil.rmtree(folder, ignore_errors=True)
    return killed


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return _stat_fields(pid)[:1] != ["Z"]


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None without /proc or once it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[_START_TIME_FIELD]) if len(fields) > _START_TIME_FIELD else None


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces), from the state on."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rpartition(")")[2].split()


def _owner(name: str) -> int | None:
    match = _OWNED_FOLDER.match(name)
    return int(match.group(1)) if match else None


def _recorded_child(folder: Path) -> tuple[int, int | None] | None:
    try:
        record = json.loads((folder / CHILD_FILE).read_text())
    except (OSError, ValueError):
        return None  # the parent died before it could write it: the child's own lifeline ends it
    return int(record["pid"]), record.get("start_time")


def _kill_group(pgid: int, recorded_start: int | None) -> bool:
    """SIGKILL the group led by the child recorded, unless its pid now belongs to another process.

    A leader that is gone while members of its group live keeps its pid reserved (Linux never hands out
    a pid still in use as a group id), so a missing leader is no reason to spare the group.
    """
    if recorded_start is None:
        return False  # no /proc when it was recorded: nothing to tell it from a reused pid
    now = start_time(pgid)
    if now is not None and now != recorded_start:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True
