"""``python -m examples.live``: flags, exit codes, the --simulate run on a fresh machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples import live as cli

ROOT = Path(__file__).resolve().parents[2]


def test_parser_knows_every_documented_flag():
    args = cli.build_parser().parse_args([
        "--paper", "--host", "127.0.0.1", "--port", "4002", "--client-id", "7",
        "--symbols", "SPY,QQQ", "--mode", "stream", "--config", "x.json", "--journal", "j.db",
        "--report", "r.html", "--json", "s.json", "--max-runtime", "60", "--simulate",
        "--read-only", "--param", "band=0.05", "--account", "DU1"])
    assert (args.paper, args.port, args.client_id, args.run_mode) == (True, 4002, 7, "stream")
    assert args.param == ["band=0.05"] and args.read_only and args.simulate
    live = cli.build_parser().parse_args(["--live", "--i-understand-this-is-real-money"])
    assert live.live and live.confirm_live
    assert cli.build_parser().parse_args(["--live", "--confirm-live"]).confirm_live
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--paper", "--live"])


def test_paper_on_a_live_port_exits_2_naming_the_port(in_tmp, capsys):
    assert cli.main(["--paper", "--port", "4001", "--journal", "j.sqlite"]) == 2
    err = capsys.readouterr().err
    assert "4001" in err and "live" in err


def test_live_without_confirmation_exits_2(in_tmp, capsys):
    assert cli.main(["--live", "--port", "4001"]) == 2
    assert "--confirm-live" in capsys.readouterr().err


def test_bad_config_key_exits_2_naming_it(in_tmp, capsys):
    (in_tmp / "live.json").write_text(json.dumps({"risk": {"max_order_notionl": 5}}))
    assert cli.main(["--paper", "--config", "live.json"]) == 2
    err = capsys.readouterr().err
    assert "max_order_notionl" in err and "max_order_notional" in err


def test_bad_param_exits_2_naming_it(in_tmp, capsys):
    assert cli.main(["--paper", "--param", "bandd=0.1"]) == 2
    assert "bandd" in capsys.readouterr().err


@pytest.mark.slow
def test_unreachable_gateway_exits_3_saying_what_to_check(in_tmp, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["--paper", "--port", str(port), "--journal", "j.sqlite"]) == 3
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "API" in err and "4002" in err


def test_unwritable_outputs_exit_2_before_connecting(in_tmp, capsys, gateway_sim):
    """--json / --report that cannot be written are refused before the run connects (and
    trades), not found out when the summary is due."""
    (in_tmp / "afile").write_text("x")
    for flag in ("--json", "--report"):
        before = len(gateway_sim.requests_named("startApi"))
        assert cli.main(["--paper", "--port", str(gateway_sim.port), "--journal", "j.sqlite",
                         flag, "afile/out"]) == 2
        err = capsys.readouterr().err
        assert f"{flag} afile/out" in err and "writable" in err
        assert len(gateway_sim.requests_named("startApi")) == before  # never connected


def test_paper_refuses_a_live_account_exits_2(in_tmp, capsys, gateway_sim_factory):
    sim = gateway_sim_factory(data="sample", account="U1112223")
    assert cli.main(["--paper", "--port", str(sim.port), "--journal", "j.sqlite"]) == 2
    assert "U1112223" in capsys.readouterr().err
    assert sim.requests_named("placeOrder") == []


@pytest.mark.slow
def test_read_only_run_writes_withheld_orders(in_tmp, gateway_sim_factory):
    sim = gateway_sim_factory(data="sample")
    rc = cli.main(["--paper", "--port", str(sim.port), "--read-only", "--journal", "j.sqlite",
                   "--json", "out.json", "--max-runtime", "30"])
    assert rc == 0
    summary = json.loads((in_tmp / "out.json").read_text())
    assert [(o["symbol"], o["side"], o["status"]) for o in summary["orders"]] == [
        ("SPY", "BUY", "withheld")]
    assert summary["positions"] == {} and sim.requests_named("placeOrder") == []


@pytest.mark.slow
def test_simulate_runs_end_to_end_as_a_subprocess(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["BT_IBKR_LOG_DIR"] = str(tmp_path / "logs")
    env.pop("BT_IBKR_CRASH_AT", None)
    secrets = {"TWS_PASSWORD": "s3cr3t-Pa55-word", "BT_IBKR_ALERT_TOKEN": "tok-9f8e7d6c5b"}
    env.update(secrets)

    def run():
        return subprocess.run(
            [sys.executable, "-m", "examples.live", "--paper", "--simulate", "--json", "run.json",
             "--max-runtime", "60"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    proc = run()
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no ib_async ERROR line on a clean run (e.g. no empty extra history request)
    assert "ERROR" not in proc.stderr, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["account"].startswith("DU")
    (order,) = summary["orders"]
    assert set(order) >= {"orderRef", "symbol", "side", "quantity", "status"}
    assert order["orderRef"].startswith("bt2:") and ":RAE:SPY:" in order["orderRef"]
    assert order["status"] == "filled"
    assert summary["positions"] == {"SPY": order["quantity"]}
    assert 900_000 < summary["equity"] < 1_100_000
    assert "[live] reconciling" in proc.stderr and "[live] order bt2:" in proc.stderr
    # defaults: a simulator's journal and equity apart from the real ones, logs under logs/
    assert (tmp_path / "state" / "simulate" / "journal.sqlite").exists()
    assert (tmp_path / "state" / "simulate" / "equity.csv").exists()
    assert not (tmp_path / "state" / "journal.sqlite").exists()
    assert list((tmp_path / "logs").glob("audit-*.jsonl"))
    assert (tmp_path / "logs" / "live.log").exists()
    # a second demo run starts a fresh simulator with a fresh simulated journal: same result,
    # no "position mismatch" against the previous run's simulator
    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "run.json").read_text())["orders"][0]["orderRef"] == order["orderRef"]
    assert (tmp_path / "state" / "simulate" / "journal.sqlite.prev").exists()
    # credentials come from the environment and never reach a log, the audit, the journal or
    # the summary
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in secrets.values():
                assert value.encode() not in data, f"secret leaked into {path}"
    for value in secrets.values():
        assert value not in proc.stderr + proc.stdout + again.stderr + again.stdout


@pytest.mark.slow
def test_a_secret_that_is_also_a_config_value_is_masked_in_every_output(tmp_path):
    """The account id doubles as the secret here: stderr, live.log, the audit and the JSON
    summary must all mask it (the journal, a data store bound to the account, keeps it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["BT_IBKR_LOG_DIR"] = str(tmp_path / "logs")
    env.pop("BT_IBKR_CRASH_AT", None)
    env["TWS_PASSWORD"] = "DU1234567"  # the simulator's account id
    proc = subprocess.run(
        [sys.executable, "-m", "examples.live", "--paper", "--simulate", "--json", "run.json",
         "--max-runtime", "60"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DU1234567" not in proc.stderr + proc.stdout
    assert "account *** (paper)" in proc.stderr
    outputs = [tmp_path / "run.json", tmp_path / "logs" / "live.log",
               *(tmp_path / "logs").glob("audit-*.jsonl")]
    for path in outputs:
        assert "DU1234567" not in path.read_text(), f"secret in clear in {path.name}"
    assert json.loads((tmp_path / "run.json").read_text())["account"] == "***"


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_max_runtime_must_be_a_finite_positive_number(in_tmp, capsys, value):
    assert cli.main(["--paper", "--port", "4002", f"--max-runtime={value}"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: argument --max-runtime: {value!r} is not a finite number > 0 (see --help)\n"


@pytest.mark.parametrize("name,says", [
    ("os:system", "is not a backtrader Strategy class"),
    ("no_such_module_xyz:Thing", "cannot import"),
    ("strategies:NoSuchStrategy", "cannot import"),
])
def test_a_strategy_name_that_is_not_a_strategy_exits_2(in_tmp, capsys, name, says):
    (in_tmp / "c.json").write_text(json.dumps({"strategy": {"name": name}}))
    assert cli.main(["--paper", "--port", "4002", "--config", "c.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err and says in err


@pytest.mark.slow
def test_a_gateway_that_accepts_but_never_answers_exits_3_within_the_timeout(in_tmp, capsys):
    """A socket that accepts and says nothing (a hung gateway): one line, exit 3, no traceback."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]
        (in_tmp / "c.json").write_text(json.dumps({"connection": {"timeout": 1.0}}))
        code = cli.main(["--paper", "--port", str(port), "--config", "c.json",
                         "--max-runtime", "30"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")
