"""One runner per journal: an exclusive lock held for the length of a run.

Two runners on one journal would each reconcile the other's working orders (and could mark them
lost) and interleave decisions. :class:`RunLock` takes an exclusive ``flock`` on
``<journal>.lock`` and writes the holder's pid, host and start time into it, so a second runner
is refused with a message that names the holder. The kernel drops the lock when the holding
process dies (kill -9 included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from bt_ibkr.errors import BtIbkrError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock
    fcntl = None


class JournalLockedError(BtIbkrError):
    """Another process holds the journal's run lock."""


class RunLock:
    """Exclusive run lock for the journal at ``journal_path`` (a context manager).

    ``acquire()`` returns None or raises :class:`JournalLockedError` naming the holder's pid and
    host; ``release()`` is idempotent.
    """

    def __init__(self, journal_path: Path | str) -> None:
        self.path = Path(f"{journal_path}.lock")
        self._fh = None

    def acquire(self) -> None:
        """Take the lock (never waits).

        Raises:
            JournalLockedError: another process holds it (the message names pid and host).
            OSError: the lock file cannot be created (e.g. a read-only directory).
        """
        if fcntl is None or self._fh is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while locked
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            fh.close()
            raise JournalLockedError(
                f"journal {str(self.path)[:-5]} is in use by another runner: pid "
                f"{holder.get('pid', '?')} on host {holder.get('host', '?')} (since "
                f"{holder.get('started', '?')}); wait for it to finish or stop it — one runner "
                "per journal") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.now(UTC).isoformat(timespec="seconds")}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Drop the lock (the file stays; its content is only read while locked)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            finally:
                fh.close()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["JournalLockedError", "RunLock"]
