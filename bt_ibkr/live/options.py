"""How one paper/live run is driven, beside its :class:`~bt_ibkr.live.config.LiveConfig`.

:class:`RunOptions` holds what is not configuration of the account or the strategy: where the
run writes its summary, how long it may last, test hooks, the operator it reports to. It is
frozen and checked when built, so a run reads the same options from its start to its end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.journaled_broker import CRASH_POINTS
from bt_ibkr.live.recovery import MAX_INTENT_AGE
from bt_ibkr.records.tearsheet import SessionSelection

CRASH_ENV = "BT_IBKR_CRASH_AT"
"""Testing hook: ``after_journal`` / ``after_send`` make the runner SIGKILL itself there."""


@dataclass(frozen=True)
class RunOptions:
    """The options of one run outside its LiveConfig (every field has a default).

    Raises ConfigError when built with a ``max_runtime`` that is not a finite number of
    seconds > 0, or a ``crash_at`` that is not a crash point.
    """

    strategy: type | None = None
    """A Strategy class to use instead of ``config.strategy`` (looked up by name)."""

    simulate: bool = False
    """Start a GatewaySim in-process (sample data, paper account DU1234567) and connect to it;
    default journal/equity paths become ``state/simulate/...`` so simulated orders never mix
    with the real account's journal (:mod:`bt_ibkr.live.simulator`)."""

    sim_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra GatewaySim keyword arguments for ``simulate``."""

    max_runtime: float | None = None
    """Seconds after which the run stops (None: daily runs stop when their orders are
    finished, stream runs when :meth:`~bt_ibkr.live.runner.LiveRunner.stop` is called)."""

    json_path: Path | None = None
    """Where to write the run summary (``--json``); None: not written."""

    report_path: Path | None = None
    """Where to write the tearsheet of the recorded sessions (``--report``); None: none."""

    progress: Callable[[str], None] | None = None
    """Called with one status line at each step (the CLI prints them on stderr); every line
    is masked by the run's redactor first."""

    crash_at: str | None = None
    """Testing hook (None: ``$BT_IBKR_CRASH_AT``), see :mod:`bt_ibkr.live.journaled_broker`."""

    reconnect_backoff_max: float = 10.0
    """Longest wait between reconnect attempts, seconds."""

    max_intent_age: timedelta = MAX_INTENT_AGE
    """An intent journaled but never sent is resent after a restart only if younger than this
    (daily mode: the restarted Strategy decides the same bar again and finds it). Stream mode
    expires every such intent at once: a restarted stream run decides on new bars under new
    orderRefs, so an old one would never be sent and would only count against the risk limits
    as pending."""

    backfill_days: int = 730
    """Daily mode: calendar days of daily bars the decision feed backfills."""

    cache: Any = None
    """The parquet BarCache the warm-up and the stream backfill read and extend (the one
    backtests with ``--source ibkr`` share); None: the default cache (``$BT_IBKR_CACHE_DIR`` or
    ``.cache/bt_ibkr/bars``), except with ``simulate`` where simulated prices get their own
    cache beside the simulated journal; False: no cache, IB history only."""

    lift_halt: bool = False
    """Lift a daily-loss halt that an earlier run of the same trading day recorded in the
    journal (the operator's explicit decision; audited). Without it the halt holds across
    restarts until the trading day ends."""

    report_select: SessionSelection = field(default_factory=SessionSelection)
    """Which recorded sessions ``--report`` covers (one run, a date range, all runs of the
    journal); always of this run's kind, simulated or real."""

    operator: Any = None
    """A :class:`~bt_ibkr.ops.operator.Operator` that turns the run's audit records and bars
    into the status page, metrics and alerts (None: none)."""

    def __post_init__(self) -> None:
        runtime = self.max_runtime
        if runtime is not None and not (math.isfinite(runtime) and runtime > 0):
            raise ConfigError(f"max_runtime {runtime!r}: must be a finite number of seconds "
                              "> 0 (or None: no limit)")
        # normalised here, once: the fields read the same for the whole run
        set_ = object.__setattr__
        set_(self, "sim_options", dict(self.sim_options or {}))
        set_(self, "json_path", Path(self.json_path) if self.json_path else None)
        set_(self, "report_path", Path(self.report_path) if self.report_path else None)
        set_(self, "reconnect_backoff_max", float(self.reconnect_backoff_max))
        set_(self, "backfill_days", int(self.backfill_days))
        set_(self, "lift_halt", bool(self.lift_halt))
        set_(self, "report_select", self.report_select or SessionSelection())
        if self.crash_at and self.crash_at not in CRASH_POINTS:
            raise ConfigError(f"{CRASH_ENV}={self.crash_at!r}: expected one of "
                              f"{', '.join(CRASH_POINTS)} (a testing hook; unset it)")

    def crash_point(self, env: Mapping[str, str] | None = None) -> str | None:
        """Return the crash point of this run: ``crash_at``, else ``$BT_IBKR_CRASH_AT`` of
        ``env`` (default ``os.environ``), else None.

        Raises:
            ConfigError: the environment names no crash point (the message says to unset it).
        """
        if self.crash_at is not None:
            return self.crash_at
        point = (os.environ if env is None else env).get(CRASH_ENV) or None
        if point and point not in CRASH_POINTS:
            raise ConfigError(f"{CRASH_ENV}={point!r}: expected one of "
                              f"{', '.join(CRASH_POINTS)} (a testing hook; unset it)")
        return point


__all__ = ["CRASH_ENV", "RunOptions"]
