"""Reference data: the instruments the simulator knows and how TWS-style lookups resolve.

Instruments (conIds are IB's real ones where known):

* US stocks/ETFs SPY (ARCA), AAPL, MSFT, QQQ, NVDA, TLT (NASDAQ), IWM, GLD (ARCA):
  STK, SMART-routed, USD, America/New_York, RTH 09:30-16:00.
* The sample indices: ``^GSPC`` is served as ``SPX``/IND/CBOE and ``^IXIC`` as
  ``COMP``/IND/NASDAQ (Yahoo-style names are accepted as aliases of those symbols).
* A forex pair: EUR.USD CASH IDEALPRO (symbol ``EUR``, currency ``USD``, localSymbol
  ``EUR.USD``); its simulated session is 00:00-17:00 New York (the FX day ends at 17:00).
* Options: the SPY chain of ``gateway_sim.options`` (registered with ``add_lazy`` by the
  server and built on the first lookup that could concern options); a request's ``strike``
  and ``right`` (C/CALL, P/PUT) narrow the match.
* Futures: ES and NQ (CME), CL (NYMEX), GC (COMEX) and ZN (CBOT), listed by each exchange's
  rule (gateway_sim.futures_listing: contract months, last trade dates, multipliers, trading
  class): the next listed contracts after the clock's start date (two quarterlies for ES, NQ
  and ZN, three months of CL, eight of GC), timeZoneId America/Chicago, session 08:30-15:00
  (one session a day for every future: the simulator does not model Globex's nearly 24-hour
  day), and the contracts that expired in the three years before it. As on IB, an expired
  contract is found only by a request with ``includeExpired`` set, and only for 2 years after
  its expiry (see :data:`EXPIRED_YEARS`); otherwise the lookup finds nothing (error 200).

Lookup mirrors TWS: a conId > 0 wins; otherwise symbol (or localSymbol), secType, currency,
exchange (``SMART``, the primary exchange, any valid exchange, or empty), and for futures the
``lastTradeDateOrContractMonth``: 6 digits name the contract month (``202612`` is the December
contract, whatever month its trading ends in), 8 digits its last trade date, must all match.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bt_ibkr.gateway_sim.futures_listing import LISTINGS, futures_contracts, years_before
from bt_ibkr.gateway_sim.model import SimContract

NEW_YORK = "America/New_York"
CHICAGO = "America/Chicago"

#: Yahoo-style sample names -> the IB symbol they are served as.
SYMBOL_ALIASES = {"^GSPC": "SPX", "^IXIC": "COMP", "EURUSD=X": "EUR", "ES=F": "ES",
                  "NQ=F": "NQ", "CL=F": "CL", "GC=F": "GC", "ZN=F": "ZN"}


@dataclass(frozen=True)
class SessionSpec:
    """One trading session per business day: local ``open``-``close`` in ``tz`` (HHMM ints)."""

    tz: str
    open_hhmm: int
    close_hhmm: int

    @property
    def open_seconds(self) -> int:
        """Return the session open as seconds after local midnight."""
        return (self.open_hhmm // 100) * 3600 + (self.open_hhmm % 100) * 60

    @property
    def length(self) -> int:
        """Return the session length in seconds."""
        close = (self.close_hhmm // 100) * 3600 + (self.close_hhmm % 100) * 60
        return close - self.open_seconds


STOCK_SESSION = SessionSpec(NEW_YORK, 930, 1600)
FX_SESSION = SessionSpec(NEW_YORK, 0, 1700)
CME_EQUITY_SESSION = SessionSpec(CHICAGO, 830, 1500)


def _stock(con_id, symbol, primary, long_name, industry="", category="", stock_type="ETF"):
    return SimContract(
        conId=con_id, symbol=symbol, secType="STK", exchange="SMART", primaryExchange=primary,
        currency="USD", localSymbol=symbol, tradingClass=symbol if primary != "ARCA" else symbol,
        longName=long_name, timeZoneId=NEW_YORK, minTick=0.01,
        validExchanges="SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,NASDAQ,DRCTEDGE,BEX,BATS,EDGEA,IEX",
        industry=industry, category=category, stockType=stock_type, series=symbol,
    )


BASE_CONTRACTS: tuple[SimContract, ...] = (
    _stock(756733, "SPY", "ARCA", "SPDR S&P 500 ETF TRUST"),
    _stock(265598, "AAPL", "NASDAQ", "APPLE INC", "Technology", "Computers", "COMMON"),
    _stock(272093, "MSFT", "NASDAQ", "MICROSOFT CORP", "Technology", "Software", "COMMON"),
    _stock(320227571, "QQQ", "NASDAQ", "INVESCO QQQ TRUST SERIES 1"),
    _stock(9579970, "IWM", "ARCA", "ISHARES RUSSELL 2000 ETF"),
    _stock(4815747, "NVDA", "NASDAQ", "NVIDIA CORP", "Technology", "Semiconductors", "COMMON"),
    _stock(15547841, "TLT", "NASDAQ", "ISHARES 20+ YEAR TREASURY BOND"),
    _stock(51529211, "GLD", "ARCA", "SPDR GOLD SHARES"),
    SimContract(
        conId=416904, symbol="SPX", secType="IND", exchange="CBOE", primaryExchange="",
        currency="USD", localSymbol="SPX", tradingClass="SPX", longName="S&P 500 Stock Index",
        timeZoneId=NEW_YORK, minTick=0.01, orderTypes="", validExchanges="CBOE",
        series="^GSPC",
    ),
    SimContract(
        conId=11004968, symbol="COMP", secType="IND", exchange="NASDAQ", primaryExchange="",
        currency="USD", localSymbol="COMP", tradingClass="COMP",
        longName="NASDAQ Composite Index", timeZoneId=NEW_YORK, minTick=0.01, orderTypes="",
        validExchanges="NASDAQ", series="^IXIC",
    ),
    SimContract(
        conId=12087792, symbol="EUR", secType="CASH", exchange="IDEALPRO", primaryExchange="",
        currency="USD", localSymbol="EUR.USD", tradingClass="EUR.USD",
        longName="European Monetary Union Euro", timeZoneId=NEW_YORK, minTick=0.00005,
        orderTypes="LMT,MKT,STP,STP LMT,TRAIL,TRAIL LIMIT", validExchanges="IDEALPRO",
        series="EUR.USD",
    ),
)


def third_friday(year: int, month: int) -> date:
    """Return the third Friday of ``year``-``month`` (the quarterly equity-future expiry)."""
    first = date(year, month, 1)
    offset = (4 - first.weekday()) % 7
    return first + timedelta(days=offset + 14)


EXPIRED_YEARS = 2
"""IB keeps an expired future's definition and historical data for 2 years after its expiry
("Expired futures data is limited to two years after the expiration date", IB's Historical
Data Limitations, interactivebrokers.github.io/tws-api/historical_limitations.html), and finds
it only when the request sets ``includeExpired`` (the Contract field's documentation: "If set
to true, contract details requests and historical data queries can be performed pertaining to
expired futures contracts")."""


def es_futures(start: date, count: int = 2, expired_years: int = 0) -> list[SimContract]:
    """Return the next ``count`` quarterly ES contracts expiring after ``start``, preceded by
    those that expired in the ``expired_years`` years up to ``start`` (oldest first)."""
    return futures_contracts(LISTINGS["ES"], start, expired_years, count)


def listed_futures(start: date, expired_years: int = 0) -> list[SimContract]:
    """Return the contracts of every root of :data:`~bt_ibkr.gateway_sim.futures_listing.
    LISTINGS` around ``start`` (see :func:`~bt_ibkr.gateway_sim.futures_listing.
    futures_contracts`)."""
    return [c for listing in LISTINGS.values()
            for c in futures_contracts(listing, start, expired_years)]


def expiry_of(contract: SimContract) -> date | None:
    """Return a future's last trade date (None for other contracts)."""
    text = contract.lastTradeDateOrContractMonth
    if contract.secType != "FUT" or len(text) < 8:
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def listed(contract: SimContract, today: date, include_expired: bool) -> bool:
    """True when a lookup on ``today`` finds ``contract``: anything but an expired future;
    an expired future only with ``include_expired`` and for :data:`EXPIRED_YEARS` after its
    expiry."""
    expiry = expiry_of(contract)
    if expiry is None or expiry >= today:
        return True
    return include_expired and expiry >= years_before(today, EXPIRED_YEARS)


def session_for(contract: SimContract) -> SessionSpec:
    """Return the trading session the simulator uses for ``contract``."""
    if contract.secType == "CASH":
        return FX_SESSION
    if contract.secType == "FUT":
        return CME_EQUITY_SESSION
    return STOCK_SESSION


def hours_text(contract: SimContract, start: date, days: int = 7) -> str:
    """Return IB-style tradingHours/liquidHours text for ``days`` calendar days from ``start``.

    Format as TWS sends it: ``20240105:0930-20240105:1600;20240106:CLOSED;...``.
    """
    spec = session_for(contract)
    parts = []
    for k in range(days):
        d = start + timedelta(days=k)
        ds = d.strftime("%Y%m%d")
        if d.weekday() >= 5:
            parts.append(f"{ds}:CLOSED")
        else:
            parts.append(f"{ds}:{spec.open_hhmm:04d}-{ds}:{spec.close_hhmm:04d}")
    return ";".join(parts)


class ContractDB:
    """The simulator's instrument table with TWS-like lookup.

    ``ContractDB(start)`` builds the table (futures expiries relative to ``start``).
    """

    def __init__(self, start: datetime | date) -> None:
        start_date = start.date() if isinstance(start, datetime) else start
        self.start = start_date
        self._contracts: list[SimContract] = list(BASE_CONTRACTS) + listed_futures(
            start_date, expired_years=EXPIRED_YEARS + 1)
        self._by_conid = {c.conId: c for c in self._contracts}
        self._lazy: list[Callable[[], list[SimContract]]] = []

    def add_lazy(self, loader: Callable[[], list[SimContract]]) -> None:
        """Add the contracts ``loader()`` returns the first time a lookup could need them
        (e.g. an option chain priced from the market, built only when options are asked for)."""
        self._lazy.append(loader)

    def _load(self) -> None:
        while self._lazy:
            for c in self._lazy.pop(0)():
                self.add(c)

    def all(self) -> list[SimContract]:
        """Return every known contract."""
        self._load()
        return list(self._contracts)

    def by_conid(self, conId: int) -> SimContract | None:
        """Return the contract with ``conId`` or None."""
        found = self._by_conid.get(int(conId or 0))
        if found is None and self._lazy:
            self._load()
            found = self._by_conid.get(int(conId or 0))
        return found

    def by_symbol(self, symbol: str, secType: str = "") -> SimContract | None:
        """Return the first contract whose symbol (or alias) is ``symbol`` (optionally secType)."""
        found = self.matches(symbol=symbol, secType=secType)
        return found[0] if found else None

    def add(self, contract: SimContract) -> None:
        """Add (or replace by conId) an instrument, e.g. for a test scenario."""
        self._contracts = [c for c in self._contracts if c.conId != contract.conId] + [contract]
        self._by_conid[contract.conId] = contract

    def matches(
        self,
        conId: int = 0,
        symbol: str = "",
        secType: str = "",
        exchange: str = "",
        currency: str = "",
        lastTradeDateOrContractMonth: str = "",
        primaryExchange: str = "",
        localSymbol: str = "",
        strike: float | str = 0.0,
        right: str = "",
        include_expired: bool = False,
        today: date | None = None,
        **_ignored: object,
    ) -> list[SimContract]:
        """Return every contract matching the request the way TWS matches it (may be empty).

        A future that expired before ``today`` (default: the table's start date) matches only
        with ``include_expired``, and only for 2 years after its expiry (see :func:`listed`);
        a conId lookup follows the same rule when the request carries the flag (``today``
        given), and finds any contract otherwise (orders, market data by conId)."""
        if conId and int(conId) > 0:
            found = self.by_conid(int(conId))
            if found is not None and today is not None and \
                    not listed(found, today, include_expired):
                return []  # a request with the flag: an expired future needs it, by conId too
            return [found] if found else []
        if self._lazy and ((secType or "").upper() == "OPT" or strike or right):
            self._load()  # only a request that names an option builds the chain
        sym = (symbol or "").strip().upper()
        sym = SYMBOL_ALIASES.get(sym, sym)
        local = (localSymbol or "").strip().upper()
        if not sym and not local:
            return []
        out = []
        for c in self._contracts:
            if sym and c.symbol.upper() != sym and c.localSymbol.upper() != sym:
                continue
            if local and c.localSymbol.upper() != local:
                continue
            if secType and c.secType != secType.upper():
                continue
            if currency and c.currency != currency.upper():
                continue
            if exchange and not _exchange_ok(c, exchange.upper()):
                continue
            if primaryExchange and c.primaryExchange and \
                    c.primaryExchange != primaryExchange.upper():
                continue
            if lastTradeDateOrContractMonth and not _expiry_ok(c, lastTradeDateOrContractMonth):
                continue
            if not _option_ok(c, strike, right):
                continue
            if not listed(c, today or self.start, include_expired):
                continue
            out.append(c)
        return out

    def resolve(self, conId: int = 0, symbol: str = "", secType: str = "",
                exchange: str = "", currency: str = "",
                lastTradeDateOrContractMonth: str = "", **kw: object) -> SimContract | None:
        """Return the single matching contract, or None when there are 0 or several matches."""
        found = self.matches(conId=conId, symbol=symbol, secType=secType, exchange=exchange,
                             currency=currency,
                             lastTradeDateOrContractMonth=lastTradeDateOrContractMonth, **kw)
        return found[0] if len(found) == 1 else None

    def details_view(self, contract: SimContract, requested_exchange: str,
                     today: date) -> SimContract:
        """Return ``contract`` as contractDetails shows it for a request on ``requested_exchange``.

        The exchange echoes the request (SMART when the request left it empty for a stock),
        and trading/liquid hours cover the week from ``today``.
        """
        exchange = contract.exchange
        req = (requested_exchange or "").upper()
        if req and req != "GLOBEX" and _exchange_ok(contract, req):
            exchange = req
        hours = hours_text(contract, today)
        return dataclasses.replace(contract, exchange=exchange, tradingHours=hours,
                                   liquidHours=hours)


def _expiry_ok(contract: SimContract, asked: str) -> bool:
    """True when a request's ``lastTradeDateOrContractMonth`` names ``contract``: 6 digits are
    a future's contract month (CL March 2024, ``202403``, is CLH4, whose trading ends on
    2024-02-20), anything else a prefix of the last trade date (``20240220``)."""
    asked = asked.strip()
    if len(asked) == 6 and contract.contractMonth:
        return contract.contractMonth == asked
    return contract.lastTradeDateOrContractMonth.startswith(asked)


def _option_ok(contract: SimContract, strike: float | str, right: str) -> bool:
    """True when an option's strike and right match the request's (unset ones match all)."""
    k = float(strike or 0.0)
    if k and k > 0 and abs(contract.strike - k) > 1e-9:
        return False
    r = (right or "").strip().upper()[:1]
    return not (r in ("C", "P") and contract.right and contract.right != r)


def _exchange_ok(contract: SimContract, exchange: str) -> bool:
    if exchange in ("", contract.exchange, contract.primaryExchange):
        return True
    if contract.secType == "STK" and exchange == "SMART":
        return True
    if contract.secType == "FUT" and exchange == "GLOBEX":
        return True
    return exchange in contract.validExchanges.split(",")
