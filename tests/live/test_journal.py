"""Order/fill journal: deterministic orderRefs, idempotent intents, crash-safe reconcile."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bt_ibkr.ib.order_refs import make_order_ref
from bt_ibkr.ib.parsing import (
    ExecSnapshot,
    Fill,
    OrderSnapshot,
    exec_snapshot,
    normalize_side,
    order_snapshot,
)
from bt_ibkr.live.journal import (
    CANCELLED,
    EXPIRED,
    FILLED,
    INTENT,
    LOST,
    PARTIAL,
    SENT,
    SUBMITTED,
    Intent,
    Journal,
    JournalError,
    normalize_status,
)
from bt_ibkr.live.reconcile import fill_from_exec
from bt_ibkr.live.reconcile import reconcile as reconcile_journal

REPO = Path(__file__).resolve().parents[2]
DAY = datetime(2024, 1, 5)
NOW = datetime(2024, 1, 5, 21, 5, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "state" / "journal.sqlite")
    yield j
    j.close()


def intent(seq=1, symbol="SPY", side="BUY", qty=100.0, created=NOW, **kw) -> Intent:
    ref = make_order_ref("RegimeAwareEnsemble", symbol, DAY, seq)
    return Intent(ref, "RegimeAwareEnsemble", symbol, side, qty, DAY, created=created, **kw)


def execution(exec_id, ref, shares, price=470.0, symbol="SPY", side="BOT", **kw) -> ExecSnapshot:
    return ExecSnapshot(exec_id, ref, symbol, side, shares, price,
                        datetime(2024, 1, 5, 14, 31, tzinfo=UTC), **kw)


# --------------------------------------------------------------------------------------------
# orderRef


def test_order_ref_is_deterministic_and_short():
    ref = make_order_ref("RegimeAwareEnsemble", "SPY", DAY, 1)
    assert ref == "bt1:RAE:SPY:20240105:1"
    assert make_order_ref("RegimeAwareEnsemble", "SPY", DAY, 1) == ref
    assert make_order_ref("RegimeAwareEnsemble", "SPY", DAY, 2) == "bt1:RAE:SPY:20240105:2"
    assert make_order_ref("RegimeAwareEnsemble", "QQQ", DAY, 1) != ref
    assert make_order_ref("sma", "spy", datetime(2024, 1, 5, 15, 30), 3) == "bt1:sma:SPY:20240105T1530:3"
    eastern = datetime(2024, 1, 5, 10, 30, 15, tzinfo=timezone(timedelta(hours=-5)))
    assert make_order_ref("RAE", "SPY", eastern, 1) == "bt1:RAE:SPY:20240105T153015:1"  # UTC
    assert make_order_ref("RegimeAwareEnsemble", "SPY", date(2024, 1, 5), 1) == ref
    # backtrader stamps daily bars at the session end: still deterministic and short
    assert make_order_ref("RAE", "SPY", datetime(2024, 1, 5, 23, 59, 59, 999989), 1) == (
        "bt1:RAE:SPY:20240105T235959:1")


def test_order_ref_long_symbols_stay_unique_and_within_40_chars():
    a = make_order_ref("RegimeAwareEnsemble", "EUR.USD-CASH-IDEALPRO-EXTRA-LONG-NAME", DAY, 12)
    b = make_order_ref("RegimeAwareEnsemble", "EUR.USD-CASH-IDEALPRO-EXTRA-LONG-NAMF", DAY, 12)
    assert len(a) <= 40 and len(b) <= 40
    assert a != b
    assert a.startswith("bt1:RAE:EUR.USD") and a.endswith(":20240105:12")


def test_order_ref_rejects_bad_input():
    with pytest.raises(ValueError, match="symbol"):
        make_order_ref("RAE", " ", DAY, 1)
    with pytest.raises(ValueError, match="seq"):
        make_order_ref("RAE", "SPY", DAY, -1)


def test_side_and_status_vocabulary():
    assert [normalize_side(s) for s in ("BOT", "sld", "Buy", "SELL")] == ["BUY", "SELL", "BUY", "SELL"]
    assert normalize_status("PreSubmitted") == SUBMITTED
    assert normalize_status("ApiCancelled") == CANCELLED
    assert normalize_status("Filled") == FILLED
    with pytest.raises(ValueError):
        normalize_status("Done")


# --------------------------------------------------------------------------------------------
# intents and fills


def test_record_intent_is_committed_and_idempotent(journal):
    it = intent()
    assert journal.record_intent(it) is True
    # visible to another connection at once: it is committed before the order would be sent
    other = sqlite3.connect(journal.path)
    assert other.execute("SELECT order_ref, status FROM intents").fetchall() == [
        ("bt1:RAE:SPY:20240105:1", INTENT)]
    other.close()
    assert journal.record_intent(intent(qty=999)) is False  # same ref: kept as first written
    [rec] = journal.intents()
    assert rec.quantity == 100.0 and rec.side == "BUY" and rec.status == INTENT
    assert rec.decision_time == DAY.replace(tzinfo=UTC)
    # a date works as decision time too
    journal.record_intent(Intent("bt1:RAE:QQQ:20240105:1", "RAE", "QQQ", "SELL", 5, date(2024, 1, 5)))
    assert journal.get("bt1:RAE:QQQ:20240105:1").decision_time == DAY.replace(tzinfo=UTC)


def test_record_intent_validates(journal):
    with pytest.raises(ValueError, match="quantity must be > 0"):
        journal.record_intent(intent(qty=0))
    with pytest.raises(ValueError, match="side"):
        journal.record_intent(intent(side="HOLD"))
    with pytest.raises(ValueError, match="orderRef"):
        journal.record_intent(Intent("x" * 41, "S", "SPY", "BUY", 1, DAY))


def test_lifecycle_sent_submitted_partial_filled(journal):
    it = intent()
    journal.record_intent(it)
    journal.mark_sent(it.order_ref, order_id=17)
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.order_id, rec.sent_at is not None) == (SENT, 17, True)
    journal.update_status(it.order_ref, "Submitted", perm_id=9001)
    assert journal.get(it.order_ref).status == SUBMITTED
    assert journal.record_fill(Fill("e1", it.order_ref, "SPY", "BOT", 40, 470.0, NOW)) is True
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.filled, rec.remaining, rec.perm_id) == (PARTIAL, 40.0, 60.0, 9001)
    journal.update_status(it.order_ref, "Submitted")  # a late status event keeps "partial"
    assert journal.get(it.order_ref).status == PARTIAL
    journal.record_fill(Fill("e2", it.order_ref, "SPY", "BOT", 60, 471.0, NOW))
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.filled) == (FILLED, 100.0)
    assert rec.avg_price == pytest.approx((40 * 470 + 60 * 471) / 100)
    journal.update_status(it.order_ref, "Submitted")  # out of order: never back to working
    assert journal.get(it.order_ref).status == FILLED
    assert journal.open_intents() == []
    assert [r.order_ref for r in journal.intents(status=FILLED)] == [it.order_ref]


def test_fill_event_before_mark_sent_keeps_the_fill(journal):
    # the IB thread can deliver execDetails before the sending thread calls mark_sent
    it = intent(qty=10)
    journal.record_intent(it)
    journal.record_fill(Fill("early", it.order_ref, "SPY", "BUY", 10, 470.0, NOW))
    journal.mark_sent(it.order_ref, order_id=5, perm_id=6)
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.filled, rec.order_id, rec.perm_id) == (FILLED, 10.0, 5, 6)


def test_mark_sent_requires_the_intent(journal):
    with pytest.raises(KeyError, match="record_intent"):
        journal.mark_sent("bt1:RAE:SPY:20240105:9", 5)


def test_duplicate_exec_details_are_ignored_and_commission_fills_in(journal):
    fill = Fill("0001f4e8.65a1.01.01", None, "SPY", "BOT", 100, 470.0, NOW)
    assert journal.record_fill(fill) is True
    assert journal.record_fill(fill) is False
    assert journal.record_fill(Fill(fill.exec_id, None, "SPY", "BOT", 100, 470.0, NOW,
                                    commission=1.05)) is False
    [stored] = journal.fills()
    assert stored.commission == 1.05
    assert journal.position_from_fills("SPY") == 100.0


def test_positions_and_last_exec_time(journal):
    journal.record_fill(Fill("a", None, "SPY", "BUY", 100, 470, NOW - timedelta(hours=2)))
    journal.record_fill(Fill("b", None, "SPY", "SLD", 30, 472, NOW))
    journal.record_fill(Fill("c", None, "QQQ", "SELL", 10, 400, NOW - timedelta(hours=1)))
    assert journal.position_from_fills("SPY") == 70.0
    assert journal.position_from_fills("QQQ") == -10.0
    assert journal.position_from_fills("IWM") == 0.0
    assert journal.positions() == {"QQQ": -10.0, "SPY": 70.0}
    assert journal.last_exec_time() == NOW


def test_runs_and_events(journal):
    run = journal.start_run("paper", "DU123", now=NOW)
    assert run.startswith("20240105T210500Z-")
    journal.log_event("connection", {"state": "lost", "code": 1100})
    assert journal.last_run().ended is None  # crashed runs have no end
    journal.end_run(run)
    last = journal.last_run()
    assert (last.run_id, last.mode, last.account, last.ended is not None) == (run, "paper", "DU123", True)
    kinds = [e["kind"] for e in journal.events()]
    assert kinds == ["run_start", "connection", "run_end"]
    assert journal.events("connection")[0]["detail"] == {"state": "lost", "code": 1100}


# --------------------------------------------------------------------------------------------
# reconcile


def reconcile(j, orders=(), execs=(), positions=None, now=NOW, age=timedelta(hours=1)):
    return reconcile_journal(j, list(orders), list(execs), positions or {}, now, age)


def test_killed_between_journaling_and_sending_resends_same_ref(tmp_path):
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.record_intent(intent(created=NOW - timedelta(minutes=5)))
        # process killed here: placeOrder never ran
    with Journal(path) as j:  # restart
        rep = reconcile(j)
        assert [r.order_ref for r in rep.resend] == ["bt1:RAE:SPY:20240105:1"]
        assert rep.resend[0].quantity == 100.0 and rep.resend[0].side == "BUY"
        assert rep.adopted == [] and rep.lost == [] and rep.ok
        # the runner re-records before sending: idempotent, no second intent
        assert j.record_intent(intent()) is False
    with Journal(path) as j:  # killed again before sending; restart again
        rep2 = reconcile(j)
        assert [r.order_ref for r in rep2.resend] == ["bt1:RAE:SPY:20240105:1"]
        assert len(j.intents()) == 1
        # this time the order goes out
        j.mark_sent(rep2.resend[0].order_ref, order_id=42)
        rep3 = reconcile(j, orders=[OrderSnapshot("bt1:RAE:SPY:20240105:1", 42, "Submitted",
                                                   "SPY", "BUY", 100)])
        assert rep3.resend == [] and j.get("bt1:RAE:SPY:20240105:1").status == SUBMITTED


def test_sent_but_not_marked_is_adopted_from_the_gateway(journal):
    it = intent()
    journal.record_intent(it)
    # placeOrder ran, the process died before mark_sent
    snap = OrderSnapshot(it.order_ref, 88, "PreSubmitted", "SPY", "BUY", 100, perm_id=777)
    rep = reconcile(journal, orders=[snap])
    assert rep.adopted == [it.order_ref] and rep.resend == []
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.order_id, rec.perm_id) == (SUBMITTED, 88, 777)
    assert reconcile(journal, orders=[snap]).adopted == []  # second pass: nothing new


def test_killed_between_sending_and_the_fill(tmp_path):
    path = tmp_path / "j.sqlite"
    it = intent()
    with Journal(path) as j:
        j.record_intent(it)
        j.mark_sent(it.order_ref, order_id=50)
        # killed; while away the order filled in two executions
    gateway_orders = [OrderSnapshot(it.order_ref, 50, "Filled", "SPY", "BUY", 100, filled=100,
                                    avg_price=470.5)]
    execs = [execution("x1", it.order_ref, 60, 470.0, order_id=50),
             execution("x2", it.order_ref, 40, 471.25, order_id=50, commission=0.4)]
    with Journal(path) as j:
        rep = reconcile(j, gateway_orders, execs, positions={"SPY": 100})
        assert [f.exec_id for f in rep.missed_fills] == ["x1", "x2"]
        assert rep.resend == [] and rep.lost == [] and rep.position_mismatches == []
        rec = j.get(it.order_ref)
        assert (rec.status, rec.filled) == (FILLED, 100.0)
        assert rec.avg_price == pytest.approx(470.5)
        assert j.position_from_fills("SPY") == 100.0
    with Journal(path) as j:  # restart once more: the same executions are not recorded twice
        rep = reconcile(j, gateway_orders, execs + [execs[0]], positions={"SPY": 100})
        assert rep.missed_fills == [] and rep.resend == [] and rep.ok
        assert len(j.fills()) == 2 and j.position_from_fills("SPY") == 100.0


def test_unsent_intent_filled_while_away_is_adopted_from_executions(journal):
    it = intent()
    journal.record_intent(it)  # sent, filled, completed; died before mark_sent or any event
    rep = reconcile(journal, execs=[execution("x1", it.order_ref, 100, order_id=61)],
                    positions={"SPY": 100})
    assert rep.adopted == [it.order_ref] and rep.resend == []
    assert [f.exec_id for f in rep.missed_fills] == ["x1"]
    assert journal.get(it.order_ref).status == FILLED


def test_old_unsent_intent_expires_instead_of_being_sent(journal):
    journal.record_intent(intent(created=NOW - timedelta(hours=30)))
    rep = reconcile(journal, age=timedelta(hours=6))
    assert rep.resend == [] and rep.expired == ["bt1:RAE:SPY:20240105:1"]
    assert journal.get("bt1:RAE:SPY:20240105:1").status == EXPIRED
    assert reconcile(journal, age=timedelta(hours=6)).expired == []  # terminal, stays expired


def test_sent_order_without_trace_is_lost_and_reported(journal):
    it = intent()
    journal.record_intent(it)
    journal.mark_sent(it.order_ref, order_id=3)
    rep = reconcile(journal)
    assert rep.lost == [it.order_ref] and not rep.ok
    assert "!! LOST order bt1:RAE:SPY:20240105:1" in rep.summary()
    assert journal.get(it.order_ref).status == LOST
    assert rep.resend == []  # never resent: it may have filled days ago


def test_partly_filled_order_gone_from_gateway_is_closed(journal):
    it = intent()
    journal.record_intent(it)
    journal.mark_sent(it.order_ref, order_id=3)
    rep = reconcile(journal, execs=[execution("p1", it.order_ref, 30)], positions={"SPY": 30})
    rec = journal.get(it.order_ref)
    assert (rec.status, rec.filled) == (CANCELLED, 30.0)
    assert rep.updated == [it.order_ref] and rep.lost == []


def test_positions_adopted_on_first_contact_then_mismatches_listed(journal):
    rep = reconcile(journal, positions={"SPY": 200, "TLT": -5})
    assert rep.adopted_positions == {"SPY": 200.0, "TLT": -5.0} and rep.ok
    assert journal.position_from_fills("SPY") == 200.0
    # a day later: our own order filled (+100) and someone sold 50 TLT... by hand in TWS
    journal.record_fill(Fill("f1", None, "SPY", "BUY", 100, 470, NOW))
    rep = reconcile(journal, positions={"SPY": 300, "TLT": -55})
    assert rep.adopted_positions == {}
    assert [(m.symbol, m.journal, m.gateway) for m in rep.position_mismatches] == [
        ("TLT", -5.0, -55.0)]
    assert "POSITION MISMATCH TLT: journal -5, gateway -55" in rep.summary()
    journal.accept_positions({"TLT": -55})
    assert reconcile(journal, positions={"SPY": 300, "TLT": -55}).ok


def test_first_contact_adopts_the_account_and_never_records_foreign_fills(journal):
    # 200 shares held from last week + 100 bought by hand today: the first contact adopts the
    # account's 300 as the start; the manual fill is reported, never recorded as ours
    rep = reconcile(journal, execs=[execution("m1", "", 100)], positions={"SPY": 300})
    assert [f.exec_id for f in rep.foreign_fills] == ["m1"]
    assert rep.position_mismatches == [] and rep.adopted_positions == {"SPY": 300.0}
    assert journal.position_from_fills("SPY") == 300.0 and journal.fills() == []
    assert "not ours: 0 working order(s) and 1 fill(s)" in rep.summary()


def test_gateway_orders_not_in_the_journal_are_reported(journal):
    journal.bind_account("DU1234567")
    ref = make_order_ref("RegimeAwareEnsemble", "SPY", date(2024, 1, 4), 1,
                         owner=journal.journal_id)
    ours = OrderSnapshot(ref, 9, "Submitted", "SPY", "BUY", 10)
    manual = OrderSnapshot("", 10, "Submitted", "QQQ", "SELL", 5)
    other_journal = OrderSnapshot("bt2:ZZZZZ:RAE:SPY:20240104:1", 12, "Submitted", "SPY",
                                  "BUY", 7)
    legacy = OrderSnapshot("bt1:RAE:SPY:20240104:1", 13, "Submitted", "SPY", "BUY", 3)
    done = OrderSnapshot("other", 11, "Filled", "IWM", "BUY", 1, filled=1)
    rep = reconcile(journal, orders=[ours, manual, other_journal, legacy, done])
    # other programs', other journals' and unknown bt1 orders: listed, never adopted
    assert rep.unknown_orders == [manual, other_journal, legacy]
    # ours (carrying this journal's identity): the journal was lost or replaced; adopted so
    # the same decision is never resent
    assert [r.order_ref for r in rep.recovered] == [ref]
    rec = journal.get(ref)
    assert (rec.status, rec.order_id, rec.quantity, rec.side) == ("submitted", 9, 10, "BUY")
    assert rec.decision_time.date() == date(2024, 1, 4)
    assert not journal.record_intent(Intent(ref, "RAE", "SPY", "BUY", 10, date(2024, 1, 4)))
    assert not rep.ok
    assert f"!! RECOVERED order {ref}" in rep.summary()
    assert rep.to_dict()["ok"] is False and rep.to_dict()["recovered"] == [rec.order_ref]
    # the next reconcile knows it: nothing recovered twice
    again = reconcile(journal, orders=[ours, manual, other_journal, legacy, done])
    assert again.recovered == [] and again.unknown_orders == [manual, other_journal, legacy]
    assert again.ok  # orders of others are reported, not a problem


def test_a_lost_journal_recovers_our_filled_orders_from_executions_alone(journal):
    journal.bind_account("DU1234567")
    ref = make_order_ref("RegimeAwareEnsemble", "SPY", datetime(2024, 1, 4, 15, 30,
                                                                tzinfo=UTC), 2,
                         owner=journal.journal_id)
    t = datetime(2024, 1, 4, 15, 30, 5, tzinfo=UTC)
    execs = [ExecSnapshot("e1", ref, "SPY", "BUY", 60, 470.0, t, 0.3, 12, 77),
             ExecSnapshot("e2", ref, "SPY", "BUY", 40, 470.1, t, 0.2, 12, 77)]
    rep = reconcile(journal, execs=execs, positions={"SPY": 100})
    (rec,) = rep.recovered
    assert (rec.order_ref, rec.status, rec.quantity, rec.filled) == (ref, "filled", 100, 100)
    assert rec.decision_time == datetime(2024, 1, 4, 15, 30, tzinfo=UTC)
    assert journal.position_from_fills("SPY") == 100
    assert not rep.ok and not rep.position_mismatches


def test_clean_reconcile_summary(journal):
    assert reconcile(journal).summary() == "journal and gateway agree"


def test_snapshots_from_the_ib_clients_objects(journal):
    from bt_ibkr.ib import client as ibc

    ref = "bt1:RAE:SPY:20240105:1"
    contract = ibc.Stock("SPY", "SMART", "USD")
    order = ibc.Order(orderId=31, action="BUY", totalQuantity=100, orderType="MKT", orderRef=ref,
                      permId=555)
    status = ibc.OrderStatus(orderId=31, status="Filled", filled=100, remaining=0,
                             avgFillPrice=470.25, permId=555)
    trade = ibc.Trade(contract=contract, order=order, orderStatus=status)
    t = datetime(2024, 1, 5, 14, 30, 1, tzinfo=UTC)
    execution = ibc.Execution(execId="0000e0d5.659f.01.01", time=t, side="BOT", shares=100.0,
                              price=470.25, permId=555, orderId=31, orderRef=ref)
    no_report = ibc.Fill(contract, execution, ibc.CommissionReport(), t)
    with_report = ibc.Fill(contract, execution,
                           ibc.CommissionReport(execId="0000e0d5.659f.01.01", commission=1.0), t)

    snap = order_snapshot(trade)
    assert snap == OrderSnapshot(ref, 31, "Filled", "SPY", "BUY", 100.0, 100.0, 555, 470.25,
                                 "MKT", client_id=0)  # the order's clientId
    ex = exec_snapshot(no_report)
    assert (ex.exec_id, ex.order_ref, ex.side, ex.shares, ex.commission) == (
        "0000e0d5.659f.01.01", ref, "BUY", 100.0, None)
    assert exec_snapshot(with_report, symbol_of=lambda c: f"{c.symbol}-STK").commission == 1.0
    assert exec_snapshot(with_report, symbol_of=lambda c: f"{c.symbol}-STK").symbol == "SPY-STK"

    journal.record_intent(intent())
    rep = reconcile(journal, [snap], [ex], positions={"SPY": 100})
    assert rep.adopted == [ref] and [f.exec_id for f in rep.missed_fills] == [ex.exec_id]
    assert journal.get(ref).order_id == 31 and journal.get(ref).status == FILLED
    # the commission report arrives later: same execId, commission filled in, no new fill
    assert journal.record_fill(fill_from_exec(exec_snapshot(with_report))) is False
    assert journal.fills()[0].commission == 1.0


def _gateway_state(ib, account):
    trades = ib.reqAllOpenOrders() + ib.reqCompletedOrders(False)
    execs = ib.reqExecutions()
    positions = {p.contract.symbol: p.position for p in ib.positions(account)}
    return [order_snapshot(t) for t in trades], [exec_snapshot(f) for f in execs], positions


def test_crash_and_restart_against_the_gateway_simulator(gateway_sim, tmp_path):
    """End to end with the real IB client: two crashes, no duplicate order, no lost fill."""
    from bt_ibkr.ib import client as ibc

    path = tmp_path / "journal.sqlite"
    day = date(2024, 1, 2)
    ref_a = make_order_ref("RegimeAwareEnsemble", "SPY", day, 1)
    ref_b = make_order_ref("RegimeAwareEnsemble", "QQQ", day, 1)

    # run 1: A is journaled and sent, B only journaled; the process dies before recording
    # anything else, and A fills while it is down
    ib = ibc.IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=1, timeout=10)
    spy, qqq = ib.qualifyContracts(ibc.Stock("SPY", "SMART", "USD"), ibc.Stock("QQQ", "SMART", "USD"))
    with Journal(path) as j:
        assert j.record_intent(Intent(ref_a, "RegimeAwareEnsemble", "SPY", "BUY", 10, day))
        assert j.record_intent(Intent(ref_b, "RegimeAwareEnsemble", "QQQ", "BUY", 5, day))
        ib.placeOrder(spy, ibc.Order(action="BUY", totalQuantity=10, orderType="MKT", orderRef=ref_a))
        gateway_sim.wait_for_request("placeOrder", count=1, timeout=30, pump=ib.sleep)
    ib.disconnect()
    gateway_sim.advance(minutes=5)

    # run 2: reconcile adopts A with its fill, proposes B for resending; B is sent
    ib = ibc.IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=1, timeout=10)
    account = ib.managedAccounts()[0]
    with Journal(path) as j:
        rep = reconcile_journal(j, *_gateway_state(ib, account), datetime.now(UTC),
                                timedelta(hours=1))
        assert rep.adopted == [ref_a]
        assert [f.order_ref for f in rep.missed_fills] == [ref_a]
        assert [r.order_ref for r in rep.resend] == [ref_b]
        assert rep.ok and rep.position_mismatches == []
        rec_a = j.get(ref_a)
        assert (rec_a.status, rec_a.filled, rec_a.order_id is not None) == (FILLED, 10.0, True)
        trade = ib.placeOrder(qqq, ibc.Order(action="BUY", totalQuantity=5, orderType="MKT",
                                             orderRef=ref_b))
        j.mark_sent(ref_b, trade.order.orderId)
        gateway_sim.wait_for_request("placeOrder", count=2, timeout=30, pump=ib.sleep)
    ib.disconnect()  # dies again before B's fill is recorded
    gateway_sim.advance(minutes=5)

    # run 3: B's fill is recovered; nothing to resend; journal and gateway agree
    ib = ibc.IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=1, timeout=10)
    with Journal(path) as j:
        orders, execs, positions = _gateway_state(ib, account)
        rep = reconcile_journal(j, orders, execs, positions, datetime.now(UTC),
                                timedelta(hours=1))
        assert rep.resend == [] and rep.lost == [] and rep.position_mismatches == []
        assert [f.order_ref for f in rep.missed_fills] == [ref_b]
        assert j.get(ref_b).status == FILLED
        assert positions == {"SPY": 10.0, "QQQ": 5.0}
        assert j.positions() == {"QQQ": 5.0, "SPY": 10.0}
        # exactly one order per intent reached the gateway
        assert sorted(e.order_ref for e in execs) == sorted([ref_a, ref_b])
        assert len(j.intents()) == 2 and len(j.fills()) == 2
    ib.disconnect()


# --------------------------------------------------------------------------------------------
# durability


@pytest.mark.slow
def test_two_journal_objects_on_one_file_do_not_corrupt(tmp_path):
    path = tmp_path / "shared.sqlite"
    a, b = Journal(path), Journal(path)
    results: dict[str, list[bool]] = {"a": [], "b": []}

    def work(j, name):
        for i in range(60):
            # both writers race for the same 60 orderRefs and write their own fills
            results[name].append(j.record_intent(intent(seq=i + 1)))
            j.record_fill(Fill(f"{name}-{i}", None, "SPY", "BUY", 1, 470, NOW))

    threads = [threading.Thread(target=work, args=(a, "a")),
               threading.Thread(target=work, args=(b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    # every orderRef was recorded by exactly one of the two writers
    assert [x or y for x, y in zip(results["a"], results["b"], strict=True)] == [True] * 60
    assert [x and y for x, y in zip(results["a"], results["b"], strict=True)] == [False] * 60
    with Journal(path) as c:
        assert len(c.intents()) == 60
        assert len(c.fills()) == 120 and c.position_from_fills("SPY") == 120.0
        assert c.integrity_check() == "ok"
    a.close()
    b.close()


CRASH_WRITER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from bt_ibkr.ib.order_refs import make_order_ref
    from bt_ibkr.live.journal import Fill, Intent, Journal
    j = Journal(sys.argv[1])
    day = datetime(2024, 1, 5)
    i = 0
    while True:
        i += 1
        ref = make_order_ref("RegimeAwareEnsemble", "SPY", day, i)
        j.record_intent(Intent(ref, "RegimeAwareEnsemble", "SPY", "BUY", 1, day))
        j.record_fill(Fill(f"e{i}", ref, "SPY", "BUY", 1, 470.0, datetime.now(timezone.utc)))
        print(i, flush=True)  # i is committed
""")


@pytest.mark.slow
def test_file_survives_sigkill_mid_write(tmp_path):
    path = tmp_path / "crash.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    committed = 0
    deadline = time.monotonic() + 60
    try:
        while committed < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed = int(line)
        proc.send_signal(signal.SIGKILL)  # mid-loop, probably mid-transaction
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert committed >= 40, "the writer did not get going"
    with Journal(path) as j:
        assert j.integrity_check() == "ok"
        intents, fills = j.intents(), j.fills()
        # everything reported as committed is there; at most the one in flight beyond it
        assert committed <= len(intents) <= committed + 1
        assert committed <= len(fills) <= committed + 1
        for rec in intents:
            assert rec.status in (INTENT, FILLED)
        # and the journal still works
        assert j.record_intent(intent(seq=10_000)) is True


def test_a_file_that_is_not_a_journal_is_a_clear_error(tmp_path):
    bad = tmp_path / "garbage.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="cannot open .*move the file aside"):
        Journal(bad)


def test_a_full_disk_is_named_as_such_not_as_a_damaged_journal(tmp_path):
    """SQLite's own page limit makes the same SQLITE_FULL error a full disk does."""
    with Journal(tmp_path / "j.sqlite") as j:
        pages = j._db.execute("PRAGMA page_count").fetchone()[0]
        j._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(JournalError, match="the disk is full") as err:
            for i in range(1, 10_000):
                j.record_intent(intent(seq=i, note="x" * 2000))
        assert "move the file aside" not in str(err.value)
        assert j.integrity_check() == "ok"  # the failed transaction was rolled back
