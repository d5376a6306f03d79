"""EquityRecorder: the portfolio value, cash and gross exposure at every bar.

The same analyzer runs in backtests and in paper/live runs, so the tearsheet of a paper run is
built from the paper run's own equity, exactly like the backtest's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import backtrader as bt
import pandas as pd


@dataclass
class EquityPoint:
    """One bar's account state: value and cash in account currency, exposure as a fraction."""

    dt: datetime
    value: float
    cash: float
    exposure: float


@dataclass
class EquityCurve:
    """Everything EquityRecorder saw, in bar order."""

    points: list[EquityPoint] = field(default_factory=list)

    def values(self) -> pd.Series:
        """Return the portfolio value per bar as a Series indexed by bar datetime."""
        return pd.Series(
            [p.value for p in self.points],
            index=pd.DatetimeIndex([p.dt for p in self.points], name="datetime"),
            name="value",
            dtype="float64",
        )

    def exposure(self) -> pd.Series:
        """Return the gross exposure (|positions| / value) per bar."""
        return pd.Series(
            [p.exposure for p in self.points],
            index=pd.DatetimeIndex([p.dt for p in self.points], name="datetime"),
            name="exposure",
            dtype="float64",
        )


def gross_exposure(strategy: bt.Strategy, value: float) -> float:
    """Return sum(|position size * close|) over the strategy's feeds divided by ``value``."""
    if value <= 0:
        return 0.0
    gross = 0.0
    for data in strategy.datas:
        pos = strategy.broker.getposition(data)
        if pos.size:
            price = data.close[0]
            mult = getattr(strategy.broker.getcommissioninfo(data).p, "mult", 1.0) or 1.0
            gross += abs(pos.size * price * mult)
    return gross / value


class EquityRecorder(bt.Analyzer):
    """Record value, cash and gross exposure after every bar.

    Params:
        path: optional CSV file; each bar is appended as ``datetime,value,cash,exposure`` and
            flushed, so a crashed live run keeps its equity curve.

    ``get_analysis()`` returns an :class:`EquityCurve`.
    """

    params = (("path", None),)

    def start(self) -> None:
        self.curve = EquityCurve()
        self._fh = None
        self._writer = None
        if self.p.path:
            path = Path(self.p.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            self._fh = path.open("a", newline="")
            self._writer = csv.writer(self._fh)
            if new:
                self._writer.writerow(["datetime", "value", "cash", "exposure"])

    def next(self) -> None:
        value = float(self.strategy.broker.getvalue())
        cash = float(self.strategy.broker.getcash())
        point = EquityPoint(
            dt=self.strategy.datetime.datetime(0),
            value=value,
            cash=cash,
            exposure=gross_exposure(self.strategy, value),
        )
        self.curve.points.append(point)
        if self._writer is not None:
            try:
                self._writer.writerow([point.dt.isoformat(), point.value, point.cash,
                                       point.exposure])
                self._fh.flush()
            except OSError as exc:  # a write to an open file names none: name the CSV
                if exc.filename:
                    raise
                raise type(exc)(exc.errno, exc.strerror or str(exc), str(self.p.path)) from exc

    def stop(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def get_analysis(self) -> EquityCurve:
        return self.curve


def read_equity_csv(path: str | Path) -> pd.Series:
    """Return the value series of a CSV written by EquityRecorder(path=...).

    Raises FileNotFoundError naming the path when it does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"equity file {path} does not exist: run with an EquityRecorder path first")
    frame = pd.read_csv(path, parse_dates=["datetime"])
    return pd.Series(frame["value"].to_numpy(), index=pd.DatetimeIndex(frame["datetime"]), name="value")
