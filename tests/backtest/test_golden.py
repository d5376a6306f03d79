"""Golden backtest on the real S&P 500 sample, 2007-01-01..2009-12-31 (the financial crisis).

Recorded with (offline, any folder, the worktree on PYTHONPATH):

    python -m examples.backtest --source sample --symbols ^GSPC --start 2007-01-01 \
        --end 2009-12-31 --json golden.json --no-report --no-progress

which printed (commission 1 bp + slippage 2 bp, the defaults) the reporting period
2008-01-31..2009-12-31 (485 bars after the 271-bar warm-up 2007-01-03..2008-01-30), final value
113,054.52, total return 13.05%, max drawdown -4.11%, 10 fills, regimes bear_quiet 204 / crisis
141 / bull_quiet 98 / range 42, and buy & hold -19.11% with a -52.58% max drawdown. Recorded
for the risk-scaling default of issue 22 (the trend sleeve, cash in crisis); the previous
sleeve-switching default printed 109,376.22 and 56 fills. Checked by hand: the buy-and-hold
numbers are the index's own over the period (1378.55 on 2008-01-31 to 1115.10 on 2009-12-31;
peak 1426.63 on 2008-05-19 to 676.53 on 2009-03-09). The first regime is on 2008-01-31: crisis
(close far under a falling SMA200, 20-day vol in its top fifth of the year). The strategy holds
cash through 2008 (the trend sleeve is off: SMA50 < SMA200) and buys when SMA50 crosses above
SMA200: on 2009-06-23 SMA50 899.36 > SMA200 899.04, regime bear_quiet (exposure 1), realized
vol 0.2188, so the target is 0.98 * 0.12 / 0.2188 = 0.537 and the order
floor(0.537 * 100,000 / 895.10) = 60 shares, filled at the next open, 896.31 on 2009-06-24,
plus 2 bp slippage (896.31 x 1.0002 = 896.49), with a commission of 1 bp (60 x 896.49 x 1e-4 =
5.38).
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
    assert s["final_value"] == pytest.approx(113054.51797007873, rel=1e-9)
    assert s["total_return"] == pytest.approx(0.13054517970078727, rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(-0.04109114902122024, rel=1e-9)
    assert s["trades"] == 10
    assert s["regime_counts"] == {"crisis": 141, "bear_quiet": 204, "range": 42, "bull_quiet": 98}


def test_golden_benchmark_is_the_index(golden):
    b = golden.summary["benchmark"]
    assert b["total_return"] == pytest.approx(1115.099976 / 1378.550049 - 1, rel=1e-6)
    assert b["max_drawdown"] == pytest.approx(676.530029 / 1426.630005 - 1, rel=1e-6)


def test_golden_fills(golden):
    first = golden.fills[0]
    assert (first.dt[:10], first.side, first.size) == ("2009-06-24", "BUY", 60.0)
    target = 0.98 * 0.12 / 0.21882330560909363  # cash buffer x target vol / realized vol
    assert first.size == int(target * 100_000 / 895.099976)  # x value / decision close
    assert first.price == pytest.approx(896.309998 * 1.0002, rel=1e-9)  # next open + 2 bp
    assert first.commission == pytest.approx(60 * 896.309998 * 1.0002 * 1e-4, rel=1e-9)
    # nothing was bought in 2008: crisis and the falling trend held cash
    assert all(f.dt[:4] == "2009" for f in golden.fills)
