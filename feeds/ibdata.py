"""IBData: backtrader's Interactive Brokers data feed, on bt_ibkr's IBStore (ib_async).

Same parameters and ``dataname`` grammar as ``backtrader.feeds.IBData`` (see
:mod:`bt_ibkr.ib.contracts`), same notifications (CONNECTED, DELAYED, LIVE, CONNBROKEN,
DISCONNECTED, NOTSUBSCRIBED; IB's error code and text are passed as extra arguments to
``notify_data``).

* ``historical=True``: downloads ``fromdate``..``todate`` at the feed's timeframe/compression,
  through the store's historical path (chunked, paced, retried, cached), then ends.
* live (default): subscribes to 5-second real-time bars (``rtbar=True``) or ticks, backfills
  from ``backfill_from`` and/or IB history from ``fromdate`` (``backfill_start``), then
  streams. After a reconnect (or IB's 1101/1102) the gap is backfilled (``backfill``) with
  neither duplicate nor missing bars. ``_load`` waits at most ``qcheck`` seconds and returns
  None so backtrader's live loop keeps turning.

``IBData(dataname=..., store=None, **store_params)``: without ``store`` it shares the default
IBStore, like backtrader's singleton; ``data.store`` is it (``data.ib`` too, backtrader's
name). Params beyond backtrader's: ``store``, ``hist_timeout`` (seconds without any history
reply before ``SourceUnavailableError``) and ``decide_last`` (True: LIVE is reported right
before the last ``backfill_from`` bar, so the Strategy decides and trades on it as on a live
bar, as the daily decision feed does with its last completed bar: a restarted process re-makes
the decision of the bar it stopped after, and its journal finds that decision's orderRef and
sends nothing twice). History goes through the store's ``cache`` when it
has one, filed under ``dataname``.

Several live feeds in one Cerebro hand the Strategy each bar time together (``syncfeeds``,
default True; :mod:`feeds.live_sync` explains why backtrader alone does not and how): a feed
holds its bar of time T until every other synchronised feed has been handed its bar of T, at
most until the feed clock (the newest live bar time of any of them) passes T + ``syncwait``
seconds (default 5: one real-time bar), or ``synctimeout`` seconds of the machine's clock when
every stream has stalled (default 15); a feed still backfilling is waited for up to its
``hist_timeout``. A feed given up on is reported through ``report`` (a callable given one line;
default: a warning on the ``bt_ibkr.feeds`` logger) naming it and T, and its late bars are
merged into its next bar, never delivered on their own (which would run T twice) nor dropped.
``data.livesync`` is the group (None when the feed takes no part: historical, ticks,
``syncfeeds=False``).

Time stamps: lines hold UTC; the feed's ``tz`` defaults to the contract's
``timeZoneId``. Intraday bars (history and 5-second bars) are stamped at their END, as
backtrader stamps bars, so a resampled bar is delivered with its last component; daily bars
are stamped at ``sessionend``, which defaults to the close of the contract's ``liquidHours``
(16:00 for US stocks) instead of backtrader's 23:59:59.999989, so a live daily resample closes
at the market close. Ticks are stamped with the receive time moved to the gateway's clock.
"""

from __future__ import annotations

import math
import queue
import time
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from backtrader import TimeFrame, date2num, num2date
from backtrader.feed import DataBase
from backtrader.utils.dateintern import tzparse

from bt_ibkr.errors import ConfigError, SourceUnavailableError
from bt_ibkr.ib.bars import bar_size
from bt_ibkr.ib.codes import (
    CONNECTIVITY_LOST,
    CONNECTIVITY_RESTORED,
    CONNECTIVITY_RESTORED_DATA_LOST,
    DELAYED_DATA,
    HISTORICAL_DATA_ERROR,
    NOT_SUBSCRIBED,
)
from bt_ibkr.ib.contracts import parse_dataname
from bt_ibkr.ib.events import (
    BarReceived,
    ConnectionGaveUp,
    ConnectionLost,
    ConnectionRestored,
    ConnectivityNotice,
    RequestFailed,
    StoreClosed,
    SwitchedToDelayed,
)
from bt_ibkr.ib.parsing import DEFAULT_SESSIONEND as _DEFAULT_SESSIONEND
from bt_ibkr.ib.store import STORE_PARAMS, IBStore
from feeds.live_sync import HISTORY, LIVE, LiveBarSync


class IBData(DataBase):
    """Interactive Brokers data feed (see the module docstring)."""

    params = (
        ("sectype", "STK"),
        ("exchange", "SMART"),
        ("currency", ""),
        ("rtbar", False),
        ("historical", False),
        ("what", None),
        ("useRTH", False),
        ("qcheck", 0.5),
        ("backfill_start", True),
        ("backfill", True),
        ("backfill_from", None),
        ("latethrough", False),
        ("tradename", None),
        ("store", None),
        ("hist_timeout", 600.0),
        ("decide_last", False),
        ("syncfeeds", True),
        ("syncwait", 5.0),
        ("synctimeout", 15.0),
        ("report", None),
    )

    RTBAR_MINSIZE = (TimeFrame.Seconds, 5)
    _ST_FROM, _ST_START, _ST_LIVE, _ST_HISTORBACK, _ST_OVER = range(5)

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(STORE_PARAMS))
        if unknown:
            raise ConfigError(f"unknown IBData parameter(s) {unknown}")
        for param in ("syncwait", "synctimeout"):
            value = getattr(self.p, param)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"IBData {param}={value!r}: must be a finite number of "
                                  "seconds > 0")
        self.store = self.p.store if self.p.store is not None else IBStore.default(**kwargs)
        self.precontract = parse_dataname(
            self.p.dataname, self.p.sectype, self.p.exchange, self.p.currency
        )
        self.pretradecontract = (
            parse_dataname(self.p.tradename, self.p.sectype, self.p.exchange, self.p.currency)
            if self.p.tradename
            else None
        )
        self.contract = self.contractdetails = None
        self.tradecontract = self.tradecontractdetails = None
        self._store_started = False
        self._stream = None
        self.qlive: queue.Queue = queue.Queue()
        self.qhist: queue.Queue | None = None
        self._state = self._ST_OVER
        self._sync: LiveBarSync | None = None
        self._reconn_pending = False

    @property
    def ib(self) -> IBStore:
        """The store (backtrader's attribute name for it)."""
        return self.store

    @property
    def livesync(self) -> LiveBarSync | None:
        """Return the LiveBarSync this feed takes part in (None: it takes no part)."""
        return self._sync

    def sync_phase(self) -> str | None:
        """Return what the feed is loading for LiveBarSync: ``"history"`` (backfilling),
        ``"live"``, or None (not loading bars it could be waited for: not started yet,
        replaying ``backfill_from``, waiting for a reconnect, ended)."""
        if self._state == self._ST_HISTORBACK:
            return HISTORY
        if self._state == self._ST_LIVE and not self._reconn_pending:
            return LIVE
        return None

    # ------------------------------------------------------------------ backtrader hooks
    def setenvironment(self, env) -> None:
        super().setenvironment(env)
        env.addstore(self.store)

    def islive(self) -> bool:
        return not self.p.historical

    def haslivedata(self) -> bool:
        return self._state == self._ST_LIVE and not self.qlive.empty()

    def _check(self, forcedata=None) -> None:
        """backtrader's hook to close a resampled bar (its retry passes the master feed as
        ``forcedata``); skipped when this feed's own bar of the master's time has arrived,
        so the load that follows completes the bar with it (:mod:`feeds.live_sync`)."""
        if forcedata is not None and self._sync is not None and len(forcedata):
            when = num2date(forcedata.datetime[0]) - timedelta(milliseconds=1)
            if self._sync.has_arrived(self, when):
                return
        super()._check(forcedata=forcedata)

    def _gettz(self):
        if self.p.tz is not None:
            return tzparse(self.p.tz)
        if self.contractdetails is None or not self.contractdetails.timeZoneId:
            return None
        return tzparse(self.contractdetails.timeZoneId)

    def _timeoffset(self):
        return self.store.timeoffset()

    def start(self) -> None:
        """Connect through the store, qualify the contract(s) and prepare the first request.

        Raises ``UnknownSymbolError``/``AmbiguousContractError`` when IB has none or several
        contracts for ``dataname`` and ``ConnectionFailedError`` when the gateway is down.
        """
        super().start()
        self.qhist = None
        self._stream = None
        self._lastdt = float("-inf")
        self._reconn_pending = False
        tfcomp = (self._timeframe, self._compression)
        self._usertvol = (not self.p.rtbar) or tfcomp < self.RTBAR_MINSIZE
        syncs = (self.p.syncfeeds and not self.p.historical and not self._usertvol
                 and getattr(self, "_env", None) is not None)
        self._sync = LiveBarSync.join(self) if syncs else None
        self.qlive = self._sync.queue(self, LIVE) if self._sync else queue.Queue()
        self.store.start(data=self)
        self._store_started = True
        self.notifs.append((self.CONNECTED, (), {}))
        name = self.p.dataname
        cd = self.store.qualify(self.precontract.to_contract(), name)
        self.contract, self.contractdetails = cd.contract, cd
        if self.pretradecontract is None:
            self.tradecontract, self.tradecontractdetails = self.contract, self.contractdetails
        else:
            tcd = self.store.qualify(self.pretradecontract.to_contract(), self.p.tradename)
            self.tradecontract, self.tradecontractdetails = tcd.contract, tcd
        self._derive_sessionend()
        self._start_finish()
        self._from_ahead = None  # decide_last: the backfill_from bar after the current one
        if self.p.backfill_from is not None:
            self._state = self._ST_FROM
            self.p.backfill_from.setenvironment(self._env)
            self.p.backfill_from._start()
        else:
            self._state = self._ST_START

    def _derive_sessionend(self) -> None:
        """Use the contract's liquid-hours close as ``sessionend`` when the user set none.

        backtrader's default session end (23:59:59.99999) would hold a live daily resample
        until midnight; IB's ``liquidHours`` ("20240102:0930-20240102:1600;...") knows better.
        """
        if self.p.sessionend != _DEFAULT_SESSIONEND or self.contractdetails is None:
            return
        hours = getattr(self.contractdetails, "liquidHours", "") or ""
        for segment in hours.split(";"):
            if "-" not in segment or "CLOSED" in segment:
                continue
            close = segment.split("-", 1)[1]
            hhmm = close.split(":", 1)[-1]
            if len(hhmm) == 4 and hhmm.isdigit():
                self.p.sessionend = dtime(int(hhmm[:2]), int(hhmm[2:]))
                return

    def stop(self) -> None:
        """Cancel the live stream and release the store."""
        super().stop()
        if self._sync is not None:
            self._sync.leave(self)
            self._sync = None
        if self._stream is not None:
            self.store.cancel_live(self._stream)
            self._stream = None
        if self._store_started:
            self._store_started = False
            self.store.stop()
        self._state = self._ST_OVER

    # ------------------------------------------------------------------ requests
    def _what(self) -> str:
        if self.p.what:
            return self.p.what
        if self.contract is not None and self.contract.secType in ("CASH", "CFD"):
            return "BID"
        return "TRADES"

    def _barsize(self) -> str | None:
        try:
            return bar_size(self._timeframe, self._compression)
        except ConfigError:
            return None

    def _request_history(self, start: datetime | None, end: datetime | None) -> bool:
        barsize = self._barsize()
        if barsize is None:
            return False
        self.qhist = self.store.request_history(
            self.contract, start, end, barsize, what=self._what(), use_rth=self.p.useRTH,
            tz=self._tz, sessionend=self.p.sessionend, name=self.p.dataname,
            q=self._sync.queue(self, HISTORY) if self._sync else None,
        )
        self._state = self._ST_HISTORBACK
        self._hist_since = time.monotonic()
        return True

    def _st_start(self) -> bool:
        start = num2date(self.fromdate) if self.fromdate > float("-inf") else None
        if self._lastdt > float("-inf"):
            start = num2date(self._lastdt)
        if self.p.historical:
            self.put_notification(self.DELAYED)
            end = num2date(self.todate) if self.todate < float("inf") else None
            if not self._request_history(start, end):
                raise ConfigError(
                    f"IBData {self.p.dataname!r}: IB has no historical bars for timeframe "
                    f"{TimeFrame.getname(self._timeframe, self._compression)} x{self._compression}"
                )
            return True
        self._stream = self.store.subscribe_live(
            self.contract, rtbar=not self._usertvol, what=self.p.what, use_rth=self.p.useRTH,
            q=self.qlive,
        )
        if self.p.backfill_start and self._request_history(start, None):
            self.put_notification(self.DELAYED)
        else:
            self._state = self._ST_LIVE
        return True

    # ------------------------------------------------------------------ loading
    def _load(self):
        if self.contract is None or self._state == self._ST_OVER:
            return False
        while True:
            if self._state == self._ST_LIVE:
                ret = self._load_live()
                if ret == "again":
                    continue
                return ret
            if self._state == self._ST_HISTORBACK:
                ret = self._load_hist()
                if ret == "again":
                    continue
                return ret
            if self._state == self._ST_FROM:
                bar = self._from_ahead or self._from_next()
                if bar is None:
                    self._state = self._ST_START
                    continue
                if self.p.decide_last:  # look one bar ahead: is this the last one?
                    self._from_ahead = self._from_next()
                    if self._from_ahead is None:
                        self.put_notification(self.LIVE)  # the decision bar
                for alias, value in bar.items():
                    getattr(self.lines, alias)[0] = value
                self._lastdt = self.lines.datetime[0]
                return True
            if self._state == self._ST_START:
                self._st_start()
                continue
            return False

    def _from_next(self) -> dict[str, float] | None:
        """Return the next ``backfill_from`` bar ({line alias: value}, the time stamped by
        :meth:`_from_stamp`), or None when it has no more."""
        src = self.p.backfill_from
        if not src.next():
            return None
        bar = {alias: getattr(src.lines, alias)[0] for alias in self.lines.getlinealiases()}
        bar["datetime"] = self._from_stamp(src)
        return bar

    def _from_stamp(self, src) -> float:
        """Return the UTC date number for the current bar of a ``backfill_from`` feed.

        A source without a time zone holds exchange-local wall times; daily bars stamped at
        midnight are moved to this feed's session end, where IB's daily bars are stamped, so
        the IB backfill that follows neither repeats nor skips a day.
        """
        num = src.datetime[0]
        if getattr(src, "_tz", None) is not None or self._tz is None:
            return num
        local = num2date(num)
        if self._timeframe >= TimeFrame.Days and local.time() == dtime(0, 0):
            local = datetime.combine(local.date(), self.p.sessionend)
        return self.date2num(local)

    def _load_hist(self):
        # historical mode blocks (cerebro preloads); live mode polls like the live queue so a
        # long, paced backfill never stalls backtrader's loop
        wait = self.p.hist_timeout if self.p.historical else self._qcheck
        try:
            event = self.qhist.get(timeout=wait)
        except queue.Empty:
            if time.monotonic() - self._hist_since < self.p.hist_timeout:
                return None
            raise SourceUnavailableError(
                f"IBData {self.p.dataname!r}: no historical data from IB within "
                f"{self.p.hist_timeout:g}s"
            ) from None
        self._hist_since = time.monotonic()
        if isinstance(event, BarReceived):
            return True if self._deliver(event.bar, hist=True) else "again"
        if isinstance(event, RequestFailed):
            code, text = event.code, event.text
            if code == CONNECTIVITY_LOST and not self.p.historical:
                self._state = self._ST_LIVE  # wait for the reconnect, then backfill again
                self._reconn_pending = True
                return "again"
            if code == HISTORICAL_DATA_ERROR and not self.p.historical:
                return "again"  # no history to backfill: go on with the live stream
            status = self.NOTSUBSCRIBED if code in NOT_SUBSCRIBED else self.DISCONNECTED
            self.put_notification(status, code, text)
            self._state = self._ST_OVER
            return False
        # HistoryEnded
        if self.p.historical:
            self.put_notification(self.DISCONNECTED)
            self._state = self._ST_OVER
            return False
        self._state = self._ST_LIVE
        return "again"

    def _backfill_gap(self, *notice) -> None:
        """After a reconnect: ask for the bars missed since the last one (``backfill``)."""
        self._reconn_pending = False
        if self.p.backfill and self._lastdt > float("-inf"):
            if self._request_history(num2date(self._lastdt), None):
                self.put_notification(self.DELAYED, *notice)

    def _load_live(self):
        try:
            event = self.qlive.get(timeout=self._qcheck)
        except queue.Empty:
            if self._sync is None or self._reconn_pending:
                return None
            self._sync.wait_own(self)  # another feed has a newer bar: wait for ours (bounded)
            return None if self.qlive.empty() else "again"
        match event:
            case BarReceived(bar=bar, delayed=delayed):
                if self._reconn_pending:
                    return "again"  # wait for the reconnect and the gap backfill
                if delayed:
                    self.put_notification(self.DELAYED)
                elif self._laststatus != self.LIVE and self.qlive.qsize() <= 1:
                    self.put_notification(self.LIVE)
                return True if self._deliver(bar) else "again"
            case SwitchedToDelayed(code=code, text=text):
                self.put_notification(self.DELAYED, code, text)
            case ConnectionLost():
                self._reconn_pending = True
                self.put_notification(self.CONNBROKEN)
            case ConnectionRestored():
                self._backfill_gap()
            case ConnectivityNotice(code=code, text=text):
                if code == CONNECTIVITY_LOST:
                    self._reconn_pending = True
                    self.put_notification(self.CONNBROKEN, code, text)
                elif code in (CONNECTIVITY_RESTORED, CONNECTIVITY_RESTORED_DATA_LOST):
                    self._backfill_gap(code, text)
            case RequestFailed(code=code, text=text):
                if code in DELAYED_DATA:
                    self.put_notification(self.DELAYED, code, text)
                    return "again"
                status = self.NOTSUBSCRIBED if code in NOT_SUBSCRIBED else self.DISCONNECTED
                self.put_notification(status, code, text)
                self._state = self._ST_OVER
                return False
            case ConnectionGaveUp() | StoreClosed():
                self.put_notification(self.DISCONNECTED)
                self._state = self._ST_OVER
                return False
        return "again"

    def _deliver(self, bar, hist: bool = False) -> bool:
        dt = date2num(bar.dt)
        if dt <= self._lastdt and not (self.p.latethrough and not hist):
            return False  # already delivered (overlap of history and live)
        if hist and self.p.historical and self.todate < float("inf") and dt > self.todate:
            return False
        if hist and dt < self.fromdate:
            return False
        if self._sync is not None:
            bar = self._sync.admit(self, bar)  # hold until the other feeds have this time
            if bar is None:  # late: the Strategy ran this time already; merged into the next
                self._lastdt = max(self._lastdt, dt)
                return False
        self._lastdt = max(self._lastdt, dt)
        lines = self.lines
        lines.datetime[0] = dt
        lines.open[0] = bar.open
        lines.high[0] = bar.high
        lines.low[0] = bar.low
        lines.close[0] = bar.close
        lines.volume[0] = bar.volume
        lines.openinterest[0] = bar.openinterest
        return True


IBStore.register_feed(IBData)
