"""What the gateway still has of an account at start-up: its orders and its executions.

The two coroutines run on the connection's loop (``ib``: the client object) and return
snapshots of ``account`` only; :meth:`~bt_ibkr.ib.store.IBStore.order_snapshots` and
:meth:`~bt_ibkr.ib.store.IBStore.exec_snapshots` run them within the store's time limits, for
the start-up reconciliation (:mod:`bt_ibkr.live.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bt_ibkr.ib.parsing import ExecSnapshot, OrderSnapshot, exec_snapshot, order_snapshot

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["ask_executions", "ask_orders"]

log = logging.getLogger("bt_ibkr.ib.store")


async def ask_orders(ib: IB, account: str) -> list[OrderSnapshot]:
    """Return the gateway's open and completed orders of ``account``.

    Open orders are every API client's (``reqAllOpenOrders``), each with the clientId that
    placed it (``client_id``); completed orders carry none (IB's completedOrder message has no
    clientId: None). Completed orders are left out (with a warning) when the gateway cannot
    list them.
    """
    working = list(await ib.reqAllOpenOrdersAsync())
    done: list = []
    try:
        done = list(await ib.reqCompletedOrdersAsync(True))
    except Exception:  # noqa: BLE001 - older gateways: open orders + executions suffice
        log.warning("reqCompletedOrders failed; reconciling without completed orders")
    snaps = [order_snapshot(t) for t in working]
    snaps += [replace(order_snapshot(t), client_id=None) for t in done]
    return [s for s, t in zip(snaps, working + done, strict=True)
            if not getattr(t.order, "account", "") or t.order.account == account]


async def ask_executions(ib: IB, account: str,
                         client_ids: Iterable[int] = ()) -> list[ExecSnapshot]:
    """Return every execution the gateway still has for ``account``.

    IB keeps them from the last day up to a week (a TWS setting). No time filter: our clock
    and the gateway's may differ, and a filter on ours would hide fills made while away. One
    request with the filter's clientId 0 (every client's executions), and one more per id in
    ``client_ids`` (the clientIds that placed the journal's orders), so the fills of an earlier
    run under another clientId come back however a gateway reads clientId 0; deduplicated by
    execId.
    """
    from bt_ibkr.ib import client as ibc

    filters = [ibc.ExecutionFilter(acctCode=account)]
    filters += [ibc.ExecutionFilter(clientId=int(c), acctCode=account)
                for c in sorted({int(c) for c in client_ids}) if int(c) > 0]
    fills: dict[str, Any] = {}
    for flt in filters:
        for f in await ib.reqExecutionsAsync(flt):
            fills.setdefault(f.execution.execId, f)
    # an execution the client saw before (at connect, or live) comes back as a new object
    # without its commission; ib_async keeps the report on the one it saw first
    known = {f.execution.execId: f for f in ib.fills()}
    chosen = [known.get(x, f) for x, f in fills.items()]
    return [exec_snapshot(f) for f in chosen
            if not getattr(f.execution, "acctNumber", "") or f.execution.acctNumber == account]
