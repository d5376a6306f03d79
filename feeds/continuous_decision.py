"""ContinuousDecisionData: the daily decision feed of a futures symbol (``--futures ES``).

It trades the contract its ``dataname`` names (the one the roll registry holds on the run's
session date, :mod:`bt_ibkr.live.futures_run`) and warms the Strategy up on the root's
back-adjusted continuous series, so an indicator sees the held contract's own moves and no
jump at a roll:

1. the held contract's completed daily bars, downloaded and checked exactly as
   :class:`~feeds.daily_decision.DailyDecisionData` does (the freshness check decides on them);
2. for every roll inside the warm-up window (:meth:`FutureSpec.roll_schedule`), the daily bars
   of the contract held before it, over the days it was held plus a few before: the contract is
   looked up with ``includeExpired`` (IB serves expired futures' details and history for two
   years after expiry) and its bars come through the store's historical path and bar cache
   like every other request;
3. :func:`bt_ibkr.futures.continuous.build_continuous` stitches them by the registry's rule and
   back-adjusts (``adjust``: "ratio", the default, or "difference"): the newest contract's bars
   are its real prices, every earlier bar is adjusted at each roll by the gap measured on the
   last day both contracts traded. When the registry rolls on the session being decided (the
   last completed session is still the old contract's), the whole history is adjusted into the
   traded contract at that last session's closes and the decision bar is the traded contract's.

The decision bar is always the traded contract's own last completed bar. When IB has no
history of an earlier contract (older than IB keeps, or never served), the warm-up starts where
that contract was left, still continuous, and the feed reports it (``report``: the runner
logs, audits and prints it). Raises DataError when a contract that was served has no bar
where the stitching needs one (the message names it).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import pandas as pd

from bt_ibkr.errors import DataError, UnknownSymbolError
from bt_ibkr.futures.continuous import build_continuous
from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.ib.events import Bar
from bt_ibkr.utc import naive_utc
from feeds.daily_decision import DailyDecisionData

__all__ = ["ContinuousDecisionData"]

log = logging.getLogger("bt_ibkr.live")

OVERLAP_DAYS = 10
"""Calendar days of an earlier contract asked for before the roll into it: the stitching
measures each gap on the last day before the roll, on which both contracts must have a bar."""


class ContinuousDecisionData(DailyDecisionData):
    """A daily futures feed warmed up on the back-adjusted continuous series (module docstring).

    Params beyond DailyDecisionData's: ``root`` (the roll-registry root, e.g. "ES") and
    ``adjust`` ("ratio" or "difference"). ``rolls`` holds the rolls of the warm-up series
    (:class:`~bt_ibkr.futures.continuous.Roll`, oldest first) once downloaded.
    """

    params = (("root", ""), ("adjust", "ratio"))

    def start(self) -> None:
        super().start()
        self.rolls: tuple = ()

    def _download(self) -> list[Bar]:
        own = super()._download()  # checked: its last bar is the decision bar
        spec = get_spec(self.p.root or self.contract.symbol)
        # the contract month (CL's last trade date is in the month before it)
        traded = spec.contract_of(self.contract.lastTradeDateOrContractMonth)
        days = [self._session_date(b) for b in own]
        frames = {traded: _frame(own, days)}
        stamps = dict(zip(days, (b.dt for b in own), strict=True))
        # each contract held inside the window (``backfill_days`` before the decision bar;
        # the traded contract's own bars start at its listing): (contract, first day, left)
        first = min(days[0], days[-1] - timedelta(days=int(self.p.backfill_days)))
        held, start = [], first
        for when, old, _new in spec.roll_schedule(first, days[-1]):
            held.append((old, start, when))
            start = when
        held.append((spec.held_contract(days[-1]), start, days[-1] + timedelta(days=1)))
        for contract, since, left in reversed(held):  # newest first
            if contract == traded:
                continue
            try:
                bars = self._contract_bars(contract, since - timedelta(days=OVERLAP_DAYS), left)
            except (DataError, UnknownSymbolError) as exc:
                # a shorter warm-up, still continuous: it starts where this contract left
                self._note(f"{self.p.dataname}: the continuous warm-up starts on {left}: "
                           f"no history of {contract.local_symbol} ({exc})")
                break
            its_days = [self._session_date(b) for b in bars]
            frames[contract] = _frame(bars, its_days)
            for d, b in zip(its_days, bars, strict=True):
                stamps.setdefault(d, b.dt)
        if len(frames) == 1:  # no roll inside the window (or no earlier contract served):
            return own        # the traded contract's own bars, one contract, no roll jump
        series = build_continuous(spec.root, frames, self.p.adjust, spec)
        frame = series.frame
        self.rolls = series.rolls
        held_last = series.held.iloc[-1]
        if held_last != traded.code:  # the registry rolls on the session being decided
            frame = _roll_into(frame, frames[traded], days[-1], self.p.adjust)
        return [Bar(stamps[ts.date()], float(r.open), float(r.high), float(r.low),
                    float(r.close), float(r.volume)) for ts, r in frame.iterrows()]

    def _note(self, line: str) -> None:
        (self.p.report or (lambda text: log.warning("%s", text)))(line)

    def _contract_bars(self, contract: ContractMonth, start: date, end: date) -> list[Bar]:
        """Daily bars of ``contract`` from ``start`` to the session before ``end`` (an expired
        contract too: looked up with includeExpired)."""
        from bt_ibkr.ib import client as ibc

        spec = get_spec(contract.root)
        fut = ibc.ib_module.Future(spec.root, contract.code, spec.exchange,
                                   multiplier=f"{spec.multiplier:g}", currency=spec.currency,
                                   includeExpired=True)
        # the dataname a run trading it uses: the bar cache serves both under one key
        name = (f"{spec.root}-FUT-{spec.exchange}-{spec.currency}-{contract.code}-"
                f"{spec.multiplier:g}")
        details = self.store.qualify(fut, name)
        c = details.contract
        c.includeExpired = True
        begin = datetime(start.year, start.month, start.day)
        until = min(datetime(end.year, end.month, end.day),
                    naive_utc(self.store.server_time(strict=True)))
        q = self.store.request_history(c, begin, until, "1 day", what=self._what(),
                                       use_rth=self.p.useRTH, tz=self._tz,
                                       sessionend=self.p.sessionend, name=name)
        bars, error = self._drain_history(
            q, f"daily history of {name!r} (the warm-up of the continuous {contract.root})")
        if not bars:
            why = f"failed: {error.text}" if error is not None else "returned no bars"
            raise DataError(f"daily history of {name!r} (held until {end}, needed for the "
                            f"continuous {contract.root} warm-up) {why}")
        return [b for b in bars if self._session_date(b) < end]


def _frame(bars: list[Bar], days: list[date]) -> pd.DataFrame:
    """Canonical daily frame (date index) of ``bars`` stamped with their session ``days``."""
    return pd.DataFrame({"open": [b.open for b in bars], "high": [b.high for b in bars],
                         "low": [b.low for b in bars], "close": [b.close for b in bars],
                         "volume": [b.volume for b in bars]},
                        index=pd.DatetimeIndex([pd.Timestamp(d) for d in days],
                                               name="datetime"))


def _roll_into(series: pd.DataFrame, traded: pd.DataFrame, last: date,
               method: str) -> pd.DataFrame:
    """``series`` adjusted into ``traded`` at ``last``'s closes, its last bar ``traded``'s."""
    at = pd.Timestamp(last)
    if at not in traded.index or at not in series.index:
        raise DataError(f"no bar of both contracts on {last}: the roll into the traded "
                        "contract cannot be measured")
    new, old = float(traded.at[at, "close"]), float(series.at[at, "close"])
    out = series.copy()
    cols = ["open", "high", "low", "close"]
    out[cols] = out[cols] * (new / old) if method == "ratio" else out[cols] + (new - old)
    out.loc[at] = traded.loc[at, out.columns]
    return out
