"""Ablation: what each part of the ensemble contributes, over one period with one cost model.

``run_ablation(config, frames)`` runs, serially, one backtest per variant of the strategy and
returns an :class:`AblationReport` with one row per variant:

- ``ensemble``: the strategy as configured;
- ``static_weights``: the same sleeves with static weights, no regimes (``use_regimes=False``);
- one row per sleeve in ``Strategy.SLEEVES``, that sleeve alone with the same volatility
  targeting and no regime layer (``sleeves="<name>", use_regimes=False`` where the strategy has
  ``use_regimes``: with regimes on, a sleeve's weight in each regime row would still apply);
- ``buy_hold_same_vol``: equal-weight buy-and-hold scaled (daily rebalanced) to the ensemble's
  realized volatility over the period.

Every row is measured over the ensemble's reporting period (after the strategy's warm-up) with
the same metric functions as the backtest summary. Columns: ``sharpe``, ``cagr``,
``max_drawdown``, ``volatility`` (annualised), ``exposure`` (mean gross exposure) and
``turnover`` (traded value per year over mean equity; bt_ibkr.metrics.turnover). A Strategy
without ``use_regimes`` or ``sleeves``/``SLEEVES`` gets those variants skipped, and the report
says why. ``python -m examples.backtest --ablation`` prints the table, adds it to the JSON
(``ablation``) and to the tearsheet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from bt_ibkr.backtest_run import (
    BacktestConfig,
    RunRecord,
    measure,
    period_benchmark,
    simulate,
    warmup_bars,
)
from bt_ibkr.metrics import compute_stats, constant_exposure_turnover, scale_to_volatility
from bt_ibkr.params import param_defaults

__all__ = ["ABLATION_COLUMNS", "AblationReport", "AblationRow", "ablation_variants", "run_ablation"]

ABLATION_COLUMNS = ("name", "sharpe", "cagr", "max_drawdown", "volatility", "exposure", "turnover")


@dataclass(frozen=True)
class AblationRow:
    """One variant's performance over the reporting period (fractions, not percent)."""

    name: str
    sharpe: float
    cagr: float
    max_drawdown: float
    volatility: float
    exposure: float
    turnover: float

    def to_dict(self) -> dict[str, Any]:
        """Return the row as a plain dict with the keys of ABLATION_COLUMNS."""
        return asdict(self)


@dataclass
class AblationReport:
    """Rows in order (ensemble, static_weights, sleeves..., buy_hold_same_vol) and skips."""

    rows: list[AblationRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<variant>: why"

    def to_list(self) -> list[dict[str, Any]]:
        """Return the rows as the JSON's ``ablation`` list."""
        return [r.to_dict() for r in self.rows]

    def row(self, name: str) -> AblationRow:
        """Return the row called ``name``; raise KeyError naming the rows there are."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no ablation row {name!r}; rows: {', '.join(r.name for r in self.rows)}")


def ablation_variants(
    strategy_cls: type, params: dict[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Return ([(variant name, strategy params)...], [skipped variant: why...]).

    The ensemble comes first; ``static_weights`` needs a ``use_regimes`` param; one variant per
    name in ``strategy_cls.SLEEVES`` needs a ``sleeves`` param.
    """
    defaults = param_defaults(strategy_cls)
    name = strategy_cls.__name__
    variants: list[tuple[str, dict[str, Any]]] = [("ensemble", dict(params))]
    skipped: list[str] = []
    if "use_regimes" in defaults:
        variants.append(("static_weights", {**params, "use_regimes": False}))
    else:
        skipped.append(f"static_weights: {name} has no use_regimes param")
    sleeves = tuple(getattr(strategy_cls, "SLEEVES", ()) or ())
    if sleeves and "sleeves" in defaults:
        alone = {"use_regimes": False} if "use_regimes" in defaults else {}
        variants.extend((s, {**params, "sleeves": s, **alone}) for s in sleeves)
    else:
        skipped.append(f"single sleeves: {name} has no SLEEVES attribute with a sleeves param")
    return variants, skipped


def _row(name: str, record: RunRecord, warmup: int) -> tuple[AblationRow, pd.Series]:
    perf = measure(record, warmup)
    st = perf.stats
    row = AblationRow(name, st.sharpe, st.cagr, st.max_drawdown, st.volatility,
                      perf.exposure, perf.turnover)
    return row, perf.returns


def run_ablation(
    config: BacktestConfig,
    frames: dict[str, pd.DataFrame],
    *,
    strategy: type | None = None,
    params: dict[str, Any] | None = None,
    ensemble: RunRecord | None = None,
    warmup: int | None = None,
) -> AblationReport:
    """Run every ablation variant over ``frames`` and return the AblationReport.

    Args:
        config: cash, costs and progress of every run (its report/JSON paths are not used).
        frames: symbol -> canonical bar frame (bt_ibkr.validation), as loaded by the backtest.
        strategy: the Strategy class (default ``config.strategy_class()``).
        params: the ensemble's params (default ``config.strategy_params()``).
        ensemble: an already finished run of the ensemble with these params (not run again).
        warmup: bars before the reporting period (default :func:`warmup_bars`).

    Raises ConfigError for a bad strategy param.
    """
    strategy = strategy or config.strategy_class()
    params = config.strategy_params() if params is None else params
    warmup = warmup_bars(strategy, params) if warmup is None else warmup
    variants, skipped = ablation_variants(strategy, params)
    report = AblationReport(skipped=skipped)
    ensemble_returns = None
    for name, variant_params in variants:
        if name == "ensemble" and ensemble is not None:
            record = ensemble
        else:
            record = simulate(config, frames, strategy, variant_params, label=f"ablation: {name}")
        row, returns = _row(name, record, warmup)
        if name == "ensemble":
            ensemble_returns = returns
        report.rows.append(row)

    bench = period_benchmark(frames, ensemble_returns)
    target = report.row("ensemble").volatility
    scaled = scale_to_volatility(bench, target)
    st = compute_stats(scaled)
    bench_vol = compute_stats(bench).volatility
    exposure = target / bench_vol if bench_vol > 0 and target > 0 else 1.0
    report.rows.append(AblationRow(
        "buy_hold_same_vol", st.sharpe, st.cagr, st.max_drawdown, st.volatility, exposure,
        constant_exposure_turnover(bench, exposure),
    ))
    return report
