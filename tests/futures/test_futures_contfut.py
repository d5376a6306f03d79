"""IB continuous futures (CONTFUT) history through the real ib_async client against the
gateway simulator: qualified to the front contract, asked with no end time, and an explicit
end time refused with IB's error 10339."""

from __future__ import annotations

import pytest
from ib_async import IB, ContFuture

from bt_ibkr.cache import BarCache
from bt_ibkr.data.provider import IBKRDataProvider
from bt_ibkr.errors import ConfigError, UnknownSymbolError
from bt_ibkr.gateway_sim.contfut import CONTFUT_END_CODE, CONTFUT_END_TEXT


def _provider(sim, tmp_path) -> IBKRDataProvider:
    return IBKRDataProvider(port=sim.port, client_id=21, cache=BarCache(tmp_path / "cache"),
                            progress=False, timeout=20, backoff=0.05,
                            fallback_to_yfinance=False)


def _contfut_requests(sim) -> list[tuple[str, ...]]:
    return [r[3] for r in sim.requests_named("reqHistoricalData") if "CONTFUT" in r[3]]


def test_continuous_history_is_asked_with_no_end_time_after_qualifying_the_front(
        gateway_sim, tmp_path):
    # the synthetic simulator starts on 2024-01-02: the front ES contract is March 2024
    with _provider(gateway_sim, tmp_path) as p:
        got = p.get_continuous_future("ES", "1 M", "1 day")
    assert got.front_local_symbol == "ESH4"
    assert got.front_expiry.startswith("20240315")
    assert len(got.frame) >= 15 and got.frame.attrs["source"] == "ibkr"
    sent = _contfut_requests(gateway_sim)
    assert len(sent) == 1
    assert "" in sent[0]  # endDateTime empty
    assert not any(f.startswith("2024") and ":" in f for f in sent[0])  # no end time given


def test_an_explicit_end_time_is_refused_with_error_10339(gateway_sim):
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=22, timeout=20)
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
    try:
        cf = ContFuture("ES", exchange="CME", currency="USD")
        assert ib.qualifyContracts(cf) == [cf]
        assert cf.secType == "CONTFUT" and cf.localSymbol == "ESH4"
        bars = ib.reqHistoricalData(cf, endDateTime="20231229 16:00:00 US/Eastern",
                                    durationStr="5 D", barSizeSetting="1 day",
                                    whatToShow="TRADES", useRTH=True, formatDate=2, timeout=20)
        assert not bars
        assert (CONTFUT_END_CODE, CONTFUT_END_TEXT) in errors
        ok = ib.reqHistoricalData(cf, endDateTime="", durationStr="5 D",
                                  barSizeSetting="1 day", whatToShow="TRADES", useRTH=True,
                                  formatDate=2, timeout=20)
        assert len(ok) >= 3
    finally:
        ib.disconnect()


def test_unknown_roots_fail_before_any_request(gateway_sim, tmp_path, monkeypatch):
    from bt_ibkr.futures.registry import REGISTRY, FutureSpec, treasury_note_rule

    with _provider(gateway_sim, tmp_path) as p:
        with pytest.raises(ConfigError, match="known roots are CL, ES, GC, NQ, ZN"):
            p.get_continuous_future("XYZ")
        # a registered root the gateway has no future for (the simulator lists the five)
        monkeypatch.setitem(REGISTRY, "ZB", FutureSpec("ZB", "30-Year T-Bond", "CBOT", "USD",
                                                       1000.0, "HMUZ", "physical",
                                                       treasury_note_rule))
        with pytest.raises(UnknownSymbolError, match="no continuous future ZB"):
            p.get_continuous_future("ZB", "1 M")
    assert not _contfut_requests(gateway_sim)
