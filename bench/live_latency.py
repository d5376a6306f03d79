"""Bar-to-order latency of the live path: simulator -> IBData -> Strategy -> IBBroker -> simulator.

``python -m bench.live_latency [--bars N] [--seed S]`` prints ONE JSON object:

* ``p50_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``: from the moment the gateway simulator sends a
  5-second real-time bar (a timestamp taken in its send path) to the moment the order the
  Strategy placed on that bar arrives back at the simulator (a timestamp where it dispatches
  the placeOrder message), over ``bars`` bars. The path crosses the real ib_async client, the
  store's event-loop thread, the feed queue, backtrader's live loop, IBBroker and the socket.
* ``baseline_p50_ms``: round trip of a bare ``reqCurrentTime`` (the connection's ``server_time``) on
  the same connection, in the same run (the ratio ``p50_over_baseline`` is what to compare across machines).
* ``hops_p50_ms``: the median of each hop of the trip: ``to_strategy`` (the simulator's send
  to the start of the Strategy's ``next()``: the socket, ib_async decoding, the store's loop
  thread, the feed queue and backtrader's loop), ``strategy_and_submit`` (``next()`` until the
  order is handed to the loop thread: the Strategy and IBBroker) and ``to_gateway`` (from there
  to the simulator: the loop thread's wake-up, ib_async encoding and the socket).
* ``bars``, ``client`` (ib_async or ib_insync), ``target_p99_ms`` (2.5) and
  ``target_p50_over_baseline`` (2.0).

The simulator is driven one bar at a time (advance 5 s, wait for that bar's order), so every
sample measures one bar's trip, not a queue; bars are paced at 30 per second because the IB
client throttles itself at 45 requests per second (real bars come every 5 s). Both timestamps
are ``time.perf_counter()`` in this one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import backtrader as bt

from bt_ibkr.gateway_sim import GatewaySim
from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.store import IBStore
from feeds.ibdata import IBData  # noqa: F401  (registers itself: store.getdata makes IBData)

ORDER_REF_FIELD = 26  # placeOrder: [3, orderId, contract x12, secIdType, secId, action, qty,
#                       orderType, lmtPrice, auxPrice, tif, ocaGroup, account, openClose,
#                       origin, orderRef, transmit, ...] (server version 178)
HANG = 30.0
#: seconds between simulated bars. ib_async (like TWS) throttles the client at 45 requests
#: per second and queues the rest for up to a second; real bars come every 5 s, so the
#: benchmark paces its fast-forwarded bars below that limit instead of measuring the queue.
PACE = 1 / 30


class OnePerBar(bt.Strategy):
    """Places one 1-share market order per live bar (alternating sides), tagged by bar time."""

    params = (("tag", "lat"), ("marks", None))

    def __init__(self):
        self.side = 1

    def next(self):
        start = time.perf_counter()
        if self.data._laststatus != self.data.LIVE:
            return
        stamp = int(round((self.data.datetime[0] - 719163.0) * 86400.0))  # end of bar, epoch s
        ref = f"{self.p.tag}-{stamp}"
        if self.side > 0:
            self.buy(size=1, orderRef=ref)
        else:
            self.sell(size=1, orderRef=ref)
        if self.p.marks is not None:  # next() began / the order was handed to the loop thread
            self.p.marks[stamp] = (start, time.perf_counter())
        self.side = -self.side


def _install_hooks(sim: GatewaySim,
                   landed: threading.Event) -> tuple[dict[int, float], dict[int, float]]:
    """Timestamp bar sends and placeOrder arrivals inside the simulator (no file edits); set
    ``landed`` at each arrival, so the driver waits on it instead of polling for the GIL."""
    server = sim.server
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    orig_send = server.market_data.send_rt_bar

    def send_rt_bar(conn, sub, t):
        sent.setdefault(int(t), time.perf_counter())
        return orig_send(conn, sub, t)

    def on_message(conn, fields):
        if fields[0] == "3" and len(fields) > ORDER_REF_FIELD:
            now = time.perf_counter()
            ref = fields[ORDER_REF_FIELD]
            if ref.startswith("lat-"):
                arrived.setdefault(int(ref.split("-", 1)[1]), now)
                landed.set()

    server.market_data.send_rt_bar = send_rt_bar
    server.on_message.append(on_message)
    return sent, arrived


def _baseline(store: IBStore, n: int = 100) -> list[float]:
    async def probe():
        import asyncio

        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await store.connection.server_time()
            out.append((time.perf_counter() - t0) * 1000.0)
            await asyncio.sleep(PACE)  # stay under the client's 45 requests/s throttle
        return out

    return store.run(probe(), timeout=120)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


def run(bars: int = 500, seed: int = 0) -> dict:
    """Run the benchmark and return the result dict (see the module docstring)."""
    sim = GatewaySim(data="synthetic", seed=seed).start()
    landed = threading.Event()
    sent, arrived = _install_hooks(sim, landed)
    marks: dict[int, tuple[float, float]] = {}
    store = IBStore(port=sim.port, clientId=77, timeout=0.5)
    cerebro = bt.Cerebro(stdstats=False)
    data = store.getdata(dataname="AAPL-STK-SMART-USD", rtbar=True, backfill_start=False,
                         timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.5)
    cerebro.adddata(data)
    cerebro.setbroker(store.getbroker())
    cerebro.addstrategy(OnePerBar, marks=marks)
    errors: list[BaseException] = []

    def target():
        try:
            cerebro.run()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    latencies: list[float] = []
    hops: dict[str, list[float]] = {"to_strategy": [], "strategy_and_submit": [],
                                    "to_gateway": []}
    try:
        thread.start()
        end = time.monotonic() + HANG
        while not sim.requests_named("reqRealTimeBars") and time.monotonic() < end:
            time.sleep(0.01)
        warmup = 3  # the feed turns LIVE on its first bar; skip a few
        next_at = time.perf_counter()
        for i in range(bars + warmup):
            while time.perf_counter() < next_at:
                time.sleep(0.001)
            next_at = time.perf_counter() + PACE
            landed.clear()
            sim.advance(seconds=5)
            stamp = int(sim.now().timestamp()) // 5 * 5
            end = time.monotonic() + HANG
            while stamp not in arrived and time.monotonic() < end and not errors:
                landed.wait(0.5)  # no polling: a waiting driver would compete for the GIL
                landed.clear()
            if errors:
                raise errors[0]
            if stamp not in arrived:
                raise TimeoutError(f"no order for the bar at {stamp} within {HANG}s")
            if i >= warmup and stamp in sent:
                latencies.append((arrived[stamp] - sent[stamp]) * 1000.0)
                began, handed = marks.get(stamp, (None, None))
                if began is not None:
                    hops["to_strategy"].append((began - sent[stamp]) * 1000.0)
                    hops["strategy_and_submit"].append((handed - began) * 1000.0)
                    hops["to_gateway"].append((arrived[stamp] - handed) * 1000.0)
        baseline = _baseline(store)
    finally:
        cerebro.runstop()
        thread.join(HANG)
        store.close()
        IBStore.reset_default()
        sim.stop()
    base50 = statistics.median(baseline)
    p50 = _pct(latencies, 0.50)
    return {
        "p50_ms": round(p50, 3),
        "p99_ms": round(_pct(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3),
        "max_ms": round(max(latencies), 3),
        "baseline_p50_ms": round(base50, 3),
        "p50_over_baseline": round(p50 / base50, 2) if base50 else None,
        "bars": len(latencies),
        "client": f"{ibc.CLIENT_NAME} {ibc.CLIENT_VERSION}",
        # where a bar's trip goes, p50 per hop: the simulator's send to the Strategy's next()
        # (socket, ib_async decoding, the store's loop thread, the feed queue, backtrader's
        # loop), next() to the order handed to the loop thread (the Strategy, IBBroker), and
        # from there to the gateway (the loop thread's wake-up, ib_async encoding, the socket)
        "hops_p50_ms": {k: round(statistics.median(v), 3) for k, v in hops.items() if v},
        "target_p99_ms": 2.5,
        "target_p50_over_baseline": 2.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=500, help="bars to measure (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    args = parser.parse_args(argv)
    if args.bars < 1:
        parser.error("--bars must be at least 1")
    result = run(bars=args.bars, seed=args.seed)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
