"""The protective-put example: the ensemble trades the equity feed only, and the overlay holds
one put per 100 shares it owns on the current monthly leg."""

from __future__ import annotations

from datetime import date

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from bt_ibkr.options import OptionsBacktestBroker
from examples.protective_put import ProtectedEnsemble, add_protective_puts, monthly_put_legs


class Book(bt.Analyzer):
    """Per bar: shares of the equity feed and the put positions by name."""

    def start(self):
        self.rows = []
        self.put_pnl = []

    def next(self):
        s = self.strategy
        self.rows.append((s.datas[0].datetime.date(0), s.getposition(s.datas[0]).size,
                          {d._name: s.getposition(d).size for d in s.puts}))

    def notify_trade(self, trade):
        if trade.isclosed and "-OPT-" in trade.data._name:
            self.put_pnl.append(trade.pnl)

    def get_analysis(self):
        return self.rows


def _prices() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    up = 0.0015 + 0.006 * rng.standard_normal(420)
    down = -0.012 + 0.006 * rng.standard_normal(40)
    close = 100.0 * np.exp(np.cumsum(np.concatenate([up, down])))
    days = pd.bdate_range("2020-01-01", periods=len(close))
    return pd.DataFrame({"open": close, "high": close * 1.002, "low": close * 0.998,
                         "close": close, "volume": 1e6}, index=days)


@pytest.mark.slow
def test_protected_ensemble_holds_a_put_per_100_shares_and_the_puts_pay_in_the_crash():
    df = _prices()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = OptionsBacktestBroker(cash=1_000_000.0)
    equity = bt.feeds.PandasData(dataname=df, name="SPY")
    cerebro.adddata(equity)
    legs = monthly_put_legs("SPY", df, date(2021, 2, 1), date(2021, 10, 1))
    add_protective_puts(cerebro, equity, legs)
    cerebro.addstrategy(ProtectedEnsemble)
    cerebro.addanalyzer(Book, _name="book")
    [strat] = cerebro.run()
    assert list(strat.regimes) == ["SPY"]  # the ensemble never saw the option feeds
    rows = strat.analyzers.book.get_analysis()
    hedged = [(day, shares, puts) for day, shares, puts in rows if shares >= 100]
    assert hedged, "the ensemble never held 100 shares: the scenario does not test the overlay"
    covered = total = 0
    for (day, prev_shares, _), (_, _, puts) in zip(rows, rows[1:], strict=False):
        held = [q for q in puts.values() if q]
        assert all(q > 0 for q in held)  # never short a put
        assert len(held) <= 1  # the old leg is sold as the new one is bought
        if prev_shares >= 100 and day >= legs[0].start:
            total += 1
            covered += sum(held) == int(prev_shares // 100)
    # the puts follow the shares (a bar late: orders fill at the next open) nearly every bar
    assert covered >= 0.9 * total
    _, shares, puts = rows[-1]
    assert sum(puts.values()) == int(shares // 100)
    # before the crash the puts cost premium; in it they paid more than all of that
    pnl = strat.analyzers.book.put_pnl
    assert min(pnl) < 0 and max(pnl) > 0 and sum(pnl) > 0


@pytest.mark.slow
def test_the_example_prints_the_period_and_the_ensemble_alone_beside_the_puts(capsys):
    from examples.protective_put import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("period 2007-03-01..2009-12-31")
    alone = float(out.split("ensemble alone: final value ")[1].split()[0].replace(",", ""))
    puts = float(out.split("; final value ")[1].split()[0].replace(",", ""))
    assert alone > 0 and puts > 0 and alone != puts  # the puts change the result
    with pytest.raises(SystemExit) as bad:
        main(["--bogus"])
    assert bad.value.code == 2  # argparse: an unknown flag is refused, never ignored
