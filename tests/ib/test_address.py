"""GatewayAddress: one value for where a gateway listens, whatever reaches it."""

from __future__ import annotations

from bt_ibkr.backtest_run import BacktestConfig
from bt_ibkr.data.history import HistoryRequest
from bt_ibkr.data.provider import IBKRDataProvider
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.live.config import ConnectionConfig
from bt_ibkr.research.data import DataConfig


def test_every_config_carries_the_same_default_gateway():
    default = GatewayAddress("127.0.0.1", 4002, None)
    assert BacktestConfig().gateway == HistoryRequest().gateway == DataConfig().gateway == default
    assert default.where() == "127.0.0.1:4002"


def test_a_live_connection_and_the_provider_speak_it():
    live = ConnectionConfig(host="10.0.0.5", port=4001, client_id=12)
    assert live.gateway == GatewayAddress("10.0.0.5", 4001, 12)
    assert ConnectionConfig().gateway.port == 4002  # before load_config picks the mode's port
    provider = IBKRDataProvider.at(live.gateway, use_cache=False, progress=False)
    assert (provider.host, provider.port, provider.client_id) == ("10.0.0.5", 4001, 12)
