"""The one list of data sources, for every CLI flag, request check and bar frame.

``BAR_SOURCES`` are where a canonical bar frame can come from (``frame.attrs["source"]``);
``REQUEST_SOURCES`` are what a user may ask for with ``--source`` (``auto`` = cache, then yahoo,
then the offline sample). A leaf module: it imports nothing of bt_ibkr.
"""

from __future__ import annotations

__all__ = ["BAR_SOURCES", "FETCH_SOURCES", "REQUEST_SOURCES"]

FETCH_SOURCES: tuple[str, ...] = ("yahoo", "sample", "csv", "ibkr")
"""The sources that fetch bars (everything but the cache and ``auto``)."""

REQUEST_SOURCES: tuple[str, ...] = ("auto", *FETCH_SOURCES)
"""What ``--source`` accepts (backtest, sweep, parity, the provider's requests)."""

BAR_SOURCES: tuple[str, ...] = ("cache", *FETCH_SOURCES)
"""What a bar frame's ``attrs["source"]`` may say."""
