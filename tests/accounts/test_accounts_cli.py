"""Two ``python -m examples.live`` processes at the same time under one login, one per
account, each with the default paths: each exits 0, says which journal it uses, and keeps its
journal, summary and orders to its own account."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.live import cli_env

from bt_ibkr.live.journal import Journal

MINE, OTHER = "DU111", "DU222"


@pytest.mark.slow
def test_two_cli_runs_at_once_each_keep_to_their_account(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", account=MINE, broker_options={"cash": 100_000.0})
    sim.add_account(OTHER, cash=50_000.0)
    procs = {
        account: subprocess.Popen(
            [sys.executable, "-m", "examples.live", "--paper", "--port", str(sim.port),
             "--account", account, "--client-id", str(client_id), "--max-runtime", "60",
             "--json", "runs/{account}.json"],
            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        for account, client_id in ((MINE, 21), (OTHER, 22))}
    outputs = {account: proc.communicate(timeout=240) for account, proc in procs.items()}
    refs: dict[str, set[str]] = {}
    for account, proc in procs.items():
        err = outputs[account][1]
        assert proc.returncode == 0, err
        journal = Path("state") / account / "journal.sqlite"
        assert f"account {account} (paper); journal {journal}" in err
        summary = json.loads((tmp_path / "runs" / f"{account}.json").read_text())
        assert summary["account"] == account and summary["journal"] == str(journal)
        with Journal(tmp_path / journal) as j:
            assert j.account == account
            refs[account] = {i.order_ref for i in j.intents()}
        assert {o["orderRef"] for o in summary["orders"]} <= refs[account]
    assert not (tmp_path / "state" / "journal.sqlite").exists()
    assert refs[MINE] and refs[OTHER] and not refs[MINE] & refs[OTHER]
    for order in sim.broker.open_orders() + sim.broker.completed_orders():
        owner = [a for a in (MINE, OTHER) if order.spec.orderRef in refs[a]]
        assert owner == [order.spec.account]
