"""``python -m examples.backtest`` on a continuous future from a CSV: the multiplier applies to
sizing, value, commission and turnover, and the terminal, JSON and tearsheet say so."""

from __future__ import annotations

import json

import pytest
from helpers.cli import run_backtest
from helpers.futures_synth import write_continuous_csv


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    write_continuous_csv(tmp_path / "es.csv")
    return tmp_path


_run = run_backtest


@pytest.mark.slow
def test_continuous_es_from_csv_uses_the_multiplier(workdir, capsys):
    args = ["--symbols", "ES", "--csv", "es.csv", "--cash", "20000000", "--json", "fut.json",
            "--report", "fut.html"]
    code, out, err = _run([*args, "--futures", "ES"], capsys)
    assert code == 0, err
    assert "futures: ES: E-mini S&P 500, x50 USD per point, CME, cash settled" in out
    fut = json.loads((workdir / "fut.json").read_text())
    assert fut["futures"] == {"ES": "ES"}
    assert fut["trades"] > 0
    html = (workdir / "fut.html").read_text()
    assert "x50 USD per point" in html



def test_one_unit_is_one_contract_priced_at_its_notional(workdir):
    """Against the same prices as a plain instrument: 1/50th of the units, each 50 times
    the price, the same exposure, turnover and returns (up to whole-contract rounding)."""
    from bt_ibkr.backtest import BacktestConfig, run_backtest

    def run(futures):
        return run_backtest(BacktestConfig(
            symbols=["ES"], source="csv", csv_paths=[workdir / "es.csv"], cash=20_000_000.0,
            write_report=False, progress=False, use_cache=False, futures=futures))

    fut, plain = run({"ES": "ES"}), run({})
    assert fut.fills and plain.fills
    first_f, first_p = fut.fills[0], plain.fills[0]
    assert first_f.dt == first_p.dt
    assert first_f.price == pytest.approx(50 * first_p.price)
    assert abs(first_f.size) == pytest.approx(abs(first_p.size) / 50, abs=1)
    assert abs(first_f.size) * first_f.price <= 20_000_000.0
    f, p = fut.summary, plain.summary
    assert f["exposure"] == pytest.approx(p["exposure"], rel=0.05)
    assert f["turnover"] == pytest.approx(p["turnover"], rel=0.10)
    assert f["cagr"] == pytest.approx(p["cagr"], abs=0.01)


@pytest.mark.parametrize("flags, says", [
    (["--futures", "XX"], "--futures XX: unknown futures root 'XX': known roots are CL, ES, GC, "
                          "NQ, ZN"),
    (["--futures", "NQ"], "--futures NQ: not one of --symbols ES"),
])
@pytest.mark.slow
def test_bad_futures_flags_are_one_line_and_exit_2(workdir, capsys, flags, says):
    code, out, err = _run(["--symbols", "ES", "--csv", "es.csv", *flags], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {err.strip()[len('error: '):]}"]
    assert says in err


def test_futures_flag_spelling():
    from bt_ibkr.errors import ConfigError
    from bt_ibkr.futures.cli import futures_roots

    assert futures_roots(None) == {}
    assert futures_roots("ES, nq") == {"ES": "ES", "nq": "NQ"}
    assert futures_roots("ES=F:ES,GC=F:gc") == {"ES=F": "ES", "GC=F": "GC"}
    with pytest.raises(ConfigError, match="empty item"):
        futures_roots("ES,,NQ")
    with pytest.raises(ConfigError, match="--futures ES=F: unknown futures root 'ES=F'"):
        futures_roots("ES=F")


def test_a_futures_root_left_out_of_futures_is_named_with_the_flag_to_add(gateway_sim, workdir,
                                                                         capsys):
    code, out, err = run_backtest(["--source", "ibkr", "--port", str(gateway_sim.port),
                                   "--symbols", "ES", "--no-report", "--no-cache"], capsys)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "IB has no contract for dataname 'ES'" in line
    assert line.endswith("ES is a futures root of the roll registry: add --futures ES to trade "
                         "its continuous future")


def test_the_futures_hint_names_only_a_root_left_out():
    from bt_ibkr.errors import ConfigError, UnknownSymbolError
    from bt_ibkr.futures.cli import futures_hint

    missing = UnknownSymbolError("IB has no contract for dataname 'ES'; check symbol")
    assert futures_hint(missing, ["ES"], {}).endswith("add --futures ES to trade its "
                                                      "continuous future")
    assert futures_hint(missing, ["ES"], {"ES": "ES"}) == ""  # given: not the problem
    assert futures_hint(UnknownSymbolError("IB has no contract for dataname 'XYZ'"),
                        ["XYZ"], {}) == ""  # not a root
    assert futures_hint(ConfigError("dataname 'ES' ..."), ["ES"], {}) == ""
