"""IB's ExecutionFilter (reqExecutions) as the simulator applies it: empty fields match all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .records import SimExecution, parse_ib_datetime

__all__ = ["ExecFilter"]


@dataclass(frozen=True)
class ExecFilter:
    """The fields of an ExecutionFilter; an empty string (or clientId 0) matches everything.

    ``time_from`` is "YYYYMMDD HH:MM:SS [Zone]" (unparseable: no time bound, as TWS ignores
    it); ``side`` BUY/SELL or BOT/SLD.
    """

    client_id: int = 0
    acct_code: str = ""
    time_from: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""

    def select(self, executions: Iterable[SimExecution]) -> list[SimExecution]:
        """Return the executions the filter matches, in their order."""
        since = None
        if self.time_from:
            try:
                since = parse_ib_datetime(self.time_from, "UTC")
            except ValueError:
                since = None
        side = {"BUY": "BOT", "SELL": "SLD"}.get(self.side.upper(), self.side.upper())
        symbol, sec_type, exchange = (self.symbol.upper(), self.sec_type.upper(),
                                      self.exchange.upper())
        return [ex for ex in executions
                if (not self.client_id or ex.client_id == self.client_id)
                and (not self.acct_code or ex.account == self.acct_code)
                and (since is None or ex.time >= since)
                and (not symbol or ex.contract.symbol.upper() == symbol)
                and (not sec_type or ex.contract.secType.upper() == sec_type)
                and (not exchange or ex.exchange.upper() == exchange)
                and (not side or ex.side == side)]
