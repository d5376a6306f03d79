"""Where a journal lives: its identity (carried by every orderRef it makes) and what its
storage errors mean (disk full, read-only, cannot open), as one line naming the file."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

from bt_ibkr.errors import BtIbkrError

__all__ = ["JournalError", "journal_identity", "storage_error"]


class JournalError(BtIbkrError):
    """The journal file is unusable (corrupt, newer schema) or a call broke its rules."""


def journal_identity(account: str, path: Path | str) -> str:
    """Return the identity of the journal at ``path`` trading ``account``: 5 letters and
    digits from a hash of both, so two journals (two files, or two accounts) never share it,
    and a journal lost and made again at the same place gets the same one back (its earlier
    orders at the gateway are then still recognised as its own)."""
    digest = hashlib.sha256(f"{account.strip().upper()}|{Path(path)}".encode()).digest()
    return base64.b32encode(digest).decode()[:5]


def storage_error(path: Path, exc: sqlite3.Error) -> JournalError | None:
    """Return a JournalError that says what is wrong with the journal's storage (disk full,
    read-only, cannot open), or None when ``exc`` is about something else."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    where = path.resolve().parent if str(path) != ":memory:" else path
    if name.startswith("SQLITE_FULL") or "disk is full" in str(exc):
        return JournalError(f"journal {path}: the disk is full ({where}); free space there, then "
                            "run again (nothing was sent after the last journaled intent)")
    if name.startswith("SQLITE_READONLY") or "readonly" in str(exc):
        return JournalError(f"journal {path}: the file or its folder {where} is read-only; make "
                            "it writable or pass --journal on a writable disk")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        return JournalError(f"journal {path}: cannot write it ({exc}); check the disk and the "
                            f"permissions of {where}")
    return None
