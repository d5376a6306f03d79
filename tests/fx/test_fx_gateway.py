"""Forex through the real ib_async client against the gateway simulator: history by
MIDPOINT (TRADES refused with IB's error 162), orders sized in the base currency, cash per
currency, and a non-USD (GBP) base account valuing a EUR.USD position."""

from __future__ import annotations

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.fx import CurrencyLedger, Holding, MissingRateError

ib_async = pytest.importorskip("ib_async")
from ib_async import MarketOrder  # noqa: E402


@pytest.fixture
def connect():
    clients = []

    def make(sim, client_id=7):
        ib = ib_async.IB()
        ib.connect(sim.host, sim.port, clientId=client_id, timeout=10)
        clients.append(ib)
        return ib

    yield make
    for ib in clients:
        ib.disconnect()


def eurusd(ib):
    (contract,) = ib.qualifyContracts(ib_async.Forex("EURUSD"))
    return contract


def values(ib, tag):
    return {v.currency: float(v.value) for v in ib.accountValues() if v.tag == tag}


@pytest.mark.slow
def test_history_midpoint_served_trades_refused_with_162(gateway_sim, connect):
    ib = connect(gateway_sim)
    c = eurusd(ib)
    bars = ib.reqHistoricalData(c, "", "5 D", "1 day", "MIDPOINT", True)
    assert bars and all(b.close > 0 for b in bars)
    errors = []
    ib.errorEvent += lambda req_id, code, msg, contract: errors.append((code, msg))
    assert len(ib.reqHistoricalData(c, "", "5 D", "1 day", "TRADES", True)) == 0
    assert errors and errors[-1][0] == 162
    assert "No historical market data for EUR/CASH@FXSUBPIP Last" in errors[-1][1]


@pytest.mark.slow
def test_fx_order_is_sized_in_base_currency_and_moves_both_balances(gateway_sim, connect):
    ib = connect(gateway_sim)
    c = eurusd(ib)
    usd_before = values(ib, "CashBalance")["USD"]
    trade = ib.placeOrder(c, MarketOrder("BUY", 25_000))
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Filled"
    price = trade.orderStatus.avgFillPrice
    commission = sum(f.commissionReport.commission for f in trade.fills)
    (pos,) = ib.positions()
    assert pos.contract.secType == "CASH" and pos.position == 25_000
    cash = values(ib, "CashBalance")
    assert cash["EUR"] == pytest.approx(25_000)
    assert cash["USD"] == pytest.approx(usd_before - 25_000 * price - commission, abs=0.01)
    rates = values(ib, "ExchangeRate")
    assert rates["USD"] == 1.0 and rates["EUR"] == pytest.approx(price, rel=1e-3)
    # the EUR is counted once (as cash), not again as a position
    net = values(ib, "NetLiquidation")["BASE"]
    assert net == pytest.approx(cash["USD"] + cash["EUR"] * rates["EUR"], abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"broker_options": {
    "currency": "GBP", "cash": 100_000.0, "fx_rates": {"USD": 0.8}}}], indirect=True)
def test_gbp_base_account_values_a_eurusd_position(gateway_sim, connect):
    ib = connect(gateway_sim)
    c = eurusd(ib)
    trade = ib.placeOrder(c, MarketOrder("BUY", 25_000))
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Filled"
    price = trade.orderStatus.avgFillPrice
    currencies = {v.value for v in ib.accountValues() if v.tag == "Currency"}
    assert {"GBP", "BASE", "EUR", "USD"} <= currencies
    rates = values(ib, "ExchangeRate")
    assert rates["GBP"] == 1.0 and rates["USD"] == pytest.approx(0.8)
    assert rates["EUR"] == pytest.approx(price * 0.8, rel=1e-3)
    cash = values(ib, "CashBalance")
    assert cash["GBP"] == pytest.approx(100_000.0) and cash["EUR"] == pytest.approx(25_000)
    net = values(ib, "NetLiquidation")
    assert "GBP" in net and "USD" not in net
    # our ledger, fed the account values TWS pushed, agrees with the gateway's BASE total
    ledger = CurrencyLedger("GBP")
    for v in ib.accountValues():
        ledger.on_account_value(v.tag, v.value, v.currency)
    assert ledger.net_liquidation() == pytest.approx(net["BASE"], abs=0.05)
    # ... and, fed a new EUR.USD price instead, revalues the EUR in GBP
    ledger.on_fx_price("EUR.USD", price * 1.01)
    assert ledger.rate("EUR") == pytest.approx(price * 1.01 * 0.8)


@pytest.mark.slow
def test_non_usd_base_without_a_usd_rate_is_refused(gateway_sim_factory):
    with pytest.raises(ConfigError, match="fx_rates"):
        gateway_sim_factory(broker_options={"currency": "GBP"})


def test_ledger_values_a_usd_stock_in_a_gbp_account_and_names_missing_rates():
    ledger = CurrencyLedger("GBP", cash={"GBP": 1000.0})
    aapl = Holding(size=10, price=200.0, currency="USD")
    with pytest.raises(MissingRateError, match="USD"):
        ledger.net_liquidation([aapl])
    ledger.on_fx_price("GBP.USD", 1.25)  # one GBP buys 1.25 USD: one USD = 0.8 GBP
    assert ledger.rate("USD") == pytest.approx(0.8)
    ledger.apply_fill("USD", 10, 200.0, commission=1.0)
    assert ledger.balance("USD") == pytest.approx(-2001.0)
    assert ledger.net_liquidation([aapl]) == pytest.approx(1000.0 - 2001.0 * 0.8 + 2000.0 * 0.8)
