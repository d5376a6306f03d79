"""Orders that are ours, and only ours (issue 18, point 3), through the real client against
the gateway simulator: orderRefs carry the journal's identity; another program's order and
fill on our symbol neither block the run nor count in its position (one line reports them);
a manual order carrying our decision's ref but another side or size is never adopted and
stops the run (exit 4) naming both."""

from __future__ import annotations

from datetime import date

import pytest
from helpers.live import make_config
from helpers.sim import poll_until

from bt_ibkr.errors import AttentionError
from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.order_refs import make_order_ref, ref_owner
from bt_ibkr.ib.store import IBStore
from bt_ibkr.live.journal import Intent, Journal, journal_identity
from bt_ibkr.live.run_lock import journal_path
from bt_ibkr.live.runner import run_live


def place_elsewhere(sim, ref: str, side: str, qty: float, client_id: int = 77) -> None:
    """Another program (its own clientId) places a market order and waits for it at IB."""
    store = IBStore(port=sim.port, clientId=client_id, connect_timeout=10)
    try:
        store.start()
        contract = store.qualify(ibc.Stock("SPY", "SMART", "USD")).contract
        before = len(sim.broker.open_orders() + sim.broker.completed_orders())
        store.place_order(ref or f"manual-{client_id}",
                          contract, ibc.Order(action=side, totalQuantity=qty, orderType="MKT",
                                              orderRef=ref, tif="DAY"))
        poll_until(lambda: len(sim.broker.open_orders() + sim.broker.completed_orders())
                   > before, timeout=60, what="the other program's order at IB")
    finally:
        store.close()
        IBStore.reset_default()


def test_refs_carry_the_journals_identity():
    a = journal_identity("DU1234567", "/srv/a/journal.sqlite")
    assert a == journal_identity("DU1234567", "/srv/a/journal.sqlite")  # deterministic
    assert a != journal_identity("DU1234567", "/srv/b/journal.sqlite")  # another journal
    assert a != journal_identity("DU7654321", "/srv/a/journal.sqlite")  # another account
    ref = make_order_ref("RegimeAwareEnsemble", "SPY", date(2017, 1, 3), 1, owner=a)
    assert ref == f"bt2:{a}:RAE:SPY:20170103:1" and ref_owner(ref) == a and len(ref) <= 40


def test_another_programs_order_and_fill_neither_block_nor_count(gateway_sim_factory,
                                                                 tmp_path):
    sim = gateway_sim_factory(data="sample")  # fills at once
    cfg = make_config(tmp_path, sim.port)
    first = run_live(cfg, max_runtime=60)
    ours = first.orders[0]["quantity"]
    place_elsewhere(sim, "", "BUY", 7)  # a manual order (no ref) fills on our symbol
    place_elsewhere(sim, "other-bot-42", "BUY", 5, client_id=78)  # another program's
    sim.advance_days(1)
    lines: list[str] = []
    second = run_live(cfg, max_runtime=60, progress=lines.append)
    assert any(line.startswith("reconcile: not ours: ") and "2 fill(s)" in line
               for line in lines), lines
    assert "!!" not in " ".join(line for line in lines if "not ours" in line)
    with Journal(cfg.paths.journal) as j:
        assert j.position_from_fills("SPY") == ours + sum(
            o["quantity"] * (1 if o["side"] == "BUY" else -1) for o in second.orders
            if o["status"] == "filled")
        refs = {f.order_ref for f in j.fills()}
        assert not refs & {"", None, "other-bot-42"}  # never recorded as ours
    assert all(o["status"] != "refused" for o in second.orders)  # not blocked


def test_a_manual_order_with_our_ref_but_another_side_stops_the_run(gateway_sim_factory,
                                                                    tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = make_config(tmp_path, sim.port)
    jid = journal_identity("DU1234567", journal_path(cfg.paths.journal))
    ref = f"bt2:{jid}:RAE:SPY:20161230:1"
    with Journal(cfg.paths.journal) as j:  # our decision, journaled, then a crash
        j.bind_account("DU1234567")
        assert j.journal_id == jid
        j.record_intent(Intent(ref, "RegimeAwareEnsemble", "SPY", "BUY", 4377,
                               date(2016, 12, 30)))
    place_elsewhere(sim, ref, "SELL", 1)  # someone sends SELL 1 with our decision's ref
    with pytest.raises(AttentionError) as err:
        run_live(cfg, max_runtime=60)
    text = str(err.value)
    assert text.startswith(f"CONFLICT {ref}: an order at the gateway is SELL 1 SPY, but the "
                           "journal's decision was BUY 4377 SPY: not adopted"), text
    with Journal(cfg.paths.journal) as j:
        assert j.get(ref).status == "intent"  # never adopted
    orders = sim.broker.open_orders() + sim.broker.completed_orders()
    assert [(o.spec.action, o.spec.totalQuantity) for o in orders] == [("SELL", 1)]
