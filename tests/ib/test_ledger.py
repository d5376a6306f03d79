"""The ledger's arithmetic (IBBroker's money side) and the commission infos it books with;
the same accounting through the real client is in tests/futures/test_futures_ib_ledger.py."""

from __future__ import annotations

import pytest
from backtrader.position import Position

from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.iborder import CommInfoBook
from bt_ibkr.ib.ledger import Holding, Ledger


def contract(sec: str, mult: str = "") -> ibc.Contract:
    c = ibc.Contract()
    c.secType, c.multiplier = sec, mult
    return c


def test_only_a_future_is_settled_in_pnl():
    book = CommInfoBook()
    fut = book.of(contract("FUT", "50"))
    # backtrader ignores stocklike=False without a commtype: this was True for every FUT
    assert (fut.stocklike, fut.p.mult) == (False, 50.0)
    assert book.of(contract("STK")).stocklike
    assert book.of(contract("OPT", "100")).stocklike
    assert book.of(contract("FOP", "50")).stocklike  # premium paid in full
    assert book.of(None).stocklike and book.of(None).p.mult == 1.0


def test_getsize_buys_whole_units_of_price_times_multiplier():
    book = CommInfoBook()
    assert book.of(contract("FUT", "50")).getsize(4000.0, 500_000.0) == 2
    assert book.of(contract("OPT", "100")).getsize(2.5, 1_000.0) == 4
    assert book.of(contract("STK")).getsize(99.0, 1_000.0) == 10


def test_a_futures_round_trip_moves_the_account_cash_by_pnl_and_commission():
    led = Ledger()
    led.open(cash=1_000_000.0, value=1_000_000.0)
    es = CommInfoBook().of(contract("FUT", "50"))
    pos = Position()
    led.fill(pos, es, 3, 4000.0, 2.0)
    assert led.account_cash == pytest.approx(1_000_000.0 - 2.0)
    held = [Holding(pos.size, pos.price, 4010.0, 50.0, futures=True)]
    assert led.cash(held) == pytest.approx(1_000_000.0 - 2.0 - 3 * 4000.0 * 50)
    assert led.value(held) == pytest.approx(1_000_000.0 - 2.0 + 3 * 10.0 * 50)
    figures = led.fill(pos, es, -5, 4020.0, 3.0)  # close 3, open a short of 2
    assert (figures.closed, figures.opened, figures.pnl) == (-3, -2, pytest.approx(3 * 20 * 50))
    assert figures.closedcomm == pytest.approx(3.0 * 3 / 5)
    assert led.account_cash == pytest.approx(1_000_000.0 - 5.0 + 3 * 20.0 * 50)
    short = [Holding(pos.size, pos.price, 4000.0, 50.0, futures=True)]
    assert led.value(short) == pytest.approx(led.account_cash + 2 * 20.0 * 50)
    assert led.cash(short) == pytest.approx(led.account_cash + 2 * 4020.0 * 50)


def test_a_stock_fill_moves_the_traded_value():
    led = Ledger()
    led.open(cash=10_000.0, value=10_000.0)
    spy = CommInfoBook().of(contract("STK"))
    pos = Position()
    led.fill(pos, spy, 10, 100.0, 1.0)
    assert led.account_cash == pytest.approx(10_000.0 - 1_000.0 - 1.0)
    held = [Holding(pos.size, pos.price, 110.0, 1.0)]
    assert led.cash(held) == led.account_cash
    assert led.value(held) == pytest.approx(led.account_cash + 1_100.0)


def test_capital_offset_is_kept_by_drift_and_by_adopting_ibs_cash():
    led = Ledger()
    led.open(cash=900_000.0, value=1_000_000.0, capital=50_000.0)
    assert led.capital_offset == 950_000.0 and led.account_cash == -50_000.0
    assert led.drift(900_000.0, 1_000_000.0, 50_000.0) == {"cash": 0.0, "value": 0.0}
    # IB's cash rose by 1,000 (a dividend): adopting it keeps the capital left out
    assert led.adopt(901_000.0) == pytest.approx(1_000.0)
    assert led.account_cash == pytest.approx(-49_000.0)
    led.open(cash=900_000.0, value=1_000_000.0, capital=2_000_000.0)  # more than the account
    assert led.capital_offset == 0.0


class _Feed:
    def __init__(self, closes):
        self.closes = closes

    def __len__(self):
        return len(self.closes)

    @property
    def close(self):
        return {0: self.closes[-1]} if self.closes else {}


def test_mark_is_the_close_else_the_last_close_else_the_cost():
    led = Ledger()
    assert led.mark(1, None, 42.0) == 42.0
    assert led.mark(1, _Feed([10.0]), 42.0) == 10.0
    assert led.mark(1, _Feed([float("nan")]), 42.0) == 10.0
    assert led.mark(2, _Feed([]), 7.0) == 7.0
