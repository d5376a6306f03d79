"""risk.max_margin_fraction in a paper run through the real client against the gateway
simulator: IB's what-if margin decides, a whatIf without margin falls back to the notional
(said once), and a refused order never reaches the gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers.live import BuyOneOnDecision
from helpers.sim import run_live_until

from bt_ibkr.live.config import load_config
from bt_ibkr.live.gated_broker import GatedIBBroker
from bt_ibkr.live.journal import Journal


def make_config(tmp_path: Path, port: int, **overrides):
    values = {"connection.port": port, "paths.journal": str(tmp_path / "journal.sqlite"),
              "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")}
    values.update(overrides)
    return load_config(None, env={}, overrides=values)


class OneBuy(BuyOneOnDecision):
    """On the decision bar: one market buy of 100."""

    params = (("size", 100), ("once", True))


def decided(runner) -> bool:
    broker = getattr(runner, "broker", None)
    statuses = [r.get("status") for r in broker.records.values()] if broker else []
    return len(statuses) == 1 and statuses[0] in ("refused", "filled", "submitted")


def what_ifs(sim) -> int:
    return len(sim.requests_named("placeOrder"))


def placed(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def run(sim, tmp_path, fraction):
    cfg = make_config(tmp_path, sim.port, **{"risk.max_margin_fraction": fraction,
                                             "risk.max_order_notional": None})
    return run_live_until(cfg, decided, strategy=OneBuy)


@pytest.mark.slow
def test_an_order_whose_what_if_margin_is_above_the_limit_is_refused(gateway_sim_factory,
                                                                     tmp_path, caplog,
                                                                     monkeypatch):
    sim = gateway_sim_factory(data="sample")
    monkeypatch.setattr(GatedIBBroker, "what_if_timeout", 60.0)  # a hang guard under load
    # 100 SPY at ~224: ~22,400 of notional, ~5,600 of margin at the simulator's 25%
    with caplog.at_level(logging.WARNING):
        res = run(sim, tmp_path, 0.004)  # 4,000 of a 1,000,000 account
    [order] = res.orders
    assert order["status"] == "refused"
    assert placed(sim) == [] and what_ifs(sim) == 1  # asked, never placed
    [line] = [r.getMessage() for r in caplog.records if "risk refused" in r.getMessage()]
    assert line.startswith(f"risk refused {order['orderRef']}: BUY 100 SPY refused: initial "
                           "margin ")
    assert "(IB's what-if) exceeds max_margin_fraction 0.40% of equity" in line
    assert "\n" not in line
    # the run summary (--json) says why, as the log does
    assert "initial margin" in order["reason"] and "max_margin_fraction" in order["reason"]


@pytest.mark.slow
def test_an_order_whose_margin_fits_is_sent(gateway_sim_factory, tmp_path, monkeypatch):
    sim = gateway_sim_factory(data="sample")
    monkeypatch.setattr(GatedIBBroker, "what_if_timeout", 60.0)  # a hang guard under load
    res = run(sim, tmp_path, 0.01)  # 10,000: the ~5,600 of margin fits, the notional would not
    [order] = res.orders
    assert order["status"] in ("filled", "submitted")
    assert [o.spec.totalQuantity for o in placed(sim)] == [100]
    assert [o.spec.whatIf for o in placed(sim)] == [False]


@pytest.mark.slow
def test_no_margin_from_ib_falls_back_to_the_notional_and_says_so_once(
        gateway_sim_factory, tmp_path, caplog, monkeypatch):
    sim = gateway_sim_factory(data="sample")
    sim.what_if_without_margin(1)
    monkeypatch.setattr(GatedIBBroker, "what_if_timeout", 1.0)  # the answer never comes
    with caplog.at_level(logging.WARNING):
        res = run(sim, tmp_path, 0.01)  # the margin would fit; the notional does not
    [order] = res.orders
    assert order["status"] == "refused"
    [line] = [r.getMessage() for r in caplog.records if "risk refused" in r.getMessage()]
    assert "(notional: IB gave no what-if margin) exceeds max_margin_fraction" in line
    assert placed(sim) == []
    said = [r.getMessage() for r in caplog.records if "no what-if margin for" in r.getMessage()]
    assert len(said) == 1 and "SPY" in said[0]


@pytest.mark.slow
def test_listed_in_shrink_the_margin_limit_sends_what_fits(gateway_sim_factory, tmp_path,
                                                           monkeypatch):
    sim = gateway_sim_factory(data="sample")
    monkeypatch.setattr(GatedIBBroker, "what_if_timeout", 60.0)  # a hang guard under load
    cfg = make_config(tmp_path, sim.port, **{"risk.max_margin_fraction": 0.004,
                                             "risk.max_order_notional": None,
                                             "risk.shrink": ["max_margin_fraction"]})
    res = run_live_until(cfg, decided, strategy=OneBuy)
    [order] = res.orders
    [at_gateway] = placed(sim)
    # IB's what-if for 100 is 25% of 100 x the price; what fits 4,000 of it is sent
    price = at_gateway.avg_fill_price or sim.market.quote(at_gateway.contract).last
    sent = at_gateway.spec.totalQuantity
    assert 0 < sent < 100 and order["quantity"] == sent
    assert sent == pytest.approx(100 * 4_000 / (0.25 * 100 * price), abs=1.01)
    with Journal(cfg.paths.journal) as j:
        [event] = j.events("shrunk")
    assert event["detail"]["sent"] == sent
    assert "to fit max_margin_fraction: initial margin" in event["detail"]["reason"]
