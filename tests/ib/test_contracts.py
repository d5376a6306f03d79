"""backtrader's IB dataname grammar -> Contract, and back."""

from __future__ import annotations

import pytest

from bt_ibkr.errors import ConfigError, UnknownSymbolError
from bt_ibkr.ib.contracts import (
    AmbiguousContractError,
    contract_to_dataname,
    make_contract,
    parse_dataname,
    select_single,
)


@pytest.mark.parametrize(
    "dataname, expected",
    [
        ("AAPL", dict(symbol="AAPL", secType="STK", exchange="SMART", currency="")),
        ("AAPL-STK-SMART-USD", dict(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")),
        ("BMW-STK-IBIS", dict(symbol="BMW", secType="STK", exchange="IBIS", currency="")),
        ("EUR.USD-CASH-IDEALPRO", dict(symbol="EUR", secType="CASH", exchange="IDEALPRO", currency="USD")),
        ("SPX-IND-CBOE-USD", dict(symbol="SPX", secType="IND", exchange="CBOE", currency="USD")),
        ("SPY-CFD-SMART-USD", dict(symbol="SPY", secType="CFD", exchange="SMART", currency="USD")),
        (
            "ES-202612-CME",
            dict(symbol="ES", secType="FUT", exchange="CME", lastTradeDateOrContractMonth="202612"),
        ),
        (
            "ES-FUT-CME-USD-202612",
            dict(symbol="ES", secType="FUT", exchange="CME", currency="USD",
                 lastTradeDateOrContractMonth="202612"),
        ),
        (
            "ES-FUT-CME-USD-202612-50",
            dict(symbol="ES", secType="FUT", lastTradeDateOrContractMonth="202612", multiplier="50"),
        ),
        (
            "ES-202612-CME-USD-5000-C",
            dict(symbol="ES", secType="FOP", exchange="CME", lastTradeDateOrContractMonth="202612",
                 strike=5000.0, right="C"),
        ),
        (
            "AAPL-20261218-SMART-USD-200-CALL",
            dict(symbol="AAPL", secType="OPT", exchange="SMART", currency="USD",
                 lastTradeDateOrContractMonth="20261218", strike=200.0, right="C"),
        ),
        (
            "AAPL-OPT-SMART-USD-20261218-150.5-PUT-100",
            dict(symbol="AAPL", secType="OPT", lastTradeDateOrContractMonth="20261218",
                 strike=150.5, right="P", multiplier="100"),
        ),
    ],
)
def test_dataname_grammar_builds_backtraders_contract(dataname, expected):
    contract = make_contract(dataname)
    got = {k: getattr(contract, k) for k in expected}
    assert got == expected


def test_feed_defaults_fill_missing_fields():
    spec = parse_dataname("AAPL", sectype="STK", exchange="NASDAQ", currency="USD")
    assert (spec.symbol, spec.sectype, spec.exchange, spec.currency) == ("AAPL", "STK", "NASDAQ", "USD")
    # the dataname wins over the defaults
    spec = parse_dataname("AAPL-STK-ARCA-EUR", exchange="NASDAQ", currency="USD")
    assert (spec.exchange, spec.currency) == ("ARCA", "EUR")


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "empty"),
        ("AAPL-XYZ", "security type 'XYZ'"),
        ("EURUSD-CASH-IDEALPRO", "CUR1.CUR2"),
        ("AAPL-20261218-SMART-USD-abc-C", "strike 'abc'"),
        ("AAPL-20261218-SMART-USD-200-X", "right 'X'"),
        ("ES-2026-CME", "YYYYMM"),
        ("AAPL--SMART", "empty field"),
        ("AAPL-STK-SMART-USD-EXTRA", "trailing"),
    ],
)
def test_bad_datanames_are_config_errors_naming_the_input(bad, fragment):
    with pytest.raises(ConfigError) as info:
        parse_dataname(bad)
    assert fragment in str(info.value)
    if bad:
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    "dataname",
    [
        "AAPL-STK-SMART-USD",
        "EUR.USD-CASH-IDEALPRO",
        "SPX-IND-CBOE-USD",
        "ES-FUT-CME-USD-202612-50",
        "AAPL-OPT-SMART-USD-20261218-200-C-100",
    ],
)
def test_contract_to_dataname_round_trips(dataname):
    contract = make_contract(dataname)
    again = make_contract(contract_to_dataname(contract))
    fields = ("symbol", "secType", "exchange", "currency", "lastTradeDateOrContractMonth",
              "strike", "right", "multiplier")
    assert [getattr(again, f) for f in fields] == [getattr(contract, f) for f in fields]


def test_select_single_errors_name_the_input():
    from bt_ibkr.ib.client import Contract, ContractDetails

    with pytest.raises(UnknownSymbolError, match="'NOPE-STK-SMART-USD'"):
        select_single("NOPE-STK-SMART-USD", [])
    two = [
        ContractDetails(contract=Contract(symbol="X", secType="STK", exchange="NYSE", currency="USD", conId=1)),
        ContractDetails(contract=Contract(symbol="X", secType="STK", exchange="ARCA", currency="USD", conId=2)),
    ]
    with pytest.raises(AmbiguousContractError) as info:
        select_single("X", two)
    msg = str(info.value)
    assert "'X'" in msg and "2 IB contracts" in msg and "conId 1" in msg and "conId 2" in msg
    assert select_single("X", two[:1]).contract.conId == 1
