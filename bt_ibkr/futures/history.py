"""IB's continuous futures history (secType CONTFUT), the one way IB serves it.

IB refuses an explicit end time on a CONTFUT history request (error 10339, "Setting end
date/time for continuous future security type is not allowed."), so the request always ends
"now" (``endDateTime=""``) and one request returns at most IB's maximum duration for the bar
size. Before asking, the ContFuture is qualified: IB answers with the front contract's conId,
expiry and localSymbol, which the result reports as the contract a live position would hold.

:func:`contfut_history` runs on an :class:`~bt_ibkr.ib.connection.IBConnection`'s loop with a
:class:`~bt_ibkr.ib.historical.HistoricalData` (paced and retried like every request);
``IBKRDataProvider.get_continuous_future`` is the blocking entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bt_ibkr.errors import UnknownSymbolError
from bt_ibkr.futures.registry import FutureSpec
from bt_ibkr.ib.bars import is_intraday
from bt_ibkr.ib.historical import Chunk
from bt_ibkr.ib.parsing import bars_frame
from bt_ibkr.utc import utc_now
from bt_ibkr.validation import validate_bars

__all__ = ["ContFutHistory", "contfut_history"]


@dataclass(frozen=True)
class ContFutHistory:
    """IB's continuous series (``frame``, canonical bars, attrs source "ibkr") and the front
    contract IB stitched it to: ``front_local_symbol`` (e.g. "ESH4"), ``front_con_id`` and
    ``front_expiry`` (YYYYMMDD)."""

    frame: pd.DataFrame
    front_local_symbol: str
    front_con_id: int
    front_expiry: str


async def contfut_history(connection: Any, history: Any, spec: FutureSpec, duration: str,
                          bar_size: str, what: str = "TRADES",
                          use_rth: bool = True) -> ContFutHistory:
    """Qualify ``ContFuture(spec.root, spec.exchange, spec.currency)`` and request its history
    with an empty end time (see the module docstring).

    Raises UnknownSymbolError when IB knows no such continuous future or returns no bars;
    the request's own errors as :meth:`HistoricalData.request` raises them.
    """
    from bt_ibkr.ib import client as ibc

    await connection.ensure_connected(connection.request_timeout)
    contract = ibc.ib_module.ContFuture(spec.root, exchange=spec.exchange,
                                        currency=spec.currency)
    try:
        qualified = await connection.ib.qualifyContractsAsync(contract)
    except ibc.ib_module.RequestError:  # error 200: no security definition
        qualified = []
    if not qualified or qualified[0] is None or not contract.conId:
        raise UnknownSymbolError(f"IB has no continuous future {spec.root} on {spec.exchange} "
                                 f"({spec.currency})")
    now = utc_now()
    chunk = Chunk(start=now, end=now, duration=" ".join(duration.upper().split()))
    bars = await history.request(contract, chunk, bar_size, what, use_rth,
                                 name=f"{spec.root} CONTFUT", end_now=True)
    if not bars:
        raise UnknownSymbolError(f"IB returned no {bar_size} bars for the continuous future "
                                 f"{spec.root} over {duration!r}")
    intraday = is_intraday(bar_size)
    frame = validate_bars(bars_frame(bars, intraday), f"ibkr {spec.root} CONTFUT",
                          intraday=intraday,
                          attrs={"symbol": spec.root, "source": "ibkr", "tz": "UTC",
                                 "adjusted": False, "front": contract.localSymbol})
    return ContFutHistory(frame, contract.localSymbol, int(contract.conId),
                          contract.lastTradeDateOrContractMonth)
