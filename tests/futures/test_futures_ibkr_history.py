"""A continuous future built from IB's individual contracts (``--source ibkr --futures ES``),
through the real ib_async client against the gateway simulator: the series is
build_continuous over the contracts IB serves, the rolls are the registry's, a second run is
served from the cache with the gateway down, and a contract IB no longer keeps is named."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from helpers.cli import run_backtest
from ib_async import IB, Future

from bt_ibkr.cache import BarCache
from bt_ibkr.data.history import HistoryRequest, load_history
from bt_ibkr.errors import SourceUnavailableError, UnknownSymbolError
from bt_ibkr.futures.continuous import build_continuous
from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.ib.address import GatewayAddress

# the synthetic simulator's clock starts on 2024-01-02: IB keeps the ES quarterlies that
# expired since 2022-01-02 (ESH2 = March 2022 is the oldest)
FIRST, LAST = date(2022, 1, 3), date(2023, 12, 29)
CONTRACTS = [ContractMonth("ES", y, m) for y in (2022, 2023) for m in (3, 6, 9, 12)] + [
    ContractMonth("ES", 2024, 3)]
USER_INFO = 104  # reqUserInfo: unanswered, the simulator passes for a real gateway


def _request(port: int, cache: BarCache, method: str | None = None,
             start: date = FIRST, end: date = LAST) -> HistoryRequest:
    return HistoryRequest(symbols=["ES"], source="ibkr", start=start, end=end, cache=cache,
                          progress=False, gateway=GatewayAddress(port=port, client_id=51),
                          futures={"ES": "ES"}, futures_adjust=method)


def _contract_bars(sim) -> dict[ContractMonth, pd.DataFrame]:
    """Every contract's whole daily history up to LAST, asked of the gateway directly."""
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=52, timeout=20)
    out = {}
    try:
        for c in CONTRACTS:
            (q,) = ib.qualifyContracts(Future("ES", c.code, "CME", includeExpired=True))
            q.includeExpired = True
            bars = ib.reqHistoricalData(q, "20231229 23:59:59 UTC", "2 Y", "1 day", "TRADES",
                                        True, timeout=20)
            out[c] = pd.DataFrame(
                {k: [getattr(b, k) for b in bars] for k in ("open", "high", "low", "close",
                                                            "volume")},
                index=pd.DatetimeIndex([pd.Timestamp(b.date) for b in bars]))
    finally:
        ib.disconnect()
    return out


def _history_requests(sim) -> int:
    return len(sim.requests_named("reqHistoricalData"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ratio", "difference"])
def test_the_series_is_build_continuous_over_the_contracts_ib_serves(gateway_sim_factory,
                                                                      tmp_path, method):
    sim = gateway_sim_factory(pacing=True)  # IB's pacing enforced: a violation fails the run
    got = load_history(_request(sim.port, BarCache(tmp_path / "cache"), method))
    assert _history_requests(sim) == len(CONTRACTS)  # one request per contract, none refused
    frame = got.frames["ES"]
    want = build_continuous("ES", _contract_bars(sim), method).frame
    want = want.loc[(want.index >= pd.Timestamp(FIRST)) & (want.index <= pd.Timestamp(LAST))]
    assert list(frame.index) == list(want.index)
    assert np.allclose(frame.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-9)
    # the rolls recorded are the registry's, each gap measured on both contracts' closes
    info = frame.attrs["futures"]
    assert info["method"] == method
    assert info["contracts"] == [c.local_symbol for c in CONTRACTS]
    schedule = get_spec("ES").roll_schedule(FIRST, LAST)
    assert [r["day"] for r in info["rolls"]] == [d.isoformat() for d, _, _ in schedule]
    assert [(r["old"], r["new"]) for r in info["rolls"]] == [(a.code, b.code)
                                                            for _, a, b in schedule]
    assert all(r["new_close"] != r["old_close"] for r in info["rolls"])  # a gap to adjust
    assert "ES continuous, " + method + " back-adjusted from 9 contracts ESH2..ESH4" in \
        got.message


@pytest.mark.slow
def test_a_second_run_is_served_from_the_cache_with_the_gateway_down(gateway_sim_factory,
                                                                       tmp_path):
    sim = gateway_sim_factory()
    sim.drop_replies(USER_INFO, n=100)  # no simulator brand: its bars are filed as IB's
    cache = BarCache(tmp_path / "cache")
    first = load_history(_request(sim.port, cache))
    assert _history_requests(sim) == len(CONTRACTS)  # one request per contract
    assert "contracts fetched" in first.message
    sim.stop()  # nothing listens any more

    again = load_history(_request(sim.port, cache))
    pd.testing.assert_frame_equal(again.frames["ES"], first.frames["ES"], check_freq=False)
    assert again.frames["ES"].attrs["futures"] == first.frames["ES"].attrs["futures"]
    assert "all from the cache" in again.message
    # another adjustment is built from the cached contracts, still without the gateway
    diff = load_history(_request(sim.port, cache, "difference"))
    assert diff.frames["ES"].attrs["futures"]["method"] == "difference"
    assert diff.frames["ES"]["close"].iloc[-1] == first.frames["ES"]["close"].iloc[-1]
    # a span the cache does not hold needs the gateway, and says so
    with pytest.raises(SourceUnavailableError, match="nothing listens"):
        load_history(_request(sim.port, cache, end=date(2024, 1, 2)))


def test_simulated_contract_bars_are_never_served_as_ibs(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory()
    cache = BarCache(tmp_path / "cache")
    first = load_history(_request(sim.port, cache))
    assert "simulated prices, not IB's" in first.message
    assert first.frames["ES"].attrs["simulated"]
    sim.stop()
    with pytest.raises(SourceUnavailableError) as err:
        load_history(_request(sim.port, cache))
    assert "ibkr-sim" in str(err.value) and "ES" in str(err.value)


def test_progress_steps_once_per_contract(gateway_sim, tmp_path, monkeypatch):
    import contextlib

    from bt_ibkr.data import futures_contracts as ib_contracts

    seen: list[tuple[int | None, str, list[str]]] = []

    @contextlib.contextmanager
    def recording(total, what, enabled=True, minimum=2):
        labels: list[str] = []
        seen.append((total, what, labels))
        yield lambda label="", steps=1: labels.append(label)

    monkeypatch.setattr(ib_contracts, "progress", recording)
    request = _request(gateway_sim.port, BarCache(tmp_path / "cache"))
    request.progress = True
    load_history(request)
    assert seen == [(len(CONTRACTS), "IB ES contracts", [c.local_symbol for c in CONTRACTS])]


def test_a_contract_ib_no_longer_keeps_is_named(gateway_sim, tmp_path):
    with pytest.raises(UnknownSymbolError) as err:
        load_history(_request(gateway_sim.port, BarCache(tmp_path / "cache"),
                              start=date(2021, 6, 1)))
    text = str(err.value)
    assert "IB has no ES 202106 (ESM1)" in text
    assert "expired on 2021-06-18" in text and "2 years after its expiry" in text
    assert "--start 2022-01-02" in text and "--source csv" in text


@pytest.mark.slow
def test_the_cli_backtests_it_and_reports_the_contracts_and_rolls(gateway_sim, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    base = ["--source", "ibkr", "--port", str(gateway_sim.port), "--symbols", "ES",
            "--futures", "ES", "--end", "2023-12-29"]
    code, out, err = run_backtest([*base, "--cash", "20000000", "--json", "es.json",
                                   "--report", "es.html"], capsys)
    assert code == 0, err
    assert "futures series: ES: ratio back-adjusted from ESH2..ESH4" in " ".join(out.split())
    summary = json.loads((tmp_path / "es.json").read_text())
    assert summary["futures"] == {"ES": "ES"}
    series = summary["futures_series"]["ES"]
    assert series["method"] == "ratio" and series["contracts"][0] == "ESH2"
    assert series["rolls"][0]["day"] == "2022-03-11"
    # the price basis is the back-adjusted series, not a stock's unadjusted TRADES bars
    assert any(n.startswith("ES: continuous futures, back-adjusted") for n in summary["notes"])
    assert not any("TRADES bars" in n for n in summary["notes"])
    assert "rolled on 2022-03-11" in (tmp_path / "es.html").read_text()

    code, out, err = run_backtest([*base, "--start", "2021-01-04", "--no-report"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: --futures ES: IB has no ES 202103 (ESH1)")


@pytest.mark.parametrize("flags, says", [
    (["--source", "csv", "--csv", "x.csv", "--futures", "ES", "--futures-adjust",
      "difference"], "--futures-adjust difference: applies to a continuous future built from "
                     "IB's contracts"),
    (["--source", "ibkr", "--futures-adjust", "ratio"], "--futures-adjust ratio: applies to"),
])
def test_futures_adjust_outside_ibkr_futures_is_one_line_and_exit_2(tmp_path, monkeypatch,
                                                                    capsys, flags, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    (tmp_path / "x.csv").write_text("date,open,high,low,close,volume\n")
    code, out, err = run_backtest(["--symbols", "ES", "--no-report", *flags], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and says in err
