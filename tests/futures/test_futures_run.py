"""The pure parts of a futures run (bt_ibkr.live.futures_run): which contract each futures
symbol trades, which gateway positions count, which attempt of a roll runs, and the bad inputs.
The run itself is tested end to end in test_futures_live_roll.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from bt_ibkr.errors import AttentionError, ConfigError
from bt_ibkr.futures.registry import ContractMonth
from bt_ibkr.ib.parsing import Fill
from bt_ibkr.live.futures_roll import RollPlan, roll_step
from bt_ibkr.live.futures_run import futures_legs, gateway_contracts, next_attempt
from bt_ibkr.live.journal import Journal

H4, M4 = ContractMonth("ES", 2024, 3), ContractMonth("ES", 2024, 6)
NOW = datetime(2024, 3, 11, 15, 0, tzinfo=UTC)


def test_each_futures_symbol_trades_the_contract_held_on_the_day():
    (before,) = futures_legs({"ES": "ES"}, ["ES", "SPY"], date(2024, 3, 7))
    (after,) = futures_legs({"ES": "ES"}, ["ES", "SPY"], date(2024, 3, 8))
    assert (before.contract, after.contract) == (H4, M4)
    assert after.dataname == "ES-FUT-CME-USD-202406-50"
    (gold,) = futures_legs({"GOLD": "GC"}, ["GOLD"], date(2024, 3, 1))
    assert gold.dataname == "GC-FUT-COMEX-USD-202404-100" and gold.symbol == "GOLD"
    assert "trading ESM4" in after.line() and "x50 USD per point" in after.line()


@pytest.mark.parametrize("futures, symbols, named", [
    ({"ES": "XX"}, ["ES"], "--futures ES: unknown futures root 'XX'"),
    ({"ES": "ES"}, ["SPY"], "--futures ES: not one of the run's symbols (SPY)"),
])
def test_bad_futures_are_refused_naming_the_input(futures, symbols, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        futures_legs(futures, symbols, date(2024, 3, 8))


def position(account, symbol, month, qty, sec="FUT"):
    contract = SimpleNamespace(secType=sec, symbol=symbol, lastTradeDateOrContractMonth=month)
    return SimpleNamespace(account=account, contract=contract, position=qty)


def test_only_this_accounts_futures_of_the_roots_count():
    rows = [position("DU1", "ES", "20240315", 3), position("DU2", "ES", "20240315", 5),
            position("DU1", "NQ", "20240315", 1), position("DU1", "ES", "", 9, sec="STK"),
            position("DU1", "ES", "20240621", 0), position("DU1", "ES", "202406", -2)]
    assert gateway_contracts(rows, "DU1", ["ES"]) == {H4: 3.0, M4: -2.0}


def test_a_roll_whose_close_filled_nothing_is_retried_as_the_next_attempt(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    plan = RollPlan(H4, M4, 3.0)
    assert next_attempt(journal, plan, set()) == plan  # never tried
    close = roll_step(journal, plan, NOW).intent
    journal.mark_sent(close.order_ref, 7)
    assert next_attempt(journal, plan, set()) == plan  # working: this attempt goes on
    journal.update_status(close.order_ref, "Cancelled")
    retry = next_attempt(journal, plan, set())
    assert retry.attempt == 2 and retry.refs[0] == "ROLL:ES:202403>202406:2:C"
    assert next_attempt(journal, plan, {(H4, M4)}) is None  # rolled by this run already
    journal.close()


def test_a_partly_filled_roll_rolls_the_rest_as_the_next_attempt(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    plan = RollPlan(H4, M4, 3.0)
    close = roll_step(journal, plan, NOW).intent
    journal.mark_sent(close.order_ref, 7)
    journal.record_fill(Fill("x1", close.order_ref, "ES", "SELL", 2, 5000.0, NOW))
    journal.update_status(close.order_ref, "Cancelled")
    opened = roll_step(journal, plan, NOW).intent
    journal.mark_sent(opened.order_ref, 8)
    journal.record_fill(Fill("x2", opened.order_ref, "ES", "BUY", 2, 5010.0, NOW))
    assert roll_step(journal, plan, NOW).action == "done"
    rest = next_attempt(journal, RollPlan(H4, M4, 1.0), set())  # 1 ESH4 still held
    assert (rest.attempt, rest.quantity) == (2, 1.0)
    journal.close()


def test_a_lost_close_is_never_retried_blind(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    plan = RollPlan(H4, M4, 3.0)
    close = roll_step(journal, plan, NOW).intent
    journal.mark_sent(close.order_ref, 7)
    journal.update_status(close.order_ref, "lost")
    with pytest.raises(AttentionError, match="LOST"):
        next_attempt(journal, plan, set())
    journal.close()
