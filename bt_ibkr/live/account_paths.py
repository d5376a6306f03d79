"""Per-account paths of a live run, and the move of a journal kept at the old default.

One login can manage several accounts and a run trades exactly one (``--account``), so each
account keeps its own state. The default paths name the account (:data:`ACCOUNT_FIELD`)::

    paths.journal  state/{account}/journal.sqlite   (session records: state/{account}/sessions/,
                                                      bar cache: state/{account}/cache/)
    paths.equity   state/{account}/equity.csv
    paths.reports  reports/{account}

A configured path may name ``{account}`` too, and so may the run's ``--report`` and ``--json``
files (:func:`outputs`: ``--report reports/{account}/tearsheet.html``); ``paths.logs`` may not (the log and the audit
trail open before the gateway says which account the run trades; a run's audit lines say which
account and journal it uses). :func:`for_account` fills the field in with the account the run trades:
before connecting when the account is configured, else once the gateway has named it (a
single-account login).

Before per-account paths the defaults were ``state/journal.sqlite`` and ``state/equity.csv``
(:data:`LEGACY_JOURNAL`, :data:`LEGACY_EQUITY`). A run that uses the default journal and finds
that old file keeps its orders (:func:`adopt_legacy`):

* the old journal records the account it is bound to (its ``meta`` table). When that is the
  run's account, the journal is moved, under its run lock and after a WAL checkpoint, to the
  account's path, with the old default equity curve and the session records of its runs;
* when it is bound to another account, it is left where it is (that account's next run moves
  it) and the run uses its own account's journal;
* when it records no account, cannot be read, or the account already has a journal at the new
  path, the run is refused before it connects or trades (:class:`~bt_ibkr.errors.ConfigError`,
  one line naming the file and what to do): its orders cannot be proven to be this account's,
  and a second journal for one account would not know the first one's orders.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.config import LiveConfig, PathsConfig
from bt_ibkr.live.options import RunOptions

__all__ = ["ACCOUNT_FIELD", "LEGACY_EQUITY", "LEGACY_JOURNAL", "adopt_legacy",
           "awaits_account", "for_account", "journal_account", "outputs", "resolve"]

ACCOUNT_FIELD = "{account}"
"""The field a path names the traded account with (``state/{account}/journal.sqlite``)."""

LEGACY_JOURNAL = Path("state/journal.sqlite")
"""The default journal before journals were per account."""

LEGACY_EQUITY = Path("state/equity.csv")
"""The default equity curve before equity curves were per account."""

_SAFE_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def awaits_account(config: LiveConfig, key: str | None = None) -> bool:
    """True when a path of ``config`` (``key``: that one, e.g. ``"journal"``; None: any)
    still names ``{account}``: it is known only once the account is (:func:`for_account`)."""
    keys = [key] if key else [f.name for f in fields(PathsConfig)]
    return any(ACCOUNT_FIELD in str(getattr(config.paths, k)) for k in keys)


def for_account(config: LiveConfig, account: str) -> LiveConfig:
    """Return ``config`` with ``{account}`` in its paths replaced by ``account`` in capitals
    (a new LiveConfig; ``config`` is unchanged). IB's account ids are capitals and a run
    names its account in any case (``--account du111``): one account, one folder.

    Raises:
        ConfigError: ``account`` cannot be part of a folder name (names it).
    """
    if not awaits_account(config):
        return config
    paths = config.paths
    account = _folder(account, [f"paths.{f.name}" for f in fields(PathsConfig)
                                if ACCOUNT_FIELD in str(getattr(paths, f.name))])
    filled = {f.name: Path(str(getattr(paths, f.name)).replace(ACCOUNT_FIELD, account))
              for f in fields(PathsConfig)}
    return replace(config, paths=replace(paths, **filled))


def resolve(config: LiveConfig, account: str,
            say: Callable[[str], None] = lambda msg: None) -> LiveConfig:
    """Return ``config`` with its paths for ``account`` (:func:`for_account`), a journal at
    the old default moved to the account's first when it is the account's
    (:func:`adopt_legacy`, same errors).

    Raises:
        ConfigError, JournalLockedError, OSError: see :func:`for_account`,
            :func:`adopt_legacy`.
    """
    resolved = for_account(config, account)
    if resolved is not config:
        adopt_legacy(config, resolved, account, say)
    return resolved


def outputs(options: RunOptions, account: str | None) -> tuple[RunOptions,
                                                                list[tuple[str, Path]]]:
    """Return ``options`` with ``{account}`` in its ``--report`` / ``--json`` paths filled in
    with ``account`` in capitals (None: left as they are), and the ``(flag, path)`` outputs
    that are known now (no ``{account}`` left), for :func:`check_outputs` before trading."""
    def fill(path: Path | None) -> Path | None:
        if account and path is not None and ACCOUNT_FIELD in str(path):
            return Path(str(path).replace(ACCOUNT_FIELD, _folder(account, [str(path)])))
        return path

    options = replace(options, report_path=fill(options.report_path),
                      json_path=fill(options.json_path))
    known = [(flag, path) for flag, path in (("--json", options.json_path),
                                             ("--report", options.report_path))
             if path is not None and ACCOUNT_FIELD not in str(path)]
    return options, known


def _folder(account: str, naming: list[str]) -> str:
    """Return ``account`` as its folder's name (capitals); ConfigError, naming the paths that
    hold ``{account}`` (``naming``), when it cannot be one."""
    name = (account or "").strip().upper()
    if not _SAFE_ACCOUNT.fullmatch(name):
        raise ConfigError(f"account {account!r} cannot name a folder of the run's state "
                          "(letters, digits, '.', '_' and '-' only): check the account id, or "
                          f"give {', '.join(naming)} without {{account}} (paths.journal: "
                          "--journal, paths.equity: --equity, others in the config file)")
    return name


def journal_account(path: Path) -> str | None:
    """Return the account the journal at ``path`` is bound to, None when it records none
    (opened read-only: nothing is written).

    Raises:
        ConfigError: the file is not a journal or cannot be read (names it).
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path} (the default journal before journals were per account) "
                          f"cannot be read as a journal ({exc}): move it away, or pass "
                          f"--journal {path} to use it") from None
    return row[0] if row else None


def adopt_legacy(requested: LiveConfig, resolved: LiveConfig, account: str,
                 say: Callable[[str], None] = lambda msg: None) -> None:
    """Keep the orders of a journal at the old default (see the module docstring): when
    ``requested`` (the run's config before :func:`for_account`) uses the default journal and
    :data:`LEGACY_JOURNAL` exists, move it to ``resolved``'s journal if it is bound to
    ``account``; returns None, saying what it moved.

    Raises:
        ConfigError: the old journal records no account or cannot be read, or the account
            has journals at both paths (names the files and what to do).
        JournalLockedError: a runner still holds the old journal.
        OSError: a file cannot be moved (names it).
    """
    if requested.paths.journal != PathsConfig().journal or not LEGACY_JOURNAL.exists():
        return
    account = account.strip().upper()  # as the folder names it
    legacy, target = LEGACY_JOURNAL, Path(resolved.paths.journal)
    if legacy.is_symlink():
        raise ConfigError(f"{legacy} (the default journal before journals were per account) "
                          f"is a symlink: pass --journal {legacy} to keep using it, or move "
                          f"it to {target} yourself")
    try:
        owner = journal_account(legacy)
    except ConfigError:
        if not legacy.exists():  # its account's run moved it meanwhile
            return
        raise
    if owner is None:
        raise ConfigError(
            f"{legacy} (the default journal before journals were per account) records no "
            f"account, so it cannot be moved to {target} safely: pass --journal {legacy} "
            f"to keep using it, or move it away if it is not account {account}'s")
    if owner.upper() != account:
        say(f"{legacy} belongs to account {owner}: left for its next run to move; account "
            f"{account} uses {target}")
        return
    if target.exists():
        raise ConfigError(
            f"account {account} has two journals, {legacy} (the old default) and {target}: "
            f"pass --journal with the one to keep, and move the other away")
    if not _move_journal(legacy, target):
        return
    moved = [f"{legacy} -> {target}"]
    equity = Path(resolved.paths.equity)
    if requested.paths.equity == PathsConfig().equity and LEGACY_EQUITY.exists() \
            and not equity.exists():
        equity.parent.mkdir(parents=True, exist_ok=True)
        os.replace(LEGACY_EQUITY, equity)
        moved.append(f"{LEGACY_EQUITY} -> {equity}")
    count = _move_sessions(legacy.parent, target)
    if count:
        moved.append(f"{count} session record(s) -> {target.parent / 'sessions'}")
    say(f"journals are per account now: moved account {account}'s " + "; ".join(moved))


def _move_journal(legacy: Path, target: Path) -> bool:
    """Move the journal ``legacy`` to ``target`` under its run lock, its write-ahead log
    checkpointed into the file first (SQLite keeps the log by the file's name); return False
    when another run moved it meanwhile. Never replaces a file at ``target``."""
    from bt_ibkr.live.run_lock import RunLock

    lock = RunLock(legacy)
    lock.acquire()  # refused while a runner holds it; creates an empty file if it is gone
    try:
        if target.exists() or legacy.stat().st_size == 0:  # another run moved it meanwhile
            if legacy.stat().st_size == 0:
                legacy.unlink()
            return False
        db = sqlite3.connect(str(legacy))
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            db.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(legacy, target)  # fails rather than replace a journal at target
        legacy.unlink()
        for suffix in ("-wal", "-shm"):  # emptied by the checkpoint; moved with their file
            companion = Path(str(legacy) + suffix)
            if companion.exists():
                os.replace(companion, Path(str(target) + suffix))
        return True
    finally:
        lock.release()


def _move_sessions(state: Path, target: Path) -> int:
    """Move the session records of the runs of the journal now at ``target`` from
    ``state/sessions/`` to the sessions folder beside it; return how many were moved."""
    from bt_ibkr.records.sessions import session_dir

    db = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        run_ids = [r[0] for r in db.execute("SELECT run_id FROM runs")]
    finally:
        db.close()
    count = 0
    for run_id in run_ids:
        src, dst = session_dir(state, run_id), session_dir(target.parent, run_id)
        if src.is_dir() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            count += 1
    return count
