"""One runner per journal: the journal database file itself is locked for the length of a run.

Two runners on one journal would each send its intents (every orderRef twice), reconcile the
other's working orders and interleave decisions. :class:`RunLock` takes an exclusive
``flock`` on the **database file itself**, not on a file beside it: the kernel keys the lock by
the file (device and inode), so every name that reaches it (a symlink, a relative path, a
bind mount) meets the same lock, and there is no side file to delete. The kernel drops the
lock when its holder dies (kill -9 included): a stale lock is taken over by the next runner
without anyone's help.

A refused runner is told who holds the journal: the holder's pid comes from the kernel's lock
table (``/proc/locks``, matched on the file's device and inode), with its command line and
this host's name; where there is no ``/proc`` (macOS) the message says so.

A journal must have one name: SQLite keeps a database's write-ahead log (``-wal``, ``-shm``)
beside the *name* it was opened with, so two hard links of one journal would have two logs,
and a run killed with committed pages in one log would lose them when the next run opens the
other name. :func:`check_single_name` refuses a journal with more than one hard link; symlinks
are resolved (:func:`journal_path`) so they reach the one name.

``flock`` locks and the POSIX (``fcntl``) locks SQLite takes do not interact on Linux, but
closing any descriptor of a file drops every POSIX lock the process holds on it: the lock's
descriptor is therefore released only after the journal's SQLite connection is closed (the
runner closes the journal first). On a network filesystem ``flock`` may only lock within one
machine: keep a journal on a local disk.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bt_ibkr.errors import BtIbkrError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock
    fcntl = None  # type: ignore[assignment]

__all__ = ["JournalLockedError", "RunLock", "check_single_name", "journal_path", "lock_holder"]


class JournalLockedError(BtIbkrError):
    """Another process holds the journal (or the journal has more than one name)."""


def journal_path(path: Path | str) -> Path:
    """Return the journal's one name: ``path`` with every symlink resolved (absolute)."""
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def check_single_name(path: Path) -> None:
    """Refuse a journal file with more than one hard link (see the module docstring).

    Raises:
        JournalLockedError: the file has several names (the message says how many and what to
            do).
    """
    try:
        links = os.stat(path).st_nlink
    except FileNotFoundError:
        return
    if links > 1:
        raise JournalLockedError(
            f"journal {path} has {links} names (hard links): SQLite keeps its write-ahead log "
            "by name, so two names of one journal can lose committed orders and let two "
            "runners in; remove the other links (find them with `find / -samefile "
            f"{path}`) and use one path, or a symlink")


def lock_holder(path: Path) -> str:
    """Return who holds the flock on ``path``: ``pid N on host H (command)``, from
    ``/proc/locks``; a plain description where the kernel does not tell."""
    host = socket.gethostname()
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii") as fh:
            table = fh.read().splitlines()
    except OSError:
        return f"another process on host {host} (this system does not say which)"
    ino = st.st_ino
    majmin = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    for line in table:
        parts = line.split()
        if "FLOCK" not in parts or "->" in parts:
            continue
        try:
            pid = int(parts[parts.index("FLOCK") + 3])
            dev_ino = parts[parts.index("FLOCK") + 4]
        except (ValueError, IndexError):
            continue
        dev, _, inode = dev_ino.rpartition(":")
        if inode == str(ino) and dev.lower() == majmin and pid > 0:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                text = " ".join(cmd.decode(errors="replace").split())  # one line
                what = f" ({text[:120]})" if text else ""
            except OSError:
                what = ""
            return f"pid {pid} on host {host}{what}"
    return f"another process on host {host}"


class RunLock:
    """Exclusive run lock on the journal database at ``journal_path`` (a context manager).

    ``acquire()`` returns None or raises :class:`JournalLockedError` naming the holder;
    ``release()`` is idempotent. ``path`` is the journal's one name (symlinks resolved).
    """

    def __init__(self, journal_path_: Path | str) -> None:
        self.path = journal_path(journal_path_)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (never waits); creates the (empty) database file if there is none.

        Raises:
            JournalLockedError: another process holds the journal (the message names the
                holder's pid and host), or the journal has several hard links.
            OSError: the file cannot be created or opened (read-only folder ...).
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        check_single_name(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover - Windows
            self._fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLockedError(
                f"journal {self.path} is in use by another runner: {lock_holder(self.path)}; "
                "wait for it to finish or stop it (one runner per journal, whatever path "
                "names it)") from None
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. Call it after the journal's SQLite connection is closed (closing
        this descriptor drops the process's POSIX locks on the file)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
