"""The live run's configuration as frozen dataclasses: :class:`LiveConfig` and its sections
(connection, risk, paths, sessions, ops) with their defaults.

Built and validated by :func:`bt_ibkr.live.config.load_config` (which also re-exports every
name here); this module holds only the data, so it imports nothing of the loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.masking import SECRET_NAME_RE

DEFAULT_PORT_BY_MODE: dict[str, int] = {"paper": 4002, "live": 4001}
"""Port used when none is configured: IB Gateway's paper or live port."""

MODES = ("paper", "live")
RUN_MODES = ("daily", "stream")

ENV_CONNECTION = {
    "BT_IBKR_HOST": "connection.host",
    "BT_IBKR_PORT": "connection.port",
    "BT_IBKR_CLIENT_ID": "connection.client_id",
    "BT_IBKR_ACCOUNT": "connection.account",
    "BT_IBKR_MODE": "mode",
}
"""Environment variables that override connection settings, and the key each one sets."""



@dataclass(frozen=True)
class ConnectionConfig:
    """Where the TWS / IB Gateway API listens, the clientId and account this run uses there.

    ``port=None`` means "the default for the mode": 4002 (Gateway paper) or 4001 (Gateway live);
    :func:`load_config` fills it in. ``readonly`` is passed to ib_async's ``connect(readonly=)``
    and must match TWS's "Read-Only API" setting; it is not the same as
    :attr:`LiveConfig.read_only` (decide but never send).
    """

    host: str = "127.0.0.1"
    port: int | None = None
    client_id: int = 1
    account: str | None = None
    timeout: float = 10.0
    readonly: bool = False

    @property
    def gateway(self) -> GatewayAddress:
        """Return host, port and clientId as the one :class:`GatewayAddress` value (port
        4002 until :func:`load_config` has filled in the mode's default)."""
        return GatewayAddress(self.host, self.port or 4002, self.client_id)


@dataclass(frozen=True)
class RiskConfig:
    """Risk limits checked before every order (see :mod:`bt_ibkr.live.risk`); ``None`` = no limit.

    ``max_position_per_symbol`` is in shares (absolute, long or short), the notionals in the
    account currency (x the contract multiplier), ``max_daily_loss`` a fraction of the
    start-of-day equity (0.03 = 3%), ``max_margin_fraction`` the largest initial margin of one
    order (IB's what-if; its notional when IB gives none) as a fraction of the equity.

    Sizing: ``capital`` is the equity the strategy sizes from on each run (at most the account's
    net liquidation value; None: all of it). ``ramp_sessions`` > 0 scales it up gradually: the
    first session uses ``ramp_start`` of it, rising in equal steps to all of it after
    ``ramp_sessions`` sessions. ``shrink`` names the limits (``max_order_notional``,
    ``max_position_notional``, ``max_position_per_symbol``, ``max_margin_fraction``) under
    which an order too large is shrunk to fit instead of refused (default: none, every limit
    refuses).
    """

    max_position_per_symbol: float | None = None
    max_position_notional: float | None = None
    max_order_notional: float | None = None
    max_daily_loss: float | None = 0.03
    max_margin_fraction: float | None = None
    cancel_on_exit: bool = True
    capital: float | None = None
    ramp_sessions: int = 0
    ramp_start: float = 0.25
    shrink: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PathsConfig:
    """Where a run keeps its state and records (relative paths are relative to the cwd).

    ``{account}`` stands for the account the run trades, filled in once it is known
    (:func:`bt_ibkr.live.account_paths.for_account`): by default each account has its own
    journal (and so its own session records and bar cache beside it), equity curve and
    reports folder. ``logs`` is shared by every account's runs (each run's audit lines
    say which account and journal it uses)."""

    journal: Path = Path("state/{account}/journal.sqlite")
    logs: Path = Path("logs")
    reports: Path = Path("reports/{account}")
    equity: Path = Path("state/{account}/equity.csv")


@dataclass(frozen=True)
class SessionsConfig:
    """The session records under ``<journal folder>/sessions/`` (bt_ibkr.records.sessions).

    ``part_mb``: the bar file is rotated into gzip'd parts past this many MiB. ``keep_days``:
    None keeps every record (the default); N deletes (``expired="delete"``) or moves to
    ``archive`` (``"archive"``; None: ``sessions-archive`` beside the sessions folder) the
    records not written for more than N days, at the start of each run (audited).
    """

    part_mb: float = 16.0
    keep_days: float | None = None
    expired: str = "delete"
    archive: Path | None = None


@dataclass(frozen=True)
class OpsConfig:
    """Running unattended (docs/DEPLOY.md): the status/health/metrics port (``http_port``
    None: off; ``http_host`` beyond loopback needs ``BT_IBKR_HTTP_TOKEN``), the gateway's daily
    restart window (``"23:40-00:10 America/New_York"``: a disconnect inside it is expected),
    and the service's decision time on the exchange calendar (``decide_at``: ``close+5m``,
    ``open-15m`` ...; ``calendar``: an exchange_calendars code)."""

    http_host: str = "127.0.0.1"
    http_port: int | None = None
    restart_window: str | None = None
    decide_at: str = "close+5m"
    calendar: str = "XNYS"


@dataclass(frozen=True)
class LiveConfig:
    """Everything a paper/live run needs, validated. Build it with :func:`load_config`.

    Frozen, as every section: a run reads the config it was given from start to end; a
    changed copy is ``dataclasses.replace(config, ...)``."""

    mode: str = "paper"
    run_mode: str = "daily"
    symbols: list[str] = field(default_factory=lambda: ["SPY"])
    #: futures symbols of the run and their roll-registry roots (bt_ibkr.live.futures_run)
    futures: dict[str, str] = field(default_factory=dict)
    strategy: str = "RegimeAwareEnsemble"
    params: dict[str, Any] = field(default_factory=dict)
    bar_size: str = "1 day"
    connection: ConnectionConfig = field(default_factory=ConnectionConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    confirm_live: bool = False
    read_only: bool = False
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    source: str | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        """The API port to connect to: the configured one or the mode's default."""
        if self.connection.port is not None:
            return self.connection.port
        return DEFAULT_PORT_BY_MODE[self.mode]

    def redacted(self) -> dict[str, Any]:
        """Return the whole configuration as plain JSON-able data, every secret shown as "***".

        Safe to print or write to a log: secret values never appear, and any value whose key
        looks like a secret (``password``, ``token``, ``api_key`` ...) is masked too.
        """
        out: dict[str, Any] = {
            "mode": self.mode,
            "run_mode": self.run_mode,
            "symbols": list(self.symbols),
            "futures": dict(self.futures),
            "strategy": {"name": self.strategy, "params": mask_keys(self.params)},
            "bar_size": self.bar_size,
            "connection": {f.name: getattr(self.connection, f.name) for f in fields(self.connection)},
            "risk": {f.name: getattr(self.risk, f.name) for f in fields(self.risk)},
            "paths": {f.name: str(getattr(self.paths, f.name)) for f in fields(self.paths)},
            "sessions": {f.name: getattr(self.sessions, f.name) for f in fields(self.sessions)},
            "ops": {f.name: getattr(self.ops, f.name) for f in fields(self.ops)},
            "confirm_live": self.confirm_live,
            "read_only": self.read_only,
            "secrets": {name: "***" for name in sorted(self.secrets)},
        }
        out["connection"]["port"] = self.port
        if self.sessions.archive is not None:
            out["sessions"]["archive"] = str(self.sessions.archive)
        if self.source:
            out["source"] = self.source
        return out


SECTION_TYPES: dict[str, type] = {"connection": ConnectionConfig, "risk": RiskConfig,
                                   "paths": PathsConfig, "sessions": SessionsConfig,
                                   "ops": OpsConfig}


def mask_keys(value: Any) -> Any:
    """Return ``value`` (JSON-like) with every value under a secret-looking key shown as "***"."""
    if isinstance(value, Mapping):
        return {
            k: ("***" if SECRET_NAME_RE.search(str(k)) else mask_keys(v)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_keys(v) for v in value]
    return value
