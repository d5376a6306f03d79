"""Option expiry in a backtest: OTM expires worthless, ITM is exercised into shares (equity
options) or cash-settled at intrinsic value (index options), on the first bar after expiry."""

from __future__ import annotations

from datetime import date

import backtrader as bt
import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.options import ExpiryRule
from bt_ibkr.options.expiry import OptionCommInfo, OptionsBacktestBroker

DAYS = pd.bdate_range("2024-01-08", periods=13)  # expiry Fri 2024-01-19 is DAYS[9]
EXPIRY = date(2024, 1, 19)


def _feed(closes, name):
    df = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes,
                       "volume": 1000.0}, index=DAYS[:len(closes)])
    return bt.feeds.PandasData(dataname=df, name=name)


class Hold(bt.Strategy):
    """Buys ``qty`` option contracts on the first bar and records what happens."""

    params = (("qty", 2), ("rec", None))

    def nextstart(self):
        order = self.buy if self.p.qty > 0 else self.sell
        order(data=self.datas[1], size=abs(self.p.qty))
        self.next()

    def notify_order(self, order):
        if order.status == order.Completed:
            self.p.rec["fills"].append((order.data._name, order.executed.size,
                                        order.executed.price, order.info.get("reason", None),
                                        bt.num2date(order.executed.dt).date()))

    def next(self):
        self.p.rec["cash"].append(self.broker.getcash())
        self.p.rec["pos"].append((self.getposition(self.datas[0]).size,
                                  self.getposition(self.datas[1]).size))


def _run(under_closes, option_closes, dataname, qty=2, under_name="SPY"):
    rec = {"fills": [], "cash": [], "pos": []}
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = OptionsBacktestBroker(cash=100_000.0)
    und = _feed(under_closes, under_name)
    opt = _feed(option_closes, "OPT")
    cerebro.adddata(und)
    cerebro.adddata(opt)
    cerebro.broker.addcommissioninfo(OptionCommInfo(mult=100.0), name="OPT")
    cerebro.broker.add_expiry(ExpiryRule.from_dataname(dataname, option=opt, underlying=und))
    cerebro.addstrategy(Hold, qty=qty, rec=rec)
    cerebro.run()
    rec["value"] = cerebro.broker.getvalue()
    rec["final_cash"] = cerebro.broker.getcash()
    return rec


def _path(expiry_close, n=len(DAYS)):
    return [470.0] * 9 + [expiry_close] + [expiry_close + 1.0] * (n - 10)


def test_itm_equity_call_is_exercised_into_shares_at_the_strike():
    # the option series stops at expiry; bought at 5.00 (next open) x 2 contracts
    rec = _run(_path(480.0), [5.0] * 10, "SPY-OPT-SMART-USD-20240119-470-C-100")
    buy, close_opt, shares = rec["fills"]
    assert buy[:3] == ("OPT", 2, 5.0)
    assert close_opt[:3] == ("OPT", -2, 0.0) and "exercised" in close_opt[3]
    assert shares[:3] == ("SPY", 200, 470.0) and shares[4] == date(2024, 1, 22)
    assert rec["pos"][-1] == (200, 0)
    # cash: premium 2 x 5 x 100 paid, 200 shares bought at 470
    assert rec["final_cash"] == pytest.approx(100_000 - 1_000 - 94_000)
    # value: the shares at the last close (481)
    assert rec["value"] == pytest.approx(rec["final_cash"] + 200 * 481.0)


def test_otm_equity_put_expires_worthless():
    rec = _run(_path(480.0), [1.0] * 10, "SPY-OPT-SMART-USD-20240119-470-P-100")
    assert [f[:3] for f in rec["fills"]] == [("OPT", 2, 1.0), ("OPT", -2, 0.0)]
    assert "expired worthless" in rec["fills"][1][3]
    assert rec["pos"][-1] == (0, 0)
    assert rec["final_cash"] == pytest.approx(100_000 - 200.0)
    assert rec["value"] == pytest.approx(rec["final_cash"])


def test_itm_index_put_is_cash_settled_at_intrinsic_value():
    und = [4700.0] * 9 + [4650.5] + [4600.0] * 3
    rec = _run(und, [30.0] * 10, "SPX-OPT-SMART-USD-20240119-4700-P-100",
               under_name="SPX-IND-CBOE-USD")
    assert [f[:3] for f in rec["fills"]] == [("OPT", 2, 30.0), ("OPT", -2, 49.5)]
    assert "cash-settled" in rec["fills"][1][3]
    assert rec["pos"][-1] == (0, 0)  # no index "shares"
    assert rec["final_cash"] == pytest.approx(100_000 - 6_000 + 2 * 100 * 49.5)


def test_otm_index_call_expires_worthless_and_a_cent_itm_is_exercised():
    und = [4700.0] * 9 + [4699.99] + [4800.0] * 3
    rec = _run(und, [30.0] * 10, "SPX-OPT-SMART-USD-20240119-4700-C",
               under_name="SPX-IND-CBOE-USD")
    assert rec["fills"][1][2] == 0.0 and "expired worthless" in rec["fills"][1][3]
    und = [4700.0] * 9 + [4700.005] + [4800.0] * 3  # in the money by less than a cent
    rec = _run(und, [30.0] * 10, "SPX-OPT-SMART-USD-20240119-4700-C",
               under_name="SPX-IND-CBOE-USD")
    assert rec["fills"][1][2] == 0.0 and "expired worthless" in rec["fills"][1][3]
    und = [4700.0] * 9 + [4700.01] + [4800.0] * 3
    rec = _run(und, [30.0] * 10, "SPX-OPT-SMART-USD-20240119-4700-C",
               under_name="SPX-IND-CBOE-USD")
    assert rec["fills"][1][2] == pytest.approx(0.01) and "cash-settled" in rec["fills"][1][3]


def test_short_equity_put_is_assigned_shares():
    rec = _run(_path(460.0), [4.0] * 10, "SPY-OPT-SMART-USD-20240119-470-P", qty=-1)
    assert [f[:3] for f in rec["fills"]] == [("OPT", -1, 4.0), ("OPT", 1, 0.0),
                                            ("SPY", 100, 470.0)]
    assert "assigned" in rec["fills"][2][3]
    assert rec["final_cash"] == pytest.approx(100_000 + 400.0 - 47_000.0)


def test_settlement_follows_the_underlying_unless_given():
    named = [(_feed([1.0] * 13, n), n) for n in ("SPX-IND-CBOE-USD", "^GSPC", "SPY")]
    dn = "SPX-OPT-SMART-USD-20240119-4700-C"
    assert [ExpiryRule.from_dataname(dn, None, d).settlement for d, _ in named] == [
        "cash", "cash", "physical"]
    assert ExpiryRule.from_dataname(dn, None, named[2][0], settlement="cash").settlement == "cash"


def test_rules_refuse_bad_input_by_name():
    with pytest.raises(ConfigError, match="'SPY-STK-SMART-USD' is not an option"):
        ExpiryRule.from_dataname("SPY-STK-SMART-USD", option=None, underlying=None)
    with pytest.raises(ConfigError, match="settlement 'both'"):
        ExpiryRule(option=None, underlying=None, expiry=EXPIRY, strike=470.0, right="C",
                   settlement="both")
