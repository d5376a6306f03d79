"""The FA allocation order options (fa_group, fa_method, fa_percentage, fa_profile): validated
with one error naming the bad value, and carried to the gateway as IB's Order fields. What is
tested is that the fields reach the simulator; IB's real allocation over an advisor's accounts
is not simulated."""

from __future__ import annotations

import backtrader as bt
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.order_options import OrderOptions, ib_fields

ib_async = pytest.importorskip("ib_async")


@pytest.mark.parametrize("values,words", [
    ({"fa_method": "NetLiq"}, "without fa_group"),
    ({"fa_group": "G", "fa_method": "Equal"}, "EqualQuantity, NetLiq"),
    ({"fa_group": "G", "fa_method": "NetLiq", "fa_percentage": 10}, "PctChange"),
    ({"fa_group": "G", "fa_method": "PctChange"}, "needs fa_percentage"),
    ({"fa_group": "G", "fa_method": "PctChange", "fa_percentage": 0}, "non-zero"),
    ({"fa_group": "G", "fa_method": "PctChange", "fa_percentage": 150}, "[-100, 100]"),
    ({"fa_group": "G", "fa_profile": "P"}, "not both"),
    ({"fa_group": " "}, "fa_group=' '"),
])
def test_a_bad_fa_option_is_one_error_naming_it(values, words):
    with pytest.raises(ConfigError) as err:
        OrderOptions.parse(values, bt.Order.Market)
    assert words in str(err.value)


def test_fa_options_map_to_ibs_order_fields():
    opts = OrderOptions.parse({"fa_group": "Growth", "fa_method": "pctchange",
                               "fa_percentage": -25}, bt.Order.Limit)
    assert opts.info() == {"fa_group": "Growth", "fa_method": "PctChange",
                           "fa_percentage": -25.0}
    assert ib_fields(opts, bt.Order.Limit) == {"faGroup": "Growth", "faMethod": "PctChange",
                                               "faPercentage": "-25"}


def place(sim, **fields):
    ib = ib_async.IB()
    ib.connect(sim.host, sim.port, clientId=7, timeout=10)
    try:
        (c,) = ib.qualifyContracts(ib_async.Stock("AAPL", "SMART", "USD"))
        order = ib_async.MarketOrder("BUY", 3)
        for name, value in fields.items():
            setattr(order, name, value)
        trade = ib.placeOrder(c, order)
        ib.reqCurrentTime()
        return sim.broker.get_order(7, trade.order.orderId).spec
    finally:
        ib.disconnect()


@pytest.mark.slow
def test_fa_group_fields_reach_the_gateway(gateway_sim):
    opts = OrderOptions.parse({"fa_group": "Income", "fa_method": "PctChange",
                               "fa_percentage": 50}, bt.Order.Market)
    spec = place(gateway_sim, **ib_fields(opts, bt.Order.Market))
    assert {k: spec.extra.get(k) for k in ("faGroup", "faMethod", "faPercentage")} == {
        "faGroup": "Income", "faMethod": "PctChange", "faPercentage": "50"}


@pytest.mark.slow
@pytest.mark.parametrize("version,sent", [(176, "Legacy"), (178, None)])
def test_fa_profile_reaches_only_gateways_before_version_177(gateway_sim_factory, version,
                                                             sent):
    sim = gateway_sim_factory(max_server_version=version)
    opts = OrderOptions.parse({"fa_profile": "Legacy"}, bt.Order.Market)
    spec = place(sim, **ib_fields(opts, bt.Order.Market))
    assert spec.extra.get("faProfile") == sent
