"""``use_pdb``: a post-mortem debugger on the runner's own terminal, one session at a time.

A task thread's ``sys.stdout`` and logging are captured into its run's log (app/capture.py), so pdb
must be handed the process's original streams explicitly, and the thread's capture paused while the
session is open. While a failed run waits for or holds the terminal, its thread is registered here:
the runner then lifts that run's kill_time instead of interrupting it (the function has already
ended; only a person is left at the prompt). A stop or a cancel still ends the session: input is read
in short waits so that the runner's interrupt, raised at the thread's next bytecode, lands promptly.
"""

import logging
import pdb
import select
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from . import capture
from .newthread import ThreadInterrupted

logger = logging.getLogger("conductor.debugging")

#: Longest a session, or a run waiting for the terminal, stays blocked in C where the runner's
#: interrupt cannot reach it.
INTERRUPT_CHECK = 0.2

# Who holds the terminal, and which task threads are at or waiting for the debugger, under one lock.
# Released by owner in a finally rather than with a Lock held across the session: an interrupt that
# lands just after the terminal was taken must not leave it taken for the rest of the process's life.
_state = threading.Condition()
_terminal_owner: int | None = None  # two sessions on one terminal would interleave their prompts
_debugging: set[int] = set()


@dataclass(frozen=True)
class Terminal:
    input: TextIO
    output: TextIO


def is_debugging(ident: int | None) -> bool:
    """Whether thread ``ident`` holds, or waits for, a debugging session."""
    with _state:
        return ident in _debugging


def runner_terminal() -> Terminal | None:
    """The process's original stdin and stdout, when both are a terminal a person can use."""
    stdin, stdout = sys.__stdin__, sys.__stdout__
    if _isatty(stdin) and _isatty(stdout):
        return Terminal(stdin, stdout)
    return None


def post_mortem(exc: BaseException) -> bool:
    """Debug ``exc``'s traceback on the runner's terminal; return whether a session took place.

    Without a terminal (a service, CI, stdin from /dev/null) nobody could answer the prompt: log a
    warning and return at once, so the failure is recorded as usual.
    """
    terminal = runner_terminal()
    if terminal is None:
        logger.warning(
            "use_pdb skipped for %s: the runner has no terminal (stdin or stdout is not a tty)", _run_name()
        )
        print("[conductor] use_pdb skipped: the runner has no terminal")  # for whoever reads the run's log
        return False
    if exc.__traceback__ is None:
        logger.warning("use_pdb skipped for %s: %r has no traceback", _run_name(), exc)
        return False
    started = time.monotonic()
    ended_by = _session(exc, terminal)
    # The one line the run's log keeps of the session; what was typed and shown stays on the terminal.
    took = time.monotonic() - started
    print(f"[conductor] use_pdb: debugging session on the runner's terminal, {took:.1f} s{ended_by}")
    return True


def _session(exc: BaseException, terminal: Terminal) -> str:
    """Wait for the terminal, debug, and say how the session ended ("" when the person ended it)."""
    ident = threading.get_ident()
    try:
        _register(ident)
        _take_terminal(ident, terminal)
        with capture.paused():
            _debug(exc, terminal)
    except ThreadInterrupted as interrupt:
        # Stopped or cancelled meanwhile: the session ends, and the run stays the failure it was.
        _announce(terminal, f"{_run_name()}: debugging session ended by {type(interrupt).__name__}")
        return f", ended by {type(interrupt).__name__}"
    finally:
        _leave(ident)
    return ""


def _debug(exc: BaseException, terminal: Terminal) -> None:
    _announce(terminal, f"{_run_name()} failed: {_exception_line(exc)}; 'c' or 'q' ends the session")
    # nosigint: Ctrl-C belongs to the runner (it stops it), and only the main thread may set handlers.
    debugger = pdb.Pdb(stdin=_InterruptibleInput(terminal.input), stdout=terminal.output, nosigint=True)
    debugger.reset()
    debugger.interaction(None, exc.__traceback__)


def _register(ident: int) -> None:
    with _state:
        _debugging.add(ident)


def _take_terminal(ident: int, terminal: Terminal) -> None:
    """Wait for the terminal (saying so on it, once), in short waits where an interrupt can land."""
    global _terminal_owner
    with _state:
        if _terminal_owner is not None:
            _announce(terminal, f"{_run_name()} failed too; its debugger opens when the current session ends")
        while _terminal_owner is not None:
            _state.wait(INTERRUPT_CHECK)
        _terminal_owner = ident


def _leave(ident: int) -> None:
    """Give the terminal back if this thread holds it, and unregister; safe to call in any state."""
    global _terminal_owner
    with _state:
        if _terminal_owner == ident:
            _terminal_owner = None
        _debugging.discard(ident)
        _state.notify_all()


class _InterruptibleInput:
    """pdb's input: waits for a line in short ``select`` calls, where the runner's interrupt can land.

    A terminal in canonical mode hands over one whole line per read, so once ``select`` says the
    terminal is readable, ``readline`` returns without blocking.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def readline(self) -> str:
        while not select.select([self.stream], [], [], INTERRUPT_CHECK)[0]:
            pass
        return self.stream.readline()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _announce(terminal: Terminal, text: str) -> None:
    terminal.output.write(f"[conductor] {text}\n")
    terminal.output.flush()


def _run_name() -> str:
    """The task thread's name while it runs a run: ``<task name>#<run id>``."""
    return threading.current_thread().name


def _exception_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _isatty(stream: Any) -> bool:
    """``stream.isatty()``, False for a missing or closed stream (a daemon may have neither)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
