"""yfinance source: one symbol's bars from Yahoo Finance as a canonical bar frame.

yfinance 1.x reports most failures by logging them and returning an empty frame rather than by
raising. ``download_yahoo`` listens to the ``yfinance`` logger during the call (and keeps those
records off the user's console) to tell "no such ticker" from "network down" from "rate limited".

Measured on a machine without internet (yfinance 1.7, curl_cffi): a failing
``yf.download('SPY', ...)`` returns an empty frame after ~0.03 s, because libcurl's DNS lookup
fails at once (``curl: (6) Could not resolve host``). Where DNS works but connections hang, each
HTTP request gives up after ``timeout`` seconds (default here 5 s, yfinance's own is 10 s).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from bt_ibkr.errors import ConfigError, DataError, SourceUnavailableError, UnknownSymbolError
from bt_ibkr.ib.bars import DAY, YF_INTERVALS, normalize_bar_size, parse_duration
from bt_ibkr.validation import as_date, validate_bars

__all__ = ["DEFAULT_TIMEOUT", "INTRADAY_INTERVALS", "YAHOO_INTERVALS", "YahooPlan",
           "download_yahoo", "yahoo_period", "yahoo_plan"]

log = logging.getLogger("bt_ibkr.yahoo")

DEFAULT_TIMEOUT = 5.0
"""Seconds each HTTP request to Yahoo may take before it is abandoned."""

YAHOO_INTERVALS = (
    "1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d", "1wk", "1mo", "3mo",
)  # fmt: skip
INTRADAY_INTERVALS = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h")

_FALLBACK_TZ = "America/New_York"

_RATE_LIMIT = re.compile(r"too many requests|rate limit|YFRateLimitError", re.IGNORECASE)
_NETWORK = re.compile(
    r"curl|could not resolve|resolve host|DNSError|ConnectionError|Connection refused|"
    r"connection reset|timed out|timeout|Network is unreachable|SSLError|SSL|"
    r"Failed to perform|NameResolution|Max retries|getaddrinfo",
    re.IGNORECASE,
)
_NO_TICKER = re.compile(
    r"delisted|no price data|no data found|symbol may be|not found|no timezone|"
    r"Quote not found|invalid|404",
    re.IGNORECASE,
)


_TICKER_PREFIX = re.compile(r"^\s*(\[[^\]]*\]|\$[\w^.=-]+):\s+")  # "['SPY']: ", "$SPY: "
_EXC_REPR = re.compile(r"^(\w+(?:Error|Exception|Timeout)?)\((['\"])(.*)\2\)$", re.DOTALL)


def _one_line(text: str, limit: int = 200) -> str:
    """Squeeze a yfinance/curl message into one readable line (no URLs, no ticker prefix)."""
    text = " ".join(str(text).split())
    text = _TICKER_PREFIX.sub("", text, count=1)
    match = _EXC_REPR.match(text)
    if match:  # "DNSError('Failed to perform, curl: (6) ...')" -> "DNSError: Failed to ..."
        text = f"{match.group(1)}: {match.group(3)}"
    text = re.sub(r"\s*See https?://\S+.*$", "", text, flags=re.IGNORECASE)
    text = text.replace("Failed to perform, ", "").strip(" .:")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pick(messages: list[str], pattern: re.Pattern) -> str:
    """The last message matching ``pattern`` (else the last message), as one line."""
    hits = [m for m in messages if pattern.search(m) and "Failed download" not in m]
    chosen = _one_line(hits[-1] if hits else (messages[-1] if messages else ""))
    curl = chosen.find("curl: (")
    return chosen[curl:] if curl >= 0 else chosen  # "curl: (6) Could not resolve host: ..."


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed third-party record must not break the download
            msg = str(record.msg)
        if msg.strip():
            self.messages.append(msg)


def _call_download(symbol: str, **kwargs) -> tuple[pd.DataFrame | None, list[str]]:
    """Run yfinance.download with its logger captured; return (frame, warning/error messages)."""
    import yfinance

    capture = _Capture()
    yf_logger = logging.getLogger("yfinance")
    old_propagate = yf_logger.propagate
    yf_logger.addHandler(capture)
    yf_logger.propagate = False
    try:
        with warnings.catch_warnings():
            # yfinance 1.7 trips pandas 3.1 deprecation warnings the user can do nothing about
            warnings.filterwarnings("ignore", module=r"yfinance(\.|$)")
            frame = yfinance.download(symbol, **kwargs)
    except Exception as exc:
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        if _is_rate_limit(exc) or _RATE_LIMIT.search(str(exc)):
            raise SourceUnavailableError(
                f"yahoo rate-limited the request for {symbol!r} ({reason}); wait a few minutes "
                f"and retry, or use the cache / --source sample"
            ) from exc
        raise SourceUnavailableError(
            f"yahoo unreachable (offline?): {reason}"
        ) from exc
    finally:
        yf_logger.removeHandler(capture)
        yf_logger.propagate = old_propagate
    for msg in capture.messages:
        log.debug("yfinance said: %s", _one_line(msg, 500))
    return frame, capture.messages


def _is_rate_limit(exc: BaseException) -> bool:
    try:
        from yfinance.exceptions import YFRateLimitError
    except ImportError:  # pragma: no cover - older yfinance
        return False
    return isinstance(exc, YFRateLimitError)


def _select_symbol(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Reduce yfinance's (Price, Ticker) MultiIndex columns to one ticker's price columns."""
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame
    names = list(frame.columns.names)
    if "Ticker" in names:
        level = names.index("Ticker")
    else:  # unnamed levels: the ticker level is the one without "Close"
        level = next(
            (i for i in range(frame.columns.nlevels)
             if "Close" not in frame.columns.get_level_values(i)),
            frame.columns.nlevels - 1,
        )
    tickers = list(dict.fromkeys(frame.columns.get_level_values(level)))
    wanted = next((t for t in tickers if str(t).upper() == symbol.upper()), None)
    if wanted is None:
        if len(tickers) != 1:
            raise DataError(
                f"yahoo {symbol}: the download holds tickers {tickers}, not {symbol!r}"
            )
        wanted = tickers[0]
    return frame.xs(wanted, axis=1, level=level)


def _classify_empty(symbol: str, start, end, interval: str, messages: list[str]) -> DataError:
    joined = " ".join(messages)
    if _RATE_LIMIT.search(joined):
        return SourceUnavailableError(
            f"yahoo rate-limited the request for {symbol!r} ({_pick(messages, _RATE_LIMIT)}); "
            f"wait a few minutes and retry, or use the cache / --source sample"
        )
    if _NETWORK.search(joined):
        return SourceUnavailableError(
            f"yahoo unreachable (offline?): {_pick(messages, _NETWORK)}"
        )
    reason = _pick(messages, _NO_TICKER)
    span = f"between {start} and {end}" if start or end else "for the default period"
    base = f"yfinance returned no rows for {symbol!r} {span} (interval {interval})"
    if messages and _NO_TICKER.search(joined):
        return UnknownSymbolError(
            f"{base}: {reason} - check the ticker on finance.yahoo.com or pick another --source"
        )
    detail = f": {reason}" if reason else ""
    return UnknownSymbolError(
        f"{base}{detail} - check the ticker on finance.yahoo.com and your network connection, "
        f"or pick another --source"
    )


def download_yahoo(
    symbol: str,
    start: date | str | None,
    end: date | str | None,
    interval: str = "1d",
    auto_adjust: bool = True,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """Download ``symbol``'s bars from Yahoo Finance via ``yfinance.download``.

    ``start`` and ``end`` are dates, both inclusive (yfinance's own ``end`` is exclusive; this
    adds the day). ``interval`` is a yfinance interval ("1d", "1wk", "1h", "5m", ...).
    ``auto_adjust`` True returns split/dividend adjusted OHLC (attrs adjusted True); False returns
    raw OHLC (yfinance's "Adj Close" is dropped, attrs adjusted False).

    Returns a canonical bar frame (source "yahoo", tz = the exchange zone yfinance reports,
    America/New_York when it reports none). Daily bars are dated by session, intraday bars are
    converted to UTC.

    Raises UnknownSymbolError when Yahoo returns no rows, SourceUnavailableError on network
    failures and rate limits (with the reason in one line), DataValidationError on a bad row.
    """
    if interval not in YAHOO_INTERVALS:
        raise DataError(
            f"yahoo {symbol}: interval {interval!r} is not one of {', '.join(YAHOO_INTERVALS)}"
        )
    intraday = interval in INTRADAY_INTERVALS
    start_d = as_date(start, f"yahoo {symbol}: start", DataError)
    end_d = as_date(end, f"yahoo {symbol}: end", DataError)
    end_excl = end_d + timedelta(days=1) if end_d is not None else None
    log.info("yahoo: downloading %s %s..%s interval %s auto_adjust=%s",
             symbol, start_d, end_d, interval, auto_adjust)
    frame, messages = _call_download(
        symbol,
        start=start_d.isoformat() if start_d else None,
        end=end_excl.isoformat() if end_excl else None,
        interval=interval,
        auto_adjust=auto_adjust,
        actions=False,
        progress=False,
        threads=False,
        ignore_tz=False,
        multi_level_index=True,
        timeout=timeout,
    )
    if frame is None or len(frame) == 0:
        raise _classify_empty(symbol, start_d, end_d, interval, messages)

    frame = _select_symbol(frame, symbol)
    if frame.dropna(how="all").empty:
        raise _classify_empty(symbol, start_d, end_d, interval, messages)

    index = pd.DatetimeIndex(frame.index)
    tz = str(index.tz) if index.tz is not None else _FALLBACK_TZ
    if not intraday and index.tz is not None:
        index = index.tz_localize(None)  # session date at 00:00 in the exchange zone
    frame = frame.set_axis(index, axis=0)
    frame = frame.rename(columns=lambda c: str(c).strip().lower())
    frame = frame.drop(columns=["adj close"], errors="ignore")
    return validate_bars(
        frame,
        f"yahoo {symbol}",
        intraday=intraday,
        attrs={"symbol": symbol, "source": "yahoo", "tz": tz, "adjusted": bool(auto_adjust)},
    )


# ---------------------------------------------------------------------------------------------
# IB-style requests mapped onto yfinance (the fallback of IBKRDataProvider)

#: yfinance's intraday limits: interval -> how many days back it serves at all
YF_LOOKBACK_DAYS: dict[str, int] = {"1m": 30, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "1h": 730}
#: yfinance serves at most this many days of 1-minute bars per request
YF_1M_PER_REQUEST_DAYS = 7
#: yfinance ``period`` values and the days each covers
YF_PERIODS: tuple[tuple[str, float], ...] = (
    ("1d", 1), ("5d", 5), ("1mo", 31), ("3mo", 92), ("6mo", 183), ("1y", 366), ("2y", 731),
    ("5y", 1827), ("10y", 3653), ("max", math.inf),
)  # fmt: skip


def yahoo_period(duration: str) -> str:
    """Return the shortest yfinance ``period`` that covers the IB ``duration`` ("1 Y" -> "1y")."""
    n, unit = parse_duration(duration)
    days = {"S": n / DAY, "D": n, "W": 7 * n, "M": 30.4 * n, "Y": 365.25 * n}[unit]
    return next(name for name, span in YF_PERIODS if days <= span)


@dataclass(frozen=True)
class YahooPlan:
    """How the fallback asks yfinance for an IB-style request.

    ``interval`` the yfinance interval, ``start``/``end`` inclusive dates, ``period`` the
    equivalent yfinance period (informational), ``pieces`` the (start, end) date ranges of the
    downloads (1-minute bars come at most 7 days per request).
    """

    interval: str
    start: date
    end: date
    period: str
    pieces: tuple[tuple[date, date], ...]


def yahoo_plan(duration: str | None, bar_size: str, start: date, end: date,
               today: date | None = None) -> YahooPlan:
    """Map an IB request (bar size, date range) onto yfinance, checking yfinance's limits.

    Raises ConfigError when yfinance has no such interval (e.g. "10 mins", "4 hours", seconds)
    or does not serve that much intraday history (1m: 30 days, 2m..30m: 60 days, 1h: 730 days).
    """
    size = normalize_bar_size(bar_size)
    interval = YF_INTERVALS.get(size)
    if interval is None:
        raise ConfigError(
            f"yfinance has no {size!r} bars (it offers {', '.join(YF_INTERVALS)}); pick one of "
            f"those bar sizes or get the data from IB"
        )
    today = today or datetime.now(UTC).date()
    limit = YF_LOOKBACK_DAYS.get(interval)
    if limit is not None and start < today - timedelta(days=limit - 1):
        raise ConfigError(
            f"yfinance serves {interval} bars for the last {limit} days only, but the request "
            f"starts {start}; ask for at most '{limit} D' of {size!r} bars, use a coarser bar "
            f"size, or get the data from IB"
        )
    pieces: list[tuple[date, date]] = [(start, end)]
    if interval == "1m":
        pieces, cur = [], start
        while cur <= end:
            hi = min(end, cur + timedelta(days=YF_1M_PER_REQUEST_DAYS - 1))
            pieces.append((cur, hi))
            cur = hi + timedelta(days=1)
    period = yahoo_period(duration) if duration else yahoo_period(f"{(end - start).days + 1} D")
    return YahooPlan(interval, start, end, period, tuple(pieces))
