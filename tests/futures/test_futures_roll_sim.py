"""The live roll on the gateway simulator through the real ib_async client: a held ES March
position rolls to June as one close and one open, and a crash right after the close was
placed (before the journal knew) is recovered by orderRef without a second close."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Future, MarketOrder

from bt_ibkr.futures.registry import ContractMonth
from bt_ibkr.live.futures_roll import pending_rolls, plan_rolls, roll_step
from bt_ibkr.live.futures_roll_exec import execute_roll, recover_roll_orders
from bt_ibkr.live.journal import Journal

NY = ZoneInfo("America/New_York")
ROLL_DAY = datetime(2024, 3, 8, 10, 0, tzinfo=NY)  # the registry's ES March 2024 roll date
H4, M4 = ContractMonth("ES", 2024, 3), ContractMonth("ES", 2024, 6)


@pytest.fixture
def sim(gateway_sim_factory):
    return gateway_sim_factory(start=ROLL_DAY)


def connect(sim, client_id: int = 31) -> IB:
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=client_id, timeout=20)
    return ib


def positions_at_gateway(ib: IB) -> dict[str, float]:
    return {p.contract.localSymbol: p.position for p in ib.positions() if p.position}


def hold_three_march(ib: IB, journal: Journal) -> None:
    (es,) = ib.qualifyContracts(Future("ES", "202403", "CME"))
    trade = ib.placeOrder(es, MarketOrder("BUY", 3))
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Filled"
    journal.accept_positions({"ES": 3.0})


def closes_sent(sim) -> int:
    return sum(1 for r in sim.requests_named("placeOrder") if "ROLL:ES:202403>202406:1:C" in r[3])


def opens_sent(sim) -> int:
    return sum(1 for r in sim.requests_named("placeOrder") if "ROLL:ES:202403>202406:1:O" in r[3])


@pytest.mark.slow
def test_a_held_position_rolls_as_one_close_and_one_open(sim, tmp_path):
    ib = connect(sim)
    journal = Journal(tmp_path / "j.sqlite")
    try:
        hold_three_march(ib, journal)
        (plan,) = plan_rolls({H4: 3.0}, ROLL_DAY.date())
        step = execute_roll(ib, journal, plan, sim.now, timeout=30)
        assert step.action == "done"
        ib.reqCurrentTime()
        assert positions_at_gateway(ib) == {"ESM4": 3.0}
        assert journal.positions() == {"ES": 3.0}  # the root's, as IB's contract symbol
        assert (closes_sent(sim), opens_sent(sim)) == (1, 1)
    finally:
        ib.disconnect()
        journal.close()


@pytest.mark.slow
def test_a_crash_after_placing_the_close_is_recovered_without_a_second_close(sim, tmp_path):
    path = tmp_path / "j.sqlite"
    ib = connect(sim)
    journal = Journal(path)
    hold_three_march(ib, journal)
    (plan,) = plan_rolls({H4: 3.0}, ROLL_DAY.date())
    close = roll_step(journal, plan, sim.now()).intent  # journaled ...
    (es,) = ib.qualifyContracts(Future("ES", "202403", "CME"))
    ib.placeOrder(es, MarketOrder(close.side, close.quantity, orderRef=close.order_ref))
    ib.reqCurrentTime()  # ... placed and filled, and then the process dies before mark_sent
    ib.disconnect()
    journal.close()

    ib = connect(sim)  # the restart: same client id, the journal file and the gateway only
    journal = Journal(path)
    try:
        recover_roll_orders(ib, journal)
        assert journal.get(close.order_ref).filled == 3.0
        (again,) = pending_rolls(journal)
        step = execute_roll(ib, journal, again, sim.now, timeout=30)
        assert step.action == "done"
        ib.reqCurrentTime()
        assert positions_at_gateway(ib) == {"ESM4": 3.0}
        assert (closes_sent(sim), opens_sent(sim)) == (1, 1)
    finally:
        ib.disconnect()
        journal.close()
