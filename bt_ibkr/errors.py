"""Exception types shared by every layer of bt_ibkr.

Every error a user can cause (bad symbol, bad file, bad config, gateway down) is one of these,
and its message names the input and says what to do about it.
"""

from __future__ import annotations


class BtIbkrError(Exception):
    """Base class of all bt_ibkr errors."""


class ConfigError(BtIbkrError, ValueError):
    """A malformed or inconsistent configuration value (CLI flag, config file, param)."""


class DataError(BtIbkrError):
    """Price data could not be obtained or is unusable."""


class DataValidationError(DataError, ValueError):
    """A price frame broke a validation rule (DESIGN §9); the message names the row's date."""


class UnknownSymbolError(DataError, LookupError):
    """A data source does not know the requested symbol."""


class SourceUnavailableError(DataError):
    """A data source could not be reached or refused to serve (network, rate limit, gateway down)."""


class ConnectionFailedError(BtIbkrError, ConnectionError):
    """The IB gateway could not be reached or refused the session."""


class GatewayTimeoutError(ConnectionFailedError, SourceUnavailableError):
    """The gateway is connected but did not answer a request in time (or before the run's
    deadline); the message names the request. The live CLI exits 3 on it."""


class AccountChangedError(ConnectionFailedError):
    """After a reconnect the gateway was logged into another account, or another kind (paper /
    live), than the one the run's journal trades: nothing was sent on that connection and the
    run stopped (exit code 3). The message names both accounts."""


class AttentionError(BtIbkrError):
    """A run stopped on something a person must look at before trading again (exit code 4):
    stale or mis-stamped data, an order the gateway rejected, and the like."""


class StaleDataError(AttentionError, DataError):
    """The newest bar is older than the last completed session, or stamped in the future."""


class BadBarsError(AttentionError, DataError):
    """The gateway sent bars that cannot be traded on (NaN or non-positive prices, negative
    volume); the message names the symbol and the bar's time."""


class RecordsError(BtIbkrError, OSError):
    """A session record (:mod:`bt_ibkr.records`) cannot be written: a full disk, a read-only
    folder, something in the way of a part, a part that cannot be compressed. The message
    names the file and what to do; ``filename`` is that file and ``errno`` the OS error's
    number. A live run stops on it (exit code 2): a run whose record is missing cannot be
    replayed or audited."""

    def __init__(self, message: str, path: object, errno: int | None = None) -> None:
        super().__init__(message)
        self.filename = str(path)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0])
