"""Data shared by the simulator's parts: the instruments it knows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimContract:
    """One instrument the simulator serves (fields named as ib_async's Contract/ContractDetails).

    ``wire_fields()`` returns the 12-field contract block in client order.
    """

    conId: int
    symbol: str
    secType: str
    exchange: str = "SMART"
    primaryExchange: str = ""
    currency: str = "USD"
    localSymbol: str = ""
    tradingClass: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    longName: str = ""
    timeZoneId: str = "America/New_York"
    minTick: float = 0.01
    orderTypes: str = "LMT,MKT,STP,STP LMT,TRAIL,TRAIL LIMIT,MOC,LOC"
    validExchanges: str = "SMART,ARCA,NYSE,NASDAQ"
    tradingHours: str = ""
    liquidHours: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stockType: str = ""
    #: name of the price series that drives this contract (sample symbol or synthetic seed key)
    series: str = ""
    #: a future's contract month ``YYYYMM`` (ContractDetails.contractMonth), which a request's
    #: 6-digit ``lastTradeDateOrContractMonth`` names; it differs from the last trade date's
    #: month for CL (its trading ends in the month before); "" for other contracts
    contractMonth: str = ""

    def wire_fields(self) -> list[object]:
        """Return the 12 contract fields in client order (conId .. tradingClass)."""
        return [
            self.conId,
            self.symbol,
            self.secType,
            self.lastTradeDateOrContractMonth,
            self.strike,
            self.right,
            self.multiplier,
            self.exchange,
            self.primaryExchange,
            self.currency,
            self.localSymbol,
            self.tradingClass,
        ]


@dataclass(frozen=True)
class Quote:
    """The simulator's current market for one contract at simulated time ``time`` (UTC).

    ``open/high/low/close`` describe the bar that is forming or just completed at ``time``;
    ``last`` is the last trade price, ``bid``/``ask`` the inside quote.
    """

    time: object  # datetime (tz-aware UTC)
    open: float
    high: float
    low: float
    close: float
    last: float
    bid: float
    ask: float
    volume: float = 0.0
