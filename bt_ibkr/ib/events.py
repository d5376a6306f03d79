"""What the store hands to backtrader's thread: bars and the events of orders and connections.

The store's loop thread puts these frozen dataclasses on ``queue.Queue`` objects; feeds and the
broker take them off in backtrader's thread. One class per happening, named for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar (or a tick: o=h=l=c) as handed to a feed; ``dt`` is naive UTC, the bar's
    END for intraday bars and the session end for daily bars (backtrader's stamping)."""

    dt: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    openinterest: float = 0.0
