"""What a stopping paper/live run does with its working orders (``risk.cancel_on_exit``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bt_ibkr.ib.store import IBStore
from bt_ibkr.live.config import LiveConfig
from bt_ibkr.live.journaled_broker import JournaledIBBroker


def settle_working_orders(cfg: LiveConfig, store: IBStore, broker: JournaledIBBroker,
                          daily: bool, seconds_left: float, say: Callable[[str], None]) -> None:
    """Handle the run's working orders as it stops; returns None and says what it did.

    Stream runs with ``risk.cancel_on_exit`` (not read-only) cancel them while the store is
    connected and wait for the gateway's confirmation: 10 s, cut to 5 s past the run's
    max-runtime (``seconds_left``: seconds until it; inf without one). Daily runs and the
    others leave them working (journaled). An order whose cancel is not confirmed is named.
    """
    working = broker.working_refs()
    if not working:
        return
    if daily or not cfg.risk.cancel_on_exit or cfg.read_only:
        say(f"leaving {len(working)} order(s) working at the gateway (journaled): "
            + ", ".join(working))
        return
    say(f"cancel_on_exit: cancelling {len(working)} working order(s)")
    if store.connected():
        for ref in working:
            store.cancel_order(ref)
        deadline = time.monotonic() + min(10.0, max(1.0, seconds_left + 5.0))
        while broker.working_refs() and time.monotonic() < deadline:
            broker.process_events()
            time.sleep(0.05)
    left = broker.working_refs()
    if left:
        say(f"!! could not confirm the cancel of {', '.join(left)}; check TWS")


__all__ = ["settle_working_orders"]
