"""Files only their owner may read: the generated secret key, a generated password, the SQLite database.

Each is written in full to a staged file that is 0600 from its first byte, then given its name in one
step, so no other user ever reads it and no process ever reads it half-written. This module imports
nothing from Django: settings files use it before Django is set up.
"""

import contextlib
import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` as a directory, created 0700 when missing (an existing one keeps the mode it has)."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return path


def create_once(path: Path, text: str) -> str:
    """Write ``text`` to ``path`` unless it exists; return what ``path`` holds.

    Processes racing to create it all return the winner's text: a hard link gives the complete staged
    file its name only if nothing has that name yet.
    """
    staged = _staged(path, text)
    try:
        os.link(staged, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(staged)
    return path.read_text()


def replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, replacing what was there (a symbolic link is replaced, never followed)."""
    staged = _staged(path, text)
    try:
        os.replace(staged, path)
    except BaseException:
        os.unlink(staged)
        raise


def create_empty(path: Path) -> None:
    """An empty file 0600 at ``path`` unless something is there already (SQLite takes an empty file as
    a new database, and gives its -wal and -shm files the database file's mode)."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))


def _staged(path: Path, text: str) -> Path:
    """A new 0600 file beside ``path`` (same file system, so it can be linked or renamed there)."""
    private_dir(path.parent)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        os.unlink(staged)
        raise
    return staged
