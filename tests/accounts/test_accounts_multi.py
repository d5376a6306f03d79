"""One login managing several accounts (an advisor's or linked login), through the real client
against the gateway simulator: a run trades exactly the account it names, every order carries
it, the other account's positions and cash are never counted; a run that names none refuses."""

from __future__ import annotations

import threading

import backtrader as bt
import pytest
from helpers.ib import Live, Scripted

from bt_ibkr.ib.store import IBStore
from examples import live as cli

ib_async = pytest.importorskip("ib_async")

MINE, OTHER = "DU1110001", "DU2220002"


class AccountLive(Live):
    """helpers.ib.Live with the store following ``account``."""

    def __init__(self, sim, script, account, client_id=43):
        self.sim = sim
        self.rec = {}
        self.store = IBStore(port=sim.port, clientId=client_id, timeout=0.2, reconnect=-1,
                             connect_timeout=2, account=account)
        self.cerebro = bt.Cerebro(stdstats=False)
        self.data = self.store.getdata(dataname="AAPL-STK-SMART-USD", rtbar=True,
                                       timeframe=bt.TimeFrame.Seconds, compression=5,
                                       qcheck=0.05, backfill_start=False)
        self.cerebro.adddata(self.data)
        self.cerebro.setbroker(self.store.getbroker())
        self.cerebro.addstrategy(Scripted, rec=self.rec, script=script)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)


def two_account_login(gateway_sim_factory, **kw):
    """A gateway logged into MINE that also manages OTHER, which holds 50 AAPL (bought by
    another client) and its own cash."""
    sim = gateway_sim_factory(account=MINE, broker_options={"cash": 100_000.0}, **kw)
    sim.add_account(OTHER, cash=50_000.0)
    ib = ib_async.IB()
    ib.connect(sim.host, sim.port, clientId=9, timeout=10)
    try:
        assert ib.managedAccounts() == [MINE, OTHER]
        (aapl,) = ib.qualifyContracts(ib_async.Stock("AAPL", "SMART", "USD"))
        order = ib_async.MarketOrder("BUY", 50)
        order.account = OTHER
        trade = ib.placeOrder(aapl, order)
        ib.reqCurrentTime()
        assert trade.orderStatus.status == "Filled"
        assert {(p.account, p.position) for p in ib.positions()} == {(OTHER, 50)}
    finally:
        ib.disconnect()
    return sim


@pytest.mark.slow
def test_a_run_naming_one_account_orders_for_it_and_never_counts_the_other(
        gateway_sim_factory):
    sim = two_account_login(gateway_sim_factory)
    script = {2: lambda s: s.buy(size=10, fa_group="Growth", fa_method="EqualQuantity")}
    with AccountLive(sim, script, MINE) as live:
        live.step(2)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)), "the buy filled")
        live.step()
    assert live.rec["first_position"] == 0  # OTHER's 50 AAPL are not this run's
    (mine,) = [o for o in sim.broker.completed_orders() if o.client_id == 43]
    assert mine.spec.account == MINE
    # the FA options reached the gateway as IB's order fields
    assert (mine.spec.extra.get("faGroup"), mine.spec.extra.get("faMethod")) == (
        "Growth", "EqualQuantity")
    assert sim.broker.accounts.ledger_for(MINE).held(mine.contract.conId) == 10
    assert sim.broker.accounts.ledger_for(OTHER).held(mine.contract.conId) == 50
    # cash and value are MINE's alone (OTHER's 50,000 is never added)
    mine_cash = sim.broker.accounts.ledger_for(MINE).cash
    assert live.rec["cash"] == pytest.approx(mine_cash, abs=0.01)
    assert live.rec["cash"] < 100_000.0


@pytest.mark.slow
@pytest.mark.slow
def test_a_run_naming_the_other_account_sees_its_position_and_cash_only(gateway_sim_factory):
    sim = two_account_login(gateway_sim_factory)
    script = {2: lambda s: s.sell(size=20)}
    with AccountLive(sim, script, OTHER, client_id=44) as live:
        live.step(2)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)), "the sell filled")
        live.step()
    assert live.rec["first_position"] == 50  # OTHER's own 50 AAPL
    (mine,) = [o for o in sim.broker.completed_orders() if o.client_id == 44]
    assert mine.spec.account == OTHER
    assert sim.broker.accounts.ledger_for(OTHER).held(mine.contract.conId) == 30
    assert sim.broker.accounts.ledger_for(MINE).held(mine.contract.conId) == 0
    # its cash is OTHER's (50,000 less the first buy, plus the sale), never MINE's 100,000
    assert live.rec["cash"] == pytest.approx(sim.broker.accounts.ledger_for(OTHER).cash,
                                             abs=0.01)
    assert live.rec["cash"] < 50_000.0


def test_a_run_without_an_account_on_a_two_account_login_exits_2_naming_both(
        gateway_sim_factory, tmp_path, monkeypatch, capsys):
    sim = gateway_sim_factory(account=MINE)
    sim.add_account(OTHER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BT_IBKR_ACCOUNT", raising=False)
    assert cli.main(["--paper", "--port", str(sim.port), "--journal", "j.sqlite"]) == 2
    refusal = [line for line in capsys.readouterr().err.splitlines() if "accounts" in line]
    assert len(refusal) == 1  # one line, naming both accounts and how to choose
    assert MINE in refusal[0] and OTHER in refusal[0] and "--account" in refusal[0]
    assert sim.requests_named("placeOrder") == []
