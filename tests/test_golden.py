"""Golden backtest on the real S&P 500 sample, 2007-01-01..2009-12-31 (the financial crisis).

Recorded with (offline, any folder):

    python -m examples.backtest --source sample --symbols ^GSPC --start 2007-01-01 \
        --end 2009-12-31 --json golden.json --no-report --no-progress

which printed final value 105,482.94, total return 5.48%, max drawdown -3.18%, 17 fills,
regimes crisis 324 / warmup 219 / bull_quiet 92 / bear_quiet 67 / range 54, and buy & hold
-21.28% with a -56.78% max drawdown. Checked by hand: the buy-and-hold numbers are the index's
own (1416.60 on 2007-01-03 to 1115.10 on 2009-12-31; peak 1565.15 on 2007-10-09 to 676.53 on
2009-03-09), and each fill's commission is 1 bp of its value (7 x 1408.36 -> 0.99).
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
    assert (s["start"], s["end"]) == ("2007-01-03", "2009-12-31")
    assert s["final_value"] == pytest.approx(105482.94250121468, rel=1e-9)
    assert s["total_return"] == pytest.approx(0.05482942501214705, rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(-0.03180005030169131, rel=1e-9)
    assert s["trades"] == 17
    assert s["regime_counts"] == {"warmup": 219, "crisis": 324, "bear_quiet": 67, "range": 54, "bull_quiet": 92}


def test_golden_benchmark_is_the_index(golden):
    b = golden.summary["benchmark"]
    assert b["total_return"] == pytest.approx(1115.099976 / 1416.599976 - 1, rel=1e-6)
    assert b["max_drawdown"] == pytest.approx(676.530029 / 1565.150024 - 1, rel=1e-6)


def test_golden_fills(golden):
    first = golden.fills[0]
    assert (first.dt[:10], first.side, first.size) == ("2008-05-15", "BUY", 7.0)
    assert first.price == pytest.approx(1408.359985, rel=1e-9)
    assert first.commission == pytest.approx(7 * 1408.359985 * 1e-4, rel=1e-9)
