"""Prometheus metrics of a run (prometheus-client), read from its :class:`RunStatus` at scrape
time plus two histograms the runner observes (bar->order latency, journal write time).

Names (all prefixed ``bt_ibkr_``): ``connected``, ``seconds_since_last_bar{symbol}``,
``orders{state}``, ``fills_total``, ``equity``, ``cash``, ``position{symbol}``,
``drawdown``, ``halted``, ``journal_behind``, ``bar_to_order_seconds`` (histogram),
``journal_write_seconds`` (histogram). Every run has its own registry, so two runs in one
process (tests) never share a metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from bt_ibkr.ops.status import RunStatus

__all__ = ["RunMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StatusCollector:
    def __init__(self, status: Callable[[], RunStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator:
        s = self._status()
        yield GaugeMetricFamily("bt_ibkr_connected", "1 when connected to the gateway",
                                value=1.0 if s.connected else 0.0)
        ages = GaugeMetricFamily("bt_ibkr_seconds_since_last_bar",
                                 "seconds since the newest bar of a symbol arrived",
                                 labels=["symbol"])
        for symbol, age in s.seconds_since_bar().items():
            if age is not None:
                ages.add_metric([symbol], age)
        yield ages
        orders = GaugeMetricFamily("bt_ibkr_orders", "journaled orders by state",
                                   labels=["state"])
        for state, n in sorted(s.orders_by_state.items()):
            orders.add_metric([state], float(n))
        yield orders
        yield CounterMetricFamily("bt_ibkr_fills", "fills counted by this run", value=s.fills)
        yield GaugeMetricFamily("bt_ibkr_equity", "equity (broker value)", value=s.equity)
        yield GaugeMetricFamily("bt_ibkr_cash", "cash", value=s.cash)
        pos = GaugeMetricFamily("bt_ibkr_position", "position by symbol", labels=["symbol"])
        for symbol, qty in sorted(s.positions.items()):
            pos.add_metric([symbol], float(qty))
        yield pos
        yield GaugeMetricFamily("bt_ibkr_drawdown", "drawdown from this run's peak equity",
                                value=s.drawdown)
        yield GaugeMetricFamily("bt_ibkr_halted", "1 while the daily-loss halt is in force",
                                value=1.0 if s.halt else 0.0)
        yield GaugeMetricFamily("bt_ibkr_journal_behind",
                                "journaled orders not yet acknowledged by the gateway",
                                value=float(s.journal_behind))


class RunMetrics:
    """The metrics of one run: ``render()`` is the ``/metrics`` body."""

    def __init__(self, status: Callable[[], RunStatus]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(status))
        self.bar_to_order = Histogram(
            "bt_ibkr_bar_to_order_seconds", "from a bar reaching the process to its order "
            "handed to the gateway", buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.journal_write = Histogram(
            "bt_ibkr_journal_write_seconds", "time to commit one journal write (fsync'd)",
            buckets=_LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        """Return the Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
