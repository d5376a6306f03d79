"""``python -m examples.live --futures ROOT`` for the roots besides ES (NQ, CL, GC, ZN) against
the gateway simulator through the real ib_async client: a held position rolls across its
root's roll date (one close, one open, one journaled roll), a kill in the middle of a CL roll
restarts into the right position, and a run trading a physically settled contract near its
close-out window warns, and refuses an order that opens or adds inside it.

The dates, from the exchanges' rules and the roll registry (5 business days before the first
notice day, or the last trade date when notice comes later, as for CL):

* CL March 2024 (CLH4): last trade 2024-02-20 (3 business days before the 25th, a Sunday);
  rolls to CLJ4 on 2024-02-12; warned from 2024-02-05, opens refused from 2024-02-15;
* GC February 2024 (GCG4): first notice 2024-01-31; rolls to GCJ4 (the held cycle skips
  March) on 2024-01-24;
* ZN March 2024 (ZNH4): first notice 2024-02-29; rolls to ZNM4 on 2024-02-22;
* NQ March 2024 (NQH4): cash settled, last trade 2024-03-15; rolls to NQM4 on 2024-03-08.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers.futures_live import (
    HANG,
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

# root, the simulator's start (a business day after the roll date, 13:00 Chicago: the
# session is open), the contract held, the contract rolled to
ROLLS = [
    ("CL", datetime(2024, 2, 13, 13, 0, tzinfo=CHICAGO), ("202403", "CLH4"), ("202404", "CLJ4"),
     1000),
    ("GC", datetime(2024, 1, 25, 13, 0, tzinfo=CHICAGO), ("202402", "GCG4"), ("202404", "GCJ4"),
     100),
    ("ZN", datetime(2024, 2, 23, 13, 0, tzinfo=CHICAGO), ("202403", "ZNH4"), ("202406", "ZNM4"),
     1000),
    ("NQ", datetime(2024, 3, 11, 13, 0, tzinfo=CHICAGO), ("202403", "NQH4"), ("202406", "NQM4"),
     20),
]


def _refs(root: str, old: str, new: str) -> tuple[str, str]:
    return f"ROLL:{root}:{old}>{new}:1:C", f"ROLL:{root}:{old}>{new}:1:O"


@pytest.mark.slow
@pytest.mark.parametrize("root, start, old, new, mult", ROLLS, ids=[r[0] for r in ROLLS])
def test_a_held_position_rolls_to_the_next_held_contract_at_start(gateway_sim_factory, tmp_path,
                                                                   root, start, old, new, mult):
    sim = gateway_sim_factory(start=start)
    buy_at_gateway(sim, old[0], 3, root=root)
    close, open_ = _refs(root, old[0], new[0])
    code, err, _ = run_futures(tmp_path, sim, root)
    assert code == 0, err
    assert es_positions(sim, root=root) == {new[1]: 3.0}
    assert (placed(sim, close), placed(sim, open_)) == (1, 1)
    (event,) = roll_events(tmp_path)
    assert (event["detail"]["old"], event["detail"]["new"]) == (
        [int(old[0][:4]), int(old[0][4:])], [int(new[0][:4]), int(new[0][4:])])
    assert f"futures {root}: trading {new[1]}" in err
    assert f"strategy sees 3 {new[1]} x{mult}" in err
    fills = [(r["orderRef"], r["side"], r["shares"]) for r in audit(tmp_path)
             if r["kind"] == "fill" and r.get("roll")]
    assert fills == [(close, "SELL", 3.0), (open_, "BUY", 3.0)]

    again, err2, _ = run_futures(tmp_path, sim, root)  # the next start finds nothing to roll
    assert again == 0, err2
    assert (placed(sim, close), placed(sim, open_)) == (1, 1)
    assert len(roll_events(tmp_path)) == 1


@pytest.mark.slow
def test_a_crude_run_killed_mid_roll_restarts_into_the_new_contract(gateway_sim_factory,
                                                                    tmp_path):
    root, start, old, new, _ = ROLLS[0]
    close, open_ = _refs(root, old[0], new[0])
    sim = gateway_sim_factory(start=start)
    buy_at_gateway(sim, old[0], 2, root=root)
    sim.advance(hours=18)  # Wednesday 07:00 Chicago: the session opens at 08:30
    proc = subprocess.Popen(
        cli(tmp_path, sim.port, "--max-runtime", f"{HANG:g}", "--symbols", root, "--futures",
            root, config=futures_config(tmp_path)),
        cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        poll_until(lambda: placed(sim, close) or proc.poll() is not None, timeout=HANG,
                   what="the roll's close at the gateway")
        assert proc.poll() is None, proc.communicate()
    finally:
        proc.kill()  # SIGKILL: the close rests at the gateway, no open sent
        proc.communicate(timeout=30)
    assert es_positions(sim, root=root) == {old[1]: 2.0} and placed(sim, open_) == 0
    sim.advance(minutes=95)  # the session opens: the resting close fills, nobody connected
    assert es_positions(sim, root=root) == {}

    code, err, _ = run_futures(tmp_path, sim, root)
    assert code == 0, err
    assert es_positions(sim, root=root) == {new[1]: 2.0}
    assert (placed(sim, close), placed(sim, open_)) == (1, 1)
    assert len(roll_events(tmp_path)) == 1
    assert "in flight since an earlier run" in err
    assert f"strategy sees 2 {new[1]} x1000" in err


# -- the close-out window --------------------------------------------------------------------
WARNED = datetime(2024, 2, 8, 13, 0, tzinfo=CHICAGO)  # CLH4 warned from 2024-02-05
INSIDE = datetime(2024, 2, 16, 13, 0, tzinfo=CHICAGO)  # CLH4 refuses opens from 2024-02-15


@pytest.mark.slow
def test_a_run_before_the_roll_warns_that_the_window_is_near(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=WARNED)
    buy_at_gateway(sim, "202403", 1, root="CL")
    code, err, _ = run_futures(tmp_path, sim, "CL", "--param", "buy=1")
    assert code == 0, err
    line = next(x for x in err.splitlines() if "!! futures CL: CLH4" in x)
    assert "last trade day 2024-02-20" in line and "starts 2024-02-15" in line
    assert "rolls a position to CLJ4 on 2024-02-12" in line
    (warning,) = [r for r in audit(tmp_path) if r.get("event") == "close_out_warning"]
    assert (warning["contract"], warning["close_out_start"]) == ("CLH4", "2024-02-15")
    assert es_positions(sim, root="CL") == {"CLH4": 2.0}  # before the window: the buy is sent


@pytest.mark.slow
def test_an_unrolled_position_inside_the_window_refuses_an_open(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=INSIDE)
    buy_at_gateway(sim, "202403", 1, root="CL")
    orders = len(sim.requests_named("placeOrder"))
    # read-only: the roll is not sent, the run trades CLH4 where the position is
    code, err, _ = run_futures(tmp_path, sim, "CL", "--read-only", "--param", "buy=1")
    assert code == 2, err
    assert "this run trades CLH4, where the position is" in err
    assert "inside its close-out window since 2024-02-15" in err  # the start's warning
    line = assert_one_line_end(err, code, "error: CL 202403 (CLH4) is physically settled")
    assert "refusing to open or add to a position on 2024-02-16" in line
    assert "trade CL 202404 instead" in line
    assert len(sim.requests_named("placeOrder")) == orders
    (refused,) = [r for r in audit(tmp_path) if r.get("event") == "close_out_refused"]
    assert (refused["contract"], refused["position"], refused["quantity"]) == ("CLH4", 1, 1)
    journal = Journal(tmp_path / "journal.sqlite")  # refused before it was journaled
    assert not [r for r in journal.intents() if not r.order_ref.startswith("ROLL:")]
    journal.close()


@pytest.mark.slow
def test_reducing_inside_the_window_is_allowed(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=INSIDE)
    buy_at_gateway(sim, "202403", 2, root="CL")
    code, err, _ = run_futures(tmp_path, sim, "CL", "--read-only", "--param", "buy=-1")
    assert code == 0, err
    assert "inside its close-out window since 2024-02-15" in err
    assert "withheld" in err  # passed the close-out check; read-only sends nothing
    assert not [r for r in audit(tmp_path) if r.get("event") == "close_out_refused"]


CLH4_NAME = "CL-FUT-NYMEX-USD-202403-1000"  # the contract itself, not a --futures root


@pytest.mark.slow
def test_a_contract_traded_by_its_dataname_is_checked_too(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=INSIDE)
    buy_at_gateway(sim, "202403", 2, root="CL")
    config = str(futures_config(tmp_path))
    code, err, _ = run_cli(tmp_path, sim, "--symbols", CLH4_NAME, "--config", config,
                           "--param", "buy=-1", max_runtime=HANG)
    assert code == 0, err
    assert f"!! futures {CLH4_NAME}: CLH4 is physically settled" in err
    assert es_positions(sim, root="CL") == {"CLH4": 1.0}  # the reducing sell was sent, filled

    orders = len(sim.requests_named("placeOrder"))
    code, err, _ = run_cli(tmp_path, sim, "--symbols", CLH4_NAME, "--config", config,
                           "--param", "buy=1", max_runtime=HANG)
    assert code == 2, err
    assert_one_line_end(err, code, "error: CL 202403 (CLH4) is physically settled")
    assert len(sim.requests_named("placeOrder")) == orders
    assert es_positions(sim, root="CL") == {"CLH4": 1.0}


@pytest.mark.slow
def test_a_cash_settled_root_is_never_warned(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=datetime(2024, 3, 13, 13, 0, tzinfo=CHICAGO))
    buy_at_gateway(sim, "202403", 1, root="NQ")
    code, err, _ = run_futures(tmp_path, sim, "NQ", "--read-only", "--param", "buy=1")
    assert code == 0, err
    assert "this run trades NQH4" in err and "!! futures NQ: NQH4" not in err
    assert not [r for r in audit(tmp_path) if str(r.get("event", "")).startswith("close_out")]
