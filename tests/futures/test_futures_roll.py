"""The live roll as a journaled state machine, on a real journal file: one roll decision, two
deterministic orderRefs, and a crash (journal closed and reopened, the plan rebuilt from the
journal and the gateway's per-contract positions) at every point neither doubles nor half-rolls
the position. The journal keys both orders by the root (``ES``), as IB's contract symbol."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bt_ibkr.futures.registry import ContractMonth
from bt_ibkr.ib.parsing import Fill
from bt_ibkr.live.futures_roll import RollPlan, pending_rolls, plan_rolls, roll_step
from bt_ibkr.live.journal import Journal

NOW = datetime(2024, 3, 8, 15, 0, tzinfo=UTC)
H4, M4 = ContractMonth("ES", 2024, 3), ContractMonth("ES", 2024, 6)


def held(gateway: dict[ContractMonth, float]) -> dict[ContractMonth, float]:
    return {c: q for c, q in gateway.items() if q}


def replan(journal, gateway: dict[ContractMonth, float], day: date) -> RollPlan:
    """What a restarted runner does: in-flight rolls from the journal, then new ones from the
    gateway's positions; the same roll found both ways is one plan (same orderRefs)."""
    plans = {p.refs: p for p in pending_rolls(journal)}
    for p in plan_rolls(held(gateway), day):
        plans.setdefault(p.refs, p)
    assert len(plans) <= 1
    return next(iter(plans.values()), None)


def drive(path, crash_at: int | None, close_fills=(3,), close_final="Filled"):
    """Run the roll of 3 ESH4 to completion, 'crashing' after ``crash_at`` gateway actions;
    return the journal, the last step and the gateway's positions per contract."""
    journal = Journal(path)
    journal.accept_positions({"ES": 3.0})
    gateway = {H4: 3.0}
    plan = plan_rolls(held(gateway), date(2024, 3, 8))[0]
    actions, execs = 0, 0
    while True:
        step = roll_step(journal, plan, NOW)
        if step.action in ("done", "abandoned"):
            return journal, step, held(gateway)
        it = step.intent
        if step.action == "send":
            journal.mark_sent(it.order_ref, order_id=100 + actions)
        else:  # working: the gateway fills it
            qtys = close_fills if it.order_ref.endswith(":C") else (it.quantity,)
            for q in qtys:
                execs += 1
                journal.record_fill(Fill(f"e{execs}", it.order_ref, it.symbol, it.side, q,
                                         5000.0, NOW))
                contract = plan.old if it.order_ref.endswith(":C") else plan.new
                gateway[contract] = gateway.get(contract, 0.0) + (q if it.side == "BUY" else -q)
            if it.order_ref.endswith(":C") and close_final != "Filled":
                journal.update_status(it.order_ref, close_final)
        actions += 1
        if actions == crash_at:
            journal.close()
            journal = Journal(path)
            # restarted on the next business day, knowing only the journal
            found = replan(journal, gateway, date(2024, 3, 11))
            if found is None:  # only once the roll is finished
                assert roll_step(journal, plan, NOW).action == "done"
                return journal, roll_step(journal, plan, NOW), held(gateway)
            plan = found


@pytest.mark.parametrize("crash_at", [None, 1, 2, 3, 4])
def test_a_crash_at_any_point_neither_doubles_nor_half_rolls(tmp_path, crash_at):
    journal, step, gateway = drive(tmp_path / "j.sqlite", crash_at)
    assert step.action == "done"
    assert gateway == {M4: 3.0}
    assert journal.positions() == {"ES": 3.0}  # a roll leaves the root's position as it was
    refs = sorted(r.order_ref for r in journal.intents())
    assert refs == ["ROLL:ES:202403>202406:1:C", "ROLL:ES:202403>202406:1:O"]
    assert len(journal.events("roll")) == 1
    assert pending_rolls(journal) == []
    assert replan(journal, gateway, date(2024, 3, 12)) is None  # nothing left to roll
    journal.close()


def test_a_partial_close_then_cancel_opens_only_what_closed(tmp_path):
    journal, step, gateway = drive(tmp_path / "j.sqlite", None, close_fills=(2,),
                                   close_final="Cancelled")
    assert step.action == "done" and step.left_in_old == 1.0
    assert gateway == {H4: 1.0, M4: 2.0}  # exposure kept: 3 contracts
    assert journal.positions() == {"ES": 3.0}
    journal.close()


def test_a_close_that_fills_nothing_abandons_without_opening(tmp_path):
    journal, step, gateway = drive(tmp_path / "j.sqlite", None, close_fills=(),
                                   close_final="Cancelled")
    assert step.action == "abandoned"
    assert gateway == {H4: 3.0} and journal.positions() == {"ES": 3.0}
    assert [r.order_ref for r in journal.intents()] == ["ROLL:ES:202403>202406:1:C"]
    assert pending_rolls(journal) == []
    # a retry is a new attempt with its own refs
    retry = RollPlan(H4, M4, 3.0, attempt=2)
    assert roll_step(journal, retry, NOW).intent.order_ref == "ROLL:ES:202403>202406:2:C"
    journal.close()


def test_rolls_are_planned_on_the_registry_roll_date_in_the_right_direction():
    assert plan_rolls({H4: 3.0}, date(2024, 3, 7)) == []
    (plan,) = plan_rolls({H4: -2.0}, date(2024, 3, 8))
    assert (plan.old, plan.new, plan.quantity, plan.long) == (H4, M4, -2.0, False)
    assert all(len(ref) <= 40 for ref in plan.refs)
    assert plan_rolls({M4: 1.0}, date(2024, 3, 8)) == []  # already in the held contract


def test_a_short_roll_buys_back_the_old_and_sells_the_new(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    plan = RollPlan(H4, M4, -2.0)
    close = roll_step(journal, plan, NOW).intent
    assert (close.symbol, close.side, close.quantity) == ("ES", "BUY", 2.0)
    assert close.note.endswith("(close ESH4)")
    journal.mark_sent(close.order_ref, 1)
    journal.record_fill(Fill("x1", close.order_ref, "ES", "BUY", 2, 5000.0, NOW))
    opened = roll_step(journal, plan, NOW).intent
    assert (opened.symbol, opened.side, opened.quantity) == ("ES", "SELL", 2.0)
    assert opened.note.endswith("(open ESM4)")
    journal.close()


def test_the_open_of_a_roll_into_a_close_out_window_is_refused_before_sending(tmp_path):
    from bt_ibkr.futures.guard import CloseOutError
    from bt_ibkr.live.futures_roll_exec import execute_roll

    journal = Journal(tmp_path / "j.sqlite")
    k4, m4 = ContractMonth("CL", 2024, 5), ContractMonth("CL", 2024, 6)  # CLM4: window 05-17
    plan = RollPlan(k4, m4, 2.0)
    close = roll_step(journal, plan, NOW).intent
    journal.mark_sent(close.order_ref, 1)
    journal.record_fill(Fill("c1", close.order_ref, "CL", "SELL", 2, 80.0, NOW))
    late = datetime(2024, 5, 20, 15, 0, tzinfo=UTC)
    with pytest.raises(CloseOutError, match="CL 202406"):
        execute_roll(None, journal, plan, lambda: late)  # never reaches the gateway
    opened = journal.get(plan.refs[1])
    assert opened.status == "intent" and opened.quantity == 2.0  # journaled, not sent
    journal.close()
