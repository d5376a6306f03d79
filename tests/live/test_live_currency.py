"""A run in one currency: an order in a currency other than the account's base currency stops
the run before it is journaled or sent (its size would be off by the exchange rate), through
``python -m examples.live`` against the gateway simulator's GBP-base account."""

from __future__ import annotations

import pytest

from bt_ibkr.live.currency_check import (
    CurrencyMismatchError,
    account_base_currency,
    check_order_currency,
)
from bt_ibkr.live.journal import Journal
from examples import live as cli


def test_the_base_currency_is_the_one_net_liquidation_is_reported_in():
    values = {("DU1", "NetLiquidation", "BASE"): "1000", ("DU1", "NetLiquidation", "GBP"): "1000",
              ("DU1", "CashBalance", "USD"): "5", ("DU2", "NetLiquidation", "EUR"): "1"}
    assert account_base_currency(values, "DU1") == "GBP"
    assert account_base_currency(values, "DU2") == "EUR"
    assert account_base_currency({}, "DU1") is None  # not known yet: nothing is refused
    check_order_currency("SPY", "USD", None, "DU1")
    check_order_currency("SPY", "usd", "USD", "DU1")
    with pytest.raises(CurrencyMismatchError, match="SPY trades in USD and account DU1 keeps "
                                                    "its books in GBP"):
        check_order_currency("SPY", "USD", "GBP", "DU1")


@pytest.mark.slow
def test_a_usd_order_on_a_gbp_account_stops_the_run_with_nothing_sent(in_tmp, capsys,
                                                                      gateway_sim_factory):
    sim = gateway_sim_factory(data="sample",
                              broker_options={"currency": "GBP", "fx_rates": {"USD": 0.8}})
    rc = cli.main(["--paper", "--port", str(sim.port), "--journal", "j.sqlite",
                   "--max-runtime", "60"])
    err = capsys.readouterr().err
    assert rc == 2, err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "SPY trades in USD and account DU" in line and "keeps its books in GBP" in line
    assert "nothing was sent" in line
    assert sim.requests_named("placeOrder") == []
    with Journal(in_tmp / "j.sqlite") as journal:
        assert journal.intents() == []
