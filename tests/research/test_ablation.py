"""Ablation report (issue #13 item 4): variants over one period, in the JSON, terminal and tearsheet.

Most tests use ToyEnsemble, a small two-sleeve strategy declaring the ablation interface that
RegimeAwareEnsemble follows (``SLEEVES``, params ``sleeves`` and ``use_regimes``), on the real
S&P 500 sample 2005-2012. The last test runs the CLI on RegimeAwareEnsemble itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import backtrader as bt
import pytest

from bt_ibkr.backtest import BacktestConfig, run_backtest
from bt_ibkr.data.history import HistoryResult
from bt_ibkr.metrics import compute_stats
from bt_ibkr.research.ablation import ABLATION_COLUMNS, ablation_variants, run_ablation
from feeds.sample import load_sample
from strategies import RegimeAwareEnsemble


class ToyEnsemble(bt.Strategy):
    """Sleeves 'trend' (close above its 50-bar mean) and 'hold' (always long).

    With regimes: 'up' (close above its 100-bar mean) weighs trend/hold 0.8/0.2, 'down'
    0.2/0.8; without (use_regimes=False): 0.5/0.5. ``sleeves`` keeps only the named sleeves
    (weights renormalised). Target = 0.95 x weighted signal, rebalanced outside a 5% band.
    """

    SLEEVES = ("trend", "hold")
    params = (("sleeves", ""), ("use_regimes", True), ("band", 0.05))

    @classmethod
    def warmup_bars(cls, params):
        return 99

    def __init__(self):
        self.closes: list[float] = []
        self.regime = "warmup"
        self.active = [s for s in self.p.sleeves.split(",") if s] or list(self.SLEEVES)

    def next(self):
        c = self.data.close[0]
        self.closes.append(c)
        if len(self.closes) < 100:
            return
        up = c > sum(self.closes[-100:]) / 100
        self.regime = "up" if up else "down"
        signal = {"trend": 1.0 if c > sum(self.closes[-50:]) / 50 else 0.0, "hold": 1.0}
        if self.p.use_regimes:
            w = {"trend": 0.8, "hold": 0.2} if up else {"trend": 0.2, "hold": 0.8}
        else:
            w = {"trend": 0.5, "hold": 0.5}
        total = sum(w[s] for s in self.active)
        target = 0.95 * sum(w[s] / total * signal[s] for s in self.active)
        value = self.broker.getvalue()
        size = self.getposition(self.data).size
        if abs(target - size * c / value) > self.p.band or (target == 0 and size):
            self.order_target_percent(target=target)


class NoSleeves(bt.Strategy):
    params = (("band", 0.05),)
    regime = "flat"

    def next(self):
        if not self.position:
            self.order_target_percent(target=0.5)


@pytest.fixture(scope="module")
def frames():
    return {"^GSPC": load_sample("^GSPC", "2005-01-01", "2012-12-31")}


def _config(**kw) -> BacktestConfig:
    return BacktestConfig(progress=False, write_report=False, **kw)


def test_variants_follow_the_strategy_interface():
    variants, skipped = ablation_variants(ToyEnsemble, {"band": 0.1})
    assert variants == [
        ("ensemble", {"band": 0.1}),
        ("static_weights", {"band": 0.1, "use_regimes": False}),
        ("trend", {"band": 0.1, "sleeves": "trend", "use_regimes": False}),
        ("hold", {"band": 0.1, "sleeves": "hold", "use_regimes": False}),
    ]
    assert skipped == []


def test_each_variant_over_one_period(frames):
    report = run_ablation(_config(), frames, strategy=ToyEnsemble, params={})
    rows = {r.name: r for r in report.rows}
    assert list(rows) == ["ensemble", "static_weights", "trend", "hold", "buy_hold_same_vol"]
    hold, trend, ens = rows["hold"], rows["trend"], rows["ensemble"]
    # 'hold' alone is ~95% long all period: exposure ~0.95, bought once plus band trims
    assert 0.9 < hold.exposure < 0.97
    assert hold.turnover < 0.5
    # and its Sharpe is buy-and-hold's over the same period (Sharpe ignores the 0.95 scale)
    close = frames["^GSPC"]["close"].iloc[99:]
    bh = compute_stats(close.pct_change().fillna(0.0))
    assert hold.sharpe == pytest.approx(bh.sharpe, abs=0.03)
    # the ensemble mixes the two sleeves bar by bar: its exposure lies between theirs
    assert trend.exposure < ens.exposure < hold.exposure
    assert trend.turnover > hold.turnover
    assert rows["static_weights"].sharpe != ens.sharpe
    same_vol = rows["buy_hold_same_vol"]
    assert same_vol.volatility == pytest.approx(ens.volatility, rel=1e-9)
    assert same_vol.exposure == pytest.approx(ens.volatility / bh.volatility, rel=1e-6)
    assert same_vol.sharpe == pytest.approx(bh.sharpe, abs=1e-9)


@pytest.mark.slow
def test_ablation_in_json_terminal_and_tearsheet(frames, tmp_path, capsys):
    from examples.backtest import _print_summary

    config = BacktestConfig(
        progress=False, strategy=ToyEnsemble, ablation=True, json_path=tmp_path / "a.json",
        report=tmp_path / "a.html",
    )
    history = HistoryResult(frames=frames, source="sample", message="data: sample ^GSPC")
    result = run_backtest(config, history=history)
    summary = json.loads((tmp_path / "a.json").read_text())
    rows = summary["ablation"]
    assert [r["name"] for r in rows] == ["ensemble", "static_weights", "trend", "hold", "buy_hold_same_vol"]
    assert all(tuple(r) == ABLATION_COLUMNS for r in rows)
    ens = rows[0]
    for key in ("sharpe", "cagr", "max_drawdown", "volatility", "exposure", "turnover"):
        assert ens[key] == summary[key]  # the ensemble row is the run the summary describes
    # the tearsheet's ablation table shows the JSON's numbers
    html = result.report.read_text(encoding="utf-8")
    table = html[html.index("id='ablation-table'"):]
    table = table[:table.index("</table>")]
    cells = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", table)]
    cells = [c for c in cells if c]
    assert [c[0] for c in cells] == [r["name"] for r in rows]
    for c, r in zip(cells, rows, strict=True):
        assert c[1:] == [f"{r['sharpe']:.2f}", f"{r['cagr']:.2%}", f"{r['max_drawdown']:.2%}",
                         f"{r['volatility']:.2%}", f"{r['exposure']:.2f}", f"{r['turnover']:.2f}"]
    # and the terminal prints one table with the same rows
    _print_summary(summary, "data: sample ^GSPC")
    out = capsys.readouterr().out
    assert "Ablation" in out
    for r in rows:
        line = next(ln for ln in out.splitlines() if ln.startswith(f"│ {r['name']} "))
        assert f"{r['sharpe']:.2f}" in line and f"{r['turnover']:.2f}" in line


def test_a_strategy_without_sleeves_gets_those_variants_skipped(frames):
    report = run_ablation(_config(), frames, strategy=NoSleeves, params={})
    assert [r.name for r in report.rows] == ["ensemble", "buy_hold_same_vol"]
    assert any("use_regimes" in why for why in report.skipped)
    assert any("SLEEVES" in why for why in report.skipped)


def _cli_ablation(tmp_path, monkeypatch):
    from examples.backtest import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--no-progress", "--source", "sample", "--symbols", "^GSPC", "--start",
                     "2007-01-01", "--end", "2012-12-31", "--ablation", "--no-report", "--json",
                     "a.json"])
    assert code == 0
    return json.loads((tmp_path / "a.json").read_text()), out.getvalue()


@pytest.mark.slow
def test_cli_ablation_rows_match_the_summary(tmp_path, monkeypatch):
    summary, out = _cli_ablation(tmp_path, monkeypatch)
    names = [r["name"] for r in summary["ablation"]]
    assert names[0] == "ensemble" and names[-1] == "buy_hold_same_vol"
    assert summary["ablation"][0]["sharpe"] == summary["sharpe"]
    assert summary["ablation"][-1]["volatility"] == pytest.approx(summary["volatility"], rel=1e-9)
    assert "Ablation" in out and "buy_hold_same_vol" in out


@pytest.mark.slow
def test_regime_aware_ensemble_ablation(tmp_path, monkeypatch):
    summary, _ = _cli_ablation(tmp_path, monkeypatch)
    names = [r["name"] for r in summary["ablation"]]
    assert names == ["ensemble", "static_weights", *RegimeAwareEnsemble.SLEEVES, "buy_hold_same_vol"]
    assert "ablation_skipped" not in summary
    sharpe = {r["name"]: r["sharpe"] for r in summary["ablation"]}
    # the default table blends one sleeve, trend, in every regime: without regimes it is the
    # trend row itself
    assert sharpe["static_weights"] == sharpe["trend"]
    sleeves = RegimeAwareEnsemble.SLEEVES
    assert len({sharpe[s] for s in sleeves}) == len(sleeves)  # the sleeves differ
