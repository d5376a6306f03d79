"""How much of the account the Strategy sizes from: ``risk.capital`` and the ramp.

A Strategy sizes its orders from ``broker.getvalue()``. On a large account that means a first
paper run buys nearly the whole account. :func:`strategy_capital` returns the value the broker
should report instead (:class:`~bt_ibkr.ib.broker.IBBroker`'s ``capital``): ``risk.capital``
(at most the account's value) times the ramp fraction of this session, which rises in equal
steps from ``risk.ramp_start`` on the first session to 1 after ``risk.ramp_sessions``
sessions. Sessions are counted as distinct trading days on which this journal traded before
(:func:`traded_days`).

Units of an order: :func:`units_for_value` gives the whole shares or contracts whose notional
(price x the contract multiplier) fits a value, as the brokers' ``getsize`` does;
:func:`units_within` the whole units whose initial margin, as IB's what-if answers it for the
whole order, fits a margin budget (the risk gate's ``max_margin_fraction`` shrinks an order to
it when listed in ``risk.shrink``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from bt_ibkr.live.config import RiskConfig

__all__ = ["Sizing", "ramp_fraction", "strategy_capital", "traded_days", "units_for_value",
           "units_within"]


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


def units_for_value(value: float, price: float, multiplier: float = 1.0) -> int:
    """Return the whole units (shares, contracts) whose notional, ``price`` x ``multiplier``
    each, fits ``value`` (0 when none does; ValueError for a price or multiplier <= 0). One ES
    contract at 4,000 is 200,000 of notional: 500,000 buys 2."""
    unit = float(price) * float(multiplier)
    if not unit > 0:
        raise ValueError(f"units_for_value: price x multiplier must be > 0, got {price!r} x "
                         f"{multiplier!r}")
    return max(0, math.floor(float(value) / unit))


def units_within(quantity: float, margin: float, budget: float) -> int:
    """Return the whole units of an order of ``quantity`` whose initial margin fits
    ``budget``, ``margin`` being IB's what-if initial margin of the whole order (taken as
    proportional to the quantity); ``quantity`` itself when it fits, 0 when nothing does."""
    if margin <= budget:
        return int(quantity)
    if margin <= 0 or budget <= 0:
        return 0
    return max(0, min(int(quantity), math.floor(quantity * budget / margin)))
