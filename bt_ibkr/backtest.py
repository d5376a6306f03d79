"""Run a backtest the way ``python -m examples.backtest`` does, from Python.

``run_backtest(BacktestConfig(...))`` loads validated history (bt_ibkr.data.history), runs the
strategy (RegimeAwareEnsemble by default) in Cerebro with backtrader's BackBroker, and returns a
BacktestResult with the JSON summary, the fills, the regime report and the tearsheet path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from analyzers.equity import EquityRecorder
from analyzers.orders import Fill, OrderLog
from analyzers.regime import RegimeAttribution, RegimeReport
from analyzers.tearsheet import write_tearsheet
from bt_ibkr.errors import ConfigError
from bt_ibkr.metrics import (
    buy_and_hold_returns,
    compute_stats,
    scale_to_volatility,
    to_daily_returns,
)
from bt_ibkr.params import resolve_strategy
from bt_ibkr.progress import progress

log = logging.getLogger("bt_ibkr.backtest")


@dataclass
class BacktestConfig:
    """What to backtest. Defaults reproduce ``python -m examples.backtest`` with no flags."""

    symbols: list[str] | None = None
    source: str = "auto"
    csv_paths: list[Path] | None = None
    start: date | None = None
    end: date | None = None
    cash: float = 100_000.0
    commission_bps: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None  # None -> reports/backtest-<symbols>-<start>-<end>.html
    write_report: bool = True
    json_path: Path | None = None
    progress: bool = True
    use_cache: bool = True
    preload: bool = True
    runonce: bool = True
    strategy: type | None = None  # None -> strategies.RegimeAwareEnsemble
    ib_host: str = "127.0.0.1"  # source "ibkr": the gateway to load history from
    ib_port: int = 4002
    ib_client_id: int | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.cash <= 0:
            raise ConfigError(f"--cash {self.cash}: must be positive")
        if not 0 <= self.commission_bps < 1000:
            raise ConfigError(f"--commission-bps {self.commission_bps}: must be in [0, 1000)")
        if self.start and self.end and self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}: swap them")


@dataclass
class BacktestResult:
    """What a backtest produced."""

    summary: dict[str, Any]
    fills: list[Fill]
    regimes: RegimeReport
    values: pd.Series
    report: Path | None
    message: str


class _Progress(bt.Analyzer):
    """A rich progress bar over the bars of the run (stderr)."""

    params = (("total", 0), ("label", "backtest"))

    def start(self) -> None:
        self._bar = contextlib.ExitStack()
        self._advance = self._bar.enter_context(progress(self.p.total or None, self.p.label,
                                                         minimum=0))
        self._n = 0

    def next(self) -> None:
        self._n += 1
        if self._n % 50 == 0:
            self._advance(steps=50)

    def stop(self) -> None:
        self._advance(steps=self._n % 50)
        self._bar.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(",", "_")) or "run"


def run_backtest(config: BacktestConfig) -> BacktestResult:
    """Run one backtest and return its BacktestResult (also writes the report/JSON if asked).

    Raises:
        ConfigError: a bad config value (dates, cash, params).
        DataError: no source could serve the symbols (the message names each source tried).
    """
    from bt_ibkr.data.history import HistoryRequest, load_history
    from feeds.frame_feed import make_feed

    config.validate()
    strategy_cls = config.strategy or resolve_strategy()
    history = load_history(
        HistoryRequest(
            symbols=config.symbols,
            source=config.source,
            start=config.start,
            end=config.end,
            csv_paths=config.csv_paths,
            use_cache=config.use_cache,
            progress=config.progress,
            ib_host=config.ib_host,
            ib_port=config.ib_port,
            ib_client_id=config.ib_client_id,
        )
    )
    log.info(history.message)

    cerebro = bt.Cerebro(preload=config.preload, runonce=config.runonce, stdstats=False)
    cerebro.broker.setcash(config.cash)
    cerebro.broker.setcommission(commission=config.commission_bps / 10_000.0)
    bars = 0
    for symbol, frame in history.frames.items():
        cerebro.adddata(make_feed(frame, name=symbol), name=symbol)
        bars = max(bars, len(frame))
    cerebro.addstrategy(strategy_cls, **config.params)
    cerebro.addanalyzer(EquityRecorder, _name="equity")
    cerebro.addanalyzer(OrderLog, _name="orders")
    cerebro.addanalyzer(RegimeAttribution, _name="regimes")
    if config.progress:
        cerebro.addanalyzer(_Progress, _name="progress", total=bars)
    strat = cerebro.run()[0]

    curve = strat.analyzers.equity.get_analysis()
    values = curve.values()
    fills: list[Fill] = strat.analyzers.orders.get_analysis()["fills"]
    regimes: RegimeReport = strat.analyzers.regimes.get_analysis()

    returns = to_daily_returns(values)
    stats = compute_stats(returns)
    closes = {s: f["close"] for s, f in history.frames.items()}
    bench = buy_and_hold_returns(closes).reindex(returns.index).fillna(0.0)
    bench_stats = compute_stats(bench)
    bench_eq = compute_stats(scale_to_volatility(bench, stats.volatility))

    symbols = list(history.frames)
    first = min(f.index[0] for f in history.frames.values())
    last = max(f.index[-1] for f in history.frames.values())
    summary: dict[str, Any] = {
        "source": history.source,
        "source_message": history.message,
        "symbols": symbols,
        "strategy": strategy_cls.__name__,
        "params": {k: v for k, v in config.params.items()},
        "bars": int(len(values)),
        "start": pd.Timestamp(first).date().isoformat(),
        "end": pd.Timestamp(last).date().isoformat(),
        "cash": config.cash,
        "commission_bps": config.commission_bps,
        "final_value": float(values.iloc[-1]) if len(values) else config.cash,
        **stats.to_dict(),
        "trades": len(fills),
        "exposure": float(curve.exposure().mean()) if len(values) else 0.0,
        "regime_counts": regimes.counts(),
        "benchmark": {
            "name": "buy_and_hold_equal_weight",
            "total_return": bench_stats.total_return,
            "cagr": bench_stats.cagr,
            "sharpe": bench_stats.sharpe,
            "max_drawdown": bench_stats.max_drawdown,
            "volatility": bench_stats.volatility,
            "equal_volatility": {
                "cagr": bench_eq.cagr,
                "sharpe": bench_eq.sharpe,
                "max_drawdown": bench_eq.max_drawdown,
            },
        },
    }

    report: Path | None = None
    if config.write_report:
        report = config.report or Path("reports") / (
            f"backtest-{_slug(','.join(symbols))}-{summary['start']}-{summary['end']}.html"
        )
        report = write_tearsheet(
            values,
            report,
            benchmark=bench,
            benchmark_title="Buy & hold",
            title=f"{strategy_cls.__name__} on {', '.join(symbols)}",
            regime_report=regimes,
        )
        summary["report"] = str(report)
    if config.json_path:
        path = Path(config.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return BacktestResult(
        summary=summary, fills=fills, regimes=regimes, values=values, report=report,
        message=history.message,
    )
