"""Canonical bar frames as backtrader data feeds.

``make_feed(frame)`` wraps a canonical bar frame (bt_ibkr.validation) in ``FrameFeed``, a plain
``bt.feeds.PandasData``: daily bars become ``TimeFrame.Days`` (weeks/months when the bars are
that coarse), intraday bars ``TimeFrame.Minutes`` (or Seconds) with the compression inferred
from the bar spacing. Intraday timestamps are handed to backtrader as naive UTC, which is how
backtrader stores datetimes internally; pass ``tz=`` to have ``data.datetime`` shown in the
exchange zone. Checked with backtrader 1.9.78 and pandas 3.1: a Cerebro run over the ^GSPC
sample sees all 5031 bars with the frame's first and last closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from bt_ibkr.errors import DataValidationError
from bt_ibkr.validation import BAR_COLUMNS, is_intraday_frame

__all__ = ["FrameFeed", "infer_timeframe", "load_frames_as_feeds", "make_feed"]


class FrameFeed(bt.feeds.PandasData):
    """PandasData over a canonical bar frame: lowercase OHLCV columns, no open interest.

    The same values as PandasData, read faster: ``start()`` turns the columns into lists of
    floats and the index into backtrader date numbers once, so ``_load()`` indexes lists
    instead of calling ``DataFrame.iloc`` five times per bar (which dominated a backtest's run
    time with pandas 3), and ``preload()`` fills every line in one step when nothing (filters,
    an input time zone, fromdate/todate) needs backtrader's bar-by-bar path.
    """

    params = (
        ("datetime", None),
        ("open", "open"),
        ("high", "high"),
        ("low", "low"),
        ("close", "close"),
        ("volume", "volume"),
        ("openinterest", -1),
    )

    def start(self) -> None:
        super().start()  # resolves self._colmapping to column positions
        frame = self.p.dataname
        self._columns = [
            (getattr(self.lines, field), frame.iloc[:, pos].to_numpy(dtype="float64").tolist())
            for field, pos in self._colmapping.items()
            if field != "datetime" and pos is not None
        ]
        self._dtnums = _date_numbers(frame.index)

    def _load(self) -> bool:
        self._idx += 1
        i = self._idx
        if i >= len(self._dtnums):
            return False
        for line, values in self._columns:
            line[0] = values[i]
        self.lines.datetime[0] = self._dtnums[i]
        return True

    def _bulk_preload_ok(self) -> bool:
        """True when preload() would only copy every bar: no filters, stacks, input tz or
        date limits, and empty unbounded line buffers."""
        if self._filters or self._ffilters or self._barstack or self._barstash:
            return False
        if self._tzinput is not None or self.fromdate != float("-inf") or self.todate != float("inf"):
            return False
        return all(line.mode == line.UnBounded and line.lencount == 0 and not len(line.array)
                   for line in self.lines)

    def preload(self) -> None:
        if not self._bulk_preload_ok():
            super().preload()
            return
        # What load() leaves after the last bar, every line at once: each line holds one value
        # per bar (NaN where the frame has no column), the index on the last bar.
        n = len(self._dtnums)
        given = {id(line): values for line, values in self._columns}
        given[id(self.lines.datetime)] = self._dtnums
        nan = [float("nan")] * n
        for line in self.lines:
            line.array.extend(given.get(id(line), nan))
            line.idx = n - 1
            line.lencount = n
        self._idx = n  # as after the load() that found no more rows
        self._last()
        self.home()


_ORDINAL_1970 = 719163  # datetime(1970, 1, 1).toordinal()


def _date_numbers(index: pd.Index) -> list[float]:
    """backtrader date numbers (bt.date2num) of a bar index.

    Naive midnight stamps (daily bars) are their proleptic ordinal, computed for the whole index
    at once; anything else goes through bt.date2num stamp by stamp.
    """
    idx = pd.DatetimeIndex(index)
    if idx.tz is None and len(idx) and (idx == idx.normalize()).all():
        days = idx.to_numpy().astype("datetime64[D]").astype("int64") + _ORDINAL_1970
        return days.astype("float64").tolist()
    return [bt.date2num(ts.to_pydatetime()) for ts in idx]


def infer_timeframe(frame: pd.DataFrame) -> tuple[int, int]:
    """Return backtrader's ``(timeframe, compression)`` for a canonical frame's bar spacing.

    Daily frames: Days (1), Weeks (1) when the median gap is >= 5 days, Months (1) when it is
    >= 25 days. Intraday: Minutes with the median gap in minutes, Seconds when under a minute.
    A single-bar frame is taken as Days (daily) or Minutes/1 (intraday).
    """
    intraday = is_intraday_frame(frame)
    if len(frame) < 2:
        return (bt.TimeFrame.Minutes, 1) if intraday else (bt.TimeFrame.Days, 1)
    gaps = np.diff(frame.index.as_unit("ns").asi8) / 1e9  # seconds (asi8 is in the index unit)
    step = float(np.median(gaps))
    if not intraday:
        days = step / 86400.0
        if days >= 25:
            return bt.TimeFrame.Months, 1
        if days >= 5:
            return bt.TimeFrame.Weeks, 1
        return bt.TimeFrame.Days, 1
    if step < 60:
        return bt.TimeFrame.Seconds, max(1, int(round(step)))
    return bt.TimeFrame.Minutes, max(1, int(round(step / 60.0)))


def make_feed(frame: pd.DataFrame, name: str | None = None, **kw) -> FrameFeed:
    """Return a FrameFeed over ``frame`` named ``name`` (default ``frame.attrs["symbol"]``).

    ``timeframe``/``compression`` default to infer_timeframe(frame); any other keyword goes to
    backtrader's PandasData params (fromdate, todate, tz, sessionend, ...).
    Raises DataValidationError when ``frame`` lacks the canonical columns or is empty.
    """
    name = name or frame.attrs.get("symbol") or "data"
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing or frame.empty or not isinstance(frame.index, pd.DatetimeIndex):
        raise DataValidationError(
            f"{name}: make_feed needs a non-empty canonical bar frame (DatetimeIndex and "
            f"columns {', '.join(BAR_COLUMNS)}); missing: {', '.join(missing) or 'none'}, "
            f"rows: {len(frame)}; build it with bt_ibkr.validation.validate_bars"
        )
    if "timeframe" not in kw or "compression" not in kw:
        timeframe, compression = infer_timeframe(frame)
        kw.setdefault("timeframe", timeframe)
        kw.setdefault("compression", compression)
    # the feed only reads the frame: no copy when it already is exactly the bar columns
    data = frame if tuple(frame.columns) == BAR_COLUMNS else frame[list(BAR_COLUMNS)]
    if data.index.tz is not None:
        data = data.copy()
        data.index = data.index.tz_convert("UTC").tz_localize(None)
    return FrameFeed(dataname=data, name=name, **kw)


def load_frames_as_feeds(frames: Mapping[str, pd.DataFrame] | Any) -> list[FrameFeed]:
    """Return one FrameFeed per frame, named by its symbol, in the mapping's order.

    ``frames``: symbol -> canonical bar frame, or anything holding that mapping as ``.frames``
    (a :class:`~bt_ibkr.data.history.HistoryResult`); read by duck typing, so this leaf
    module never imports the data layer above it.
    """
    frames = getattr(frames, "frames", frames)
    return [make_feed(frame, name=symbol) for symbol, frame in frames.items()]
