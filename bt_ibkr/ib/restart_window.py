"""The gateway's daily restart window: when a disconnect is expected and needs no alert.

IB Gateway restarts itself once a day (IBC's ``AutoRestartTime``), in its own time zone. The
runner is told the window around it, e.g. ``"23:40-00:10 America/New_York"`` (a window may
cross midnight). A disconnect inside it is expected; one outside it is alerted at once; a
gateway still away ``grace`` after the window closed (or after a disconnect outside it) is
alerted as needing a login, which is what the weekly full login with 2FA looks like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bt_ibkr.errors import ConfigError

__all__ = ["RestartWindow"]

_SPEC = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*(\S+)?\s*$")


@dataclass(frozen=True)
class RestartWindow:
    """A daily window ``start``-``end`` (local times in ``zone``; may cross midnight)."""

    start: time
    end: time
    zone: str = "America/New_York"

    @classmethod
    def parse(cls, text: str, where: str = "connection.restart_window") -> RestartWindow:
        """Return the window of ``"HH:MM-HH:MM [Area/City]"`` (zone default America/New_York).

        Raises:
            ConfigError: not that form, an hour/minute out of range, or an unknown zone (the
                message names ``where`` and shows the form).
        """
        m = _SPEC.match(str(text or ""))
        if not m:
            raise ConfigError(f"{where} {text!r}: expected 'HH:MM-HH:MM Area/City', e.g. "
                              "'23:40-00:10 America/New_York' (around IBC's AutoRestartTime)")
        h1, m1, h2, m2 = (int(g) for g in m.groups()[:4])
        if not (h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60):
            raise ConfigError(f"{where} {text!r}: hours are 0-23 and minutes 0-59")
        zone = m.group(5) or "America/New_York"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where} {text!r}: unknown time zone {zone!r}; use an IANA "
                              "name such as America/New_York or Europe/Zurich") from None
        return cls(time(h1, m1), time(h2, m2), zone)

    def _local(self, when: datetime) -> datetime:
        return when.astimezone(ZoneInfo(self.zone))

    def contains(self, when: datetime) -> bool:
        """True when the aware datetime ``when`` falls inside the window."""
        t = self._local(when).time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def closes_after(self, when: datetime) -> datetime:
        """Return the end of the window that contains ``when`` (or the next one), aware."""
        local = self._local(when)
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}"
