"""Simulated prices never pose as IB's: the connection recognises bt_ibkr's gateway simulator
(it answers reqUserInfo with its brand), the history path files its bars under the cache
source "ibkr-sim", the backtest's data message names the origin, and a later ``--source ibkr``
with nothing listening fails clearly instead of backtesting on the simulator's bars."""

from __future__ import annotations

from datetime import date

import pytest

from bt_ibkr.cache import BarCache
from bt_ibkr.data.history import HistoryRequest, load_history
from bt_ibkr.errors import SourceUnavailableError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.ib.connection import IBConnection

REQ_USER_INFO = 104


def request(cache: BarCache, port: int) -> HistoryRequest:
    return HistoryRequest(symbols=["SPY"], source="ibkr", start=date(2016, 1, 4),
                          end=date(2016, 12, 30), cache=cache, progress=False,
                          gateway=GatewayAddress(port=port, client_id=7))


@pytest.mark.slow
def test_the_connection_knows_the_simulator_and_treats_a_silent_gateway_as_real(
        gateway_sim_factory):
    sim = gateway_sim_factory(data="sample")
    connection = IBConnection("127.0.0.1", sim.port, 11)
    try:
        connection.connect()
        assert connection.simulated
        assert connection.describe() == f"IB gateway simulator at 127.0.0.1:{sim.port}"
    finally:
        connection.close()
    sim.drop_replies(REQ_USER_INFO, n=1)  # a gateway that does not answer: a real one
    connection = IBConnection("127.0.0.1", sim.port, 12)
    try:
        connection.connect()
        assert not connection.simulated
        assert connection.describe().startswith("IB gateway at ")
    finally:
        connection.close()


def test_simulator_bars_are_cached_as_ibkr_sim_and_never_served_as_ibs(gateway_sim_factory,
                                                                        tmp_path):
    cache = BarCache(tmp_path / "cache")
    sim = gateway_sim_factory(data="sample")
    port = sim.port
    result = load_history(request(cache, port))
    assert f"IB gateway simulator at 127.0.0.1:{port}" in result.message
    assert "not IB's" in result.message
    assert len(result.frames["SPY"]) == 252  # the 2016 NYSE sessions
    folders = {p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()}
    assert folders == {"ibkr-sim"}, folders  # nothing filed as IB's
    sim.stop()
    with pytest.raises(SourceUnavailableError) as err:  # nothing listens now
        load_history(request(cache, port))
    text = str(err.value)
    assert "nothing listens" in text and "ibkr-sim" in text and "never used as IB's" in text
