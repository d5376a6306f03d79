"""bt_ibkr: Interactive Brokers for backtrader, on ib_async.

The store/broker triad is imported lazily so that the backtest path does not need an IB
client library to be importable.
"""

from __future__ import annotations

from bt_ibkr.errors import (
    BtIbkrError,
    ConfigError,
    ConnectionFailedError,
    DataError,
    DataValidationError,
    SourceUnavailableError,
    UnknownSymbolError,
)

__version__ = "0.1.0"

__all__ = [
    "BtIbkrError",
    "ConfigError",
    "ConnectionFailedError",
    "DataError",
    "DataValidationError",
    "SourceUnavailableError",
    "UnknownSymbolError",
    "IBStore",
    "IBBroker",
]


def __getattr__(name: str):
    if name == "IBStore":
        from bt_ibkr.store import IBStore

        return IBStore
    if name == "IBBroker":
        from bt_ibkr.broker import IBBroker

        return IBBroker
    raise AttributeError(f"module 'bt_ibkr' has no attribute {name!r}")
