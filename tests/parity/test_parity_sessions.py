"""Session records and their replay: a ``--simulate`` run is recorded under
state/simulate/sessions/<run_id>/ and replayed through the backtest with 0 decision diffs;
one session of 5-second bars through IB, replayed through the backtest, matches too; a
killed-and-restarted run's records replay cleanly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bt_ibkr.gateway_sim.frames import fill_like_backbroker
from bt_ibkr.parity.paths import ParityConfig, run_ib_feeds
from bt_ibkr.parity.sessions import load_session, replay, replay_recording
from examples import live as live_cli
from examples import parity as parity_cli
from strategies import RegimeAwareEnsemble


@pytest.mark.slow
def test_a_simulate_run_is_recorded_and_replays_with_no_decision_diff(in_tmp, capsys):
    assert live_cli.main(["--paper", "--simulate", "--json", "run.json",
                          "--max-runtime", "60"]) == 0
    summary = json.loads((in_tmp / "run.json").read_text())
    session = in_tmp / summary["session_dir"]
    assert session.parent == in_tmp / "state" / "simulate" / "sessions"
    rec = load_session(session)
    assert rec.meta["run_id"] == summary["run_id"]
    assert rec.meta["strategy_path"] == "strategies.ensemble:RegimeAwareEnsemble"
    assert len(rec.bars) > 250  # the warm-up backfill and the decision bar
    # the session decided on its last (live) bar and sent the run's one order
    last = rec.bars[-1]
    assert last.feeds["SPY"]["live"] and not rec.bars[0].feeds["SPY"]["live"]
    assert [(o["data"], o["side"], o["size"]) for o in last.orders] == [
        ("SPY", o["side"], o["quantity"]) for o in summary["orders"]]
    report = replay(in_tmp / "state" / "simulate" / "sessions")
    assert report.bars == len(rec.bars)
    assert report.decision_diffs == 0, report.first_divergence
    assert report.orders_backtest == report.orders_ib == 1
    # the CLI says the same (exit 0) ...
    capsys.readouterr()
    assert parity_cli.main(["--replay", str(session), "--json", "rp.json"]) == 0
    assert json.loads((in_tmp / "rp.json").read_text())["decision_diffs"] == 0
    # ... and exit 4 naming the bar once the record disagrees with what the Strategy decides
    lines = (session / "bars.jsonl").read_text().splitlines()
    bar = json.loads(lines[-1])
    bar["decision"]["intents"] = []
    lines[-1] = json.dumps(bar)
    (session / "bars.jsonl").write_text("\n".join(lines) + "\n")
    assert parity_cli.main(["--replay", str(session), "--json", "rp.json"]) == 4
    out = json.loads((in_tmp / "rp.json").read_text())
    assert out["decision_diffs"] == 1
    assert out["first_divergence"]["bar"] == len(lines) - 1
    assert out["first_divergence"]["field"] == "decision"


def test_a_simulate_run_recorded_in_parts_replays_from_the_cli_with_no_decision_diff(
        in_tmp, capsys):
    """--session-part-mb 0.02 (about 20 KB parts): the daily --simulate session (~270 bars,
    ~140 KB) is written in gzip'd parts, and --replay reads them in order with 0 decision
    diffs. --keep-sessions-days 30 leaves a record last written 400 days ago alone when it is
    not of a run of this journal (a --simulate run starts a fresh journal): reported, audited
    (retention of a journal's own records: tests/live/test_live_records_safety.py)."""
    import os
    import time

    from bt_ibkr.live.audit import read_audit

    old = in_tmp / "state" / "simulate" / "sessions" / "20200102T000000Z-0ld"
    old.mkdir(parents=True)
    (old / "meta.json").write_text('{"run_id": "20200102T000000Z-0ld"}')
    then = time.time() - 400 * 86_400
    os.utime(old / "meta.json", (then, then))
    assert live_cli.main(["--paper", "--simulate", "--json", "run.json", "--max-runtime", "60",
                          "--session-part-mb", "0.02", "--keep-sessions-days", "30"]) == 0
    summary = json.loads((in_tmp / "run.json").read_text())
    session = in_tmp / summary["session_dir"]
    parts = sorted(p.name for p in session.glob("bars.*.jsonl.gz"))
    assert len(parts) >= 3 and parts[0] == "bars.000001.jsonl.gz"
    rec = load_session(session)
    assert [b.i for b in rec.bars] == list(range(len(rec.bars))) and len(rec.bars) > 250
    assert old.exists()
    unclaimed = [r for r in read_audit(in_tmp / summary["audit"])
                 if r.get("event") == "sessions_unclaimed"]
    assert [r["sessions"] for r in unclaimed] == [[old.name]]
    err = capsys.readouterr().err
    assert "sessions: deleted" not in err
    assert f"are not of a run of journal {in_tmp / 'state' / 'simulate' / 'journal.sqlite'}" in err
    assert parity_cli.main(["--replay", str(session), "--json", "rp.json"]) == 0
    out = json.loads((in_tmp / "rp.json").read_text())
    assert out["decision_diffs"] == 0 and out["bars"] == out["bars_ib"] == len(rec.bars)
    assert out["orders_backtest"] == out["orders_ib"] == 1


def test_replay_of_a_missing_folder_exits_2(in_tmp, capsys):
    assert parity_cli.main(["--replay", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.slow
def test_one_session_of_five_second_bars_through_ib_replays_identically(gateway_sim):
    """AAPL's synthetic 2024-01-02 session (4,680 five-second bars) through IBData/IBBroker,
    then its recorded bars through BackBroker: the same decisions, orders and fills."""
    cfg = ParityConfig(client_id=88, commission_bps=1.0, cash=1_000_000.0)
    fill_like_backbroker(gateway_sim, cfg.commission_bps, cash=cfg.cash)
    aapl = gateway_sim.contracts.by_symbol("AAPL", "STK")
    series = gateway_sim.market.series(aapl)
    i, _ = series.locate(int(gateway_sim.now().timestamp()))
    opened = int(series.opens[i])
    assert datetime.fromtimestamp(opened, UTC).date().isoformat() == "2024-01-02"
    steps = [opened + 5 * k for k in range(1, series.length // 5 + 1)]
    params = {"band": 0.02}
    rec = run_ib_feeds(gateway_sim, {"AAPL": "AAPL-STK-SMART-USD"}, steps,
                       RegimeAwareEnsemble, params, cfg)
    rec.meta["params"] = params
    assert len(rec.bars) == 4680
    assert len(rec.orders()) >= 3  # it trades within the session
    report = replay_recording(rec, cfg)
    assert report.decision_diffs == 0, report.first_divergence
    assert report.order_diffs == report.fill_diffs == report.position_diffs == 0
    assert report.orders_backtest == report.orders_ib
    assert report.max_value_diff < 1e-4


def test_simulate_report_is_a_tearsheet_from_the_sessions_and_grows_across_runs(in_tmp):
    from bt_ibkr.records.tearsheet import session_equity

    args = ["--paper", "--simulate", "--json", "run.json", "--report", "r.html",
            "--max-runtime", "60"]
    assert live_cli.main(args) == 0
    summary = json.loads((in_tmp / "run.json").read_text())
    assert summary["report"] == "r.html"
    page = (in_tmp / "r.html").read_text()
    # 3 days of account value: the values, no annualized ratio (withheld below 20 days)
    assert "1 simulated session(s), 3 days of account value" in page
    assert "withheld below 20 days" in page
    values, closes = session_equity(in_tmp / "state" / "simulate" / "sessions")
    # start (before the decision bar), the decision bar, and IB's value after the fill
    assert len(values) == 3 and values.iloc[0] == values.iloc[1] == 1_000_000.0
    assert values.iloc[-1] == pytest.approx(summary["equity"], abs=0.01)
    assert len(closes) == 1
    # a second run adds its session instead of resetting the curve
    assert live_cli.main(args) == 0
    assert len(list((in_tmp / "state" / "simulate" / "sessions").iterdir())) == 2
    assert (in_tmp / "r.html").exists()


@pytest.mark.slow
def test_parity_cli_side_by_side_writes_json_and_report(in_tmp, capsys):
    rc = parity_cli.main(["--symbols", "^GSPC", "--start", "2016-06-01", "--end", "2018-06-30",
                          "--json", "p.json", "--report", "p.html"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads((in_tmp / "p.json").read_text())
    assert {"bars", "orders_backtest", "orders_ib", "decision_diffs", "fill_diffs",
            "max_value_diff", "first_divergence"} <= set(out)
    assert out["bars"] == 525 and out["decision_diffs"] == 0 and out["fill_diffs"] == 0
    assert out["orders_backtest"] == out["orders_ib"] > 0 and out["first_divergence"] is None
    assert "decisions match" in (in_tmp / "p.html").read_text()
    assert "first divergence: none" in capsys.readouterr().out


def test_parity_cli_bad_input_exits_2_before_running(in_tmp, capsys):
    """Unwritable outputs, too few bars to decide once, and --source csv without a file are
    refused with one line naming the input, before either path runs (no log of a run)."""
    (in_tmp / "afile").write_text("x")
    cases = [(["--report", "afile/x.html"], "--report"),
             (["--json", "/proc/nope/p.json"], "--json"),
             (["--start", "2018-06-01"], "needs at least 273 (271 warm-up bars"),
             (["--source", "csv"], "--csv PATH"),
             (["--csv", "a.csv", "--source", "sample"], "--csv is only used")]
    for argv, words in cases:
        assert parity_cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (argv, err)
    assert "data status" not in (in_tmp / "logs" / "parity.log").read_text()  # nothing ran


@pytest.mark.slow
def test_parity_cli_reads_a_csv(in_tmp, capsys, spx):
    """--csv alone means --source csv; the CSV's bars go through both paths."""
    frame = spx.iloc[-700:].copy()
    frame.index.name = "date"
    frame.to_csv(in_tmp / "gspc.csv")
    rc = parity_cli.main(["--csv", "gspc.csv", "--symbols", "GSPC", "--json", "p.json"])
    assert rc == 0, capsys.readouterr().err
    out = json.loads((in_tmp / "p.json").read_text())
    assert out["bars"] == 700 and out["decision_diffs"] == 0
    assert out["orders_backtest"] == out["orders_ib"] > 0


@pytest.mark.slow
def test_daily_paper_runs_accumulate_and_replay_with_their_adopted_positions(
        gateway_sim_factory, tmp_path):
    """Three daily runs on one paper account (the simulator's sample SPY), a trading day
    apart: the first buys, the later ones start holding it; --replay of the sessions folder
    replays each with the position it adopted and finds no decision diff."""
    from bt_ibkr.live.config import load_config
    from bt_ibkr.live.runner import run_live

    sim = gateway_sim_factory(data="sample")
    cfg = load_config(None, env={}, overrides={
        "connection.port": sim.port, "symbols": "SPY",
        "paths.journal": str(tmp_path / "journal.sqlite"), "paths.logs": str(tmp_path / "logs"),
        "paths.equity": str(tmp_path / "equity.csv")})
    results = []
    for day in range(3):
        if day:
            sim.advance_days(1)
        results.append(run_live(cfg, max_runtime=60))
    assert results[0].orders and results[0].positions["SPY"] > 0
    sessions = tmp_path / "sessions"
    dirs = sorted(p for p in sessions.iterdir())
    assert [str(p) for p in dirs] == sorted(r.session_dir for r in results)
    later = load_session(Path(results[2].session_dir))
    assert later.meta["start_positions"]["SPY"][0] == results[0].positions["SPY"]
    report = replay(sessions)
    assert len(report.meta["sessions"]) == 3
    assert report.decision_diffs == 0, report.first_divergence
    assert report.position_diffs == 0
    # without the adopted position the replay would start flat and decide differently
    later.meta["start_positions"] = {}
    assert replay_recording(later).decision_diffs > 0
