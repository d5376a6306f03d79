"""The futures the simulated gateway lists: ES, NQ, CL, GC and ZN, by each exchange's rules.

One :class:`Listing` per root says where IB routes it (exchange, trading class), what one
contract is (multiplier, minimum tick), which contract months the exchange lists and how its
last trade date falls. :func:`futures_contracts` turns the table into the simulator's
contracts: the ``ahead`` listed contracts expiring after the clock's start date, preceded by
those that expired in the years before it (a lookup finds an expired one only with
``includeExpired``, for 2 years, see :func:`~bt_ibkr.gateway_sim.contracts_db.listed`).

The last trade dates are computed with the rule functions of the roll registry
(:mod:`bt_ibkr.futures.registry`), which follow the exchange rulebooks on the CME Group's
business days (weekends and the CMES/XNYS holidays):

* ES, NQ (CME, cash settled): "Trading can occur up to 9:30 a.m. Eastern Time on the 3rd
  Friday of the contract month" (CME Rulebook chapters 358 and 359, E-mini S&P 500 and E-mini
  Nasdaq-100), the business day before when that Friday is an exchange holiday. Listed: the
  March quarterly cycle (H, M, U, Z).
* CL (NYMEX, physically settled): "Trading terminates 3 business days before the 25th
  calendar day of the month prior to the contract month. If the 25th calendar day is not a
  business day, trading terminates 4 business days before the 25th calendar day" (NYMEX
  Rulebook chapter 200, Light Sweet Crude Oil). Listed: every month.
* GC (COMEX, physically settled): "Trading terminates on the third last business day of the
  contract month" (COMEX Rulebook chapter 113, Gold). COMEX lists the current and next two
  calendar months and the Feb/Apr/Jun/Aug/Oct/Dec months further out; the simulator lists
  every month for the near term (:attr:`Listing.ahead` contracts), the runner holds only the
  liquid even months (the registry's held cycle).
* ZN (CBOT, physically settled): "Trading terminates on the seventh business day preceding
  the last business day of the delivery month" (CBOT Rulebook chapter 19, 10-Year U.S.
  Treasury Note). Listed: the March quarterly cycle.

First notice days (GC, ZN: the last business day of the month before the contract month;
CL: the business day after its last trade) are not a field of IB's contract details, so the
simulator has nothing to serve for them: the runner takes them from the registry.

Each contract's prices are its root's underlying series at fair value (gateway_sim.
futures_prices); the series is named by the root (``SimContract.series``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from bt_ibkr.futures.registry import (
    CALENDAR,
    MONTH_CODES,
    crude_rule,
    third_friday_rule,
    third_last_business_day_rule,
    treasury_note_rule,
)
from bt_ibkr.gateway_sim.model import SimContract

__all__ = ["FUTURES_ORDER_TYPES", "LISTINGS", "Listing", "futures_contracts", "years_before"]

CHICAGO = "America/Chicago"
FUTURES_ORDER_TYPES = "LMT,MKT,STP,STP LMT,TRAIL,TRAIL LIMIT"


@dataclass(frozen=True)
class Listing:
    """How the exchange lists one futures root (see the module docstring).

    ``months``: the contract months listed (CME month letters). ``ahead``: how many listed
    contracts not yet expired on the start date are served. ``con_base``: the conIds of the
    root are ``con_base + year * 100 + month``. ``last_trade``: ``(year, month, calendar) ->
    last trade date``.
    """

    root: str
    exchange: str
    long_name: str
    multiplier: str
    min_tick: float
    months: str
    ahead: int
    con_base: int
    last_trade: Callable[[int, int, str], date]

    def contract(self, year: int, month: int) -> SimContract:
        """Return the ``year``-``month`` contract as IB describes it (localSymbol such as
        ``CLH4``, the trading class is the root)."""
        expiry = self.last_trade(year, month, CALENDAR)
        return SimContract(
            conId=self.con_base + year * 100 + month, symbol=self.root, secType="FUT",
            exchange=self.exchange, primaryExchange="", currency="USD",
            localSymbol=f"{self.root}{MONTH_CODES[month - 1]}{year % 10}",
            tradingClass=self.root, lastTradeDateOrContractMonth=expiry.strftime("%Y%m%d"),
            multiplier=self.multiplier, longName=self.long_name, timeZoneId=CHICAGO,
            minTick=self.min_tick, orderTypes=FUTURES_ORDER_TYPES,
            validExchanges=self.exchange, series=self.root, contractMonth=f"{year:04d}{month:02d}")


LISTINGS: dict[str, Listing] = {x.root: x for x in (
    Listing("ES", "CME", "E-mini S&P 500", "50", 0.25, "HMUZ", 2, 700_000_000,
            third_friday_rule),
    Listing("NQ", "CME", "E-mini Nasdaq-100", "20", 0.25, "HMUZ", 2, 701_000_000,
            third_friday_rule),
    Listing("CL", "NYMEX", "Light Sweet Crude Oil", "1000", 0.01, MONTH_CODES, 3, 702_000_000,
            crude_rule),
    Listing("GC", "COMEX", "Gold", "100", 0.1, MONTH_CODES, 8, 703_000_000,
            third_last_business_day_rule),
    Listing("ZN", "CBOT", "10-Year T-Note", "1000", 0.015625, "HMUZ", 2, 704_000_000,
            treasury_note_rule),
)}
"""The listed roots by symbol."""


def years_before(day: date, years: int) -> date:
    """Return ``day`` ``years`` years earlier (Feb 29 -> Feb 28)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def futures_contracts(listing: Listing, start: date, expired_years: int = 0,
                      ahead: int | None = None) -> list[SimContract]:
    """Return the next ``ahead`` (default ``listing.ahead``) contracts of ``listing``
    expiring after ``start``, preceded by those that expired in the ``expired_years`` years
    up to ``start`` (oldest first)."""
    want = listing.ahead if ahead is None else ahead
    listed = [MONTH_CODES.index(c) + 1 for c in listing.months]
    first = years_before(start, expired_years)
    out: list[SimContract] = []
    live = 0
    year, month = start.year - expired_years, 1
    while live < want:
        if month in listed:
            c = listing.contract(year, month)
            expiry = c.lastTradeDateOrContractMonth
            if expiry > f"{first:%Y%m%d}":
                out.append(c)
                live += expiry > f"{start:%Y%m%d}"
        month += 1
        if month > 12:
            month, year = 1, year + 1
    return out
