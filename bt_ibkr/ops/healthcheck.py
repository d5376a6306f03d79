"""``python -m bt_ibkr.doctor --healthcheck``: is the gateway usable for this account, now?

A container or service health check needs one exit code, fast, and no false "healthy": after
IB Gateway restarts, its port can accept connections while the API answers nothing. So the
check opens an API connection, asks the gateway for its clock (``reqCurrentTime``, a real
request that only a logged-in gateway answers) and compares the managed accounts with the
expected account and kind (paper or live), using the same rules as the live runner.

Exit codes: 0 healthy; 1 unhealthy (nothing listens, no handshake, no answer to the request);
3 the gateway is logged into the wrong account or kind. One line on stdout says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from bt_ibkr.errors import BtIbkrError, ConfigError, ConnectionFailedError

__all__ = ["HEALTHY", "UNHEALTHY", "WRONG_ACCOUNT", "HealthResult", "gateway_health"]

HEALTHY, UNHEALTHY, WRONG_ACCOUNT = 0, 1, 3


@dataclass(frozen=True)
class HealthResult:
    """The check's ``code`` (0 / 1 / 3) and its one ``line``."""

    code: int
    line: str


def gateway_health(host: str, port: int, *, client_id: int | None = None,
                   account: str | None = None, mode: str = "paper",
                   timeout: float = 10.0) -> HealthResult:
    """Return the health of the gateway at ``host:port`` for ``account`` in ``mode``
    ("paper" or "live"; ``account`` None: any one account of that kind). Never raises for
    an unhealthy gateway; raises ConfigError for a bad ``mode``."""
    from bt_ibkr.ib.connection import IBConnection
    from bt_ibkr.live.safety import is_paper_account

    if mode not in ("paper", "live"):
        raise ConfigError(f"--mode {mode!r}: use paper or live")
    where = f"{host}:{port}"
    connection = IBConnection(host, port, client_id, connect_timeout=timeout,
                        request_timeout=timeout, name="bt_ibkr-health")
    try:
        try:
            accounts = connection.connect()
        except ConnectionFailedError as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            return HealthResult(UNHEALTHY, f"unhealthy: {where}: {reason}")
        try:
            now = connection.run(connection.server_time(timeout, strict=True), timeout=timeout + 5)
        except (BtIbkrError, TimeoutError) as exc:
            return HealthResult(UNHEALTHY, f"unhealthy: {where} accepted the connection but did "
                                f"not answer a request ({exc}); the gateway may be restarting "
                                "or waiting for a login (2FA)")
        managed = [a for a in accounts if a]
        if not managed:
            return HealthResult(UNHEALTHY, f"unhealthy: {where} reports no managed account: "
                                "not logged in")
        wrong_kind = [a for a in managed if is_paper_account(a) != (mode == "paper")]
        if account:
            if account.upper() not in (a.upper() for a in managed):
                return HealthResult(WRONG_ACCOUNT, f"wrong account: {where} is logged into "
                                    f"{', '.join(managed)}, not {account}")
            if is_paper_account(account) != (mode == "paper"):
                return HealthResult(WRONG_ACCOUNT, f"wrong kind: {account} is not a {mode} "
                                    "account")
        elif wrong_kind:
            return HealthResult(WRONG_ACCOUNT, f"wrong kind: {where} manages "
                                f"{', '.join(wrong_kind)}, not {mode} account(s)")
        return HealthResult(HEALTHY, f"healthy: {where} answers (gateway time "
                            f"{now:%Y-%m-%d %H:%M:%S} UTC), logged into {', '.join(managed)}")
    finally:
        connection.close()
