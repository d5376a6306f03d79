"""Upkeep of one journal's session records: finish interrupted compressions, and (only when
asked) delete or archive records not written for ``keep_days`` days.

:func:`maintain_sessions` is what a live run does before it records its own session (the
runner audits and prints what it did). Retention is off unless ``keep_days`` is given: records
are never removed unasked. It acts only on session folders (a folder holding ``meta.json``)
directly in the sessions folder that belong to the journal it is given
(:class:`~bt_ibkr.records.ownership.JournalRecords`: two journals in one folder share the
sessions folder, and one's retention never touches the other's records, nor records no journal
claims, which it lists as ``unclaimed``), never on one a process is writing (its lock is held,
see :mod:`bt_ibkr.records.files`; on Windows, without ``flock``, by age alone), and judges age
by the newest time a bar or the meta was written (compression keeps a part's time), against
``now`` (the caller's clock).

* ``delete``: the folder is renamed to a hidden ``.deleting-<name>`` (atomic: readers stop
  seeing it at once) and then removed; a kill midway leaves the hidden folder, removed by the
  next run of the same journal.
* ``archive``: the folder is moved to ``archive`` (default: ``sessions-archive`` beside the
  sessions folder), out of the tearsheet's and ``--replay``'s reach but kept; on another
  filesystem it is copied to a hidden ``.partial-<name>``, renamed into place, and only then is
  the original removed, so a kill midway never loses it (nor leaves two visible copies in the
  archive).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bt_ibkr.errors import ConfigError
from bt_ibkr.records.files import PART_RE, fsync_dir, is_being_written, repair
from bt_ibkr.records.ownership import OTHER, OURS, UNCLAIMED, JournalRecords

log = logging.getLogger("bt_ibkr.records")

META = "meta.json"
ACTIONS = ("delete", "archive")
DAY = 86_400.0


@dataclass
class Expired:
    """One session record retention acted on."""

    session: str
    idle_days: float
    action: str  # "deleted" | "archived"
    to: str | None = None


@dataclass
class Maintenance:
    """What :func:`maintain_sessions` did (``to_dict()`` is what the runner audits)."""

    root: str
    keep_days: float | None = None
    expired: list[Expired] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    #: session folders the journal does not claim (left alone; the caller reports them)
    unclaimed: list[str] = field(default_factory=list)
    #: how many session folders name another journal (left alone)
    others: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def lines(self) -> list[str]:
        """Return one status line per kind of action (none when nothing was done)."""
        out = []
        for action in ("deleted", "archived"):
            done = [e for e in self.expired if e.action == action]
            if done:
                where = f" to {Path(done[0].to).parent}" if done[0].to else ""
                out.append(f"sessions: {action} {len(done)} record(s) not written for over "
                           f"{self.keep_days:g} days{where}: "
                           + ", ".join(e.session for e in done))
        if self.busy:
            out.append(f"sessions: left {len(self.busy)} expired record(s) being written "
                       f"alone: {', '.join(self.busy)}")
        if self.repaired:
            out.append(f"sessions: finished {len(self.repaired)} interrupted compression "
                       f"step(s) in {self.root}")
        return out


def session_folders(root: Path) -> list[Path]:
    """Return the session folders directly in ``root`` (hidden ones left out), by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / META).is_file())


def last_written(directory: Path) -> float:
    """Return the newest modification time (epoch seconds) of the session's meta and bar
    files (the folder's own when it has none)."""
    directory = Path(directory)
    times = []
    for entry in os.scandir(directory):
        if entry.name == META or entry.name == "bars.jsonl" or PART_RE.match(entry.name):
            with contextlib.suppress(FileNotFoundError):
                times.append(entry.stat().st_mtime)
    return max(times) if times else directory.stat().st_mtime


def _remove(path: Path, root: Path) -> None:
    """Hide ``path`` (rename to ``root/.deleting-<name>``), then delete it."""
    hidden = root / f".deleting-{path.name}"
    if hidden.exists():
        shutil.rmtree(hidden)
    os.replace(path, hidden)
    fsync_dir(root)
    shutil.rmtree(hidden)


def _listing(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_size
            for p in directory.rglob("*") if p.is_file()}


def _archive(path: Path, root: Path, archive: Path) -> Path:
    """Move session folder ``path`` into ``archive`` (see the module docstring); return where."""
    archive.mkdir(parents=True, exist_ok=True)
    dest = archive / path.name
    if dest.exists():
        if _listing(dest) == _listing(path):  # archived before a kill removed the original
            _remove(path, root)
            return dest
        k = 2
        while (archive / f"{path.name}-{k}").exists():
            k += 1
        dest = archive / f"{path.name}-{k}"
    if os.stat(root).st_dev == os.stat(archive).st_dev:
        os.replace(path, dest)
        fsync_dir(root)
        fsync_dir(archive)
        return dest
    partial = archive / f".partial-{dest.name}"
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(path, partial)
    os.replace(partial, dest)
    fsync_dir(archive)
    _remove(path, root)
    return dest


def _clean_leftovers(root: Path, archive: Path | None, records: JournalRecords) -> list[str]:
    """Remove the journal's hidden leftovers of an interrupted delete or archive."""
    done = []
    for folder, prefix in ((root, ".deleting-"), (archive, ".partial-")):
        if folder is None or not folder.is_dir():
            continue
        for p in folder.iterdir():
            if (p.is_dir() and p.name.startswith(prefix)
                    and records.claims_leftover(p.name[len(prefix):])):
                shutil.rmtree(p)
                done.append(f"removed the unfinished {p}")
    return done


def archive_folder(root: Path, archive: Path | str | None = None) -> Path:
    """Return the archive folder of sessions folder ``root`` (default: ``sessions-archive``
    beside it). Raises ConfigError when it lies inside ``root`` (it would be replayed)."""
    root = Path(root)
    folder = Path(archive) if archive else root.parent / "sessions-archive"
    r, a = root.resolve(), folder.resolve()
    if a == r or r in a.parents:
        raise ConfigError(f"sessions.archive {folder}: inside the sessions folder {root}; "
                          "choose a folder outside it (default: sessions-archive beside it)")
    return folder


def sort_sessions(root: Path, records: JournalRecords,
                  report: Maintenance | None = None) -> list[Path]:
    """Return the session folders in ``root`` that belong to ``records``' journal; note the
    unclaimed ones (and how many name another journal) in ``report`` when given."""
    split = records.split(session_folders(root))
    if report is not None:
        report.unclaimed = [p.name for p in split[UNCLAIMED]]
        report.others = len(split[OTHER])
    return split[OURS]


def expire_sessions(root: Path, keep_days: float, now: float, action: str = "delete",
                    archive: Path | str | None = None, report: Maintenance | None = None, *,
                    records: JournalRecords) -> Maintenance:
    """Delete or archive (``action``) the session folders in ``root`` of ``records``'
    journal last written more than ``keep_days`` days before ``now`` (epoch seconds); return
    the :class:`Maintenance` (``report`` extended when given). Another journal's records and
    unclaimed ones are left alone. Raises ConfigError for a bad ``keep_days``/``action``/
    ``archive``, OSError when a folder cannot be removed or moved (those before it are done)."""
    root = Path(root)
    if not (isinstance(keep_days, (int, float)) and keep_days > 0):
        raise ConfigError(f"sessions.keep_days {keep_days!r}: expected a number of days > 0")
    if action not in ACTIONS:
        raise ConfigError(f"sessions.expired {action!r}: expected one of {', '.join(ACTIONS)}")
    folder = archive_folder(root, archive) if action == "archive" else None
    report = report or Maintenance(root=str(root))
    report.keep_days = keep_days
    report.repaired += _clean_leftovers(root, folder, records)
    for path in sort_sessions(root, records, report):
        idle = (now - last_written(path)) / DAY
        if idle <= keep_days:
            continue
        if is_being_written(path):
            report.busy.append(path.name)
            continue
        if folder is None:
            _remove(path, root)
            done = Expired(path.name, round(idle, 2), "deleted")
        else:
            done = Expired(path.name, round(idle, 2), "archived", str(_archive(path, root,
                                                                                folder)))
        log.info("sessions: %s %s (not written for %.1f days; keep_days %g)%s", done.action,
                 path, idle, keep_days, f" -> {done.to}" if done.to else "")
        report.expired.append(done)
    return report


def maintain_sessions(root: Path, now: float, keep_days: float | None = None,
                      action: str = "delete", archive: Path | str | None = None, *,
                      records: JournalRecords) -> Maintenance:
    """Apply retention to ``records``' journal's sessions in ``root`` when ``keep_days`` is
    given (:func:`expire_sessions`), then finish the interrupted compressions of its remaining
    sessions (:func:`~bt_ibkr.records.files.repair`); return what was done (with the
    ``unclaimed`` folders, left alone)."""
    root = Path(root)
    report = Maintenance(root=str(root), keep_days=keep_days)
    if keep_days is not None:
        expire_sessions(root, keep_days, now, action, archive, report, records=records)
    for path in sort_sessions(root, records, report):
        for line in repair(path):
            log.info("sessions: %s", line)
            report.repaired.append(line)
    return report
