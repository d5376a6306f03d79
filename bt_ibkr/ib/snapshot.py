"""One snapshot price from IB, falling back to delayed data when there is no subscription."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bt_ibkr.errors import DataError, SourceUnavailableError
from bt_ibkr.ib.codes import NOT_SUBSCRIBED
from bt_ibkr.ib.connection import IBConnection

if TYPE_CHECKING:
    from ib_async import Contract

log = logging.getLogger("bt_ibkr.ib.snapshot")


async def snapshot_price(connection: IBConnection, contract: Contract, name: str,
                         timeout: float) -> tuple[float, bool]:
    """Return ``(price, delayed)`` from one market-data snapshot of ``contract`` (loop thread).

    Asks with the connection's market-data type; on "not subscribed" (354, 420, 10089, 10168,
    10197) asks again for delayed data (reqMarketDataType 3, remembered by the connection).
    ``delayed`` is what the gateway says it sent. The price is the ticker's market price, else
    the last trade, else the close. Raises DataError (refused, or no price in the answer),
    SourceUnavailableError (no answer within ``timeout`` s, or neither live nor delayed data).
    """
    from bt_ibkr.ib import client as ibc

    mdt = connection.market_data_type
    for _ in range(2):
        connection.set_market_data_type(mdt)
        try:
            tickers = await asyncio.wait_for(connection.ib.reqTickersAsync(contract), timeout)
        except ibc.ib_module.RequestError as exc:
            if exc.code in NOT_SUBSCRIBED and mdt in (1, 2):
                log.info("no live data for %s (%d); asking for delayed data", name, exc.code)
                mdt = 3 if mdt == 1 else 4
                continue
            raise DataError(f"IB snapshot for {name!r} failed: error {exc.code} "
                            f"{exc.message}") from exc
        except TimeoutError as exc:
            raise SourceUnavailableError(
                f"IB sent no snapshot for {name!r} within {timeout:g} s") from exc
        ticker = tickers[0]
        delayed = getattr(ticker, "marketDataType", mdt) in (3, 4)
        for value in (ticker.marketPrice(), ticker.last, ticker.close):
            if value is not None and value == value and value > 0:
                return float(value), delayed
        raise DataError(f"IB snapshot for {name!r} held no price (market closed and no close "
                        f"price?)")
    raise SourceUnavailableError(f"IB has neither live nor delayed data for {name!r}")
