"""backtrader analyzers of bt_ibkr: equity, orders, regime attribution, quantstats tearsheet."""

from analyzers.equity import EquityCurve, EquityRecorder, read_equity_csv
from analyzers.live_equity import LiveEquityRecorder
from analyzers.orders import Fill, OrderLog
from analyzers.regime import (
    RegimeAttribution,
    RegimeReport,
    RegimeStats,
    attribute,
    build_report,
)
from analyzers.tearsheet import QuantStatsTearsheet, quiet_reporting, write_tearsheet

__all__ = [
    "EquityCurve",
    "EquityRecorder",
    "Fill",
    "LiveEquityRecorder",
    "OrderLog",
    "QuantStatsTearsheet",
    "RegimeAttribution",
    "RegimeReport",
    "RegimeStats",
    "attribute",
    "build_report",
    "quiet_reporting",
    "read_equity_csv",
    "write_tearsheet",
]
