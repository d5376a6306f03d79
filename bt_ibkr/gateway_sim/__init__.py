"""Protocol-level IB Gateway simulator: tests, benchmarks and dry runs without an IB account.

Speaks the real TWS socket protocol on 127.0.0.1 so the unmodified ib_async / ib_insync
clients connect to it: contract details, historical/real-time bars, ticks, orders (through the
order engine), faults. Start it from Python with ``GatewaySim`` or from a shell with
``python -m bt_ibkr.gateway_sim --port 4002``.
"""

from __future__ import annotations

from bt_ibkr.gateway_sim.connection import ClientConnection, FaultPlan
from bt_ibkr.gateway_sim.harness import GatewaySim
from bt_ibkr.gateway_sim.server import GatewayServer

__all__ = ["FaultPlan", "GatewayServer", "GatewaySim", "ClientConnection"]
