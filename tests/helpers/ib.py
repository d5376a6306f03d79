"""A live Cerebro (IBData 5-second bars + IBBroker) against the gateway simulator, in lockstep,
with a scripted Strategy: the IB broker tests and the order-option tests share it."""

from __future__ import annotations

import threading

import backtrader as bt

from bt_ibkr.ib.store import IBStore
from feeds import IBData  # noqa: F401 - registers the IB feed that store.getdata returns
from helpers.sim import poll_until as wait_until

HANG = 60
CLIENT = 41


class Scripted(bt.Strategy):
    """Runs ``script[bar_number](strategy)`` and records notifications."""

    params = (("rec", None), ("script", None))

    def __init__(self):
        self.rec = self.p.rec
        self.rec.update(n=0, orders=[], refs=[], trades=[], store=[], first_position=None,
                        handles={})

    def notify_order(self, order):
        if order.orderRef not in self.rec["refs"]:
            self.rec["refs"].append(order.orderRef)  # in the order the orders were made
        self.rec["orders"].append(dict(
            ref=order.orderRef, status=order.getstatusname(), size=order.executed.size,
            price=order.executed.price, comm=order.executed.comm,
            reason=order.info.get("reason", None), code=order.info.get("code", None),
            exbits=[(b.size, b.price) for b in order.executed.exbits],
        ))

    def notify_trade(self, trade):
        if trade.isclosed:
            self.rec["trades"].append((trade.pnl, trade.pnlcomm))

    def notify_store(self, msg, *args, **kwargs):
        self.rec["store"].append(msg)

    def next(self):
        n = self.rec["n"] = self.rec["n"] + 1
        if self.rec["first_position"] is None:
            self.rec["first_position"] = self.getposition().size
        action = (self.p.script or {}).get(n)
        if action is not None:
            action(self)
        self.rec["cash"] = self.broker.getcash()
        self.rec["value"] = self.broker.getvalue()
        self.rec["position"] = self.getposition().size


class Live:
    """A live cerebro (IBData 5-second bars + IBBroker) in a worker thread, in lockstep.
    ``strategy``: a Scripted subclass to run instead of Scripted."""

    def __init__(self, sim, script, client_id=CLIENT, dataname="AAPL-STK-SMART-USD",
                 strategy=None, **data_kw):
        self.sim = sim
        self.rec = {}
        self.store = IBStore(port=sim.port, clientId=client_id, timeout=0.2, reconnect=-1,
                             connect_timeout=2)
        self.cerebro = bt.Cerebro(stdstats=False)
        kw = dict(rtbar=True, timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.05,
                  backfill_start=False)
        kw.update(data_kw)
        self.data = self.store.getdata(dataname=dataname, **kw)
        self.cerebro.adddata(self.data)
        self.cerebro.setbroker(self.store.getbroker())
        self.cerebro.addstrategy(strategy or Scripted, rec=self.rec, script=script)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.result = self.cerebro.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            self.error = exc

    def __enter__(self):
        n = len(self.sim.requests_named("reqRealTimeBars"))
        self.thread.start()
        wait_until(lambda: len(self.sim.requests_named("reqRealTimeBars")) > n or self.error,
                   what="live subscription at the gateway")
        if self.error:
            raise self.error
        return self

    def step(self, bars=1):
        """Advance the simulator bar by bar, waiting each time for the strategy's next()."""
        for _ in range(bars):
            n = self.rec.get("n", 0)
            self.sim.advance(seconds=5)
            wait_until(lambda n=n: self.rec.get("n", 0) > n or self.error, what="next()")
            if self.error:
                raise self.error

    def until(self, pred, what="condition", max_bars=200):
        """Step bar by bar until ``pred()`` (notify_order runs at the strategy's next bar)."""
        for _ in range(max_bars):
            if pred():
                return
            self.step()
        raise AssertionError(f"{what} not reached within {max_bars} bars")

    def __exit__(self, *exc):
        self.cerebro.runstop()
        self.thread.join(HANG)
        self.store.close()
        IBStore.reset_default()
        assert not self.thread.is_alive()
        if self.error is not None and exc[0] is None:
            raise self.error

    def ref(self, n):
        """The orderRef of the ``n``-th order the strategy made (None before it exists)."""
        refs = self.rec.get("refs", [])
        return refs[n - 1] if len(refs) >= n else None

    def statuses(self, ref):
        return [o["status"] for o in self.rec["orders"] if ref is not None and o["ref"] == ref]
