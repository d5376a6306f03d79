"""Safety rails that decide whether a run may trade the account it is connected to.

Two checks, both raising :class:`SafetyError` with a message that says what to do:

* :func:`check_launch` — before connecting: the mode, the port and the live confirmation.
* :func:`check_trading_mode` — after connecting: the same, plus the managed accounts the
  gateway reported (``managedAccounts``); returns the one account to trade.

IB's conventions these rely on:

* API ports (defaults, changeable in TWS / Gateway settings): TWS paper 7497, TWS live 7496,
  IB Gateway paper 4002, IB Gateway live 4001 (:data:`~bt_ibkr.ib.codes.PAPER_PORTS`,
  :data:`~bt_ibkr.ib.codes.LIVE_PORTS`). A port is only a hint, since users can change it;
  the account id is the proof.
* Account ids: a paper (simulated) account's id starts with ``D``: ``DU1234567`` for an
  individual or client paper account and ``DF1234567`` for a financial-advisor paper master
  account. Live ids start with ``U`` (individual / client) or ``F`` (advisor master). A paper
  login lists only paper accounts and a live login only live ones, so a mix is refused as a sign
  that something is off. Only ``DU`` and ``DF`` are accepted as paper
  (:data:`PAPER_ACCOUNT_PREFIXES`).

Read-only mode (decide, record, send nothing) is the journaled broker's
(:class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`).
"""

from __future__ import annotations

from collections.abc import Iterable

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.codes import LIVE_PORTS, PAPER_PORTS, PORT_NAMES
from bt_ibkr.ib.identity import PAPER_ACCOUNT_PREFIXES, is_paper_account  # noqa: F401
from bt_ibkr.live.config import MODES


class SafetyError(ConfigError):
    """A safety rail refused to trade: wrong account kind, wrong port, or live not confirmed."""


def port_kind(port: int) -> str:
    """Return ``"paper"``, ``"live"`` or ``"unknown"`` for an API port by IB's defaults."""
    if port in PAPER_PORTS:
        return "paper"
    if port in LIVE_PORTS:
        return "live"
    return "unknown"


def _port_label(port: int) -> str:
    name = PORT_NAMES.get(port)
    return f"port {port} ({name})" if name else f"port {port}"


def check_launch(mode: str, port: int, confirm_live: bool) -> None:
    """Check the mode, port and live confirmation before connecting.

    Raises:
        SafetyError: unknown mode; paper mode on a live port (7496/4001); live mode without
            ``confirm_live`` or on a paper port (7497/4002).
    """
    if mode not in MODES:
        raise SafetyError(f"mode {mode!r}: expected 'paper' or 'live'")
    kind = port_kind(port)
    if mode == "paper" and kind == "live":
        raise SafetyError(
            f"--paper refuses {_port_label(port)}: that is a live-trading port. Connect to the "
            "paper session instead (IB Gateway 4002, TWS 7497), or trade live on purpose with "
            "--live --confirm-live."
        )
    if mode == "live":
        if not confirm_live:
            raise SafetyError(
                "live trading needs an explicit confirmation: add --confirm-live to the --live "
                "command line (it is not accepted from config files or the environment). "
                "Use --paper to trade the paper account."
            )
        if kind == "paper":
            raise SafetyError(
                f"--live refuses {_port_label(port)}: that is a paper-trading port. Connect to "
                "the live session (IB Gateway 4001, TWS 7496) or run with --paper."
            )


def check_trading_mode(
    mode: str,
    port: int,
    accounts: Iterable[str],
    confirm_live: bool,
    account: str | None = None,
) -> str:
    """Return the account to trade after checking it against the mode, port and confirmation.

    Args:
        mode: ``"paper"`` or ``"live"``.
        port: the API port connected to (unknown ports are allowed: the account check decides).
        accounts: the gateway's managed accounts (``IB.managedAccounts()``).
        confirm_live: the explicit live confirmation from the command line.
        account: the configured account; required when the gateway manages several.

    Raises:
        SafetyError: every refusal of :func:`check_launch`; no managed accounts; the configured
            account is not managed by this login; several accounts and none chosen; a paper run
            seeing a live account or a live run seeing a paper account.
    """
    check_launch(mode, port, confirm_live)
    managed = [a.strip() for a in accounts if a and a.strip()]
    if not managed:
        raise SafetyError(
            f"the gateway on {_port_label(port)} reported no managed accounts: is it logged in? "
            "Log in to TWS / IB Gateway and try again."
        )
    if mode == "paper":
        live = [a for a in managed if not is_paper_account(a)]
        if live:
            raise SafetyError(
                f"--paper refuses to trade: the gateway on {_port_label(port)} manages "
                f"{', '.join(live)}, which {'is not a paper account' if len(live) == 1 else 'are not paper accounts'} "
                "(paper ids start with DU or DF). Log in to the paper account (the paper "
                "trading login of TWS / IB Gateway), or trade live on purpose with --live "
                "--confirm-live."
            )
    else:
        paper = [a for a in managed if is_paper_account(a)]
        if paper:
            raise SafetyError(
                f"--live refuses {', '.join(paper)}: a paper account (DU/DF) on "
                f"{_port_label(port)}. Use --paper for paper trading, or log in to the live "
                "account."
            )
    if account:
        chosen = account.strip()
        matches = [a for a in managed if a.upper() == chosen.upper()]
        if not matches:
            raise SafetyError(
                f"account {chosen!r} is not managed by this login (managed: "
                f"{', '.join(managed)}); fix connection.account / BT_IBKR_ACCOUNT / --account"
            )
        return matches[0]
    if len(managed) > 1:
        raise SafetyError(
            f"the gateway manages {len(managed)} accounts ({', '.join(managed)}): choose one "
            "with connection.account in the config, BT_IBKR_ACCOUNT or --account"
        )
    return managed[0]
