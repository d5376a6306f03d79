"""``python -m examples.live --symbols ES --futures ES`` against the gateway simulator through the
real ib_async client: the run trades the contract the roll registry holds on the simulated
session's date, rolls a held position in an earlier contract at start (one close, one open,
one journaled roll), survives a kill in the middle of the roll, and sends nothing before the
roll date, in read-only, or for a bad input.

The ES March 2024 contract (ESH4) rolls on 2024-03-08 (5 CME business days before its last
trade date, the third Friday 2024-03-15). A market order placed while CME's equity session is
closed rests at the gateway until the session's first price (as IB holds a DAY market order
submitted outside the contract's trading hours), which is how the kill lands between the close
reaching the gateway and its fill.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers.futures_live import (
    CLOSE_REF,
    HANG,
    OPEN_REF,
    buy_at_gateway,
    es_positions,
    futures_config,
    placed,
    roll_events,
    run_futures,
)
from helpers.live import assert_one_line_end, audit, cli, cli_env, run_cli
from helpers.sim import poll_until

from bt_ibkr.live.journal import Journal

CHICAGO = ZoneInfo("America/Chicago")
AFTER_ROLL = datetime(2024, 3, 11, 13, 0, tzinfo=CHICAGO)  # Monday after the roll date, open
BEFORE_ROLL = datetime(2024, 3, 5, 13, 0, tzinfo=CHICAGO)  # three business days before it


def run_es(tmp_path, sim, *extra: str):
    return run_futures(tmp_path, sim, "ES", *extra)


@pytest.mark.slow
def test_a_held_march_position_past_the_roll_date_rolls_to_june_at_start(gateway_sim_factory,
                                                                          tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    code, err, _ = run_es(tmp_path, sim)
    assert code == 0, err
    assert es_positions(sim) == {"ESM4": 3.0}
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)
    (event,) = roll_events(tmp_path)
    assert (event["detail"]["old"], event["detail"]["new"]) == ([2024, 3], [2024, 6])
    assert "futures ES: trading ESM4" in err
    assert "strategy sees 3 ESM4 x50" in err  # the Strategy's position, in the new contract
    summary = json.loads((tmp_path / "run.json").read_text())
    assert {o["orderRef"]: o["status"] for o in summary["orders"]} == {
        CLOSE_REF: "filled", OPEN_REF: "filled"}
    assert summary["positions"] == {"ES": 3.0}
    fills = [(r["orderRef"], r["side"], r["shares"]) for r in audit(tmp_path)
             if r["kind"] == "fill" and r.get("roll")]
    assert fills == [(CLOSE_REF, "SELL", 3.0), (OPEN_REF, "BUY", 3.0)]
    journal = Journal(tmp_path / "journal.sqlite")
    assert [(f.order_ref, f.side, f.shares) for f in journal.fills()
            if f.order_ref.startswith("ROLL:")] == fills
    journal.close()

    again, err2, _ = run_es(tmp_path, sim)  # the next start finds nothing to roll
    assert again == 0, err2
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)
    assert len(roll_events(tmp_path)) == 1 and es_positions(sim) == {"ESM4": 3.0}


@pytest.mark.slow
def test_a_run_killed_mid_roll_and_restarted_neither_doubles_nor_half_rolls(gateway_sim_factory,
                                                                           tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    sim.advance(hours=18)  # Tuesday 07:00 Chicago: the session opens at 08:30
    proc = subprocess.Popen(
        cli(tmp_path, sim.port, "--max-runtime", f"{HANG:g}", "--symbols", "ES", "--futures",
            "ES", config=futures_config(tmp_path)),
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        poll_until(lambda: placed(sim, CLOSE_REF) or proc.poll() is not None, timeout=HANG,
                   what="the roll's close at the gateway")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.kill()  # SIGKILL: the close is at the gateway, not filled, no open sent
        proc.communicate(timeout=30)
    assert es_positions(sim) == {"ESH4": 3.0} and placed(sim, OPEN_REF) == 0
    sim.advance(minutes=95)  # the session opens: the resting close fills, nobody connected
    assert es_positions(sim) == {}  # flat: half-rolled, the open is the restart's to send

    code, err, _ = run_es(tmp_path, sim)
    assert code == 0, err
    assert es_positions(sim) == {"ESM4": 3.0}
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)
    assert len(roll_events(tmp_path)) == 1
    assert "in flight since an earlier run" in err
    assert "strategy sees 3 ESM4 x50" in err


@pytest.mark.slow
def test_a_roll_started_while_the_market_is_closed_is_finished_by_the_next_start(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    sim.advance(hours=18)  # Tuesday 07:00 Chicago: closed, the close rests
    # the run's deadline (--max-runtime) ends the roll's wait: no progress while closed
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "ES", "--futures", "ES", "--config",
                           str(futures_config(tmp_path)), max_runtime=20)
    assert code == 4, err
    assert_one_line_end(err, code, "[live] !! roll ES 202403 -> ES 202406: order "
                                   f"{CLOSE_REF} made no progress")
    assert es_positions(sim) == {"ESH4": 3.0} and placed(sim, OPEN_REF) == 0

    # the next start, still before the open, follows the resting close until it fills
    proc = subprocess.Popen(
        cli(tmp_path, sim.port, "--max-runtime", f"{HANG:g}", "--symbols", "ES", "--futures",
            "ES", config=futures_config(tmp_path)),
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    lines = []
    try:
        for line in proc.stderr:  # the hang guard is the run's own --max-runtime
            lines.append(line)
            if "in flight since an earlier run" in line:
                break
        sim.advance(minutes=95)  # the session opens: the close fills, the open follows
        out, rest = proc.communicate(timeout=HANG + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    err = "".join(lines) + rest
    assert proc.returncode == 0, err
    assert es_positions(sim) == {"ESM4": 3.0}
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)
    assert len(roll_events(tmp_path)) == 1
    assert "strategy sees 3 ESM4 x50" in err


@pytest.mark.slow
def test_a_short_position_rolls_short(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", -2)
    code, err, _ = run_es(tmp_path, sim)
    assert code == 0, err
    assert es_positions(sim) == {"ESM4": -2.0}
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)
    assert "roll 2 ESH4 -> ESM4 (short" in err and "strategy sees -2 ESM4 x50" in err


@pytest.mark.slow
def test_only_the_run_accounts_position_is_rolled(gateway_sim_factory, tmp_path):
    other = "DU7654321"
    sim = gateway_sim_factory(start=AFTER_ROLL)
    sim.add_account(other, cash=1_000_000.0)
    buy_at_gateway(sim, "202403", 3)
    buy_at_gateway(sim, "202403", 5, account=other)
    code, err, _ = run_es(tmp_path, sim, "--account", sim.account)
    assert code == 0, err
    assert es_positions(sim, sim.account) == {"ESM4": 3.0}
    assert es_positions(sim, other) == {"ESH4": 5.0}  # another account's: never touched
    orders = [o for o in sim.broker.completed_orders() if o.spec.orderRef.startswith("ROLL:")]
    assert sorted((o.spec.orderRef, o.spec.account) for o in orders) == [
        (CLOSE_REF, sim.account), (OPEN_REF, sim.account)]


@pytest.mark.slow
def test_the_risk_gate_counts_a_contract_at_its_multiplier(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    config = tmp_path / "risk.json"
    config.write_text(json.dumps({"strategy": {"name": "helpers.futures_live:SayPosition"},
                                  "risk": {"max_order_notional": 100_000}}))
    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "ES", "--futures", "ES", "--config",
                           str(config), "--param", "buy=1", max_runtime=HANG)
    # one ES at about 5,000 points is about 250,000 of exposure, not 5,000
    assert "exceeds max_order_notional 100,000.00" in err, err
    assert len(sim.requests_named("placeOrder")) == orders and es_positions(sim) == {}
    assert code == 0, err


@pytest.mark.slow
def test_a_run_before_the_roll_date_trades_march_and_sends_nothing(gateway_sim_factory,
                                                                   tmp_path):
    sim = gateway_sim_factory(start=BEFORE_ROLL)
    buy_at_gateway(sim, "202403", 3)
    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_es(tmp_path, sim)
    assert code == 0, err
    assert len(sim.requests_named("placeOrder")) == orders
    assert es_positions(sim) == {"ESH4": 3.0} and roll_events(tmp_path) == []
    assert "futures ES: trading ESH4" in err and "strategy sees 3 ESH4 x50" in err


@pytest.mark.slow
def test_read_only_says_the_roll_and_sends_nothing(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_es(tmp_path, sim, "--read-only")
    assert code == 0, err
    assert len(sim.requests_named("placeOrder")) == orders
    assert es_positions(sim) == {"ESH4": 3.0} and roll_events(tmp_path) == []
    assert "roll 3 ESH4 -> ESM4" in err and "NOT sent (read-only)" in err
    assert "this run trades ESH4, where the position is" in err
    assert "strategy sees 3 ESH4 x50" in err


@pytest.mark.slow
def test_a_run_halted_for_the_day_says_the_roll_and_sends_nothing(gateway_sim_factory,
                                                                   tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    journal = Journal(tmp_path / "journal.sqlite")  # an earlier run of today hit the limit
    journal.record_halt(AFTER_ROLL.date(), sim.account, "daily loss 3.1% >= 3%")
    journal.close()
    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_es(tmp_path, sim)
    assert len(sim.requests_named("placeOrder")) == orders
    assert es_positions(sim) == {"ESH4": 3.0} and roll_events(tmp_path) == []
    assert "roll 3 ESH4 -> ESM4" in err and "NOT sent (daily-loss halt)" in err, err
    assert "strategy sees 3 ESH4 x50" in err  # where the position still is
    assert code == 4, err  # the halt needs attention, as on any halted run


@pytest.mark.slow
def test_a_roll_in_flight_is_finished_by_a_run_without_futures(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=AFTER_ROLL)
    buy_at_gateway(sim, "202403", 3)
    sim.advance(hours=18)  # closed: the close rests at the gateway
    proc = subprocess.Popen(
        cli(tmp_path, sim.port, "--max-runtime", f"{HANG:g}", "--symbols", "ES", "--futures",
            "ES", config=futures_config(tmp_path)),
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        poll_until(lambda: placed(sim, CLOSE_REF) or proc.poll() is not None, timeout=HANG,
                   what="the roll's close at the gateway")
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    sim.advance(minutes=95)
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "SPY", "--config",
                           str(futures_config(tmp_path)), max_runtime=HANG)
    assert code == 0, err
    assert es_positions(sim) == {"ESM4": 3.0}
    assert (placed(sim, CLOSE_REF), placed(sim, OPEN_REF)) == (1, 1)


@pytest.mark.slow
def test_a_position_in_a_later_contract_needs_attention_and_sends_nothing(gateway_sim_factory,
                                                                           tmp_path):
    sim = gateway_sim_factory(start=BEFORE_ROLL)
    buy_at_gateway(sim, "202406", 2)  # June, while the registry still holds March
    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_es(tmp_path, sim)
    assert code == 4, err
    line = assert_one_line_end(err, code, "[live] !! account DU1234567 holds 2 ESM4")
    assert "ESH4" in line
    assert len(sim.requests_named("placeOrder")) == orders


@pytest.mark.slow
@pytest.mark.parametrize("args, named", [
    (["--symbols", "ES", "--futures", "XX"], "--futures XX: unknown futures root"),
    (["--symbols", "SPY", "--futures", "ES"], "futures ES: not among the symbols"),
    (["--symbols", "ES", "--futures", "ES:QQ"], "--futures ES:QQ: unknown futures root"),
    # two symbols of one root would trade its one held contract twice
    (["--symbols", "ES,MES", "--futures", "ES,MES:ES"],
     "futures ES, MES: all trade ES's held contract"),
])
def test_bad_futures_input_is_one_line_and_exit_2(tmp_path, args, named):
    proc = subprocess.run(cli(tmp_path, 1, *args), cwd=tmp_path, env=cli_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = assert_one_line_end(proc.stderr, 2, "error:")
    assert named in line


def test_an_unknown_root_in_the_config_file_is_refused_naming_the_key(tmp_path):
    from bt_ibkr.errors import ConfigError
    from bt_ibkr.live.config import load_config

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"symbols": ["ES", "MES"], "futures": {"ES": "ES", "MES": "MX"}}))
    with pytest.raises(ConfigError, match=r"futures\.MES: unknown futures root 'MX'"):
        load_config(path, env={})
    path.write_text(json.dumps({"symbols": ["ES", "NQ"], "futures": "ES,NQ"}))
    assert load_config(path, env={}).futures == {"ES": "ES", "NQ": "NQ"}
