"""A lost or replaced journal never sends the same order twice.

The runner's orderRefs are deterministic, so the gateway itself remembers what an earlier run
sent. These runs lose the journal between two runs of the same decision (moved aside, deleted,
or a fresh ``--journal`` path) and check against the simulator's own ledger that the second run
adopts the first run's order instead of sending it again, and that the run says it needs
attention (exit 4 from the CLI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sim import order_status, our_ref, run_live_until

from bt_ibkr.errors import AttentionError
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import run_live

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, port: int, journal: str):
    return load_config(None, env={}, overrides={
        "connection.port": port, "paths.journal": str(tmp_path / journal),
        "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")})


def sim_orders(sim, ref: str | None = None) -> list:
    return [o for o in sim.broker.open_orders() + sim.broker.completed_orders()
            if ref is None or o.spec.orderRef == ref]


def sim_position(sim, symbol: str = "SPY") -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == symbol)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["moved_aside", "deleted"])
def test_lost_journal_with_a_working_order_adopts_it_and_sends_nothing(gateway_sim_factory,
                                                                       tmp_path, how):
    """A journal lost and made again at its path has the same identity: it recognises its
    orders (refs bt2:<identity>:...) at the gateway, adopts them and never sends one twice."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    REF = our_ref(tmp_path / "journal.sqlite")  # noqa: N806
    first = run_live_until(config(tmp_path, sim.port, "journal.sqlite"),
                           order_status(REF, "submitted"))
    assert [(o["orderRef"], o["status"]) for o in first.orders] == [(REF, "submitted")]
    qty = first.orders[0]["quantity"]
    journal = "journal.sqlite"
    if how == "moved_aside":
        for suffix in ("", "-wal", "-shm"):
            src = tmp_path / f"journal.sqlite{suffix}"
            if src.exists():
                src.rename(tmp_path / f"journal.old{suffix}")
    else:
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"journal.sqlite{suffix}").unlink(missing_ok=True)

    second = run_live_until(config(tmp_path, sim.port, journal), order_status(REF, "submitted"))
    assert len(sim_orders(sim)) == 1, "the same decision was sent twice"
    assert len(sim.broker.open_orders()) == 1
    (order,) = second.orders
    assert order["orderRef"] == REF and order.get("duplicate_skipped") is True
    assert second.reconcile["recovered"] == [REF] and not second.reconcile["ok"]
    assert any(line.startswith("!! RECOVERED order " + REF) for line in second.needs_attention)
    with Journal(tmp_path / journal) as j:
        rec = j.get(REF)
        assert (rec.status, rec.quantity, rec.order_id) == (
            "submitted", qty, sim_orders(sim)[0].order_id)

    sim.advance(seconds=10)  # the one order fills; a third run with the recovered journal agrees
    third = run_live(config(tmp_path, sim.port, journal), max_runtime=60)
    assert sim_position(sim) == qty  # never 2 x qty
    assert third.reconcile["ok"] and third.needs_attention == []
    assert third.positions == {"SPY": qty}


def test_a_new_journal_at_another_path_sends_nothing_next_to_the_old_ones_order(
        gateway_sim_factory, tmp_path):
    """A journal at another path is another journal: the old one's working order is not its
    own, and since bt_ibkr trades one journal per account it refuses to trade the symbol
    (exit 4 in the CLI) instead of sending the decision a second time."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    REF = our_ref(tmp_path / "journal.sqlite")  # noqa: N806
    run_live_until(config(tmp_path, sim.port, "journal.sqlite"), order_status(REF, "submitted"))
    with pytest.raises(AttentionError, match="another bt_ibkr journal .* has orders on SPY"):
        run_live(config(tmp_path, sim.port, "elsewhere/journal.sqlite"), max_runtime=60)
    assert len(sim_orders(sim)) == 1, "the same decision was sent twice"


@pytest.mark.slow
def test_a_journal_made_again_after_the_fill_adopts_it_and_buys_nothing_more(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")  # fills at once
    REF = our_ref(tmp_path / "a.sqlite")  # noqa: N806
    first = run_live(config(tmp_path, sim.port, "a.sqlite"), max_runtime=30)
    qty = first.orders[0]["quantity"]
    assert sim_position(sim) == qty
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"a.sqlite{suffix}").unlink(missing_ok=True)
    second = run_live(config(tmp_path, sim.port, "a.sqlite"), max_runtime=30)
    assert len(sim_orders(sim)) == 1 and sim_position(sim) == qty
    assert second.reconcile["recovered"] == [REF]
    with Journal(tmp_path / "a.sqlite") as j:
        assert j.get(REF).status == "filled"
        assert {f.exec_id for f in j.fills()} == {e.exec_id for e in sim.broker.executions()}
        # recorded from reqExecutions at start-up, with IB's commission
        assert {f.exec_id: f.commission for f in j.fills()} == {
            e.exec_id: pytest.approx(e.commission) for e in sim.broker.executions()}
        assert j.positions() == {"SPY": qty}


@pytest.mark.slow
def test_cli_exits_4_next_to_another_journals_order_and_sends_nothing(gateway_sim_factory,
                                                                      tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("BT_IBKR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

    def cli(journal: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "examples.live", "--paper", "--port", str(sim.port),
             "--journal", str(tmp_path / journal), "--max-runtime", "3"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    first = cli("one.sqlite")
    assert first.returncode == 0, first.stderr[-2000:]
    second = cli("two.sqlite")
    assert second.returncode == 4, second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert "another bt_ibkr journal (bt2:" in last and "one journal per account" in last, last
    assert len(sim_orders(sim)) == 1
