"""The one module that imports the IB client library (ib_async by default, ib_insync optionally).

Selection rule, evaluated once at import time:

* environment variable ``BT_IBKR_CLIENT`` = ``ib_async`` or ``ib_insync`` picks that library
  (a :class:`~bt_ibkr.errors.ConfigError` if it names something else or is not installed);
* otherwise ``ib_async`` when it is importable, else ``ib_insync``;
* neither installed: :class:`~bt_ibkr.errors.ConfigError` telling the user what to install.

Everything else in bt_ibkr imports ``IB``, ``Contract``, ``Order``, ``util`` ... from here, so
the two libraries (which share one API) are interchangeable. ``CLIENT_NAME`` tells which one
was loaded, ``CLIENT_VERSION`` its version string.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from bt_ibkr.errors import ConfigError

ENV_VAR = "BT_IBKR_CLIENT"
SUPPORTED = ("ib_async", "ib_insync")


def _load_client() -> tuple[str, ModuleType]:
    """Return ``(name, module)`` of the selected IB client library; raises ConfigError."""
    wanted = os.environ.get(ENV_VAR, "").strip().lower()
    if wanted:
        if wanted not in SUPPORTED:
            raise ConfigError(
                f"{ENV_VAR}={wanted!r} is not a supported IB client; use one of {SUPPORTED}"
            )
        try:
            return wanted, importlib.import_module(wanted)
        except ImportError as exc:
            raise ConfigError(
                f"{ENV_VAR}={wanted!r} selects a client that is not installed "
                f"({exc}); install it with `pip install {wanted}` or unset {ENV_VAR}"
            ) from exc
    errors = []
    for name in SUPPORTED:
        try:
            return name, importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ConfigError(
        "no IB client library is installed (" + "; ".join(errors) + "); "
        "install ib_async with `pip install ib_async`"
    )


CLIENT_NAME, ib_module = _load_client()
CLIENT_VERSION: str = getattr(ib_module, "__version__", "unknown")

IB = ib_module.IB
Contract = ib_module.Contract
ContractDetails = ib_module.ContractDetails
Stock = ib_module.Stock
Forex = ib_module.Forex
Future = ib_module.Future
Option = ib_module.Option
Index = ib_module.Index
CFD = ib_module.CFD
Order = ib_module.Order
OrderStatus = ib_module.OrderStatus
Trade = ib_module.Trade
Fill = ib_module.Fill
Execution = ib_module.Execution
ExecutionFilter = ib_module.ExecutionFilter
CommissionReport = ib_module.CommissionReport
BarData = ib_module.BarData
BarDataList = ib_module.BarDataList
RealTimeBar = ib_module.RealTimeBar
RealTimeBarList = ib_module.RealTimeBarList
Ticker = ib_module.Ticker
AccountValue = ib_module.AccountValue
Position = ib_module.Position
TagValue = ib_module.TagValue
util = ib_module.util

__all__ = [
    "CLIENT_NAME",
    "CLIENT_VERSION",
    "ENV_VAR",
    "SUPPORTED",
    "ib_module",
    "IB",
    "Contract",
    "ContractDetails",
    "Stock",
    "Forex",
    "Future",
    "Option",
    "Index",
    "CFD",
    "Order",
    "OrderStatus",
    "Trade",
    "Fill",
    "Execution",
    "ExecutionFilter",
    "CommissionReport",
    "BarData",
    "BarDataList",
    "RealTimeBar",
    "RealTimeBarList",
    "Ticker",
    "AccountValue",
    "Position",
    "TagValue",
    "util",
]
