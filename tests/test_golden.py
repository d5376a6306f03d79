"""Golden backtest on the real S&P 500 sample, 2007-01-01..2009-12-31 (the financial crisis).

Recorded with (offline, any folder, the worktree on PYTHONPATH):

    python -m examples.backtest --source sample --symbols ^GSPC --start 2007-01-01 \
        --end 2009-12-31 --json golden.json --no-report --no-progress

which printed (commission 1 bp + slippage 2 bp, the defaults) the reporting period
2008-01-31..2009-12-31 (485 bars after the 271-bar warm-up 2007-01-03..2008-01-30), final value
109,376.22, total return 9.38%, max drawdown -5.21%, 56 fills, regimes crisis 255 / bull_quiet 98
/ bear_quiet 90 / range 42, and buy & hold -19.11% with a -52.58% max drawdown. Checked by hand:
the buy-and-hold numbers are the index's own over the period (1378.55 on 2008-01-31 to 1115.10
on 2009-12-31; peak 1426.63 on 2008-05-19 to 676.53 on 2009-03-09). The first regime is on
2008-01-31: crisis (close far under a falling SMA200, 20-day vol in its top quintile). The first
fill is the rebound sleeve: on 2008-02-06 RSI(2) was 9.71 (< 10) with the close 1326.45 under the
SMA200 1482.27; the crisis cap 0.25 is below the vol-targeted 0.98 * 0.12 / 0.2565 = 0.458, so
the target is 0.25 and the order floor(0.25 * 100,000 / 1326.45) = 18 shares, filled at the
next open, 1324.01 on 2008-02-07, plus 2 bp slippage (1324.01 x 1.0002 = 1324.27), with a
commission of 1 bp (18 x 1324.27 x 1e-4 = 2.38).
A change to the strategy, its defaults, the data path or the broker set-up moves these numbers:
re-record them with the command above only when the change is intended, and say so.
"""

from __future__ import annotations

from datetime import date

import pytest

from bt_ibkr.backtest import BacktestConfig, run_backtest


@pytest.fixture(scope="module")
def golden():
    return run_backtest(
        BacktestConfig(
            symbols=["^GSPC"], source="sample", start=date(2007, 1, 1), end=date(2009, 12, 31),
            write_report=False, progress=False, use_cache=False,
        )
    )


def test_golden_summary(golden):
    s = golden.summary
    assert s["bars"] == 756
    assert (s["data_start"], s["data_end"]) == ("2007-01-03", "2009-12-31")
    assert (s["start"], s["end"], s["warmup_bars"], s["period_bars"]) == (
        "2008-01-31", "2009-12-31", 271, 485)
    assert s["final_value"] == pytest.approx(109376.2183123974, rel=1e-9)
    assert s["total_return"] == pytest.approx(0.09376218312397411, rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(-0.052054677811415706, rel=1e-9)
    assert s["trades"] == 56
    assert s["regime_counts"] == {"crisis": 255, "bear_quiet": 90, "range": 42, "bull_quiet": 98}


def test_golden_benchmark_is_the_index(golden):
    b = golden.summary["benchmark"]
    assert b["total_return"] == pytest.approx(1115.099976 / 1378.550049 - 1, rel=1e-6)
    assert b["max_drawdown"] == pytest.approx(676.530029 / 1426.630005 - 1, rel=1e-6)


def test_golden_fills(golden):
    first = golden.fills[0]
    assert (first.dt[:10], first.side, first.size) == ("2008-02-07", "BUY", 18.0)
    assert first.size == int(0.25 * 100_000 / 1326.449951)  # crisis cap x value / decision close
    assert first.price == pytest.approx(1324.01001 * 1.0002, rel=1e-9)  # next open + 2 bp
    assert first.commission == pytest.approx(18 * 1324.01001 * 1.0002 * 1e-4, rel=1e-9)
    exit_ = golden.fills[1]  # rebound's exit: the first close above SMA(5)
    assert (exit_.dt[:10], exit_.side, exit_.size) == ("2008-02-12", "SELL", -18.0)
