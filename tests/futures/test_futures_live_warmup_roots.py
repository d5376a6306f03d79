"""A daily ``--futures CL`` run warms the Strategy up on CL's back-adjusted continuous series,
each contract named by its contract month (CL's trading ends in the month BEFORE it: CLJ4,
April 2024, last trades on 2024-03-20), through the real ib_async client against the
gateway simulator. Every CL contract is served its own bars (two independent seeded walks,
alternating by month), so a contract's bars used for another's would show in the returns."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from helpers.futures_synth import contract_bars
from helpers.live import run_cli

from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.gateway_sim.frames import series_from_frame

CHICAGO = ZoneInfo("America/Chicago")
SPEC = get_spec("CL")
NO_BARS = pd.DataFrame({k: [] for k in ("open", "high", "low", "close", "volume")},
                       index=pd.DatetimeIndex([]))


def _serve(sim, first: date, last: date) -> dict[ContractMonth, pd.DataFrame]:
    walks = [contract_bars("CL", first, last, seed=s, carry=0.05, listed_days=400)
             for s in (11, 12)]
    served = {}
    for c in sim.contracts.all():
        if c.secType != "FUT" or c.symbol != "CL":
            continue
        cm = next((k for k in walks[0] if k.local_symbol == c.localSymbol
                   and k.code == c.contractMonth), None)
        frame = walks[cm.month % 2].get(cm, NO_BARS) if cm is not None else NO_BARS
        sim.call(lambda c=c, f=frame, k=c.localSymbol:
                 sim.market.serve(c, series_from_frame(k, f, c)))
        if len(frame):
            served[cm] = frame
    return served


@pytest.mark.slow
def test_the_crude_warm_up_follows_each_held_contracts_own_moves(gateway_sim_factory,
                                                                 tmp_path):
    decided, traded = date(2024, 2, 12), ContractMonth("CL", 2024, 4)
    sim = gateway_sim_factory(start=datetime(2024, 2, 13, 13, 0, tzinfo=CHICAGO))
    contracts = _serve(sim, date(2022, 6, 1), decided)
    out = tmp_path / "closes.json"
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"strategy": {"name": "helpers.futures_live:SayPosition"}}))
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "CL", "--futures", "CL", "--config",
                           str(config), "--param", f"closes={out}", max_runtime=90)
    assert code == 0, err
    assert "futures CL: trading CLJ4" in err
    rows = json.loads(out.read_text())
    seen = pd.Series([c for _, c in rows], index=[date.fromisoformat(d) for d, _ in rows])
    assert seen.index[-1] == decided
    assert seen.iloc[-1] == pytest.approx(contracts[traded].loc[pd.Timestamp(decided), "close"])
    rolls = SPEC.roll_schedule(seen.index[0], decided)
    assert len(rolls) >= 12  # a year of monthly rolls inside the warm-up
    for i in range(1, len(seen)):
        before, at = seen.index[i - 1], seen.index[i]
        held = SPEC.held_contract(at)
        own = (contracts[held].loc[pd.Timestamp(at), "close"]
               / contracts[held].loc[pd.Timestamp(before), "close"])
        assert seen.iloc[i] / seen.iloc[i - 1] == pytest.approx(own, rel=1e-9), at
