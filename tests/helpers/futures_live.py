"""Futures live-run helpers: a strategy that says what it holds (subprocess runs load it as
``helpers.futures_live:SayPosition``), a held position made at the simulated gateway, and the
orders of a roll as the gateway received them; ``run_futures`` runs ``examples.live`` on one
root with that strategy, ``roll_events`` reads the journal's roll events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import backtrader as bt
from ib_async import IB, Future, MarketOrder

CLOSE_REF = "ROLL:ES:202403>202406:1:C"
OPEN_REF = "ROLL:ES:202403>202406:1:O"


class SayPosition(bt.Strategy):
    """Decides nothing; on its first live bar prints one line on stderr:
    ``strategy sees <size> <localSymbol> x<multiplier>`` (what the Strategy's position is in
    the contract its feed trades) and, with ``closes`` (a path), writes every bar it has seen
    as JSON ``[[date, close], ...]`` there; with ``buy`` it then buys that many (one market
    order; a negative ``buy`` sells that many)."""

    params = (("closes", ""), ("buy", 0))

    def __init__(self):
        self.said = False

    def next(self):
        if self.said or self.data._laststatus != self.data.LIVE:
            return
        self.said = True
        c = self.data.tradecontract
        size = self.getposition(self.data).size
        print(f"strategy sees {size:g} {c.localSymbol} x{c.multiplier}", file=sys.stderr,
              flush=True)
        if self.p.buy > 0:
            self.buy(size=self.p.buy)
        elif self.p.buy < 0:
            self.sell(size=-self.p.buy)
        if self.p.closes:
            n = len(self.data)
            seen = [[bt.num2date(self.data.datetime[-k]).date().isoformat(),
                     self.data.close[-k]] for k in range(n - 1, -1, -1)]
            Path(self.p.closes).write_text(json.dumps(seen))


def buy_at_gateway(sim, month: str, qty: float, client_id: int = 77,
                   account: str | None = None, root: str = "ES") -> None:
    """Hold ``qty`` of ``root`` (default ES) of contract month ``month`` (YYYYMM) in the
    simulator's account, bought by another API client (a position the run finds at the
    gateway)."""
    from bt_ibkr.futures.registry import get_spec

    ib = IB()
    ib.connect(sim.host, sim.port, clientId=client_id, timeout=20)
    try:
        (es,) = ib.qualifyContracts(Future(root, month, get_spec(root).exchange))
        order = MarketOrder("BUY" if qty > 0 else "SELL", abs(qty))
        if account:
            order.account = account
        trade = ib.placeOrder(es, order)
        ib.reqCurrentTime()
        assert trade.orderStatus.status == "Filled", trade.orderStatus
    finally:
        ib.disconnect()


def placed(sim, ref: str) -> int:
    """How many placeOrder requests carrying orderRef ``ref`` reached the simulator."""
    return sum(1 for r in sim.requests_named("placeOrder") if ref in r[3])


def es_positions(sim, account: str | None = None, root: str = "ES") -> dict[str, float]:
    """The simulator's positions in futures of ``root`` (default ES) of ``account`` (default:
    the login's) by local symbol (non-zero only)."""
    out: dict[str, float] = {}
    if account is None:
        rows = sim.call(lambda: list(sim.broker.positions()))
    else:
        rows = sim.call(lambda: list(sim.broker.accounts.ledger_for(account).position_list()))
    for p in rows:
        c = p.contract
        if c.symbol == root and p.position:
            out[c.localSymbol] = out.get(c.localSymbol, 0.0) + p.position
    return out


#: the hang guard of a futures CLI run (its max runtime), never a limit a test relies on
HANG = 60.0


def futures_config(tmp_path: Path) -> Path:
    """Write (and return) a config file that runs :class:`SayPosition`."""
    path = tmp_path / "futures.json"
    path.write_text(json.dumps({"strategy": {"name": "helpers.futures_live:SayPosition"}}))
    return path


def run_futures(tmp_path: Path, sim, root: str, *extra: str):
    """Run ``python -m examples.live --symbols ROOT --futures ROOT`` with :class:`SayPosition`
    against ``sim`` (helpers.live.run_cli); return what run_cli returns."""
    from helpers.live import run_cli

    return run_cli(tmp_path, sim, "--symbols", root, "--futures", root, "--config",
                   str(futures_config(tmp_path)), *extra, max_runtime=HANG)


def roll_events(tmp_path: Path) -> list[dict]:
    """Return the ``roll`` events of the run's journal (``tmp_path/journal.sqlite``)."""
    from bt_ibkr.live.journal import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        return journal.events("roll")
    finally:
        journal.close()
