"""The decision bar against the exchange calendar (exchange_calendars' NYSE sessions)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from bt_ibkr.calendars import last_completed_session, trading_day
from bt_ibkr.errors import AttentionError, StaleDataError
from bt_ibkr.freshness import check_decision_bar

# Tuesday 2017-01-03 09:30 New York: the session opened; Monday 2017-01-02 was a holiday
OPEN = datetime(2017, 1, 3, 14, 30)


@pytest.mark.parametrize("now,session,completed", [
    (datetime(2016, 12, 30, 20, 0), date(2016, 12, 30), date(2016, 12, 29)),  # 15:00 NY, open
    (datetime(2016, 12, 30, 22, 0), date(2016, 12, 30), date(2016, 12, 30)),  # after the close
    (datetime(2017, 1, 2, 15, 0), date(2016, 12, 30), date(2016, 12, 30)),    # holiday
    (datetime(2017, 1, 1, 12, 0), date(2016, 12, 30), date(2016, 12, 30)),    # weekend
    (OPEN, date(2017, 1, 3), date(2016, 12, 30)),
    (datetime(2017, 1, 4, 4, 0), date(2017, 1, 3), date(2017, 1, 3)),         # 23:00 NY
])
def test_sessions_follow_the_exchange_calendar(now, session, completed):
    assert trading_day(now) == session
    assert last_completed_session(now) == completed


def test_the_last_completed_session_is_the_decision_bar():
    check = check_decision_bar("SPY", [date(2016, 12, 29), date(2016, 12, 30)], OPEN)
    assert (check.expected, check.decision, check.left_out, check.notes) == (
        date(2016, 12, 30), date(2016, 12, 30), (), ())


def test_a_bar_six_weeks_old_is_refused_naming_symbol_bar_and_expected_date():
    with pytest.raises(StaleDataError) as err:
        check_decision_bar("SPY", [date(2016, 11, 17), date(2016, 11, 18)], OPEN)
    msg = str(err.value)
    assert "SPY" in msg and "2016-11-18" in msg and "2016-12-30" in msg
    assert isinstance(err.value, AttentionError)  # exit 4


def test_a_bar_of_the_session_still_open_is_left_out_and_reported():
    check = check_decision_bar("SPY", [date(2016, 12, 30), date(2017, 1, 3)], OPEN)
    assert check.decision == date(2016, 12, 30) and check.left_out == (date(2017, 1, 3),)
    assert "2017-01-03" in check.notes[0] and "not closed" in check.notes[0]


def test_a_bar_stamped_in_the_future_is_an_error_not_dropped():
    with pytest.raises(StaleDataError, match="2017-01-04 is in the future"):
        check_decision_bar("SPY", [date(2016, 12, 30), date(2017, 1, 4)], OPEN)


def test_a_bar_on_a_holiday_is_reported_as_mis_stamped():
    check = check_decision_bar("QQQ", [date(2016, 12, 30), date(2017, 1, 2)], OPEN)
    assert check.decision == date(2016, 12, 30) and check.kept == (date(2016, 12, 30),)
    assert any("2017-01-02" in n and "not XNYS sessions" in n for n in check.notes)


def test_no_bars_is_an_error_naming_the_symbol():
    with pytest.raises(StaleDataError, match="QQQ: no daily bars"):
        check_decision_bar("QQQ", [], OPEN)
