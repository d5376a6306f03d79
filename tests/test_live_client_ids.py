"""A restart with another clientId (issue 18, point 4). IB streams an order's status and
fills only to the client that placed it; another client sees it (reqAllOpenOrders) but could
never follow it. So a run whose journal has an order working under another clientId refuses
at start with one line naming the clientId to use, and never sits refusing every bar. Through
the real client against the gateway simulator."""

from __future__ import annotations

import pytest
from sim_helpers import order_status, our_ref, run_live_until
from test_live_runner import make_config

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import run_live


def _orders(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def test_an_order_working_under_another_client_id_refuses_the_start(gateway_sim_factory,
                                                                    tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = our_ref(tmp_path / "journal.sqlite")
    run_live_until(make_config(tmp_path, sim.port, **{"connection.client_id": 1}),
                   order_status(ref, "submitted"))
    with pytest.raises(ConfigError) as err:
        run_live(make_config(tmp_path, sim.port, **{"connection.client_id": 2}),
                 max_runtime=30)
    text = str(err.value)
    assert f"order {ref}" in text and "under clientId 1" in text
    assert "run with --client-id 1" in text and "clientId 2" in text
    assert len(_orders(sim)) == 1  # nothing new sent
    # the same clientId follows it as before
    sim.advance(seconds=10)
    third = run_live(make_config(tmp_path, sim.port, **{"connection.client_id": 1}),
                     max_runtime=30)
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.get(ref).status == "filled"
    assert third.reconcile["ok"] and len(_orders(sim)) == 1


def test_an_order_that_filled_while_away_does_not_block_another_client_id(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = our_ref(tmp_path / "journal.sqlite")
    run_live_until(make_config(tmp_path, sim.port, **{"connection.client_id": 1}),
                   order_status(ref, "submitted"))
    sim.advance(seconds=10)  # it fills with nobody connected
    second = run_live(make_config(tmp_path, sim.port, **{"connection.client_id": 2}),
                      max_runtime=30)
    with Journal(tmp_path / "journal.sqlite") as j:
        rec = j.get(ref)
        assert rec.status == "filled" and rec.filled == rec.quantity
    assert second.stopped_by in ("finished", "max-runtime")
    assert not [line for line in second.needs_attention if "refused" in line]
    assert len(_orders(sim)) == 1
