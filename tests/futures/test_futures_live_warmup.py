"""A daily ``--futures ES`` run warms the Strategy up on the back-adjusted continuous series:
every ES contract at the simulated gateway has its own prices (a carry gap between adjacent
contracts, as real quarterlies have), expired ones are served only with includeExpired (IB keeps
expired futures' history for two years), and the bars the Strategy sees move on every roll day
exactly as the held contract did, with no jump, and end on the traded contract's real close."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from helpers.futures_live import CLOSE_REF
from helpers.futures_synth import contract_bars
from helpers.live import run_cli

from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.gateway_sim.frames import series_from_frame

CHICAGO = ZoneInfo("America/Chicago")
SPEC = get_spec("ES")


def serve_contracts(sim, last: date, first: date = date(2021, 6, 1)
                    ) -> dict[ContractMonth, pd.DataFrame]:
    """Give every ES contract of the simulator its own daily bars (synthetic, carry 5 %/year:
    adjacent contracts differ by about 1.2 % on a roll day), none to those that expired before
    ``first`` (their history requests answer no data); return the bars by contract."""
    bars = contract_bars("ES", first, last, seed=11, carry=0.05, listed_days=400)
    served = {}
    for c in sim.contracts.all():
        if c.secType != "FUT" or c.symbol != "ES":
            continue
        cm = ContractMonth("ES", int(c.lastTradeDateOrContractMonth[:4]),
                           int(c.lastTradeDateOrContractMonth[4:6]))
        frame = bars.get(cm, NO_BARS)
        sim.call(lambda c=c, f=frame, k=cm.local_symbol:
                 sim.market.serve(c, series_from_frame(k, f, c)))
        if len(frame):
            served[cm] = frame
    return served


NO_BARS = pd.DataFrame({k: [] for k in ("open", "high", "low", "close", "volume")},
                       index=pd.DatetimeIndex([]))


def seen_closes(path) -> pd.Series:
    rows = json.loads(path.read_text())
    return pd.Series([c for _, c in rows], index=[date.fromisoformat(d) for d, _ in rows])


@pytest.mark.slow
@pytest.mark.parametrize("now, decided, traded", [
    # after the March roll: the last completed session (Fri 03-08) is already June's
    (datetime(2024, 3, 11, 13, 0, tzinfo=CHICAGO), date(2024, 3, 8), ContractMonth("ES", 2024, 6)),
    # on the roll date, before the open: 03-07 was still March's, the run trades June
    (datetime(2024, 3, 8, 7, 0, tzinfo=CHICAGO), date(2024, 3, 7), ContractMonth("ES", 2024, 6)),
])
def test_the_warm_up_is_back_adjusted_and_ends_on_the_traded_contract(gateway_sim_factory,
                                                                      tmp_path, now, decided,
                                                                      traded):
    sim = gateway_sim_factory(start=now)
    contracts = serve_contracts(sim, decided)
    out = tmp_path / "closes.json"
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "ES", "--futures", "ES", "--config",
                           str(_config(tmp_path)), "--param", f"closes={out}",
                           max_runtime=90)
    assert code == 0, err
    assert f"futures ES: trading {traded.local_symbol}" in err
    seen = seen_closes(out)
    assert seen.index[-1] == decided
    # the decision bar is the traded contract's own price
    assert seen.iloc[-1] == pytest.approx(contracts[traded].loc[pd.Timestamp(decided), "close"])
    rolls = [(when, old, new) for when, old, new in SPEC.roll_schedule(seen.index[0], decided)]
    assert len(rolls) >= 7  # two years of quarterly rolls inside the warm-up
    if SPEC.held_contract(decided) != traded:  # rolled on the session being decided
        rolls.append((decided, SPEC.held_contract(decided), traded))
    for when, old, new in rolls:
        i = seen.index.get_loc(when) if when in seen.index else None
        if i is None or i == 0:
            continue
        before, at = seen.index[i - 1], seen.index[i]
        held_now = traded if when == decided and new == traded else new
        frame = contracts[held_now] if when != decided else contracts[traded]
        own = frame.loc[pd.Timestamp(at), "close"] / frame.loc[pd.Timestamp(before), "close"]
        jump = (contracts[new].loc[pd.Timestamp(at), "close"]
                / contracts[old].loc[pd.Timestamp(before), "close"])
        assert seen.iloc[i] / seen.iloc[i - 1] == pytest.approx(own, rel=1e-9), when
        assert abs(jump / own - 1) > 0.005  # the raw series would have jumped here
    assert CLOSE_REF not in err  # nothing held: nothing rolled


def _config(tmp_path):
    path = tmp_path / "futures.json"
    path.write_text(json.dumps({"strategy": {"name": "helpers.futures_live:SayPosition"}}))
    return path


@pytest.mark.slow
def test_without_the_oldest_contracts_the_warm_up_is_shorter_and_still_continuous(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(start=datetime(2024, 3, 11, 13, 0, tzinfo=CHICAGO))
    contracts = serve_contracts(sim, date(2024, 3, 8), first=date(2023, 1, 3))
    out = tmp_path / "closes.json"
    code, err, _ = run_cli(tmp_path, sim, "--symbols", "ES", "--futures", "ES", "--config",
                           str(_config(tmp_path)), "--param", f"closes={out}",
                           max_runtime=90)
    assert code == 0, err
    assert "the continuous warm-up starts on 2022-12-09: no history of ESZ2" in err, err
    seen = seen_closes(out)
    assert seen.index[0] == date(2023, 1, 3)  # ESH3's first bar at the gateway
    for when, _old, new in SPEC.roll_schedule(seen.index[0], date(2024, 3, 8)):
        i = seen.index.get_loc(when)
        own = (contracts[new].loc[pd.Timestamp(when), "close"]
               / contracts[new].loc[pd.Timestamp(seen.index[i - 1]), "close"])
        assert seen.iloc[i] / seen.iloc[i - 1] == pytest.approx(own, rel=1e-9), when
