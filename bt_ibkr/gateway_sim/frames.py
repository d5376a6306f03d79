"""Serve given daily bar frames from the simulator, one session per 5-second step.

``serve_frames(sim, frames)`` makes a started :class:`~bt_ibkr.gateway_sim.harness.GatewaySim`
serve exactly the bars of ``frames`` (``{name: DataFrame}`` with a date index and
open/high/low/close/volume columns) as live bars: each name gets a stock contract (an existing
STK contract with that symbol, else one added under the name stripped of characters IB symbols
cannot hold, ``^GSPC`` -> ``GSPC``), whose series is the frame, and whose sessions are
**compressed to one 5-second step** at the session's usual open (09:30 New York).

Why compressed: a faithful day of 5-second bars is 4,680 clock steps, so five years are six
million messages; a daily Strategy only ever sees the day's OHLCV. With one step per session,
``reqRealTimeBars`` delivers each day as one 5-second bar whose open/high/low/close/volume are
exactly the frame's (the simulator's intraday path starts at the open, touches the high and low
and ends at the close), IBData passes it on unresampled (timeframe Seconds x5), and every
order, execution and commission still crosses the real TWS protocol and ib_async. The
simulator is switched to ``fills_first``: at each step it fills working orders at that bar's
open before it sends the bar, which is the order a real day has (the next-open fill happens at
09:30, the next decision at 16:00), so the Strategy sees its fill before the bar it decides on,
as with BackBroker.

Fill model: ``fill_mode="next_bar"`` (market orders fill at the next bar's open) and a
commission of ``commission_bps`` of the traded value (set through the ledger's per-share fee
capped at a percentage of value), which is BackBroker's model without slippage. With
``partial_fill_qty`` an order fills in pieces of at most that many shares, all at the open of
the session it fills in (the order engine gets up to 1,000 price events per step), so the
executions are split but their total is BackBroker's single fill.

Returns a :class:`FramesServed` with the contract per name and each session's step time.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.gateway_sim.contracts_db import _stock, session_for
from bt_ibkr.gateway_sim.marketdata import DailySeries, _session_opens
from bt_ibkr.gateway_sim.model import SimContract

STEP = 5  # seconds of one compressed session


@dataclass
class FramesServed:
    """What :func:`serve_frames` set up: ``contracts`` (name -> SimContract), ``steps`` (the
    sorted epoch seconds at which a session's bar is sent, over every name) and ``start``
    (the epoch second before the first bar)."""

    contracts: dict[str, SimContract]
    steps: list[int]
    start: int

    def dataname(self, name: str) -> str:
        """Return the IBData ``dataname`` of ``name``'s contract."""
        c = self.contracts[name]
        return f"{c.symbol}-STK-SMART-USD"


def ib_symbol(name: str) -> str:
    """Return ``name`` as an IB stock symbol (letters, digits, '.'); ConfigError if empty."""
    sym = re.sub(r"[^A-Za-z0-9.]", "", name).upper()
    if not sym:
        raise ConfigError(f"symbol {name!r}: has no letters or digits to trade it under")
    return sym


def _contract_for(sim, name: str) -> SimContract:
    sym = ib_symbol(name)
    found = sim.contracts.by_symbol(sym, "STK")
    if found is not None:
        return found
    con_id = 800_000_000 + zlib.crc32(sym.encode()) % 100_000_000
    contract = _stock(con_id, sym, "NYSE", f"{sym} (parity frames)", stock_type="COMMON")
    sim.contracts.add(contract)
    return contract


def series_from_frame(key: str, frame: pd.DataFrame, contract: SimContract) -> DailySeries:
    """Return the simulator series of a daily frame, one 5-second step per session."""
    cols = {c.lower(): c for c in frame.columns}
    missing = [c for c in ("open", "high", "low", "close") if c not in cols]
    if missing:
        raise ConfigError(f"frame {key!r}: missing column(s) {missing}")
    spec = session_for(contract)
    idx = pd.DatetimeIndex(frame.index)
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    dates = idx.normalize().to_numpy().astype("datetime64[D]")
    if len(dates) and not (np.diff(dates.astype("int64")) > 0).all():
        raise ConfigError(f"frame {key!r}: dates must be unique and increasing (daily bars)")

    def col(name: str, default: float | None = None) -> np.ndarray:
        if name in cols:
            return frame[cols[name]].to_numpy(float)
        return np.full(len(frame), default)

    return DailySeries(
        key=f"frames:{key}", dates=dates, open=col("open"), high=col("high"), low=col("low"),
        close=col("close"), volume=np.round(col("volume", 0.0)), adj=np.ones(len(frame)),
        opens=_session_opens(dates, spec), length=STEP, tick=None, spec=spec)


def serve_frames(sim, frames: dict[str, pd.DataFrame], commission_bps: float = 0.0,
                 partial_fill_qty: float | None = None,
                 cash: float | None = None) -> FramesServed:
    """Make ``sim`` serve ``frames`` (see the module docstring) and fill like BackBroker.

    Sets the clock to 5 s before the first session, so call it before any client connects.
    Raises ConfigError for an empty or malformed frame.
    """
    if not frames:
        raise ConfigError("no frames to serve: give at least one symbol")
    contracts: dict[str, SimContract] = {}
    steps: set[int] = set()
    for name, frame in frames.items():
        if frame is None or frame.empty:
            raise ConfigError(f"frame {name!r} has no bars")
        contract = _contract_for(sim, name)
        if contract in contracts.values():
            raise ConfigError(f"symbols {name!r} and another map to one IB symbol "
                              f"{contract.symbol!r}: rename one")
        series = series_from_frame(name, frame, contract)
        sim.market.serve(contract, series)
        contracts[name] = contract
        steps.update(int(o) + STEP for o in series.opens)
    ordered = sorted(steps)
    start = ordered[0] - STEP - 1
    server = sim.server
    server.clock.set(pd.Timestamp(start, unit="s", tz="UTC").to_pydatetime())
    server._emitted = start - start % STEP
    fill_like_backbroker(sim, commission_bps, partial_fill_qty, cash)
    return FramesServed(contracts=contracts, steps=ordered, start=start)


def fill_like_backbroker(sim, commission_bps: float = 0.0,
                         partial_fill_qty: float | None = None,
                         cash: float | None = None) -> None:
    """Set ``sim``'s order engine to BackBroker's fill model: market orders at the next bar's
    open, reported before that bar (``fills_first``), commission ``commission_bps`` of value,
    optionally split in pieces of ``partial_fill_qty`` at that open; ``cash`` the account's."""
    server = sim.server
    server.fills_first = True
    broker = sim.broker
    broker.fill_mode = "next_bar"
    broker.partial_fill_qty = partial_fill_qty
    # partial fills: several executions at the session's open price, all before the bar
    server.fill_rounds = 1 if partial_fill_qty is None else 1000
    ledger = broker.ledger
    if commission_bps:
        ledger.commission_per_share = 1e12  # capped below at commission_bps of the value
        ledger.max_commission_pct = commission_bps / 10_000.0
    else:
        ledger.commission_per_share = 0.0
        ledger.max_commission_pct = 0.0
    ledger.min_commission = 0.0
    if cash is not None:
        ledger.cash = float(cash)


__all__ = ["FramesServed", "STEP", "fill_like_backbroker", "ib_symbol", "serve_frames",
           "series_from_frame"]
