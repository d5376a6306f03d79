"""GatewayAddress: where a TWS / IB Gateway API listens, and the clientId to use there.

One value for every place that connects outside a live run's config: the backtest's and the
sweeps' ``--source ibkr``, the history request behind them, the data provider and the doctor.
A live run's :class:`~bt_ibkr.live.config.ConnectionConfig` hands out the same value
(``connection.gateway``). ``IBStore`` keeps backtrader's own parameter names (``host``,
``port``, ``clientId``), as backtrader's IB store spells them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewayAddress"]


@dataclass(frozen=True)
class GatewayAddress:
    """``host``:``port`` of the API, and ``client_id`` (None: a free id picked at connect)."""

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int | None = None

    def where(self) -> str:
        """Return ``"host:port"``, as messages name the gateway."""
        return f"{self.host}:{self.port}"
