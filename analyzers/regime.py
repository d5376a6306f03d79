"""RegimeAttribution: time, exposure and return of the portfolio in each market regime.

Reads ``strategy.regime`` after every bar (any Strategy that exposes a ``regime`` string works;
RegimeAwareEnsemble does). The return from bar t-1 to bar t is attributed to the regime that
was in force when the positions held over that interval were decided: the label at t-1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime

import backtrader as bt
import pandas as pd

from analyzers.equity import gross_exposure
from bt_ibkr.metrics import PERIODS_PER_YEAR, max_drawdown


@dataclass(frozen=True)
class RegimeStats:
    """Performance of the portfolio while one regime was in force."""

    bars: int
    time_pct: float
    avg_exposure: float
    total_return: float
    ann_return: float
    ann_volatility: float
    sharpe: float
    max_drawdown: float
    """The worst peak-to-trough loss inside one spell of the regime (a contiguous run of its
    bars), never across spells: returns of separate spells chained together would make a
    drawdown that the portfolio never had (deeper than the whole run's)."""


@dataclass
class RegimeReport:
    """What RegimeAttribution returns: per-bar labels, contiguous segments and stats by regime."""

    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    segments: list[tuple[datetime, datetime, str]] = field(default_factory=list)
    by_regime: dict[str, RegimeStats] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Return regime -> number of bars labelled with it."""
        out: dict[str, int] = {}
        for _, label in self.timeline:
            out[label] = out.get(label, 0) + 1
        return out

    def table(self) -> pd.DataFrame:
        """Return by_regime as a DataFrame (one row per regime)."""
        return pd.DataFrame({k: asdict(v) for k, v in self.by_regime.items()}).T


def attribute(
    labels: list[str], values: list[float], exposures: list[float]
) -> dict[str, RegimeStats]:
    """Return per-regime stats from aligned per-bar labels, portfolio values and exposures.

    Pure function (the analyzer's core), usable on a live run's persisted records too.
    """
    n = len(labels)
    buckets: dict[str, dict[str, list[float]]] = {}
    worst: dict[str, float] = {}  # regime -> deepest drawdown within one of its spells
    spell: list[float] = []
    for i in range(n):
        b = buckets.setdefault(labels[i], {"exp": [], "ret": []})
        b["exp"].append(exposures[i])
        if i + 1 < n and values[i] > 0:
            r = values[i + 1] / values[i] - 1.0
            b["ret"].append(r)
            spell.append(r)
        if i + 1 >= n or labels[i + 1] != labels[i]:  # the spell ends here
            dd = max_drawdown(pd.Series(spell, dtype="float64"))
            worst[labels[i]] = min(worst.get(labels[i], 0.0), dd)
            spell = []
    out: dict[str, RegimeStats] = {}
    for label, b in buckets.items():
        rets = pd.Series(b["ret"], dtype="float64")
        bars = len(b["exp"])
        total = float((1.0 + rets).prod() - 1.0) if len(rets) else 0.0
        years = len(rets) / PERIODS_PER_YEAR
        ann = (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 and total > -1 else 0.0
        std = float(rets.std(ddof=1)) if len(rets) > 1 else 0.0
        vol = std * math.sqrt(PERIODS_PER_YEAR)
        sharpe = float(rets.mean()) / std * math.sqrt(PERIODS_PER_YEAR) if std > 0 else 0.0
        out[label] = RegimeStats(
            bars=bars,
            time_pct=bars / n if n else 0.0,
            avg_exposure=float(sum(b["exp"]) / bars) if bars else 0.0,
            total_return=total,
            ann_return=ann,
            ann_volatility=vol,
            sharpe=sharpe,
            max_drawdown=worst.get(label, 0.0),
        )
    return out


def segments_of(timeline: list[tuple[datetime, str]]) -> list[tuple[datetime, datetime, str]]:
    """Return contiguous (start, end, regime) runs of a per-bar timeline."""
    segs: list[tuple[datetime, datetime, str]] = []
    for dt, label in timeline:
        if segs and segs[-1][2] == label:
            segs[-1] = (segs[-1][0], dt, label)
        else:
            segs.append((dt, dt, label))
    return segs


def build_report(
    dts: list[datetime], labels: list[str], values: list[float], exposures: list[float]
) -> RegimeReport:
    """Return the RegimeReport of aligned per-bar datetimes, labels, values and exposures."""
    timeline = list(zip(dts, labels, strict=True))
    return RegimeReport(
        timeline=timeline,
        segments=segments_of(timeline),
        by_regime=attribute(labels, values, exposures),
    )


class RegimeAttribution(bt.Analyzer):
    """Time, exposure and return per regime. ``get_analysis()`` returns a RegimeReport.

    Params:
        attr: the strategy attribute holding the current regime label (default ``"regime"``).
    """

    params = (("attr", "regime"),)

    def start(self) -> None:
        self._labels: list[str] = []
        self._values: list[float] = []
        self._exposures: list[float] = []
        self._dts: list[datetime] = []
        self.report = RegimeReport()

    def next(self) -> None:
        value = float(self.strategy.broker.getvalue())
        self._dts.append(self.strategy.datetime.datetime(0))
        self._labels.append(str(getattr(self.strategy, self.p.attr, "unknown")))
        self._values.append(value)
        self._exposures.append(gross_exposure(self.strategy, value))

    def stop(self) -> None:
        self.report = build_report(self._dts, self._labels, self._values, self._exposures)

    def get_analysis(self) -> RegimeReport:
        return self.report
