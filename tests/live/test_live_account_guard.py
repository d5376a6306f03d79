"""Account identity on every connection (issue 18, point 1): a ``--paper`` stream run whose
gateway comes back on the same port logged into another account (a live U... or another
paper DU...) sends nothing there, stops with exit 3 and one line naming both accounts; a
restart into the same account goes on trading; every order names its account. Through the
real CLI and client against the gateway simulator."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from helpers.live import cli, cli_env, wait_for

HANG = 120


def _orders(broker) -> list:
    return broker.open_orders() + broker.completed_orders()


def _start(tmp_path, sim) -> subprocess.Popen:
    config = tmp_path / "flipper.json"
    config.write_text(json.dumps({"strategy": {"name": "helpers.live:Flipper"},
                                  "run_mode": "stream", "bar_size": "5 secs"}))
    args = cli(tmp_path, sim.port, "--max-runtime", str(HANG), config=config)
    return subprocess.Popen(args, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _trade_until_orders(sim, broker, n: int) -> None:
    for _ in range(60):
        if len(_orders(broker)) >= n:
            return
        sim.advance(seconds=5)
        time.sleep(0.05)  # let the client's bar reach the strategy (the wait below bounds it)
    wait_for(lambda: len(_orders(broker)) >= n, 30, f"{n} order(s) at the gateway")


@pytest.mark.slow
@pytest.mark.parametrize("other", ["U7654321", "DU7654321"])
def test_a_gateway_back_as_another_account_gets_nothing_and_the_run_exits_3(
        gateway_sim_factory, tmp_path, other):
    sim = gateway_sim_factory(data="sample", account="DU1234567")
    proc = _start(tmp_path, sim)
    try:
        sim.wait_for_request("reqRealTimeBars", timeout=60)
        paper = sim.broker
        _trade_until_orders(sim, paper, 1)
        assert all(o.spec.account == "DU1234567" for o in _orders(paper))
        before = len(_orders(paper))
        sim.restart(rollback_ids=False, downtime=0.3, account=other)
        other_broker = sim.broker
        assert other_broker is not paper
        for _ in range(20):  # the market goes on: a run still trading would order now
            sim.advance(seconds=5)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, err[-2000:]
    assert _orders(other_broker) == []  # nothing reached the other account
    assert len(_orders(paper)) == before  # and nothing more the paper one
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: the gateway at 127.0.0.1:") and other in last, last
    assert "DU1234567" in last and "nothing was sent" in last


@pytest.mark.slow
def test_a_restart_into_the_same_account_goes_on_trading(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", account="DU1234567")
    proc = _start(tmp_path, sim)
    try:
        sim.wait_for_request("reqRealTimeBars", timeout=60)
        _trade_until_orders(sim, sim.broker, 1)
        before = len(_orders(sim.broker))
        sim.restart(rollback_ids=False, downtime=0.3)
        sim.wait_for_request("reqRealTimeBars", count=2, timeout=60)
        _trade_until_orders(sim, sim.broker, before + 1)
        assert all(o.spec.account == "DU1234567" for o in _orders(sim.broker))
    finally:
        proc.send_signal(2)
        out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, err[-2000:]
