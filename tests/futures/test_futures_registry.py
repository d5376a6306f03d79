"""The roll registry: expiry, first notice and roll dates against the exchanges' published
rules (dates checked against CME Group's contract calendars), unknown roots named clearly."""

from __future__ import annotations

from datetime import date

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.futures.registry import (
    ContractMonth,
    business_offset,
    get_spec,
    is_business_day,
    known_roots,
)


def test_known_roots_and_their_contract_terms():
    assert known_roots() == ["CL", "ES", "GC", "NQ", "ZN"]
    es, cl, gc, zn = (get_spec(r) for r in ("ES", "CL", "GC", "ZN"))
    assert (es.exchange, es.currency, es.multiplier, es.settlement) == ("CME", "USD", 50.0, "cash")
    assert get_spec("nq").multiplier == 20.0
    assert (cl.exchange, cl.multiplier, cl.physical) == ("NYMEX", 1000.0, True)
    assert gc.months == (2, 4, 6, 8, 10, 12) and gc.exchange == "COMEX"
    assert zn.months == (3, 6, 9, 12) and zn.exchange == "CBOT"


@pytest.mark.parametrize("root, year, month, last_trade", [
    ("ES", 2024, 3, date(2024, 3, 15)),      # third Friday
    ("NQ", 2024, 12, date(2024, 12, 20)),
    ("CL", 2024, 6, date(2024, 5, 21)),      # 3 business days before May 25 (a Saturday: 24th)
    ("CL", 2024, 5, date(2024, 4, 22)),      # April 25 a Thursday: 3 business days before it
    ("CL", 2024, 3, date(2024, 2, 20)),      # Feb 25 a Sunday; Presidents' Day skipped
    ("CL", 2025, 1, date(2024, 12, 19)),
    ("GC", 2024, 6, date(2024, 6, 26)),      # third-last business day
    ("ZN", 2024, 3, date(2024, 3, 19)),      # 7 business days before the last business day
    ("ZN", 2024, 12, date(2024, 12, 19)),
])
def test_last_trade_dates_follow_the_exchange_rule(root, year, month, last_trade):
    assert get_spec(root).last_trade(year, month) == last_trade


def test_first_notice_is_the_last_business_day_of_the_prior_month_for_gc_and_zn():
    assert get_spec("GC").first_notice(2024, 6) == date(2024, 5, 31)
    assert get_spec("ZN").first_notice(2024, 3) == date(2024, 2, 29)
    assert get_spec("GC").first_notice(2024, 4) == date(2024, 3, 28)  # March 29: Good Friday
    assert get_spec("ES").first_notice(2024, 3) is None  # cash settled
    assert get_spec("CL").first_notice(2024, 6) is None  # CL's notice comes after last trade


def test_roll_dates_count_business_days_back_from_the_anchor():
    es, gc = get_spec("ES"), get_spec("GC")
    # ES (cash): 5 business days before the last trade date
    assert es.roll_date(2024, 3) == date(2024, 3, 8)
    # GC (physical): 5 business days before first notice (May 31 2024), Memorial Day skipped
    assert gc.roll_date(2024, 6) == date(2024, 5, 23)
    for root in known_roots():
        spec = get_spec(root)
        for m in spec.months:
            roll = spec.roll_date(2025, m)
            assert is_business_day(roll)
            assert roll < spec.roll_anchor(2025, m) <= spec.last_trade(2025, m)


def test_held_contract_switches_on_the_roll_date():
    es = get_spec("ES")
    assert es.held_contract(date(2024, 3, 7)) == ContractMonth("ES", 2024, 3)
    assert es.held_contract(date(2024, 3, 8)) == ContractMonth("ES", 2024, 6)
    assert es.held_contract(date(2024, 12, 31)) == ContractMonth("ES", 2025, 3)
    gc = get_spec("GC")
    assert gc.held_contract(date(2024, 1, 10)) == ContractMonth("GC", 2024, 2)  # not Jan
    rolls = es.roll_schedule(date(2024, 1, 1), date(2024, 12, 31))
    # June: Juneteenth (19th) is skipped, so 5 business days before the 21st is the 13th
    assert [r[0] for r in rolls] == [date(2024, 3, 8), date(2024, 6, 13), date(2024, 9, 13),
                                     date(2024, 12, 13)]
    assert ContractMonth("ES", 2024, 3).local_symbol == "ESH4"


def test_business_days_skip_exchange_holidays():
    assert not is_business_day(date(2024, 12, 25))
    assert business_offset(date(2024, 12, 26), -1) == date(2024, 12, 24)
    assert business_offset(date(2024, 12, 28), 0) == date(2024, 12, 27)  # Saturday -> Friday


def test_unknown_root_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_spec("XX")
    text = str(err.value)
    assert "'XX'" in text and "CL, ES, GC, NQ, ZN" in text
    with pytest.raises(ConfigError, match="not held"):
        get_spec("GC").contract(2024, 1)


def test_us_holidays_without_a_settlement_are_not_business_days():
    # Juneteenth 2024 (a Wednesday): ZN June 2024 last traded on June 18
    assert get_spec("ZN").last_trade(2024, 6) == date(2024, 6, 18)
    assert not is_business_day(date(2024, 5, 27))  # Memorial Day


@pytest.mark.parametrize("root, asked, month", [
    ("CL", "202403", (2024, 3)),     # a contract month
    ("CL", "20240220", (2024, 3)),   # CLH4's last trade date, in February
    ("CL", "20221220", (2023, 1)),   # CLF3: the month before, across a year end
    ("GC", "20240227", (2024, 2)),   # within the contract month
    ("ZN", "20240319", (2024, 3)),
    ("ES", "20240315", (2024, 3)),
    ("CL", "20240215", (2024, 2)),   # no contract's last trade date: its own month
])
def test_contract_of_reads_the_contract_month_of_ibs_expiry_field(root, asked, month):
    assert get_spec(root).contract_of(asked) == ContractMonth(root, *month)


@pytest.mark.parametrize("asked", ["", "2024", "202413", "abcdefgh", None])
def test_contract_of_is_none_for_what_is_not_an_expiry(asked):
    assert get_spec("CL").contract_of(asked) is None
