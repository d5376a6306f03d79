"""Bad input to every CLI: exit 2 and one line naming it, before any work; strategy params typed
by one parser everywhere; the environment's secrets masked in every output (issue 18, 8).

The CLIs run in-process (``main(argv)``) as a user would call them; what is checked is what the
user sees: the exit code, the one line on stderr, the files written.
"""

from __future__ import annotations

import html
import inspect
import json
import socket
from datetime import date

import pytest

from bt_ibkr import doctor as doctor_cli
from bt_ibkr.errors import ConfigError
from bt_ibkr.params import parse_params
from bt_ibkr.redaction import OutputRedactor, write_json, write_text
from bt_ibkr.research.grid import GridSpecError, parse_grid
from examples import backtest as backtest_cli
from examples import live as live_cli
from examples import parity as parity_cli
from examples import sweep as sweep_cli
from strategies import RegimeAwareEnsemble

NOT_A_NUMBER = ["abc", "nan", "inf", "-inf", "1e999", "-5", ""]
"""Refused by every numeric flag, whatever its range."""

ZERO, HALF = "0", "1.5"
NUMERIC_FLAGS = {
    # cli: {flag: the values refused on top of NOT_A_NUMBER}
    "backtest": {"--port": [ZERO, HALF, "65536"], "--client-id": [HALF, "2147483648"],
                 "--cash": [ZERO], "--commission-bps": ["1000"], "--slippage-bps": ["1000"],
                 "--decision-delay": [HALF]},
    "live": {"--port": [ZERO, HALF, "70000"], "--client-id": [HALF, "2147483648"],
             "--max-runtime": [ZERO], "--session-part-mb": [ZERO, "4097"],
             "--keep-sessions-days": [ZERO]},
    "parity": {"--cash": [ZERO], "--commission-bps": ["1000"], "--slippage-bps": ["1000"],
               "--tolerance": ["1"], "--partial-fill-qty": [ZERO]},
    "sweep": {"--warmup-bars": [HALF], "--port": [ZERO, HALF], "--client-id": [HALF],
              "--cash": [ZERO], "--commission-bps": ["1000"], "--slippage-bps": ["1000"],
              "--workers": [ZERO, HALF], "--top": [ZERO, HALF]},
    "doctor": {"--port": [ZERO, HALF], "--client-id": [HALF], "--timeout": [ZERO, "3601"]},
}
CLIS = {"backtest": backtest_cli, "live": live_cli, "parity": parity_cli, "sweep": sweep_cli,
        "doctor": doctor_cli}
OFFLINE = {"backtest": ["--source", "sample", "--no-report", "--no-progress"],
           "live": ["--paper", "--simulate", "--read-only"], "parity": ["--source", "sample"],
           "sweep": ["--source", "sample", "--serial", "--no-progress"],
           "doctor": ["--no-yfinance"]}
"""Flags that keep a run offline should a bad value ever be accepted."""
SECRET = "Zx9-secret-Q7"


def _cases():
    for cli, flags in NUMERIC_FLAGS.items():
        for flag, extra in flags.items():
            for value in [*NOT_A_NUMBER, *extra]:
                yield pytest.param(cli, flag, value, id=f"{cli} {flag}={value}")


@pytest.mark.parametrize("cli, flag, value", list(_cases()))
def test_a_bad_numeric_flag_exits_2_with_one_line_naming_it(in_tmp, capsys, cli, flag, value):
    code = CLIS[cli].main([*OFFLINE[cli], f"{flag}={value}"])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert len(err.splitlines()) == 1, err  # no usage block, no traceback
    assert err.startswith(f"error: argument {flag}: {value!r} is not a "), err
    assert err.rstrip().endswith("(see --help)"), err
    assert not (in_tmp / "logs").exists()  # refused before anything started


@pytest.mark.parametrize("cli, module", list(CLIS.items()))
def test_every_numeric_flag_has_a_validating_type_and_a_test(cli, module):
    """A numeric flag with a bare int/float type (which takes nan, inf, -5) fails here."""
    source = inspect.getsource(module.build_parser)
    assert "type=int" not in source and "type=float" not in source
    help_text = module.build_parser().format_help()
    for flag in NUMERIC_FLAGS[cli]:
        assert flag in help_text


def test_doctor_timeout_given_as_two_words_is_refused(in_tmp, capsys):
    """The issue's own form: ``--timeout -1`` (a traceback before)."""
    for value in ("-1", "nan", "0"):
        assert doctor_cli.main(["--timeout", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--timeout" in err and repr(value) in err, err


# -- strategy params: one typed parser ---------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False),
    ("TRUE", True), (" No ", False)])
def test_a_bool_param_takes_true_false_words(text, value):
    assert parse_params(RegimeAwareEnsemble, [f"use_hmm={text}"]) == {"use_hmm": value}
    assert parse_grid([f"use_hmm={text}"]) == {"use_hmm": [value]}


@pytest.mark.parametrize("item, says", [
    ("use_hmm=maybe", "expected true/false"), ("use_hmm=on", "expected true/false"),
    ("use_hmm=2", "expected true/false"), ("use_hmm=", "expected true/false"),
    ("sma_long=1.5", "expected an integer"), ("band=nan", "expected a finite number"),
    ("band=inf", "expected a finite number"), ("band=x", "expected a finite number"),
    ('weights={"crisis": NaN}', "nan is not a finite number"),
])
def test_a_param_of_the_wrong_type_is_refused_by_param_and_grid_alike(item, says):
    with pytest.raises(ConfigError) as by_param:
        parse_params(RegimeAwareEnsemble, [item])
    assert str(by_param.value).startswith(f"--param {item}: ") and says in str(by_param.value)
    if item.endswith("="):
        return  # an empty grid value is refused as such (test_research_grid)
    with pytest.raises(GridSpecError) as by_grid:
        parse_grid([item])
    assert str(by_grid.value) == str(by_param.value).replace("--param", "--grid", 1)


SAMPLE = ["--source", "sample", "--symbols", "^GSPC"]


@pytest.mark.parametrize("cli, argv", [
    ("sweep", [*SAMPLE, "--serial", "--grid", "use_hmm=maybe"]),
    ("sweep", [*SAMPLE, "--serial", "--grid", "use_hmm=true,maybe"]),
    ("sweep", [*SAMPLE, "--serial", "--grid", "band=0.1", "--param", "use_hmm=maybe"]),
    ("backtest", [*SAMPLE, "--no-report", "--param", "use_hmm=maybe"]),
    ("parity", ["--param", "use_hmm=maybe"]),
    ("live", ["--paper", "--param", "use_hmm=maybe"]),
])
def test_use_hmm_maybe_is_refused_by_every_cli(in_tmp, capsys, cli, argv):
    code = CLIS[cli].main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: --") and "use_hmm=maybe: expected true/false" in err, err
    assert not list(in_tmp.glob("reports*")) and not (in_tmp / "state").exists()


@pytest.mark.parametrize("params, says", [
    ({"use_hmm": "maybe"}, "strategy.params.use_hmm: expected true/false, got 'maybe'"),
    ({"use_hmm": 1}, "strategy.params.use_hmm: expected true/false, got 1"),
    ({"sma_long": 150.5}, "strategy.params.sma_long: expected an integer"),
    ({"band": float("nan")}, "strategy.params.band: expected a finite number, got nan"),
    ({"band": "0.1"}, "strategy.params.band: expected a number"),
])
def test_the_live_config_files_params_are_typed_as_param_text_is(in_tmp, capsys, params, says):
    """The live run's other way in: strategy.params of its JSON config, already typed."""
    (in_tmp / "c.json").write_text(json.dumps({"strategy": {"params": params}}))
    assert live_cli.main(["--paper", "--simulate", "--config", "c.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config c.json: ") and says in err and err.count("\n") == 1
    assert not (in_tmp / "state").exists()


# -- secrets: masked in every output -----------------------------------------------------------


def test_a_secret_is_masked_as_json_and_html_escape_it(tmp_path):
    secret = 'a&b"c\\d<é>-1'
    r = OutputRedactor(env={"TWS_PASSWORD": secret})
    write_json({"path": f"/x/{secret}/y", secret: 1}, tmp_path / "a.json", redactor=r)
    write_text(f"<p>{html.escape('/x/' + secret)}</p>", tmp_path / "a.html", redactor=r)
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text) == {"path": "/x/***/y", "***": 1}
    assert (tmp_path / "a.html").read_text() == "<p>/x/***</p>"


def _assert_masked(paths, *printed):
    for path in paths:
        assert SECRET not in path.read_text(encoding="utf-8"), f"secret in clear in {path}"
    for text in printed:
        assert SECRET not in text


@pytest.mark.slow
def test_parity_replay_masks_a_secret_in_the_journal_path(in_tmp, capsys, monkeypatch):
    """The issue's case: the session (and its journal) lives under a folder named like the
    password; the replay's JSON and HTML, its lines and its log show ``***`` instead."""
    monkeypatch.setenv("TWS_PASSWORD", SECRET)
    assert live_cli.main(["--paper", "--simulate", "--journal", f"{SECRET}/journal.sqlite",
                          "--max-runtime", "60"]) == 0
    capsys.readouterr()
    code = parity_cli.main(["--replay", f"{SECRET}/sessions", "--json", f"{SECRET}/out/rp.json",
                            "--report", f"{SECRET}/out/rp.html"])
    out, err = capsys.readouterr()
    assert code == 0, err
    out_dir = in_tmp / SECRET / "out"
    _assert_masked([out_dir / "rp.json", out_dir / "rp.html", in_tmp / "logs" / "parity.log"],
                   out, err)
    assert "***/sessions/" in (out_dir / "rp.json").read_text()  # the session's path
    assert "***/sessions/" in (out_dir / "rp.html").read_text()
    assert "json: ***/out/rp.json" in out


@pytest.fixture
def secret_csv(in_tmp, monkeypatch):
    """A CSV of the ^GSPC sample in a folder named like the password, TWS_PASSWORD set."""
    from feeds.sample import load_sample

    monkeypatch.setenv("TWS_PASSWORD", SECRET)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(in_tmp / "cache"))
    frame = load_sample("^GSPC", date(2011, 1, 1), date(2014, 12, 31))
    path = in_tmp / SECRET / "gspc.csv"
    path.parent.mkdir()
    frame.rename_axis("date")[["open", "high", "low", "close", "volume"]].to_csv(path)
    return path


@pytest.mark.slow
def test_backtest_masks_a_secret_in_its_json_tearsheet_lines_and_log(in_tmp, capsys,
                                                                      secret_csv):
    code = backtest_cli.main(["--no-progress", "--csv", f"{SECRET}/gspc.csv",
                              "--json", f"{SECRET}/s.json", "--report", f"{SECRET}/r.html"])
    out, err = capsys.readouterr()
    assert code == 0, err
    out_dir = secret_csv.parent
    _assert_masked([out_dir / "s.json", out_dir / "r.html", in_tmp / "logs" / "backtest.log"],
                   out, err)
    summary = json.loads((out_dir / "s.json").read_text())
    assert summary["report"] == "***/r.html" and "(from ***/gspc.csv)" in summary["source_message"]
    assert "summary: ***/s.json" in out


def test_sweep_masks_a_secret_in_its_json_report_and_lines(in_tmp, capsys, secret_csv):
    code = sweep_cli.main(["--no-progress", "--serial", "--csv", f"{SECRET}/gspc.csv",
                           "--grid", "band=0.05,0.1", "--out", f"{SECRET}/sweep"])
    out, err = capsys.readouterr()
    assert code == 0, err
    out_dir = secret_csv.parent / "sweep"
    _assert_masked([out_dir / "sweep.json", out_dir / "sweep.html",
                    in_tmp / "logs" / "sweep.log"], out, err)
    assert "***/sweep/" in (out_dir / "sweep.json").read_text()
    assert "json: ***/sweep/sweep.json" in out


def test_a_bad_flag_holding_a_secret_is_masked_in_the_one_line(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("TWS_PASSWORD", SECRET)
    for cli, module in CLIS.items():
        flag = next(iter(NUMERIC_FLAGS[cli]))
        assert module.main([f"{flag}={SECRET}"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: argument {flag}: '***' is not a " + err.split(" is not a ", 1)[1]
        assert err.count("\n") == 1 and SECRET not in err, err


def test_doctor_masks_a_secret_in_its_report(in_tmp, capsys, monkeypatch):
    """The gateway host doubles as the secret here (as the account id does in test_live_cli)."""
    monkeypatch.setenv("TWS_PASSWORD", "127.0.0.1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens
    for extra in ([], ["--json"]):
        code = doctor_cli.main(["--host", "127.0.0.1", "--port", str(port), "--no-yfinance",
                                "--timeout", "1", *extra])
        out, err = capsys.readouterr()
        assert code == 1, err
        assert "127.0.0.1" not in out + err and f"***:{port}" in out
