"""The store's historical path on a forex pair: MIDPOINT/BID bars come back; TRADES is refused
with one line before any request reaches the gateway (IB would answer error 162)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.contracts import parse_dataname
from bt_ibkr.ib.store import IBStore

PAIR = "EUR.USD-CASH-IDEALPRO"


@pytest.fixture
def store(gateway_sim):
    s = IBStore(port=gateway_sim.port, timeout=0.2, clientId=31)
    s.start()
    yield s
    s.close()
    IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("what", ["MIDPOINT", "BID"])
def test_forex_history_by_midpoint_or_bid(gateway_sim, store, what):
    contract = store.qualify(parse_dataname(PAIR).to_contract(), PAIR).contract
    end = gateway_sim.now()
    frame = store.run(store.history.bars(PAIR, end - timedelta(days=10), end, "1 day", what,
                                         contract=contract), timeout=30)
    assert len(frame) > 0 and (frame["close"] > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("what", ["TRADES", "ADJUSTED_LAST"])
def test_forex_trades_history_is_refused_before_the_gateway(gateway_sim, store, what):
    contract = store.qualify(parse_dataname(PAIR).to_contract(), PAIR).contract
    before = len(gateway_sim.requests_named("reqHistoricalData"))
    end = gateway_sim.now()
    with pytest.raises(ConfigError, match="IB has no forex trades .*MIDPOINT, BID, ASK"):
        store.run(store.history.bars(PAIR, end - timedelta(days=10), end, "1 day", what,
                                     contract=contract), timeout=30)
    assert len(gateway_sim.requests_named("reqHistoricalData")) == before
