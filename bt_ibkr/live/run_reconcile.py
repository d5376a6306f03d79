"""The start of every paper/live run after connecting: match the journal with the gateway and
refuse to trade where this run could not follow what it finds.

:func:`reconcile_run` recovers (:func:`bt_ibkr.live.recovery.recover`: adopt our working
orders, journal their fills, bump order ids), audits the report, then stops the run on an
order carrying our ref that is not the one we decided, on an order of this journal that this
process cannot follow (:func:`check_client_ids`) or on another bt_ibkr journal trading the
same symbols in the account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bt_ibkr.errors import AttentionError
from bt_ibkr.ib.store import IBStore
from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.client_ids import ClientIdError, refusal, unfollowable
from bt_ibkr.live.config import LiveConfig
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.reconcile import ReconcileReport
from bt_ibkr.live.recovery import recover

log = logging.getLogger("bt_ibkr.live")


def reconcile_run(cfg: LiveConfig, store: IBStore, journal: Journal, audit: AuditLog,
                  account: str, max_intent_age: timedelta, say: Callable[[str], None],
                  progress: Callable[[str], None]) -> ReconcileReport:
    """Match the journal against the gateway; adopt our working orders; bump order ids; say
    what it did (``say``: log and status line; ``progress``: status line only). Return the
    report (also audited, before any of the checks below stops the run).

    Raises:
        AttentionError: an order carrying our ref is not the one we decided, or another
            bt_ibkr journal has orders on this run's symbols in ``account`` today.
        ClientIdError: an order of this journal works at the gateway under another clientId
            (:func:`check_client_ids`).
    """
    say("reconciling the journal with the gateway (orders, executions, positions)")
    # a stream run never decides an earlier run's bar again (RunOptions.max_intent_age): its
    # unsent intents expire instead of waiting for a resend
    age = max_intent_age if cfg.run_mode == "daily" else timedelta(0)
    rec = recover(store, journal, account, datetime.now(UTC), age)
    report = rec.report
    audit.write("reconcile", **report.to_dict())  # also when one of the checks below stops
    if report.conflicts:  # an order carrying our ref is not the one we decided: stop
        raise AttentionError(report.conflicts[0].removeprefix("!! "))
    try:
        check_client_ids(cfg, store, journal, rec.snapshots)
    except ClientIdError as exc:  # what was settled stays journaled; nothing was sent
        audit.write("run", event="refused", reason=str(exc))
        raise
    shared = {jid: sorted(set(syms) & set(cfg.symbols))
              for jid, syms in report.other_journals.items()}
    shared = {jid: syms for jid, syms in shared.items() if syms}
    if shared:  # another bt_ibkr journal trades these symbols on this account: stop
        jid, syms = next(iter(shared.items()))
        who = "refs bt1:..." if jid == "bt1" else f"bt2:{jid}"
        raise AttentionError(
            f"another bt_ibkr journal ({who}) has orders on {', '.join(syms)} in account "
            f"{account} today; bt_ibkr trades one journal per account, so this run sends "
            "nothing. If that journal was lost, run with --journal at its old path (it "
            "recognises its orders); if another program trades these symbols, give this "
            "one its own account")
    for line in report.summary().splitlines():
        (log.warning if line.startswith("!!") else log.info)("reconcile: %s", line)
        progress(f"reconcile: {line}")
    if rec.highest_id:
        log.info("order ids: next id is above %d (highest used)", rec.highest_id)
    if rec.followed:
        say(f"following {len(rec.followed)} working order(s) of earlier runs: "
            + ", ".join(rec.followed))
    return report


def check_client_ids(cfg: LiveConfig, store: IBStore, journal: Journal,
                     snapshots: list) -> None:
    """Refuse to trade (:class:`~bt_ibkr.live.client_ids.ClientIdError`, exit 2) when one
    of this journal's orders still works at the gateway and this process does not follow
    it: IB sends an order's status and fills only to the client that placed it
    (``reqAllOpenOrders`` shows it to others, read-only), so a run under another clientId
    would never see it fill and would refuse that side of the symbol for ever."""
    stuck = unfollowable(journal, snapshots, store.follows_order)
    if stuck:
        rec, client_id = stuck[0]
        raise ClientIdError(refusal(cfg.paths.journal, rec, client_id, store.clientId))


__all__ = ["check_client_ids", "reconcile_run"]
