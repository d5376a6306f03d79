"""How much of the account the Strategy sizes from: ``risk.capital`` and the ramp.

A Strategy sizes its orders from ``broker.getvalue()``. On a large account that means a first
paper run buys nearly the whole account. :func:`strategy_capital` returns the value the broker
should report instead (:class:`~bt_ibkr.ib.broker.IBBroker`'s ``capital``): ``risk.capital``
(at most the account's value) times the ramp fraction of this session, which rises in equal
steps from ``risk.ramp_start`` on the first session to 1 after ``risk.ramp_sessions``
sessions. Sessions are counted as distinct trading days on which this journal traded before
(:func:`traded_days`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bt_ibkr.live.config import RiskConfig

__all__ = ["Sizing", "ramp_fraction", "strategy_capital", "traded_days"]


def traded_days(journal, account: str) -> set[date]:
    """Return the trading days (exchange sessions, on the gateway's clock) on which runs of
    ``journal`` traded ``account``: the days their start-of-day equity was recorded."""
    out = set()
    for ev in journal.events("day_start"):
        d = ev["detail"]
        if d.get("account") == account and d.get("date"):
            try:
                out.add(date.fromisoformat(str(d["date"])))
            except ValueError:
                continue
    return out


def ramp_fraction(sessions_before: int, ramp_sessions: int, ramp_start: float) -> float:
    """Return the fraction of capital the next session uses: ``ramp_start`` for the first
    session, rising in equal steps to 1.0 on session ``ramp_sessions`` (1.0 when there is no
    ramp)."""
    if ramp_sessions <= 1:
        return 1.0
    step = min(max(sessions_before, 0), ramp_sessions - 1) / (ramp_sessions - 1)
    return ramp_start + (1.0 - ramp_start) * step


@dataclass(frozen=True)
class Sizing:
    """What the Strategy sizes from in this run (``capital`` None: the whole account)."""

    capital: float | None
    account_value: float
    fraction: float
    session: int  # 1-based number of this session in the ramp

    def line(self, ramp_sessions: int) -> str:
        """Return the status line that says it."""
        if self.capital is None:
            return f"sizing: the whole account ({self.account_value:,.2f})"
        ramp = (f", ramp session {min(self.session, ramp_sessions)} of {ramp_sessions} "
                f"({self.fraction:.0%})" if ramp_sessions > 1 else "")
        return (f"sizing: the strategy sizes from {self.capital:,.2f} of the account's "
                f"{self.account_value:,.2f}{ramp}")


def strategy_capital(risk: RiskConfig, account_value: float, earlier_days: set[date],
                     today: date) -> Sizing:
    """Return the :class:`Sizing` of a run on trading day ``today`` after runs on
    ``earlier_days`` (this journal's), with the account worth ``account_value``."""
    sessions_before = len({d for d in earlier_days if d < today})
    fraction = ramp_fraction(sessions_before, risk.ramp_sessions, risk.ramp_start)
    if risk.capital is None and fraction >= 1.0:
        return Sizing(None, account_value, 1.0, sessions_before + 1)
    base = account_value if risk.capital is None else min(float(risk.capital), account_value)
    return Sizing(base * fraction, account_value, fraction, sessions_before + 1)
