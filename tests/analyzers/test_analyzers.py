"""Analyzers on a scripted strategy over the real S&P 500 sample (plain backtrader code)."""

from __future__ import annotations

import arch.data.sp500
import backtrader as bt
import pandas as pd
import pytest

from analyzers import (
    EquityRecorder,
    OrderLog,
    QuantStatsTearsheet,
    RegimeAttribution,
    read_equity_csv,
)


def _frame(start: str, end: str) -> pd.DataFrame:
    df = arch.data.sp500.load()[["Open", "High", "Low", "Close", "Volume"]].loc[start:end]
    df.columns = [c.lower() for c in df.columns]
    df.index = pd.DatetimeIndex(df.index)
    return df


class Scripted(bt.Strategy):
    """Buys 10 units on bar 20, sells them on bar 60; regime 'a' before bar 40, 'b' after."""

    def __init__(self):
        self.regime = "warmup"

    def next(self):
        n = len(self)
        self.regime = "a" if n < 40 else "b"
        if n == 20:
            self.buy(size=10)
        elif n == 60:
            self.sell(size=10)


def _run(tmp_path, frame, **kw):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(100_000.0)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="^GSPC")
    cerebro.addstrategy(Scripted)
    cerebro.addanalyzer(EquityRecorder, _name="eq", path=str(tmp_path / "equity.csv"))
    cerebro.addanalyzer(OrderLog, _name="orders")
    cerebro.addanalyzer(RegimeAttribution, _name="regimes")
    cerebro.addanalyzer(QuantStatsTearsheet, _name="ts", output=str(tmp_path / "ts.html"), **kw)
    return cerebro.run()[0]


@pytest.mark.slow
def test_orderlog_records_fills_at_next_open(tmp_path):
    frame = _frame("2010-01-01", "2010-12-31")
    strat = _run(tmp_path, frame)
    fills = strat.analyzers.orders.get_analysis()["fills"]
    assert [(f.side, f.size) for f in fills] == [("BUY", 10.0), ("SELL", -10.0)]
    # decided at the close of bar 20 (index 19), filled at the open of bar 21 (index 20)
    assert fills[0].price == pytest.approx(frame["open"].iloc[20])
    assert fills[1].price == pytest.approx(frame["open"].iloc[60])
    assert fills[0].dt.startswith(frame.index[20].strftime("%Y-%m-%d"))


@pytest.mark.slow
def test_regime_attribution_splits_time_and_return(tmp_path):
    frame = _frame("2010-01-01", "2010-12-31")
    strat = _run(tmp_path, frame)
    report = strat.analyzers.regimes.get_analysis()
    values = strat.analyzers.eq.get_analysis().values()
    counts = report.counts()
    assert counts == {"a": 39, "b": len(frame) - 39}
    assert sum(s.bars for s in report.by_regime.values()) == len(frame)
    # return from bar i to bar i+1 belongs to the label at bar i
    expected_a = values.iloc[39] / values.iloc[0] - 1.0
    expected_b = values.iloc[-1] / values.iloc[39] - 1.0
    assert report.by_regime["a"].total_return == pytest.approx(expected_a, abs=1e-12)
    assert report.by_regime["b"].total_return == pytest.approx(expected_b, abs=1e-12)
    assert [s[2] for s in report.segments] == ["a", "b"]
    # exposure is only positive while the 10 units are held (bars 21..60)
    assert 0 < report.by_regime["a"].avg_exposure < report.by_regime["b"].avg_exposure * 10


@pytest.mark.slow
def test_equity_csv_persists_every_bar(tmp_path):
    frame = _frame("2010-01-01", "2010-06-30")
    strat = _run(tmp_path, frame)
    values = strat.analyzers.eq.get_analysis().values()
    saved = read_equity_csv(tmp_path / "equity.csv")
    assert len(saved) == len(frame)
    assert saved.to_numpy() == pytest.approx(values.to_numpy())


@pytest.mark.slow
def test_tearsheet_has_benchmark_and_regime_section(tmp_path):
    frame = _frame("2010-01-01", "2011-12-31")
    strat = _run(tmp_path, frame, title="scripted")
    out = strat.analyzers.ts.get_analysis()["output"]
    html = out.read_text(encoding="utf-8")
    assert "Buy &amp; hold" in html or "Buy & hold" in html
    assert "id='regime-table'" in html
    assert "Performance by regime" in html
    assert html.count("<tr><td><span") == 2  # one row per regime: a and b
    bench = strat.analyzers.ts.get_analysis()["benchmark"]
    # buy-and-hold of the single feed equals the index's own close-to-close returns
    assert bench.iloc[1:].to_numpy() == pytest.approx(frame["close"].pct_change().iloc[1:].to_numpy())


@pytest.mark.slow
def test_tearsheet_of_flat_run_still_written(tmp_path):
    class Idle(bt.Strategy):
        regime = "range"

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=_frame("2012-01-01", "2012-12-31")))
    cerebro.addstrategy(Idle)
    cerebro.addanalyzer(QuantStatsTearsheet, _name="ts", output=str(tmp_path / "flat.html"))
    strat = cerebro.run()[0]
    assert (tmp_path / "flat.html").stat().st_size > 10_000
    assert strat.analyzers.ts.get_analysis()["regimes"].counts() == {"range": 250}


@pytest.mark.slow
def test_tearsheet_analyzer_reports_after_the_warmup(tmp_path):
    frame = _frame("2010-01-01", "2010-12-31")
    strat = _run(tmp_path, frame, warmup_bars=30)
    result = strat.analyzers.ts.get_analysis()
    assert result["regimes"].counts() == {"a": 9, "b": len(frame) - 39}  # bars 31.. only
    bench = result["benchmark"]
    assert bench.index[0] == frame.index[30] and bench.iloc[0] == 0.0
    assert bench.iloc[1] == pytest.approx(frame["close"].iloc[31] / frame["close"].iloc[30] - 1)
    html = result["output"].read_text(encoding="utf-8")
    first, last = (d.strftime("%e %b, %Y").strip() for d in (frame.index[30], frame.index[-1]))
    assert f"{first} - {last}</dt>" in html  # quantstats' date range: the period's
