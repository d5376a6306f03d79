"""Compare two streams of BarRecords without holding either: :func:`compare` in chunks.

:class:`StreamCompare` takes the two recordings bar by bar (``add(backtest_bar, ib_bar)``,
None once a side has ended), compares each chunk of aligned bars with
:func:`bt_ibkr.parity.diff.compare` and adds the results up, so its :meth:`~StreamCompare.report`
is the report ``compare`` gives on the whole recordings (bar numbers, first divergence,
counts and maxima alike), except that it keeps only the first ``max_diffs`` differences (the
counts are exact). Memory: one chunk.
"""

from __future__ import annotations

from typing import Any

from bt_ibkr.parity.diff import ParityReport, compare
from bt_ibkr.parity.timeline import Timeline
from bt_ibkr.records.recorder import BarRecord, Recording

CHUNK = 2000
MAX_DIFFS = 500  # ParityReport.to_dict() writes the first 500


class StreamCompare:
    """Bar-by-bar comparison fed one pair at a time (see the module docstring)."""

    def __init__(self, tolerance: float = 0.0, chunk: int = CHUNK,
                 max_diffs: int = MAX_DIFFS) -> None:
        self.tolerance = tolerance
        self.chunk = max(1, int(chunk))
        self.max_diffs = max_diffs
        self._a: list[BarRecord] = []
        self._b: list[BarRecord] = []
        self.offset = 0  # aligned bars compared so far
        self.n = {"backtest": 0, "ib": 0}
        self.orders = {"backtest": 0, "ib": 0}
        self.fills = {"backtest": 0, "ib": 0}
        self.counts = {"decision_diffs": 0, "order_diffs": 0, "fill_diffs": 0,
                       "position_diffs": 0}
        self.max_value = self.max_cash = 0.0
        self.first: dict[str, Any] | None = None
        self.diffs: list[dict[str, Any]] = []
        self.timeline = Timeline()

    def add(self, backtest: BarRecord | None, ib: BarRecord | None) -> None:
        """Take the next bar of each side (None: that side has no more bars)."""
        self.timeline.add(backtest, ib)
        for side, bar in (("backtest", backtest), ("ib", ib)):
            if bar is not None:
                self.n[side] += 1
                self.orders[side] += len(bar.orders)
                self.fills[side] += len(bar.fills)
        if backtest is None or ib is None:
            return
        if self.n["backtest"] != self.n["ib"]:
            raise ValueError("StreamCompare.add: a bar after one side had ended")
        self._a.append(backtest)
        self._b.append(ib)
        if len(self._a) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._a:
            return
        part = compare(Recording(bars=self._a), Recording(bars=self._b), self.tolerance)
        for key in self.counts:
            self.counts[key] += getattr(part, key)
        self.max_value = max(self.max_value, part.max_value_diff)
        self.max_cash = max(self.max_cash, part.max_cash_diff)
        if self.first is None and part.first_divergence is not None:
            self.first = dict(part.first_divergence, bar=part.first_divergence["bar"]
                              + self.offset)
        room = self.max_diffs - len(self.diffs)
        self.diffs += [dict(d, bar=d["bar"] + self.offset) for d in part.diffs[:max(room, 0)]]
        self.offset += len(self._a)
        self._a, self._b = [], []

    def report(self, backtest_meta: dict[str, Any], ib_meta: dict[str, Any]) -> ParityReport:
        """Return the ParityReport of everything added (``meta`` as ``compare`` gives it)."""
        self._flush()
        nb, ni = self.n["backtest"], self.n["ib"]
        first = self.first
        if nb != ni and first is None:
            first = {"bar": min(nb, ni), "dt": None, "field": "bar count", "backtest": nb,
                     "ib": ni}
        return ParityReport(
            bars=min(nb, ni), bars_backtest=nb, bars_ib=ni,
            orders_backtest=self.orders["backtest"], orders_ib=self.orders["ib"],
            fills_backtest=self.fills["backtest"], fills_ib=self.fills["ib"],
            max_value_diff=self.max_value, max_cash_diff=self.max_cash,
            tolerance=self.tolerance, first_divergence=first, diffs=self.diffs,
            meta={"backtest": backtest_meta, "ib": ib_meta}, timeline=self.timeline.to_dict(),
            **self.counts)
