"""Options at the gateway simulator through the real ib_async client: the chain
(reqSecDefOptParams), an option qualified from the dataname grammar, its prices and greeks."""

from __future__ import annotations

import dataclasses
from datetime import date

import pandas as pd
import pytest
from helpers.sim import wait_until
from ib_async import IB, Index, Option, OptionComputation, Stock, Ticker

from bt_ibkr.errors import ConfigError
from bt_ibkr.gateway_sim.options import OPTION_VOL, bs_price, years_to_expiry
from bt_ibkr.ib.contracts import make_contract
from bt_ibkr.options import OptionChain, fetch_chain, greeks_of, pick_option


@pytest.fixture
def ib(gateway_sim):
    client = IB()
    client.connect(gateway_sim.host, gateway_sim.port, clientId=5, timeout=10)
    yield client
    client.disconnect()


def _spy(ib: IB) -> Stock:
    spy = Stock("SPY", "SMART", "USD")
    ib.qualifyContracts(spy)
    return spy


def test_chain_comes_from_reqsecdefoptparams_one_row_per_exchange(gateway_sim, ib):
    spy = _spy(ib)
    rows = ib.reqSecDefOptParams("SPY", "", "STK", spy.conId)
    assert [r.exchange for r in rows] == ["SMART", "CBOE", "AMEX"]
    row = rows[0]
    assert (row.underlyingConId, row.tradingClass, row.multiplier) == (str(spy.conId), "SPY",
                                                                       "100")
    assert row.expirations == sorted(row.expirations) and len(row.expirations) == 5
    assert all(len(e) == 8 and e > "20240102" for e in row.expirations)
    assert row.strikes == sorted(row.strikes) and all(k % 5 == 0 for k in row.strikes)

    chain = fetch_chain(ib, spy)
    assert isinstance(chain, OptionChain)
    assert chain.multiplier_value == 100.0 and chain.underlying_con_id == spy.conId
    assert chain.expirations[0] == date(2024, 1, 5)  # the first Friday after the start
    assert date(2024, 1, 19) in chain.expirations  # the monthly (third Friday)
    assert len(gateway_sim.requests_named("reqSecDefOptParams")) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        chain.strikes = ()  # type: ignore[misc]


def test_chain_errors_name_the_input(ib):
    with pytest.raises(ConfigError, match="qualify it"):
        fetch_chain(ib, Stock("SPY", "SMART", "USD"))  # no conId
    aapl = Stock("AAPL", "SMART", "USD")
    ib.qualifyContracts(aapl)
    with pytest.raises(ConfigError, match="IB lists no options on 'AAPL'"):
        fetch_chain(ib, aapl)  # the simulator lists options on SPY only
    spy = _spy(ib)
    with pytest.raises(ConfigError, match="exchange 'BOX'.*SMART"):
        fetch_chain(ib, spy, exchange="BOX")
    chain = fetch_chain(ib, spy)
    with pytest.raises(ConfigError, match="right 'X'"):
        pick_option(chain, date(2024, 1, 1), 470, "X")
    with pytest.raises(ConfigError, match="no expiry on or after 2030-01-01"):
        pick_option(chain, date(2030, 1, 1), 470, "C")


def test_pick_option_and_qualify_it_at_the_gateway(ib):
    chain = fetch_chain(ib, _spy(ib))
    opt = pick_option(chain, date(2024, 1, 10), 468.2, "put")
    assert (opt.lastTradeDateOrContractMonth, opt.strike, opt.right) == ("20240112", 470.0, "P")
    [q] = ib.qualifyContracts(opt)
    assert q.conId > 0 and q.multiplier == "100" and q.localSymbol == "SPY   240112P00470000"
    # a tie between two listed strikes picks the lower one
    assert pick_option(chain, date(2024, 1, 10), 472.5, "C").strike == 470.0


def test_option_from_the_dataname_grammar_qualifies_to_one_contract(ib):
    c = make_contract("SPY-OPT-SMART-USD-20240119-470-C")
    [d] = ib.reqContractDetails(c)
    assert (d.contract.secType, d.contract.strike, d.contract.right, d.contract.multiplier) == (
        "OPT", 470.0, "C", "100")
    # without strike and right IB lists every contract of the expiry
    many = ib.reqContractDetails(Option("SPY", "20240119", exchange="SMART", currency="USD"))
    assert len(many) > 2 and {d.contract.right for d in many} == {"C", "P"}
    # a strike the chain does not list is unknown to IB (error 200, nothing qualified)
    assert ib.reqContractDetails(make_contract("SPY-OPT-SMART-USD-20240119-471-C")) == []


def test_option_prices_follow_the_underlying_and_greeks_arrive_after_the_first_ticks(
        gateway_sim, ib):
    spy = _spy(ib)
    [opt] = ib.qualifyContracts(make_contract("SPY-OPT-SMART-USD-20240112-470-C"))
    und = ib.reqMktData(spy)
    tk = ib.reqMktData(opt)
    wait_until(lambda: tk.last == tk.last and und.last == und.last, ib.sleep)
    # the first burst has prices only: IB computes greeks asynchronously
    assert tk.modelGreeks is None and greeks_of(tk) is None
    gateway_sim.advance(seconds=5)
    # model greeks are the step's last message: its prices and other greeks came before
    wait_until(lambda: tk.modelGreeks is not None, ib.sleep)
    g = greeks_of(tk)
    assert g is not None and g.und_price == und.last
    t = int(gateway_sim.now().timestamp())
    fair = bs_price(und.last, 470.0, years_to_expiry(gateway_sim.contracts.by_conid(opt.conId),
                                                     t), "C")
    assert tk.last == pytest.approx(round(fair, 2), abs=0.011)
    assert (tk.bid, tk.ask) == pytest.approx((tk.last - 0.01, tk.last + 0.01))
    assert g.iv == pytest.approx(OPTION_VOL, abs=1e-6)  # the model price is the fair value
    assert 0 < g.delta < 1 and g.gamma > 0 and g.vega > 0 and g.theta < 0
    assert greeks_of(tk, "last").iv == pytest.approx(OPTION_VOL, abs=0.02)


def test_greeks_ib_could_not_compute_are_none(gateway_sim, ib):
    """A deep out-of-the-money put is worth 0: IB sends -1 implied vol and -2 greeks; ib_async
    passes a -2 vega/theta through, greeks_of maps all of them to None."""
    [opt] = ib.qualifyContracts(make_contract("SPY-OPT-SMART-USD-20240105-370-P"))
    tk = ib.reqMktData(opt)
    wait_until(lambda: tk.ask == tk.ask, ib.sleep)  # subscribed: the first prices are in
    gateway_sim.advance(seconds=5)
    wait_until(lambda: tk.bidGreeks is not None, ib.sleep)
    assert tk.bid == 0.0
    assert tk.bidGreeks.vega == -2  # ib_async's own mapping leaves the sentinel
    g = greeks_of(tk, "bid")
    assert (g.iv, g.delta, g.gamma, g.vega, g.theta, g.price) == (None,) * 6
    assert g.und_price is not None


def test_greeks_of_maps_every_sentinel_and_rejects_an_unknown_source():
    t = Ticker(contract=Index("SPX", "CBOE"))
    t.modelGreeks = OptionComputation(0, -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -2.0, -1.0)
    assert greeks_of(t) == greeks_of(t)
    assert set(vars(greeks_of(t)).values()) == {None}
    t.modelGreeks = OptionComputation(0, float("nan"), 1.7976931348623157e308, 2.5, 0.0,
                                      None, 0.1, -0.05, 4700.0)
    g = greeks_of(t)
    assert (g.iv, g.delta, g.price, g.gamma, g.vega, g.theta, g.und_price) == (
        None, None, 2.5, None, 0.1, -0.05, 4700.0)
    with pytest.raises(ValueError, match="'mid'"):
        greeks_of(t, "mid")


def test_option_history_is_priced_from_the_underlying_and_ends_at_expiry(gateway_sim, ib):
    spy = _spy(ib)
    [opt] = ib.qualifyContracts(make_contract("SPY-OPT-SMART-USD-20240105-470-P"))
    gateway_sim.advance_days(5)  # past the 2024-01-05 expiry
    und = ib.reqHistoricalData(spy, "", "10 D", "1 day", "TRADES", True)
    bars = ib.reqHistoricalData(opt, "", "10 D", "1 day", "TRADES", True)
    assert bars and [b.date for b in bars] == [b.date for b in und if b.date <= date(2024, 1, 5)]
    sim_opt = gateway_sim.contracts.by_conid(opt.conId)
    for b, u in zip(bars, und, strict=False):
        t = int(pd.Timestamp(f"{b.date} 16:00", tz="America/New_York").timestamp())
        fair = bs_price(u.close, 470.0, years_to_expiry(sim_opt, t), "P")
        assert b.close == pytest.approx(round(fair, 2), abs=1e-9)
        assert b.low <= min(b.open, b.close) and b.high >= max(b.open, b.close)
    # on the expiry day the option is worth its intrinsic value
    assert bars[-1].close == pytest.approx(max(470.0 - und[len(bars) - 1].close, 0.0), abs=0.006)
