"""Equity and index options in the simulated gateway: deterministic SPY and SPX chains, prices
and greeks.

What IB Gateway does, and this module reproduces:

- ``reqSecDefOptParams`` (78) for an underlying (symbol, secType, conId) answers one
  ``securityDefinitionOptionParameter`` (75) row per exchange the class trades on
  (``[75, reqId, exchange, underConId, tradingClass, multiplier, nExp, exp..., nStrikes,
  strike...]``), then ``securityDefinitionOptionParameterEnd`` (76). The union of strikes over
  all expirations is sent, as IB does: not every (expiry, strike) pair need exist. An
  underlying without options gets just the End message (the simulator's assumption; not
  checked against IB).
- reqContractDetails / reqMktData / placeOrder for ``Option("SPY", expiry, strike, right,
  "SMART")`` resolve to one contract (multiplier "100", tradingClass "SPY", OCC localSymbol
  ``SPY   240119C00470000``).
- reqMktData on an option sends the price ticks and, from the first clock step after the
  subscription (never in the initial burst, so a client sees ``Ticker.modelGreeks is None``
  first, as with IB), ``tickOptionComputation`` (21) for bid/ask/last/model (10/11/12/13;
  80-83 delayed). A field IB could not compute is sent as IB's sentinel: -1 for implied vol,
  option price, pvDividend and underlying price, -2 for delta, gamma, vega and theta.
- An option position still held after its expiry is exercised, assigned, cash-settled or
  lapses at the next clock step, as IB and the OCC do: :mod:`bt_ibkr.gateway_sim.option_expiry`
  (the rules and how the API reports them).

The chain (``spy_chain``): the next four Friday expiries after the clock's start plus the
next two monthly (third-Friday) expiries, strikes every $5 from 80% to 120% of SPY's close
on the start day (rounded to $5). Expiries that pass during a run stay listed. SPX (an index, secType IND) has a chain
built the same way with strikes every $50 (:data:`CHAINS`); its options settle in cash.

The price model (stated, not IB's): Black-Scholes on the underlying's simulated price with a
fixed volatility ``OPTION_VOL`` (20%), rate ``OPTION_RATE`` (0), no dividends; time to expiry
runs to 16:00 New York on the expiry date. Because the price is monotonic in the underlying at a
fixed time, an option bar's high/low are the prices at the underlying's high/low (swapped for
puts). Option volume is not simulated (0). History (reqHistoricalData) is the underlying's bars
priced at each bar's end (daily bars at 16:00 New York), none after the expiry.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bt_ibkr.gateway_sim.contracts_db import BASE_CONTRACTS, NEW_YORK, third_friday
from bt_ibkr.gateway_sim.model import Quote, SimContract
from bt_ibkr.gateway_sim.option_expiry import OptionExpiry, expiry_close_epoch
from bt_ibkr.gateway_sim.wire import FieldReader
from bt_ibkr.options.pricing import bs_greeks, bs_price, implied_vol

__all__ = ["OPTION_RATE", "OPTION_VOL", "bs_greeks", "bs_price", "expiry_close_epoch", "install",
           "option_bar",
           "option_day_stats", "option_history", "option_quote", "spy_chain", "underlying_of", "years_to_expiry"]

#: the simulated chains: (underlying symbol, its secType, strike step, first conId). SPX's
#: options are settled in cash on the index's close at expiry (PM settlement, as SPXW; the
#: AM-settled monthly SPX's opening quotation is not simulated)
CHAINS = (("SPY", "STK", 5.0, 800_000_000), ("SPX", "IND", 50.0, 810_000_000))
OPTION_VOL = 0.20
OPTION_RATE = 0.0
MULTIPLIER = "100"
CHAIN_EXCHANGES = ("SMART", "CBOE", "AMEX")
OPTION_EXCHANGES = "SMART,AMEX,BATS,BOX,CBOE,CBOE2,EDGX,EMERALD,GEMINI,IBUSOPT,ISE,MERCURY," \
    "MIAX,NASDAQBX,NASDAQOM,PEARL,PHLX,PSE"
_NY = ZoneInfo(NEW_YORK)
log = logging.getLogger("bt_ibkr.gateway_sim")
_YEAR = 365.0 * 86400.0
#: the not-computed sentinels IB sends in tickOptionComputation
NOT_COMPUTED = -1.0
NOT_COMPUTED_GREEK = -2.0


def underlying_of(contract: SimContract) -> SimContract | None:
    """Return the stock (else the index) an option on ``contract.symbol`` is written on, or
    None."""
    for sec in ("STK", "IND"):
        for c in BASE_CONTRACTS:
            if c.symbol == contract.symbol and c.secType == sec:
                return c
    return None


def years_to_expiry(contract: SimContract, t: int) -> float:
    """Return the time in years from epoch ``t`` to 16:00 New York on the expiry (>= 0)."""
    d = datetime.strptime(contract.lastTradeDateOrContractMonth[:8], "%Y%m%d").date()
    end = datetime.combine(d, time(16, 0), _NY).timestamp()
    return max(end - t, 0.0) / _YEAR


def _tick(x: float, tick: float = 0.01) -> float:
    return max(round(round(x / tick) * tick, 10), 0.0)


def _price(contract: SimContract, spot: float, t: int) -> float:
    return _tick(bs_price(spot, contract.strike, years_to_expiry(contract, t), contract.right,
                          OPTION_VOL, OPTION_RATE), contract.minTick or 0.01)


def option_quote(market: Any, contract: SimContract, t: int) -> Quote | None:
    """Return the option's market at epoch ``t`` priced from the underlying's quote."""
    und = underlying_of(contract)
    uq = market.quote_at(und, t) if und is not None else None
    if uq is None:
        return None
    o, c, last = (_price(contract, x, t) for x in (uq.open, uq.close, uq.last))
    a, b = _price(contract, uq.high, t), _price(contract, uq.low, t)
    tick = contract.minTick or 0.01
    return Quote(time=uq.time, open=o, high=max(a, b), low=min(a, b), close=c, last=last,
                 bid=max(round(last - tick, 10), 0.0), ask=round(last + tick, 10), volume=0.0)


def option_bar(market: Any, contract: SimContract, t0: int, t1: int) -> Any:
    """Return the option's bar over [t0, t1) from the underlying's bar (None: no data)."""
    und = underlying_of(contract)
    bar = market.window(und, t0, t1) if und is not None else None
    if bar is None:
        return None
    o, c = _price(contract, bar.open, t1), _price(contract, bar.close, t1)
    a, b = _price(contract, bar.high, t1), _price(contract, bar.low, t1)
    return dataclasses.replace(bar, open=o, high=max(a, b), low=min(a, b), close=c,
                               volume=0.0, wap=c, count=0)


def option_history(market: Any, contract: SimContract, end: int, duration: str,
                   bar_size: str, now: int) -> list:
    """Return the option's TRADES bars of a reqHistoricalData request: the underlying's bars
    priced at each bar's end (a daily bar at 16:00 New York of its day), only bars that start
    before the expiry's 16:00 (IB has no prices after expiry). Raises what the underlying's
    request raises (HistoricalDataError)."""
    und = underlying_of(contract)
    if und is None:
        return []
    from bt_ibkr.ib.bars import bar_step
    step = bar_step(" ".join(bar_size.split()))
    expiry_end = expiry_close_epoch(contract)
    out = []
    for bar in market.historical(und, end, duration, bar_size, "TRADES", now):
        if bar.start >= expiry_end:
            break
        if step:
            t = bar.start + step
        else:
            t = int(datetime.combine(bar.day, time(16, 0), _NY).timestamp()) if bar.day \
                else bar.start
        t = min(t, now, expiry_end)
        o, c = _price(contract, bar.open, t), _price(contract, bar.close, t)
        a, b = _price(contract, bar.high, t), _price(contract, bar.low, t)
        out.append(dataclasses.replace(bar, open=o, high=max(a, b), low=min(a, b), close=c,
                                       volume=0.0, wap=c, count=0))
    return out


def option_day_stats(market: Any, contract: SimContract, t: int) -> dict[str, float] | None:
    """Return the session's open/high/low/prior close of the option, priced at ``t``."""
    und = underlying_of(contract)
    st = market.day_stats(und, t) if und is not None else None
    if st is None:
        return None
    a, b = _price(contract, st["high"], t), _price(contract, st["low"], t)
    return {"open": _price(contract, st["open"], t), "high": max(a, b), "low": min(a, b),
            "close": _price(contract, st["close"], t), "volume": 0.0}


def computation_fields(req_id: int, tick_type: int, contract: SimContract, price: float,
                       spot: float, t: int) -> list:
    """Return tickOptionComputation (21) for ``price`` of ``contract`` with the underlying at
    ``spot`` (implied vol from ``price``; IB's sentinels for what cannot be computed)."""
    years = years_to_expiry(contract, t)
    iv = implied_vol(price, spot, contract.strike, years, contract.right)
    greeks = bs_greeks(spot, contract.strike, years, contract.right, iv, OPTION_RATE) \
        if iv is not None else None
    g = greeks or {}
    return [21, req_id, tick_type, 1 if tick_type in (13, 83) else 0,
            iv if iv is not None else NOT_COMPUTED,
            g.get("delta", NOT_COMPUTED_GREEK), price if price > 0 else NOT_COMPUTED,
            0.0, g.get("gamma", NOT_COMPUTED_GREEK), g.get("vega", NOT_COMPUTED_GREEK),
            g.get("theta", NOT_COMPUTED_GREEK), spot]


def send_computations(market: Any, conn: Any, req_id: int, contract: SimContract, t: int,
                      delayed: bool) -> None:
    """Send the bid/ask/last/model tickOptionComputation messages of one subscription."""
    und = underlying_of(contract)
    uq = market.quote_at(und, t) if und is not None else None
    q = market.quote_at(contract, t)
    if uq is None or q is None:
        return
    years = years_to_expiry(contract, t)
    model = bs_price(uq.last, contract.strike, years, contract.right, OPTION_VOL, OPTION_RATE)
    base = 80 if delayed else 10
    for k, price in enumerate((q.bid, q.ask, q.last, model)):
        conn.send(computation_fields(req_id, base + k, contract, price, uq.last, t))


def _fridays_after(start: date, count: int) -> list[date]:
    d = start + timedelta(days=1)
    while d.weekday() != 4:
        d += timedelta(days=1)
    return [d + timedelta(days=7 * k) for k in range(count)]


def _monthlies_after(start: date, count: int) -> list[date]:
    out, y, m = [], start.year, start.month
    while len(out) < count:
        f = third_friday(y, m)
        if f > start:
            out.append(f)
        m += 1
        if m > 12:
            y, m = y + 1, 1
    return out


def spy_chain(start: date, spot: float, underlying: SimContract, step: float = 5.0,
              base_con_id: int = 800_000_000) -> list[SimContract]:
    """Return the simulated option contracts on ``underlying`` (see the module docstring):
    strikes every ``step``, conIds from ``base_con_id``."""
    expiries = sorted(set(_fridays_after(start, 4)) | set(_monthlies_after(start, 2)))
    center = step * round(spot / step)
    lo, hi = step * math.floor(0.8 * center / step), step * math.ceil(1.2 * center / step)
    strikes = [lo + step * k for k in range(int(round((hi - lo) / step)) + 1)]
    out = []
    for i, exp in enumerate(expiries):
        ymd = exp.strftime("%Y%m%d")
        for j, k in enumerate(strikes):
            for r, right in enumerate("CP"):
                sym = underlying.symbol
                local = f"{sym:<6}{exp:%y%m%d}{right}{int(round(k * 1000)):08d}"
                out.append(SimContract(
                    conId=base_con_id + i * 10_000 + j * 2 + r, symbol=sym, secType="OPT",
                    exchange="SMART", currency="USD", localSymbol=local, tradingClass=sym,
                    lastTradeDateOrContractMonth=ymd, strike=k, right=right,
                    multiplier=MULTIPLIER, longName=underlying.longName,
                    timeZoneId=NEW_YORK, minTick=0.01, orderTypes="LMT,MKT,STP,STP LMT",
                    validExchanges=OPTION_EXCHANGES, series=underlying.series or sym))
    return out


class OptionsDesk:
    """Installs the chain into a GatewayServer and serves reqSecDefOptParams (78)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.chains: dict[int, list[SimContract]] = {}
        self._start = server.clock.now()  # the chain is listed as of the server's start
        #: settles option positions past their expiry (exercise, assignment, lapse)
        self.expiry = OptionExpiry(server, underlying_of)

    def install(self) -> None:
        """Register the SPY chain (built, priced at the start day's close, on the first lookup
        that could concern options) and the 78 handler."""
        self.server.contracts.add_lazy(self._build)
        self.server.handlers[78] = self._on_sec_def_opt_params

    def _build(self) -> list[SimContract]:
        out: list[SimContract] = []
        for symbol, sec, step, base in CHAINS:
            und = next((c for c in BASE_CONTRACTS if c.symbol == symbol and c.secType == sec),
                       None)
            start = self._start
            quote = self.server.market.quote_at(und, int(start.timestamp())) if und else None
            if und is None or quote is None:
                continue
            chain = spy_chain(start.astimezone(_NY).date(), quote.last, und, step, base)
            self.chains[und.conId] = chain
            out.extend(chain)
        return out

    def on_step(self, t: int) -> None:
        """At a clock step ``t``: settle every option position past its expiry
        (:class:`~bt_ibkr.gateway_sim.option_expiry.OptionExpiry`)."""
        self.expiry.on_step(t)

    def _on_sec_def_opt_params(self, conn: Any, reader: FieldReader) -> None:
        req_id = reader.int()
        symbol = reader.str().upper()
        reader.str()  # futFopExchange: only for future options
        sec_type = reader.str().upper()
        con_id = reader.int()
        und = self.server.contracts.by_conid(con_id)
        self.server.contracts.all()  # builds the chain on first use
        chain = self.chains.get(con_id, []) if und is not None and und.symbol == symbol \
            and und.secType == sec_type else []
        if chain:
            expiries = sorted({c.lastTradeDateOrContractMonth for c in chain})
            strikes = sorted({c.strike for c in chain})
            for exch in CHAIN_EXCHANGES:
                conn.send([75, req_id, exch, con_id, chain[0].tradingClass, MULTIPLIER,
                              len(expiries), *expiries, len(strikes), *strikes])
        conn.send([76, req_id])


def install(server: Any) -> OptionsDesk:
    """Install the options desk on ``server`` and return it."""
    desk = OptionsDesk(server)
    desk.install()
    return desk


def now_epoch(server: Any) -> int:
    """Return the server's simulated now as epoch seconds."""
    return int(math.floor(server.clock.now().astimezone(UTC).timestamp()))
