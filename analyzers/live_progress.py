"""LiveProgress: what a live run says while it warms up and as it decides.

A stream run on 5-second bars needs the Strategy's warm-up (271 bars with the default params:
about 22 minutes) before its first decision. This analyzer says how far the warm-up is (at
every tenth of it once it has taken more than a few seconds, and when it is done) through the run's status-line callback; the runner
then prints one short line per decision (from its audit records).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import backtrader as bt

__all__ = ["LiveProgress"]

QUIET_SECONDS = 5.0
"""A warm-up that history fills within this many seconds is not reported bar by bar."""


class LiveProgress(bt.Analyzer):
    """Params: ``need`` (warm-up bars), ``say`` (the status-line callback), ``clock``
    (monotonic seconds; tests pass their own)."""

    params = (("need", 0), ("say", None), ("clock", time.monotonic))

    def start(self) -> None:
        self._said = 0
        self._done = False
        self._spoke = False
        self._t0 = self.p.clock()

    def _say(self, text: str) -> None:
        say: Callable[[str], None] | None = self.p.say
        if say is not None:
            say(text)

    def next(self) -> None:
        n = len(self.strategy)
        need = int(self.p.need or 0)
        if not self._done:
            if n >= need:
                self._done = True
                if self._spoke:
                    self._say(f"warm-up done: {n} bars; the strategy decides from this bar on")
            else:
                tenth = (10 * n) // max(need, 1)
                # history fills a warm-up at once (daily runs): speak only while it takes time
                if tenth > self._said and self.p.clock() - self._t0 >= QUIET_SECONDS:
                    self._said = tenth
                    self._spoke = True
                    self._say(f"warm-up: {n} of {need} bars ({n / max(need, 1):.0%}); no "
                              "decision before it is complete")

    def get_analysis(self) -> dict:
        return {"warmed_up": self._done}
