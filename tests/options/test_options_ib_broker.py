"""Option orders through IBBroker at the gateway simulator: quantity in contracts, value in
premium x 100 per contract."""

from __future__ import annotations

import pytest
from helpers.ib import Live

DATANAME = "SPY-OPT-SMART-USD-20240119-470-C"


@pytest.mark.slow
def test_option_buy_and_sell_fill_at_ib_with_the_multiplier(gateway_sim):
    def look(s):  # what the strategy reads while it holds the options
        s.rec["held"] = dict(cash=s.broker.getcash(), size=s.getposition().size,
                             close=s.data.close[0],
                             position_value=s.broker.getvalue(datas=[s.data]))

    script = {2: lambda s: s.buy(size=3), 6: look, 8: lambda s: s.sell(size=3)}
    cash0 = gateway_sim.broker.cash
    with Live(gateway_sim, script, dataname=DATANAME) as live:
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
        # while the position is open the broker values it at the option's price x 100
        live.until(lambda: live.rec["value"] == pytest.approx(
            gateway_sim.broker.accounts.numbers()["NetLiquidation"], abs=0.01),
            what="the account update after the buy")
        [pos] = [p for p in gateway_sim.broker.positions() if p.position]
        assert (pos.position, pos.contract.secType, pos.contract.multiplier) == (3, "OPT", "100")
        item = gateway_sim.broker.accounts.portfolio_item(pos.contract)
        assert item.market_value == pytest.approx(3 * 100 * item.market_price)
        [buy] = gateway_sim.broker.executions()
        assert gateway_sim.broker.cash == pytest.approx(
            cash0 - 3 * 100 * buy.price - buy.commission, abs=0.01)
        live.step(6)
        live.until(lambda: "Completed" in live.statuses(live.ref(2)))
        live.until(lambda: live.rec["trades"], what="the closed trade")
    buy, sell = gateway_sim.broker.executions()
    # the strategy's cash paid the premium (x 100) and the position is worth price x 100
    held = live.rec["held"]
    assert held["size"] == 3
    assert held["cash"] == pytest.approx(cash0 - 3 * 100 * buy.price - buy.commission, abs=0.01)
    assert held["position_value"] == pytest.approx(3 * 100 * held["close"])
    assert (buy.side, buy.shares, sell.side, sell.shares) == ("BOT", 3, "SLD", 3)
    done = [o for o in live.rec["orders"] if o["status"] == "Completed"]
    assert [(o["size"], o["price"]) for o in done] == [(3, buy.price), (-3, sell.price)]
    # P&L counts 100 shares per contract
    pnl, pnlcomm = live.rec["trades"][0]
    assert pnl == pytest.approx(3 * 100 * (sell.price - buy.price))
    assert pnlcomm == pytest.approx(pnl - buy.commission - sell.commission)
    # the gateway's cash moved by premium x 100 per contract, and the strategy saw the same
    assert gateway_sim.broker.cash == pytest.approx(cash0 + pnlcomm, abs=0.01)
