"""One research task: one full Cerebro backtest of one parameter set on one symbol set and window.

``run_task(spec, bars)`` is a pure function of its inputs: it builds Cerebro from in-memory bar
frames (a :class:`BarSet`, loaded once by the client and scattered to the workers), runs the
Strategy with BackBroker exactly as ``python -m examples.backtest`` does (same feeds, cash,
commission, analyzers and metric functions), and returns a small :class:`TaskResult`: headline
metrics and the daily return series of the window, never Strategy objects. The same spec on the
same bars gives bit-identical numbers in any process (serial or on a Dask worker).

Windows: metrics count only the bars from ``spec.start`` to ``spec.end``. ``spec.warmup_bars``
bars before ``start`` (per symbol) are fed first so indicators are warm when the window opens;
the window's first return is then measured from the last warm-up bar. With ``warmup_bars=0``
(sweeps) the task is exactly a backtest of ``start..end``.
"""

from __future__ import annotations

import difflib
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from bt_ibkr.costs import DEFAULT_COMMISSION_BPS, DEFAULT_SLIPPAGE_BPS
from bt_ibkr.errors import ConfigError, DataError

__all__ = [
    "METRICS",
    "SELECT_METRICS",
    "BarSet",
    "TaskResult",
    "TaskSpec",
    "default_strategy",
    "run_task",
]

METRICS = ("sharpe", "cagr", "max_drawdown", "volatility", "sortino", "calmar", "total_return")
"""The metrics every TaskResult carries (fractions; ratios annualised with 252 days)."""

SELECT_METRICS = ("sharpe", "calmar", "sortino")
"""Metrics a walk-forward may select parameters by (higher is better)."""


@dataclass
class BarSet:
    """Validated bar frames shared by every task of a run (scattered to workers once).

    ``feed_input()`` keeps the rows and feed settings of each window it was asked for, so the
    tasks that share a window (every task of a sweep) slice the frames once per process.
    """

    frames: dict[str, pd.DataFrame]
    source: str = ""
    message: str = ""
    _windows: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_windows"] = {}  # a cache: never shipped to workers
        return state

    def span(self) -> tuple[date, date]:
        """Return (first, last) session date over all frames."""
        firsts = [_days(f.index)[0] for f in self.frames.values()]
        lasts = [_days(f.index)[-1] for f in self.frames.values()]
        return min(firsts).date(), max(lasts).date()

    def trading_days(self) -> pd.DatetimeIndex:
        """Return the sorted union of the frames' session dates (tz-naive, midnight)."""
        idx = pd.DatetimeIndex([])
        for f in self.frames.values():
            idx = idx.union(_days(f.index))
        return idx.unique().sort_values()

    def feed_input(self, symbol: str, start: date, end: date, warmup_bars: int) -> tuple[pd.DataFrame, dict]:
        """Return (rows, make_feed keywords) of ``symbol`` for a window (see TaskSpec).

        Rows run from ``warmup_bars`` sessions before ``start`` through ``end``. Raises
        DataError when the symbol has no bar in the window.
        """
        key = (symbol, start, end, warmup_bars)
        if key not in self._windows:
            from feeds.frame_feed import infer_timeframe

            frame = self.frames[symbol]
            days = _days(frame.index).to_numpy()
            lo = int(days.searchsorted(np.datetime64(start, "ns"), side="left"))
            hi = int(days.searchsorted(np.datetime64(end, "ns"), side="right"))
            if hi <= lo:
                raise DataError(
                    f"{symbol} has no bars between {start} and {end} (it covers "
                    f"{pd.Timestamp(days[0]):%Y-%m-%d}..{pd.Timestamp(days[-1]):%Y-%m-%d})"
                )
            rows = frame.iloc[max(0, lo - warmup_bars):hi]
            timeframe, compression = infer_timeframe(frame)  # of the whole frame, as examples.backtest
            if len(self._windows) >= _MAX_WINDOWS:
                self._windows.clear()
            self._windows[key] = (rows, {"timeframe": timeframe, "compression": compression})
        return self._windows[key]


_MAX_WINDOWS = 512


@dataclass(frozen=True)
class TaskSpec:
    """What one task runs. ``params`` go to the Strategy; dates are inclusive."""

    task_id: int
    params: dict[str, Any]
    symbols: tuple[str, ...]
    start: date
    end: date
    warmup_bars: int = 0
    cash: float = 100_000.0
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    kind: str = "sweep"  # sweep | train | test
    window: int | None = None  # walk-forward window index

    __hash__ = None  # params is a dict


@dataclass
class TaskResult:
    """What one task produced: metrics and the window's daily returns, or an error."""

    task_id: int
    params: dict[str, Any]
    symbols: tuple[str, ...]
    start: date
    end: date
    kind: str = "sweep"
    window: int | None = None
    sharpe: float | None = None
    cagr: float | None = None
    max_drawdown: float | None = None
    volatility: float | None = None
    sortino: float | None = None
    calmar: float | None = None
    total_return: float | None = None
    trades: int | None = None
    final_value: float | None = None
    bars: int = 0
    period_start: date | None = None  # the metrics' first day (after the warm-up)
    period_end: date | None = None
    returns: pd.Series | None = field(default=None, repr=False)
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""

    @property
    def ok(self) -> bool:
        """True when the task ran to the end (``error`` is None)."""
        return self.error is None

    def metric(self, name: str) -> float:
        """Return metric ``name``; -inf for a failed task or a NaN value (never selected)."""
        value = getattr(self, name)
        if value is None or not np.isfinite(value):
            return float("-inf")
        return float(value)

    def period(self) -> tuple[date, date]:
        """Return the first and last day the metrics cover (as ``examples.backtest`` labels a
        run: from the close of the first bar after the warm-up); the data's range before the
        task ran or when it failed."""
        return (self.period_start or self.start, self.period_end or self.end)

    def record(self) -> dict[str, Any]:
        """Return the JSON-ready record (no returns series): params, symbols, the metrics'
        period (``start``/``end``) and the data's range (``data_start``/``data_end``), metrics."""
        first, last = self.period()
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "params": dict(self.params),
            "symbols": list(self.symbols),
            "start": first.isoformat(),
            "end": last.isoformat(),
            "data_start": self.start.isoformat(),
            "data_end": self.end.isoformat(),
        }
        if self.kind != "sweep":
            out["kind"] = self.kind
            out["window"] = self.window
        if self.error is not None:
            out["error"] = self.error
            return out
        for name in METRICS:
            out[name] = getattr(self, name)
        out.update(trades=self.trades, final_value=self.final_value, bars=self.bars)
        return out


def default_strategy() -> type:
    """Return strategies.RegimeAwareEnsemble (imported lazily)."""
    from strategies import RegimeAwareEnsemble

    return RegimeAwareEnsemble


def _days(index: pd.Index) -> pd.DatetimeIndex:
    """Session dates of a bar index: tz-naive (UTC for tz-aware bars), at midnight."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return pd.DatetimeIndex(idx.to_numpy().astype("datetime64[D]").astype("datetime64[ns]"))


def _strategy_params(strategy: type, params: dict[str, Any]) -> dict[str, Any]:
    """Check names against the Strategy's params; ints become floats where the default is a float.

    Raises ConfigError naming an unknown param (with the closest names).
    """
    from bt_ibkr.params import param_defaults

    defaults = param_defaults(strategy)
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in defaults:
            close = difflib.get_close_matches(name, list(defaults), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{strategy.__name__} has no param {name!r}{hint}")
        default = defaults[name]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[name] = value
    return out


def _run(spec: TaskSpec, bars: BarSet, strategy: type) -> TaskResult:
    from bt_ibkr.backtest_run import BacktestConfig, simulate, warmup_bars
    from bt_ibkr.metrics import compute_stats, period_returns

    params = _strategy_params(strategy, spec.params)
    missing = [s for s in spec.symbols if s not in bars.frames]
    if missing:
        raise DataError(f"no bars loaded for {', '.join(missing)} (loaded: {', '.join(bars.frames)})")
    frames: dict[str, pd.DataFrame] = {}
    feed_kw: dict[str, dict] = {}
    for symbol in spec.symbols:
        frames[symbol], feed_kw[symbol] = bars.feed_input(symbol, spec.start, spec.end,
                                                          spec.warmup_bars)
    # the engine of python -m examples.backtest: same broker, costs, feeds and analyzers
    config = BacktestConfig(cash=spec.cash, commission_bps=spec.commission_bps,
                            slippage_bps=spec.slippage_bps, progress=False, strategy=strategy)
    record = simulate(config, frames, strategy, params, feed_kw=feed_kw,
                      attribute_regimes=False)  # a task reports no regimes
    values = record.values
    lo = pd.Timestamp(spec.start)
    fed_before = int(np.asarray(_days(values.index) < lo).sum())
    if spec.warmup_bars:
        # walk-forward: the bars before the window warmed the Strategy up; the window's first
        # return is measured from the last of them
        returns = period_returns(values, max(fed_before - 1, 0))
        returns = returns.loc[returns.index >= lo]
    else:
        # a sweep task is a backtest of start..end: the same reporting period as
        # examples.backtest (from the close of the first bar after the Strategy's warm-up)
        try:
            returns = period_returns(values, warmup_bars(strategy, params))
        except ValueError as exc:
            raise DataError(f"{spec.start}..{spec.end}: {exc}") from None
    returns = returns.rename("return")
    if returns.empty:
        raise DataError(f"the run recorded no bars between {spec.start} and {spec.end}")
    stats = compute_stats(returns)
    base = pd.Timestamp(returns.index[0])
    final = float(values.iloc[-1])
    before = values.loc[np.asarray(_days(values.index) < lo)]
    if len(before):  # warm-up ran first: value of `cash` invested when the window opened
        final = final * spec.cash / float(before.iloc[-1])
    first_day = lo if spec.warmup_bars else base
    trades = sum(1 for f in record.fills if pd.Timestamp(f.dt) >= first_day)
    mdd = stats.max_drawdown
    return TaskResult(
        task_id=spec.task_id, params=dict(spec.params), symbols=tuple(spec.symbols),
        start=spec.start, end=spec.end, kind=spec.kind, window=spec.window,
        sharpe=stats.sharpe, cagr=stats.cagr, max_drawdown=mdd, volatility=stats.volatility,
        sortino=stats.sortino, calmar=stats.cagr / abs(mdd) if mdd < 0 else 0.0,
        total_return=stats.total_return, trades=int(trades), final_value=final,
        bars=int(len(returns)), returns=returns,
        period_start=pd.Timestamp(returns.index[0]).date(),
        period_end=pd.Timestamp(returns.index[-1]).date(),
    )


def run_task(spec: TaskSpec, bars: BarSet | dict[str, pd.DataFrame], strategy: type | None = None) -> TaskResult:
    """Run one backtest and return its TaskResult; never raises for a task-level problem.

    A bad param (unknown name, a value the Strategy rejects), missing bars or any exception
    raised by the run gives a TaskResult with ``error`` set to ``"<Type>: <message>"`` and no
    metrics, so one bad task never stops the others.
    """
    t0 = time.perf_counter()
    if isinstance(bars, dict):
        bars = BarSet(frames=bars)
    try:
        result = _run(spec, bars, strategy or default_strategy())
    except Exception as exc:  # noqa: BLE001 - reported per task, by design
        message = " ".join(str(exc).split()) or repr(exc)
        result = TaskResult(
            task_id=spec.task_id, params=dict(spec.params), symbols=tuple(spec.symbols),
            start=spec.start, end=spec.end, kind=spec.kind, window=spec.window,
            error=f"{type(exc).__name__}: {message}",
        )
    result.seconds = time.perf_counter() - t0
    result.worker = f"{socket.gethostname()}:{os.getpid()}"
    return result
