"""Safety rails: paper runs never trade live accounts, live runs need explicit confirmation."""

from __future__ import annotations

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.safety import (
    SafetyError,
    check_launch,
    check_trading_mode,
    is_paper_account,
    port_kind,
)


def test_account_and_port_kinds():
    assert is_paper_account("DU1234567") and is_paper_account("df7654321")
    assert not is_paper_account("U1234567") and not is_paper_account("F1234567")
    assert [port_kind(p) for p in (7497, 4002, 7496, 4001, 4010)] == [
        "paper", "paper", "live", "live", "unknown"]
    assert issubclass(SafetyError, ConfigError)


@pytest.mark.parametrize("port", [4002, 7497])
def test_paper_on_paper_port_returns_the_single_account(port):
    assert check_trading_mode("paper", port, ["DU1234567"], confirm_live=False) == "DU1234567"


@pytest.mark.parametrize("port, name", [(4001, "IB Gateway live"), (7496, "TWS live")])
def test_paper_refuses_live_ports(port, name):
    with pytest.raises(SafetyError) as err:
        check_trading_mode("paper", port, ["DU1234567"], confirm_live=False)
    msg = str(err.value)
    assert f"port {port} ({name})" in msg and "live-trading port" in msg
    assert "4002" in msg and "7497" in msg  # says where to connect instead


def test_paper_refuses_a_live_account_even_on_a_paper_port():
    with pytest.raises(SafetyError, match="U7654321, which is not a paper account"):
        check_trading_mode("paper", 4002, ["U7654321"], confirm_live=False)


def test_paper_refuses_a_login_that_mixes_live_accounts():
    with pytest.raises(SafetyError, match="manages U1, which is not a paper account"):
        check_trading_mode("paper", 4002, ["DU1", "U1 "], confirm_live=False, account="DU1")


def test_unknown_port_is_allowed_only_through_the_account_check():
    # e.g. the gateway simulator on a random port, or a custom port in TWS settings
    assert check_trading_mode("paper", 45123, ["DU555"], confirm_live=False) == "DU555"
    with pytest.raises(SafetyError, match="not a paper account"):
        check_trading_mode("paper", 45123, ["U555"], confirm_live=False)


def test_live_needs_confirmation():
    with pytest.raises(SafetyError, match="--confirm-live"):
        check_trading_mode("live", 4001, ["U1234567"], confirm_live=False)
    with pytest.raises(SafetyError, match="--confirm-live"):
        check_launch("live", 4001, confirm_live=False)
    assert check_trading_mode("live", 4001, ["U1234567"], confirm_live=True) == "U1234567"
    assert check_trading_mode("live", 7496, ["F1234567"], confirm_live=True) == "F1234567"


@pytest.mark.parametrize("port", [4002, 7497])
def test_live_refuses_paper_ports(port):
    with pytest.raises(SafetyError, match=f"--live refuses port {port} .*paper-trading port"):
        check_trading_mode("live", port, ["U1234567"], confirm_live=True)


def test_live_refuses_paper_accounts():
    with pytest.raises(SafetyError, match="--live refuses DU1234567: a paper account"):
        check_trading_mode("live", 4001, ["DU1234567"], confirm_live=True)


def test_several_accounts_need_an_explicit_choice():
    accounts = ["DF100", "DU101", "DU102"]
    with pytest.raises(SafetyError) as err:
        check_trading_mode("paper", 4002, accounts, confirm_live=False)
    assert "manages 3 accounts (DF100, DU101, DU102)" in str(err.value)
    assert "BT_IBKR_ACCOUNT" in str(err.value)
    assert check_trading_mode("paper", 4002, accounts, False, account="du102") == "DU102"
    with pytest.raises(SafetyError, match="account 'DU999' is not managed by this login"):
        check_trading_mode("paper", 4002, accounts, False, account="DU999")


def test_no_accounts_means_not_logged_in():
    with pytest.raises(SafetyError, match="no managed accounts: is it logged in"):
        check_trading_mode("paper", 4002, [], confirm_live=False)
    with pytest.raises(SafetyError, match="no managed accounts"):
        check_trading_mode("paper", 4002, ["", " "], confirm_live=False)


def test_unknown_mode():
    with pytest.raises(SafetyError, match="mode 'demo'"):
        check_launch("demo", 4002, False)
