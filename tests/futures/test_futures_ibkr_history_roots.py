"""A continuous future of the roots besides ES built from IB's individual contracts
(``--source ibkr --futures GC``, ZN, CL, NQ), through the real ib_async client against the
gateway simulator: the contracts asked for are the registry's held ones (GC's even months, ZN's
quarterlies, every CL month, each by its contract month, not its last trade date's), the
rolls are the registry's, and ``examples.backtest`` backtests and reports it."""

from __future__ import annotations

import json
from datetime import date

import pytest
from helpers.cli import run_backtest

from bt_ibkr.cache import BarCache
from bt_ibkr.data.history import HistoryRequest, load_history
from bt_ibkr.futures.registry import get_spec
from bt_ibkr.ib.address import GatewayAddress

# the synthetic simulator's clock starts on 2024-01-02: IB keeps contracts that expired
# since 2022-01-02
FIRST, LAST = date(2022, 6, 1), date(2023, 12, 29)


def _request(root: str, port: int, cache: BarCache) -> HistoryRequest:
    return HistoryRequest(symbols=[root], source="ibkr", start=FIRST, end=LAST, cache=cache,
                          progress=False, gateway=GatewayAddress(port=port, client_id=53),
                          futures={root: root})


@pytest.mark.slow
@pytest.mark.parametrize("root, first, last", [
    ("GC", "GCQ2", "GCG4"),  # Aug 2022 .. Feb 2024: the even months only
    ("ZN", "ZNU2", "ZNH4"),
    ("CL", "CLN2", "CLG4"),  # July 2022: its last trade 2022-06-21, its roll 2022-06-13
    ("NQ", "NQM2", "NQH4"),  # June 2022 rolls on 2022-06-10
])
def test_the_series_stitches_the_held_contracts_at_the_registrys_rolls(gateway_sim, tmp_path,
                                                                       root, first, last):
    spec = get_spec(root)
    got = load_history(_request(root, gateway_sim.port, BarCache(tmp_path / "cache")))
    frame = got.frames[root]
    info = frame.attrs["futures"]
    held = [spec.held_contract(FIRST)]
    for _, _, new in spec.roll_schedule(FIRST, LAST):
        held.append(new)
    assert info["contracts"] == [c.local_symbol for c in held]
    assert (info["contracts"][0], info["contracts"][-1]) == (first, last)
    schedule = spec.roll_schedule(FIRST, LAST)
    assert [r["day"] for r in info["rolls"]] == [d.isoformat() for d, _, _ in schedule]
    assert all(r["new_close"] != r["old_close"] for r in info["rolls"])  # a gap to adjust
    assert frame.index[0].date() >= FIRST and frame.index[-1].date() <= LAST
    assert len(frame) > 350 and frame["close"].notna().all()
    requests = len(gateway_sim.requests_named("reqHistoricalData"))
    assert requests == len(held)  # one request per contract


@pytest.mark.slow
def test_the_backtest_cli_runs_a_gold_series_from_the_simulators_contracts(gateway_sim,
                                                                           tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    code, out, err = run_backtest(["--source", "ibkr", "--port", str(gateway_sim.port),
                                   "--symbols", "GC", "--futures", "GC", "--start",
                                   "2022-06-01", "--end", "2023-12-29", "--cash", "20000000",
                                   "--json", "gc.json", "--no-report"], capsys)
    assert code == 0, err
    assert "futures series: GC: ratio back-adjusted from GCQ2..GCG4" in " ".join(out.split())
    summary = json.loads((tmp_path / "gc.json").read_text())
    assert summary["futures"] == {"GC": "GC"}
    series = summary["futures_series"]["GC"]
    # GCQ2 (August 2022) rolls 5 business days before its first notice day, 2022-07-29
    assert series["rolls"][0]["day"] == "2022-07-22"
    assert series["rolls"][0]["old"] == "202208" and series["rolls"][0]["new"] == "202210"
