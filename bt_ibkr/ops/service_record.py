"""Which exchange sessions a service has decided, kept in the run's own journal.

The service (:class:`~bt_ibkr.ops.schedule.SessionService`) asks :meth:`ServiceRecord.decided`
before it runs a session and calls :meth:`ServiceRecord.mark` after the run returned. The
record is a ``service_session`` journal event, so it survives a crash or a reboot with the
orders it stands for. A crash between the run and the mark makes the service run that session
again; that second run sends nothing, because the daily run's orderRefs are deterministic from
the decision bar and the journal already holds them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

__all__ = ["ServiceRecord"]


class ServiceRecord:
    """The decided sessions of the journal at ``journal_path`` (opened per call: no run
    holds it while the service waits)."""

    KIND = "service_session"

    def __init__(self, journal_path: Path | str) -> None:
        self.journal_path = Path(journal_path)

    def decided(self, session: date) -> bool:
        """True when ``session`` was marked decided."""
        from bt_ibkr.live.journal import Journal

        if not self.journal_path.exists():
            return False
        with Journal(self.journal_path) as journal:
            return any(ev["detail"].get("session") == str(session)
                       for ev in journal.events(self.KIND))

    def mark(self, session: date) -> None:
        """Record that ``session`` was decided."""
        from bt_ibkr.live.journal import Journal

        with Journal(self.journal_path) as journal:
            journal.log_event(self.KIND, {"session": str(session)})
