"""A child process's hold on its parent: it dies with the runner that started it, and never outlives it.

Imported by app/child.py before anything else (standard library only, no Django), because a runner
SIGKILLed while its child is still starting must not leave a child that goes on to run the task's body
while recovery runs the same task elsewhere. Three layers, each covering what the one before cannot:

1. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``): the kernel kills the child the
   moment its parent dies. It is set from the child's first lines, so a parent that died before that
   is caught by comparing ``os.getppid()`` with the parent's pid, which the parent passes in.
2. A pipe from the parent that it never writes to: its end-of-file means every copy of the write end is
   closed, i.e. the parent is gone, however it died and on any POSIX system. A thread watches it and
   then kills the child's whole process group (what the task started goes too).
3. ``parent_alive()`` is asked once more just before the body starts: a child that finds its runner
   gone never starts it.

Linux sends the parent-death signal when the *thread* that started the child ends, not only the process.
A runner starts each child from the worker thread that waits for it, so that thread outlives the child.
"""

import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
#: The exit status of a child that found its parent gone before it could run anything.
PARENT_GONE = 70


def set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


class Lifeline:
    """This child's tie to the parent with pid ``parent_pid``, through the read end ``fd`` of its pipe."""

    def __init__(self, parent_pid: int, fd: int, folder: Path) -> None:
        self.parent_pid = parent_pid
        self.fd = fd
        self.folder = folder  # the run's temp folder: removed here when this child outlives its parent
        self._cut = threading.Event()
        os.set_inheritable(fd, False)  # what the task starts must not keep the pipe (only its reader)

    @classmethod
    def hold(cls, parent_pid: int, fd: int, folder: Path) -> "Lifeline":
        """Set the parent-death signal, then make sure the parent did not die before it was set."""
        set_parent_death_signal()
        lifeline = cls(parent_pid, fd, folder)
        if not lifeline.parent_alive():
            lifeline.abandon()
        return lifeline

    def watch(self, on_cut: Callable[[], None] | None = None) -> None:
        """Watch the pipe from a daemon thread; when the parent is gone, clean up and kill this group."""
        threading.Thread(target=self._wait_for_eof, args=(on_cut or self.die,), daemon=True,
                         name="conductor-lifeline").start()  # fmt: skip

    def parent_alive(self) -> bool:
        return not self._cut.is_set() and os.getppid() == self.parent_pid

    def abandon(self) -> None:
        """The parent is gone before anything ran: remove the run's folder and exit at once."""
        self.remove_folder()
        os._exit(PARENT_GONE)

    def die(self) -> None:
        """The parent is gone while the task may run: remove the run's folder, kill the whole group."""
        self.remove_folder()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_for_eof(self, on_cut: Callable[[], None]) -> None:
        try:
            while os.read(self.fd, 1):  # the parent never writes: only end-of-file ends this
                pass
        except OSError:
            pass  # the descriptor itself is gone: no way left to know, so assume the worst
        self._cut.set()
        on_cut()
