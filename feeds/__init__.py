"""feeds package: bar sources and backtrader data feeds.

Everything is exported lazily, so ``import feeds`` needs neither backtrader, yfinance nor an IB
client library; each name imports its module on first use.

- feeds.sample      load_sample, SAMPLE_SYMBOLS       (arch's ^GSPC / ^IXIC, 1999-2018)
- feeds.yahoo       download_yahoo                     (yfinance)
- feeds.csv_source  load_csv                           (user CSV files)
- feeds.frame_feed  FrameFeed, make_feed, load_frames_as_feeds (frames -> backtrader feeds)
- feeds.ibdata      IBData                             (IB historical + live, backtrader's API)
- feeds.live_sync   LiveBarSync                        (several live IBData: each bar time together)
- feeds.daily_decision DailyDecisionData               (IB daily bars: warm up, decide once)
"""

from __future__ import annotations

import importlib

_LAZY: dict[str, str] = {
    "SAMPLE_SYMBOLS": "feeds.sample",
    "load_sample": "feeds.sample",
    "download_yahoo": "feeds.yahoo",
    "load_csv": "feeds.csv_source",
    "FrameFeed": "feeds.frame_feed",
    "make_feed": "feeds.frame_feed",
    "load_frames_as_feeds": "feeds.frame_feed",
    # IB feed: lazy, so the backtest path never imports the IB client library
    "IBData": "feeds.ibdata",
    "LiveBarSync": "feeds.live_sync",
    "DailyDecisionData": "feeds.daily_decision",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'feeds' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
