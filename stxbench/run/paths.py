"""Folders a command writes into or reads from, checked before any work, and the lock that keeps
two runs out of one output folder.

Every check raises `UsageError` with one line naming the option the path came from and what is
wrong with it; nothing is created by a check.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from stxbench.run.errors import UsageError

LOCK_FILE = "run.lock"


def _kind(path: Path) -> str:
    """What a path that is not a folder is, for messages."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a folder"


def path_text(option: str, text: str | os.PathLike | None) -> Path:
    """A path the user typed: not empty, no control characters (they would make messages and the
    resume command span lines)."""
    raw = os.fspath(text) if text is not None else ""
    if not raw.strip():
        raise UsageError(f"{option} is empty; give a folder")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise UsageError(f"{option} {raw!r} holds a control character (newline, tab, ...); choose a plain path")
    return Path(raw)


def check_writable_dir(option: str, path: Path) -> None:
    """``path`` is a folder this process can create files in, or one it can create."""
    if os.path.lexists(path) and not path.exists():
        raise UsageError(f"{option} {path} is a broken symbolic link")
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{option} {path} is {_kind(path)}, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path} is a folder this user cannot write into")
        return
    parent = path.absolute().parent
    while not parent.exists():
        if os.path.lexists(parent):
            raise UsageError(f"{option} {path} cannot be created: {parent} is a broken symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path} cannot be created: {parent} is {_kind(parent)}, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path} cannot be created: {parent} is not writable by this user")


def check_readable_dir(option: str, path: Path) -> None:
    """``path`` is an existing folder this process can list and read."""
    if not path.exists():
        raise UsageError(f"{option} {path}: no such folder")
    if not path.is_dir():
        raise UsageError(f"{option} {path} is {_kind(path)}, not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"{option} {path} is a folder this user cannot read")


# -- the run lock -----------------------------------------------------------------------------


def _make_dirs(folder: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created, outermost first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for candidate in reversed(missing):
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
    return list(reversed(missing))


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 64, 0).decode().strip()
        if text:
            return f" (process {int(text)})"
    return ""


def _in_use(option: str, folder: Path, holder: str) -> UsageError:
    return UsageError(f"{option} {folder} is in use by another run{holder}; wait for it to finish or "
                      f"choose another {option}")


def check_not_in_use(folder: Path, option: str = "--out") -> None:
    """Refuse a folder a running run holds (`run_lock`), without taking it: for commands that
    check every run before the first starts (a sweep)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    except OSError:
        return  # no lock file (or no folder): nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise _in_use(option, folder, _holder(fd)) from None
    finally:
        os.close(fd)  # closing drops the lock, if this took it


@contextlib.contextmanager
def run_lock(folder: Path, option: str = "--out") -> Iterator[None]:
    """Hold ``<folder>/run.lock`` for the duration of a run: a second run into the same folder
    fails at once with one line. The lock is an ``flock`` the kernel drops when the process ends
    however it ends, so a killed run never leaves a folder locked (a leftover file with a dead
    process id is simply locked again). On the way out the lock file goes, and so do the folders
    the lock created, if the run left them empty."""
    created = _make_dirs(folder)
    path = folder / LOCK_FILE
    fd = None
    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = _holder(fd)
                os.close(fd)
                fd = None
                raise _in_use(option, folder, holder) from None
            # the holder before us may have removed the file while we opened it: lock the file
            # that is there now, or two runs would each hold a lock on a different one
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    path.unlink()
            os.close(fd)
        for made in reversed(created):  # innermost first; a folder holding anything stays
            with contextlib.suppress(OSError):
                made.rmdir()
