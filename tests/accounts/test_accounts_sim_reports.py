"""The gateway simulator reports every managed account of one login, each under its own code,
as IB answers an advisor's (or linked) login: portfolio rows of reqAccountUpdates(account),
reqAccountSummary(group "All") per account, reqPnL(account), reqPnLSingle(account, conId) and
reqPositionsMulti(account). Through the real ib_async client."""

from __future__ import annotations

import pytest
from helpers.sim import wait_until

ib_async = pytest.importorskip("ib_async")

MINE, OTHER = "DU1110001", "DU2220002"


@pytest.fixture
def two_accounts(gateway_sim_factory):
    """A login into MINE (100,000 cash) that also manages OTHER (50,000): MINE holds 10 AAPL,
    OTHER 30; an ib_async client (clientId 9) connected without naming an account."""
    sim = gateway_sim_factory(account=MINE, broker_options={"cash": 100_000.0})
    sim.add_account(OTHER, cash=50_000.0)
    ib = ib_async.IB()
    ib.connect(sim.host, sim.port, clientId=9, timeout=10)
    (aapl,) = ib.qualifyContracts(ib_async.Stock("AAPL", "SMART", "USD"))
    for account, qty in ((MINE, 10), (OTHER, 30)):
        order = ib_async.MarketOrder("BUY", qty)
        order.account = account
        trade = ib.placeOrder(aapl, order)
        wait_until(lambda t=trade: t.orderStatus.status == "Filled", ib.sleep, timeout=30)
    yield sim, ib, aapl
    ib.disconnect()


def ledger(sim, account):
    return sim.broker.accounts.ledger_for(account)


def test_account_updates_for_the_other_account_carry_its_portfolio(two_accounts):
    sim, ib, aapl = two_accounts
    ib.reqAccountUpdates(OTHER)
    rows = [(p.account, p.contract.conId, p.position) for p in ib.portfolio(OTHER)]
    assert rows == [(OTHER, aapl.conId, 30)]
    # its values too, never the login account's
    net = {v.value for v in ib.accountValues(OTHER) if v.tag == "NetLiquidation"}
    assert net == {f"{ledger(sim, OTHER).numbers()['NetLiquidation']:.2f}"}


def test_account_summary_lists_every_managed_account(two_accounts):
    sim, ib, _ = two_accounts
    rows = ib.accountSummary()
    net = {r.account: float(r.value) for r in rows if r.tag == "NetLiquidation"}
    assert set(net) == {MINE, OTHER}
    for account in (MINE, OTHER):
        assert net[account] == pytest.approx(ledger(sim, account).numbers()["NetLiquidation"],
                                             abs=0.01)
    assert net[MINE] > 90_000 > 50_000 > net[OTHER]  # not one account's numbers twice


def test_pnl_is_per_account(two_accounts):
    sim, ib, aapl = two_accounts
    sim.advance(minutes=30)  # prices move: each account's unrealized P&L follows its shares
    pnl_other = ib.reqPnL(OTHER)
    single_other = ib.reqPnLSingle(OTHER, "", aapl.conId)
    single_mine = ib.reqPnLSingle(MINE, "", aapl.conId)
    wait_until(lambda: single_other.position == 30 and single_mine.position == 10, ib.sleep,
               timeout=30)
    wait_until(lambda: pnl_other.unrealizedPnL == pnl_other.unrealizedPnL, ib.sleep,  # not NaN
               timeout=30)
    want = ledger(sim, OTHER).numbers()["UnrealizedPnL"]
    assert pnl_other.unrealizedPnL == pytest.approx(want, abs=0.01)
    for single, account in ((single_other, OTHER), (single_mine, MINE)):
        _, _, unrealized, _, value = ledger(sim, account).pnl_single(aapl.conId)
        assert (single.unrealizedPnL, single.value) == pytest.approx((unrealized, value),
                                                                     abs=0.01)
    assert single_other.value == pytest.approx(3 * single_mine.value, abs=0.01)


def test_positions_multi_names_one_account_or_all(two_accounts):
    _, ib, _ = two_accounts
    got: dict[int, list] = {}

    def on_multi(req_id, account, position):
        got.setdefault(req_id, []).append((account, position))

    for req_id, account in ((501, OTHER), (502, "")):
        got[req_id] = []
        ib.client.reqPositionsMulti(req_id, account, "")
    wrapper = ib.wrapper
    ends: set[int] = set()
    original_end = wrapper.positionMultiEnd
    wrapper.positionMulti = lambda r, a, m, c, p, cost: on_multi(r, a, p)
    wrapper.positionMultiEnd = lambda r: (ends.add(r), original_end(r))
    wait_until(lambda: ends >= {501, 502}, ib.sleep, timeout=30)
    assert got[501] == [(OTHER, 30)]
    assert sorted(got[502]) == [(MINE, 10), (OTHER, 30)]
