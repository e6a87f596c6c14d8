"""app/lifeline.py and app/orphans.py with real processes: each layer that keeps a child from outliving
its runner, on its own (tests/acceptance/test_orphans.py kills real runners)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app import lifeline, orphans
from tests.conftest import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def holding_child(parent_pid: int, fd: int, folder: Path) -> subprocess.Popen:
    """A process that holds on to ``parent_pid`` through ``fd`` as app.child does, then sleeps."""
    code = (
        "import sys, time; from pathlib import Path; from app.lifeline import Lifeline; "
        "Lifeline.hold(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])).watch(); time.sleep(60)"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(parent_pid), str(fd), str(folder)],
                            cwd=REPO_ROOT, pass_fds=(fd,), start_new_session=True)  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / f"{orphans.folder_prefix()}test"
    path.mkdir()
    return path


def test_the_end_of_the_lifeline_kills_the_childs_group_and_removes_its_folder(folder):
    reader, writer = os.pipe()
    child = holding_child(os.getpid(), reader, folder)
    os.close(reader)
    os.close(writer)  # what the parent's death does
    assert child.wait(15) == -signal.SIGKILL
    assert not folder.exists()


def test_a_child_whose_parent_died_before_it_held_on_never_goes_on(folder):
    reader, writer = os.pipe()
    child = holding_child(os.getpid() + 10**6, reader, folder)  # not its parent: that one is gone
    os.close(reader)
    try:
        assert child.wait(15) == lifeline.PARENT_GONE
    finally:
        os.close(writer)
    assert not folder.exists()


def test_reap_kills_the_recorded_group_of_a_dead_parent_and_removes_its_folder(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = tmp_path / f"{orphans.FOLDER_PREFIX}{dead.pid}-abc"
    folder.mkdir()
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    orphans.record_child(folder, orphan.pid)
    assert orphans.reap(str(tmp_path)) == [orphan.pid]
    assert orphan.wait(15) == -signal.SIGKILL
    assert not folder.exists()


def test_reap_spares_a_live_parents_folder_and_a_reused_pid(tmp_path, folder):
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        orphans.record_child(folder, child.pid)
        dead = subprocess.Popen(["true"])
        dead.wait()
        reused = tmp_path / f"{orphans.FOLDER_PREFIX}{dead.pid}-abc"
        reused.mkdir()
        (reused / orphans.CHILD_FILE).write_text(f'{{"pid": {child.pid}, "start_time": 1}}')
        assert orphans.reap(str(tmp_path)) == []
        assert folder.exists()
        assert not reused.exists()
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_a_zombie_is_not_running():
    child = subprocess.Popen(["true"])
    wait_until(lambda: not orphans.is_running(child.pid))  # exited, not yet reaped by its parent
    child.wait()
    assert not orphans.is_running(child.pid)
