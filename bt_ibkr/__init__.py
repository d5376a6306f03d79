"""bt_ibkr: Interactive Brokers for backtrader, on ib_async.

``IBStore``, ``IBBroker`` and ``IBKRDataProvider`` are imported lazily, so that the backtest
path never needs an IB client library to be importable. The packages, each importing only
downward: ``ib`` (everything that speaks to IB), ``data`` (the provider and the backtest's
source chain), ``live`` (paper/live trading), ``gateway_sim`` (the protocol-level simulator);
at the top the ground every floor stands on (errors, validation, cache, params, logs, utc,
progress) and the two entry points ``backtest`` and ``doctor``.
"""

from __future__ import annotations

import importlib

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

_LAZY = {
    "IBStore": "bt_ibkr.ib.store",
    "IBBroker": "bt_ibkr.ib.broker",
    "IBKRDataProvider": "bt_ibkr.data.provider",
}

__all__ = [
    "BtIbkrError",
    "ConfigError",
    "ConnectionFailedError",
    "DataError",
    "DataValidationError",
    "SourceUnavailableError",
    "UnknownSymbolError",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bt_ibkr' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
