"""Which session records belong to which journal.

Two journals in one folder (two accounts, say) share one ``sessions/`` folder; each one's
records, tearsheet (``--report``) and retention are its own. :class:`JournalRecords` is one
journal's claim: its path and the ids of its runs (the journal's ``runs`` table; a run id is
a time and 8 random hex digits, so two journals never share one unless a journal file was
copied). A session folder is

* ``ours`` when its run is one of the journal's runs and its ``meta.json`` does not name
  another journal. New records name theirs (``"journal": {"path": <absolute path>}``,
  :meth:`JournalRecords.meta`); a record naming a journal file that no longer exists was
  recorded before that journal was moved or renamed, and its run decides. A record written
  before the field existed is the journal's whose runs list its run id;
* ``other`` when its ``meta.json`` names another journal file that exists (that journal's,
  also when a copied journal lists the same run);
* ``unclaimed`` otherwise: the record of an earlier journal at the same path (deleted, or set
  aside by ``--simulate``), another journal's record from before the field existed, a folder
  whose ``meta.json`` cannot be read. Retention and the tearsheet leave it alone; the live
  runner reports it once per journal.

Hidden leftovers of an interrupted delete or archive (``.deleting-<name>``,
``.partial-<name>``) are claimed by their name: the session folder's name is its run id.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

META = "meta.json"
OURS, OTHER, UNCLAIMED = "ours", "other", "unclaimed"
_COPY_SUFFIX = re.compile(r"-\d+$")  # an archived duplicate's name: <run id>-2


def folder_name(run_id: str) -> str:
    """Return the session folder name of ``run_id`` (the id made safe as a folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(run_id)) or "run"


def _same_file(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass(frozen=True)
class JournalRecords:
    """One journal's claim on session records (see the module docstring).

    Attributes:
        journal: the journal file's absolute path.
        run_ids: the ids of every run the journal lists.
    """

    journal: Path
    run_ids: frozenset[str]

    @classmethod
    def of(cls, journal: Path | str, run_ids: Iterable[str]) -> JournalRecords:
        """Return the claim of the journal file ``journal`` whose runs are ``run_ids``
        (``Journal.runs()``' ids)."""
        return cls(Path(os.path.abspath(journal)), frozenset(str(r) for r in run_ids))

    @property
    def names(self) -> frozenset[str]:
        """The session folder names of the journal's runs."""
        return frozenset(folder_name(r) for r in self.run_ids)

    def meta(self) -> dict[str, Any]:
        """Return what a new record's ``meta.json`` carries to name its journal."""
        return {"journal": {"path": str(self.journal)}}

    def claim(self, directory: Path) -> str:
        """Return :data:`OURS`, :data:`OTHER` or :data:`UNCLAIMED` for session folder
        ``directory`` (see the module docstring); never raises."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return UNCLAIMED
        if not isinstance(meta, dict):
            return UNCLAIMED
        named = journal_of(meta)
        if named is not None and not _same_file(named, self.journal) and named.exists():
            return OTHER
        run_id = meta.get("run_id")
        ours = (str(run_id) in self.run_ids) if run_id is not None else (
            directory.name in self.names)
        return OURS if ours else UNCLAIMED

    def claims_leftover(self, name: str) -> bool:
        """Whether a hidden leftover named ``.deleting-<name>`` / ``.partial-<name>`` (given
        without its prefix) is of one of the journal's runs."""
        names = self.names
        return name in names or _COPY_SUFFIX.sub("", name) in names

    def split(self, folders: Iterable[Path]) -> dict[str, list[Path]]:
        """Return ``{OURS: [...], OTHER: [...], UNCLAIMED: [...]}`` of ``folders``, in order."""
        out: dict[str, list[Path]] = {OURS: [], OTHER: [], UNCLAIMED: []}
        for folder in folders:
            out[self.claim(folder)].append(Path(folder))
        return out


def journal_of(meta: dict[str, Any]) -> Path | None:
    """Return the journal path a record's meta names (None: it names none)."""
    entry = meta.get("journal")
    if isinstance(entry, dict):
        entry = entry.get("path")
    if isinstance(entry, str) and entry:
        return Path(entry)
    return None


def unclaimed_line(root: Path, journal: Path, names: list[str], show: int = 5) -> str:
    """Return the one status line reporting ``names`` (session folders under ``root`` that
    ``journal`` does not claim)."""
    shown = ", ".join(names[:show]) + (f" and {len(names) - show} more" if len(names) > show
                                       else "")
    return (f"sessions: {len(names)} record(s) in {root} are not of a run of journal "
            f"{journal} (an earlier or another journal's): its --report and retention leave "
            f"them alone; move them away if no journal needs them: {shown}")


__all__ = ["META", "OTHER", "OURS", "UNCLAIMED", "JournalRecords", "folder_name",
           "journal_of", "unclaimed_line"]
