"""One backtest run over in-memory bars, and its measurement: the core under
:mod:`bt_ibkr.backtest` (which adds loading, reports and the JSON summary) and under the
research tools (:mod:`bt_ibkr.research.ablation`).

:func:`simulate` runs a Strategy once in Cerebro with backtrader's BackBroker over canonical
bar frames and returns a :class:`RunRecord`; :func:`measure` turns it into the reporting
period's :class:`PeriodPerformance`. :class:`BacktestConfig` says what to run and at what cost.

Fills and costs: market orders decided at a bar's close fill at the next bar's open (no
cheat-on-close, no cheat-on-open); every fill pays ``commission_bps`` of its traded value and
``slippage_bps`` of its price (buys higher, sells lower, the open included, never capped at the
bar's high/low). Reporting period: from the close of the first bar on which the strategy can act
(after :func:`warmup_bars` bars) to the last bar.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from analyzers.equity import EquityRecorder
from analyzers.orders import Fill, OrderLog
from analyzers.regime import RegimeAttribution, RegimeReport, build_report
from bt_ibkr.costs import (  # noqa: F401 - MAX_BPS: re-exported for the CLIs
    DEFAULT_CASH,
    DEFAULT_COMMISSION_BPS,
    DEFAULT_SLIPPAGE_BPS,
    MAX_BPS,
    Costs,
)
from bt_ibkr.errors import ConfigError, DataError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.metrics import (
    PerformanceStats,
    buy_and_hold_returns,
    compute_stats,
    period_returns,
    turnover,
)
from bt_ibkr.params import first_non_finite, param_defaults, resolve_strategy
from bt_ibkr.progress import progress

log = logging.getLogger("bt_ibkr.backtest")

MAX_CASH_RATE_PCT = 20.0
"""The highest yearly cash rate a backtest accepts, in percent."""


@dataclass
class BacktestConfig:
    """What to backtest. Defaults reproduce ``python -m examples.backtest`` with no flags."""

    symbols: list[str] | None = None
    source: str = "auto"
    csv_paths: list[Path] | None = None
    start: date | None = None
    end: date | None = None
    cash: float = DEFAULT_CASH
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    cash_rate_pct: float = 0.0  # yearly % earned on idle (positive) cash (bt_ibkr.cash_rate)
    decision_delay: int = 0  # bars between a decision and its order (strategy param)
    params: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None  # None -> reports/backtest-<symbols>-<start>-<end>.html
    write_report: bool = True
    json_path: Path | None = None
    ablation: bool = False  # also run the ablation variants (bt_ibkr.research.ablation)
    progress: bool = True
    use_cache: bool = True
    preload: bool = True
    runonce: bool = True
    strategy: type | None = None  # None -> strategies.RegimeAwareEnsemble
    gateway: GatewayAddress = field(default_factory=GatewayAddress)  # source "ibkr": where from
    futures: dict[str, str] = field(default_factory=dict)  # symbol -> futures root (--futures)
    futures_adjust: str | None = None  # --futures-adjust (source ibkr): ratio (None) | difference
    fx: dict[str, str] = field(default_factory=dict)  # symbol -> "BASE.QUOTE" pair (--fx)

    @property
    def costs(self) -> Costs:
        """The run's cash, commission and slippage as one :class:`~bt_ibkr.costs.Costs`."""
        return Costs.of(self)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field (as its CLI flag) and its value."""
        if self.futures:
            from bt_ibkr.futures.registry import get_spec

            for symbol, root in self.futures.items():
                get_spec(root)
                if self.symbols is not None and symbol not in self.symbols:
                    raise ConfigError(f"--futures {symbol}: not one of --symbols "
                                      f"{','.join(self.symbols)}; list it there too")
        if self.futures_adjust is not None:
            from bt_ibkr.futures.continuous import METHODS

            if self.futures_adjust not in METHODS:
                raise ConfigError(f"--futures-adjust {self.futures_adjust}: use one of "
                                  f"{', '.join(METHODS)}")
            if not self.futures or self.source != "ibkr":
                raise ConfigError(f"--futures-adjust {self.futures_adjust}: applies to a "
                                  "continuous future built from IB's contracts; give it with "
                                  "--source ibkr --futures ROOT (a CSV is used as it is)")
        if self.fx:
            from bt_ibkr.fx.backtest import base_currency

            for symbol in self.fx:
                if self.symbols is not None and symbol not in self.symbols:
                    raise ConfigError(f"--fx {symbol}: not one of --symbols "
                                      f"{','.join(self.symbols)}; list it there too")
                if symbol in self.futures:
                    raise ConfigError(f"--fx {symbol}: also given to --futures; a symbol is "
                                      "one or the other")
            base_currency(self.fx, self.symbols)
            if self.source == "ibkr":  # its history path asks TRADES, which IB has not for forex
                raise ConfigError(f"--fx {','.join(self.fx)} with --source ibkr: forex history "
                                  "from IB (MIDPOINT bars) is not wired into the backtest yet; "
                                  "give the pair's bars as a CSV (--source csv --csv FILE --fx "
                                  f"{next(iter(self.fx))}), e.g. saved from "
                                  "IBKRDataProvider with what_to_show='MIDPOINT'")
        self.costs.validate()
        if not _finite(self.cash_rate_pct) or not 0 <= self.cash_rate_pct <= MAX_CASH_RATE_PCT:
            raise ConfigError(f"--cash-rate {self.cash_rate_pct}: must be a yearly percentage in "
                              f"[0, {MAX_CASH_RATE_PCT:g}], e.g. --cash-rate 2 for 2% a year")
        if isinstance(self.decision_delay, bool) or not isinstance(self.decision_delay, int) \
                or self.decision_delay < 0:
            raise ConfigError(f"--decision-delay {self.decision_delay}: must be a whole number of bars >= 0")
        if self.start and self.end and self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}: swap them")
        for key, value in self.params.items():
            bad = first_non_finite(value)
            if bad is not None:
                raise ConfigError(f"--param {key}={value}: {bad} is not a finite number")

    def strategy_class(self) -> type:
        """Return the Strategy class to run (``strategy`` or RegimeAwareEnsemble)."""
        return self.strategy if self.strategy is not None else resolve_strategy()

    def strategy_params(self) -> dict[str, Any]:
        """Return the params passed to the Strategy: ``params`` plus ``decision_delay``.

        Raises ConfigError when a delay is asked for and the Strategy has no such param.
        """
        cls = self.strategy_class()
        params = dict(self.params)
        if not self.decision_delay:
            return params
        if "decision_delay" in param_defaults(cls):
            given = params.get("decision_delay", self.decision_delay)
            if given != self.decision_delay:
                raise ConfigError(
                    f"--decision-delay {self.decision_delay} and --param decision_delay={given} "
                    f"disagree: give one of them"
                )
            params["decision_delay"] = self.decision_delay
        else:
            raise ConfigError(
                f"--decision-delay {self.decision_delay}: {cls.__name__} has no decision_delay "
                f"param, so it cannot delay its decisions; drop the flag"
            )
        return params

    def output_paths(self) -> list[tuple[str, Path]]:
        """Return (flag, path) of every file the run will write (the default report: a probe)."""
        out: list[tuple[str, Path]] = []
        if self.write_report:
            out.append(("--report", Path(self.report) if self.report else Path("reports") / ".bt_ibkr-write-test"))
        if self.json_path:
            out.append(("--json", Path(self.json_path)))
        return out


@dataclass
class RunRecord:
    """What one Cerebro run recorded, bar by bar (every series has one entry per bar)."""

    values: pd.Series
    exposure: pd.Series
    fills: list[Fill]
    rejected: list[tuple[str, str, str]]
    regimes: RegimeReport


@dataclass
class PeriodPerformance:
    """A run measured over its reporting period (what every report prints)."""

    returns: pd.Series  # daily returns; the first (base day) is 0
    stats: PerformanceStats
    exposure: float  # mean gross exposure over the period's bars
    turnover: float  # traded value per year / mean equity (bt_ibkr.metrics.turnover)
    fills: int
    regimes: RegimeReport  # regime attribution over the period's bars


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_writable(path: str | Path, flag: str) -> Path:
    """Return ``path`` after checking that a file can be written there (before any work).

    Missing parent folders are created; no file is left behind. Raises ConfigError naming
    ``flag`` and the path when it is a folder, sits under a file, or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file path such as {path / 'out'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot be written ({exc.strerror or exc}); choose a writable path"
        ) from None
    return path


def slug(text: str) -> str:
    """Return a file-name-safe version of ``text`` for a default output name (``^GSPC,^IXIC``
    -> ``GSPC_IXIC``; ``run`` when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(",", "_")) or "run"


def check_outputs(outputs: Iterable[tuple[str, str | Path | None]]) -> None:
    """Check every ``(flag, path)`` of ``outputs`` with :func:`check_writable` (None paths:
    not asked for) before a run starts, so a bad path never costs the run's results."""
    for flag, path in outputs:
        if path is not None:
            check_writable(path, flag)


def warmup_bars(strategy_cls: type, params: dict[str, Any] | None = None) -> int:
    """Return how many bars ``strategy_cls`` needs before the first bar it can act on.

    A Strategy declares it with a classmethod ``warmup_bars(params: dict) -> int``. Without one,
    RegimeAwareEnsemble's params give it: its regime classifier labels its first bar after
    ``max(sma_long + slope_lookback, vol_window + vol_rank_min) - 1`` bars (271 with the
    defaults). A ``decision_delay`` param adds its bars. Other strategies: 0.
    """
    merged = {**param_defaults(strategy_cls), **(params or {})}
    hook = getattr(strategy_cls, "warmup_bars", None)
    if callable(hook):
        return int(hook(merged))
    need = ("sma_long", "slope_lookback", "vol_window", "vol_rank_min")
    bars = 0
    if all(isinstance(merged.get(k), int) for k in need):
        bars = max(merged["sma_long"] + merged["slope_lookback"],
                   merged["vol_window"] + merged["vol_rank_min"]) - 1
    delay = merged.get("decision_delay", 0)
    return max(0, bars + (delay if isinstance(delay, int) else 0))


def check_history_length(frames: dict[str, pd.DataFrame], warmup: int, strategy: str) -> None:
    """Raise DataError naming each symbol whose bars cannot cover ``warmup`` and one trade.

    A strategy needs ``warmup`` bars, one bar to decide on and the next one to fill at.
    """
    needed = warmup + 2
    short = [(s, f) for s, f in frames.items() if len(f) < needed]
    if short:
        parts = "; ".join(
            f"{s} has {len(f)} bars ({f.index[0].date()}..{f.index[-1].date()})" if len(f)
            else f"{s} has no bars" for s, f in short
        )
        raise DataError(
            f"{parts}, {strategy} needs at least {needed} ({warmup} warm-up bars, one to decide "
            f"on, one to fill at): start earlier (--start) or shorten the warm-up params"
        )


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


def backtest_cerebro(cash: float, commission_bps: float, slippage_bps: float, *,
                     preload: bool = True, runonce: bool = True,
                     cash_rate_pct: float = 0.0) -> bt.Cerebro:
    """Return an empty Cerebro whose BackBroker has the backtest's cash, costs and fill rules:
    market orders fill at the next bar's open (backtrader's default, stated explicitly), every
    fill pays ``commission_bps`` of its value and ``slippage_bps`` of its price, the open
    included and never capped at the bar's high/low; the named order options (auctions,
    outside regular hours, Adaptive) fill by :mod:`bt_ibkr.backtest_broker`'s rules.
    ``cash_rate_pct`` > 0: idle cash earns that yearly percentage
    (:class:`bt_ibkr.cash_rate.CashRateBroker`; its clock is the first feed)."""
    cerebro = bt.Cerebro(preload=preload, runonce=runonce, stdstats=False)
    if cash_rate_pct:
        from bt_ibkr.cash_rate import CashRateBroker

        cerebro.broker = CashRateBroker(cash_rate=cash_rate_pct / 100.0)
    else:  # BackBroker plus the named order options (bt_ibkr.order_options)
        from bt_ibkr.backtest_broker import BacktestBroker

        cerebro.broker = BacktestBroker()
    broker = cerebro.broker
    broker.setcash(cash)
    broker.setcommission(commission=commission_bps / 10_000.0)
    broker.set_coc(False)
    broker.set_coo(False)
    broker.set_slippage_perc(slippage_bps / 10_000.0, slip_open=True, slip_limit=True,
                             slip_match=True, slip_out=True)
    return cerebro


def simulate(config: BacktestConfig, frames: dict[str, pd.DataFrame],
             strategy_cls: type | None = None, params: dict[str, Any] | None = None,
             *, label: str = "backtest", feed_kw: dict[str, dict] | None = None,
             attribute_regimes: bool = True) -> RunRecord:
    """Run ``strategy_cls`` once over in-memory canonical bar frames and return its RunRecord.

    ``config`` gives cash, costs, preload/runonce and progress; ``params`` default to
    ``config.strategy_params()``; ``feed_kw`` gives per-symbol keywords for
    :func:`feeds.frame_feed.make_feed` (e.g. a known timeframe); ``attribute_regimes`` False
    skips the per-regime attribution (``RunRecord.regimes`` is then empty: sweep tasks, which
    report no regimes, do not pay for it). Raises ConfigError for a bad strategy param.
    """
    from feeds.frame_feed import make_feed

    strategy_cls = strategy_cls or config.strategy_class()
    params = config.strategy_params() if params is None else params
    cerebro = backtest_cerebro(config.cash, config.commission_bps, config.slippage_bps,
                               preload=config.preload, runonce=config.runonce,
                               cash_rate_pct=config.cash_rate_pct)
    bars = 0
    if config.futures:  # continuous futures: one unit = one contract (bt_ibkr.futures.backtest)
        from bt_ibkr.futures.backtest import per_contract_frames

        frames = per_contract_frames(frames, config.futures)
    for symbol, frame in frames.items():
        feed = make_feed(frame, name=symbol, **(feed_kw or {}).get(symbol, {}))
        cerebro.adddata(feed, name=symbol)
        if bars == 0 and hasattr(cerebro.broker, "set_clock"):
            cerebro.broker.set_clock(feed)
        bars = max(bars, len(frame))
    cerebro.addstrategy(strategy_cls, **params)
    cerebro.addanalyzer(EquityRecorder, _name="equity")
    cerebro.addanalyzer(OrderLog, _name="orders")
    if attribute_regimes:
        cerebro.addanalyzer(RegimeAttribution, _name="regimes")
    if config.progress:
        cerebro.addanalyzer(_Progress, _name="progress", total=bars, label=label)
    strat = cerebro.run()[0]
    curve = strat.analyzers.equity.get_analysis()
    orders = strat.analyzers.orders.get_analysis()
    return RunRecord(
        values=curve.values(),
        exposure=curve.exposure(),
        fills=orders["fills"],
        rejected=orders["rejected"],
        regimes=strat.analyzers.regimes.get_analysis() if attribute_regimes
        else RegimeReport(),
    )


def measure(record: RunRecord, warmup: int) -> PeriodPerformance:
    """Return the performance of ``record`` over its reporting period (after ``warmup`` bars)."""
    values = record.values
    returns = period_returns(values, warmup)
    kept = values.iloc[warmup:]
    base = pd.Timestamp(kept.index[0])
    fills = [f for f in record.fills if pd.Timestamp(f.dt) >= base]
    traded = sum(abs(f.size * f.price) for f in fills)
    timeline = record.regimes.timeline
    regimes = record.regimes
    if len(timeline) == len(values):
        regimes = build_report(
            [dt for dt, _ in timeline[warmup:]], [lb for _, lb in timeline[warmup:]],
            kept.tolist(), record.exposure.iloc[warmup:].tolist(),
        )
    return PeriodPerformance(
        returns=returns,
        stats=compute_stats(returns),
        exposure=float(record.exposure.iloc[warmup:].mean()),
        turnover=turnover(traded, kept, len(returns)),
        fills=len(fills),
        regimes=regimes,
    )


def period_benchmark(frames: dict[str, pd.DataFrame], returns: pd.Series) -> pd.Series:
    """Return equal-weight buy-and-hold daily returns on the days of ``returns``.

    Bought at the close of the period's first day (its return is 0), like the strategy's base.
    """
    base = pd.Timestamp(returns.index[0])
    closes = {}
    for symbol, frame in frames.items():
        close = frame["close"]
        idx = pd.DatetimeIndex(close.index)
        day = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).normalize()
        closes[symbol] = close[day >= base]
    return buy_and_hold_returns(closes).reindex(returns.index).fillna(0.0)

