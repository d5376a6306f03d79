"""LiveBarSync: the live IBData feeds of one Cerebro hand the Strategy each bar time together.

Why backtrader alone does not
-----------------------------
``Cerebro._runnext`` (the live loop) turns like this. First ``newqcheck = not any(d.haslivedata()
for d in datas)`` (when a feed has a bar queued, the feeds wait only if none or all of them are
LIVE). Then, feed by feed (sorted by timeframe), ``d.do_qcheck(newqcheck, lapse)`` gives the
feed ``qcheck`` minus the time this turn has already spent, and ``d.next()`` loads: IBData's
``_load`` waits at most that long on its queue and returns None ("no bar yet"). If any feed
delivered, ``dt0`` is the smallest delivered time; each feed that delivered nothing gets one
retry ``d.next(datamaster=...)`` (after ``d._check(forcedata=...)``, which makes a resampler close
its open bar), feeds ahead of ``dt0`` are rewound, and the strategies' ``next()`` runs. So when
one contract's 5-second bar of time T reaches the client a little after another's, the late
feed's wait in that turn may already be spent: the Strategy runs T with the late feed's previous
bar, and the next turn delivers the late bar alone, so the Strategy runs T a second time (or, for
a resampled feed, its bar of T is closed without its last part). Whether it happens depends on
where the turn's ``qcheck`` budget stands when the bars arrive: a timing race, not a rule.
(Making ``haslivedata()`` return False only forces the ``qcheck`` wait every turn; the race
stays.)

What the feeds do instead
-------------------------
Every synchronised IBData (``syncfeeds=True``, the default for live feeds on 5-second real-time
bars, resampled or not) of one Cerebro joins that Cerebro's LiveBarSync. Its live and history
queues report every arrival to the group (:class:`ArrivalQueue`), so the group knows, per feed,
the newest bar time the gateway has handed it, whether or not backtrader has loaded it yet.

* Hold: when a feed is about to deliver a bar of time T (live or backfill), it waits inside its
  own ``_load`` until every other member has been handed a bar of T or later. The others then
  load their bars of T in the same turn (they are queued; the retry takes them when their wait
  was spent), so the Strategy runs once at T with every feed at T.
* Catch up: a live feed whose queue is empty while another member has been handed a newer bar
  waits (the same way) for its own bar of that time instead of returning "no bar yet".
* Bounded: a member still backfilling (its history not yet arrived) is waited for up to its
  ``hist_timeout``; a live member until the feed clock (the newest bar time any member's live
  stream has been handed) reaches T + ``syncwait`` (default 5 s: one real-time bar later), or,
  when every stream has stalled, ``synctimeout`` seconds of the machine's clock. Members that are
  not loading bars now (not started yet, replaying ``backfill_from``, reconnecting, ended) are
  not waited for, nor are tick feeds (ticks of two contracts never share a time).
* Resampling: the holds work on the 5-second bars a feed loads; a resampled bar of T is
  closed by its 5-second part stamped T (bars are stamped at their end), so the resampled bars
  of T line up too. The retry above first calls ``_check(forcedata=...)``, which closes a
  resampled feed's open minute or day bar at the master's time even when the feed's last part
  of it has already arrived (it only had not been loaded yet); a synchronised feed skips that
  forced close when its bar of that time has arrived, so the load that follows completes it.
* Late bars: a member given up on for T is reported (``report``, default a warning on the
  ``bt_ibkr.feeds`` logger, naming the feed and T); every bar time another member delivers
  while the given-up member has not been handed its bar of that time is marked missed for it,
  and it is not waited for again until it has been handed bars up to the last time it missed
  (so a silent feed costs one ``syncwait``, not one per bar). Its bars of those times, when
  they come, are neither dropped nor delivered on their own (that would run those times
  twice): they are merged into the feed's next bar (open of the first, highest high, lowest
  low, summed volume, close and time of the next one), and a second note names the feed, the
  merged times and the bar they went into.

Daily decisions (:class:`~feeds.daily_decision.DailyDecisionData`) do not take part: they
download every bar before delivering any, so nothing can arrive late.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bt_ibkr.ib.events import Bar, BarReceived

log = logging.getLogger("bt_ibkr.feeds")

HISTORY, LIVE = "history", "live"


class ArrivalQueue(queue.Queue):
    """A ``queue.Queue`` that calls ``on_put(item)`` after each put (outside its own lock)."""

    def __init__(self, on_put: Callable[[Any], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._on_put(item)


@dataclass(eq=False)  # eq=False: never compare feeds with ==, backtrader overloads it
class _Member:
    feed: Any
    name: str
    live: datetime | None = None  # newest bar time its live stream has been handed
    hist: datetime | None = None  # newest bar time its current backfill has been handed
    hist_done: bool = True
    behind: bool = False  # given up on; not waited for until handed a bar >= late_until
    late_until: datetime | None = None  # bars stamped at or before: merged into the next
    missed: int = 0
    pending: list[Bar] = field(default_factory=list)

    def got(self, phase: str | None) -> datetime | None:
        """Return the newest bar time this member can deliver in ``phase``: while its backfill
        has not arrived, only history counts (its live bars wait behind it)."""
        if phase == HISTORY and not self.hist_done:
            return self.hist
        return _max(self.hist, self.live)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _fmt(dt: datetime) -> str:
    return f"{dt:%Y-%m-%d %H:%M:%S} UTC"


class LiveBarSync:
    """The synchronised live feeds of one Cerebro (see the module docstring).

    Feeds call :meth:`join` in ``start()`` and :meth:`leave` in ``stop()``; everything else is
    called by the members from backtrader's thread, except the queues' arrival reports, which
    come from the store's thread. ``waiting`` is ``(bar time, names of the members waited
    for)`` while a member holds, else None (for diagnostics and tests).
    """

    _groups: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _groups_lock = threading.Lock()

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._members: list[_Member] = []
        self.waiting: tuple[datetime, tuple[str, ...]] | None = None

    # ------------------------------------------------------------------ membership
    @classmethod
    def join(cls, feed: Any) -> LiveBarSync:
        """Add ``feed`` to the group of its Cerebro (``feed._env``); return the group."""
        env = feed._env
        with cls._groups_lock:
            group = cls._groups.get(env)
            if group is None:
                group = cls._groups[env] = cls()
        group.add(feed, getattr(feed, "_name", "") or str(feed.p.dataname))
        return group

    def add(self, feed: Any, name: str) -> None:
        """Make ``feed`` a member under ``name`` (replacing an earlier membership of it)."""
        with self._cond:
            self._members = [m for m in self._members if m.feed is not feed]
            self._members.append(_Member(feed, name))

    def leave(self, feed: Any) -> None:
        """Remove ``feed``; members waiting for it stop waiting."""
        with self._cond:
            self._members = [m for m in self._members if m.feed is not feed]
            self._cond.notify_all()

    def _member(self, feed: Any) -> _Member:
        for m in self._members:
            if m.feed is feed:
                return m
        raise RuntimeError(f"IBData {feed.p.dataname!r} is not a member of this LiveBarSync")

    def queue(self, feed: Any, source: str) -> ArrivalQueue:
        """Return a new queue for ``feed``'s ``source`` (``"live"`` or ``"history"``) whose
        bars the group tracks; a new history queue starts a new backfill."""
        member = self._member(feed)
        if source == HISTORY:
            with self._cond:
                member.hist, member.hist_done = None, False
        return ArrivalQueue(lambda item: self._arrived(member, source, item))

    def _arrived(self, m: _Member, source: str, item: Any) -> None:
        """Store thread: note what ``m``'s ``source`` queue has been handed; wake the holder."""
        with self._cond:
            if isinstance(item, BarReceived):
                if source == LIVE:
                    m.live = _max(m.live, item.bar.dt)
                else:
                    m.hist = _max(m.hist, item.bar.dt)
            elif source == HISTORY:  # HistoryEnded or RequestFailed: the backfill is over
                m.hist_done = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ backtrader's thread
    def admit(self, feed: Any, bar: Bar) -> Bar | None:
        """Called by ``feed`` before it delivers ``bar``: hold until every member has its bar
        of ``bar.dt`` (bounded). Return the bar to deliver (with the feed's late bars merged
        into it), or None when ``bar`` itself is late: it is kept to merge into the next one."""
        me = self._member(feed)
        with self._cond:
            if me.late_until is not None and bar.dt <= me.late_until:
                me.pending.append(bar)
                return None
        self._settle(me, bar.dt, own=False)
        with self._cond:
            pending, me.pending = me.pending, []
            missed, me.missed = me.missed, 0
            me.behind = False
        if not pending and not missed:
            return bar
        if pending:
            parts = pending + [bar]
            bar = Bar(bar.dt, parts[0].open, max(p.high for p in parts),
                      min(p.low for p in parts), bar.close, sum(p.volume for p in parts),
                      bar.openinterest)
            span = _fmt(pending[0].dt) + ("" if len(pending) == 1 else
                                          f" .. {_fmt(pending[-1].dt)}")
            note = (f"IBData {me.name!r}: its bar(s) of {span} ({len(pending)}) arrived after "
                    "the Strategy ran those times without them; merged into its bar of "
                    f"{_fmt(bar.dt)} (open, high, low and volume include them)")
        else:
            note = (f"IBData {me.name!r} is in step again at {_fmt(bar.dt)}; the gateway never "
                    f"sent its bar(s) of the {missed} time(s) the Strategy ran without it")
        self._report(me, note)
        return bar

    def has_arrived(self, feed: Any, when: datetime) -> bool:
        """Return True when ``feed`` can deliver a bar of ``when`` or later (it has arrived)."""
        with self._cond:
            me = self._member(feed)
            have = me.got(feed.sync_phase())
            return have is not None and have >= when

    def wait_own(self, feed: Any) -> None:
        """Called by a live ``feed`` whose queue is empty: if another member's live stream has
        been handed a newer bar, wait (bounded) for ``feed``'s bar of that time."""
        me = self._member(feed)
        with self._cond:
            if me.behind or feed.sync_phase() != LIVE:
                return
            have = me.got(LIVE)
            ahead = [m.live for m in self._members if m is not me and m.live is not None
                     and (have is None or m.live > have)]
            if not ahead:
                return
            when = min(ahead)
            if me.late_until is not None and when <= me.late_until:
                return
        self._settle(me, when, own=True)

    def _settle(self, me: _Member, when: datetime, own: bool) -> None:
        """Wait until every member (``own``: ``me`` too) has been handed a bar of ``when`` or
        later, or its bound has passed (it is then given up on and reported)."""
        start = time.monotonic()
        notes: list[tuple[_Member, str]] = []
        p = me.feed.p
        with self._cond:
            while True:
                missing = [m for m in self._members
                           if (own or m is not me) and self._lacks(m, when)]
                if not missing:
                    break
                waited = time.monotonic() - start
                frontier = None
                for m in self._members:
                    frontier = _max(frontier, m.live)
                waiting = []
                for m in missing:
                    if self._past_bound(m, when, frontier, waited, p):
                        notes.append((m, self._give_up(m, when, frontier, p.syncwait)))
                    else:
                        waiting.append(m)
                if not waiting or getattr(me.feed._env, "_event_stop", False):
                    break
                self.waiting = (when, tuple(m.name for m in waiting))
                self._cond.wait(max(0.02, min(0.25, float(p.qcheck or 0.25))))
            self.waiting = None
            for m in self._members:  # members given up on earlier miss this time too
                if m.behind and m is not me and (m.late_until is None or m.late_until < when):
                    have = m.got(m.feed.sync_phase())
                    if have is None or have < when:
                        m.late_until = when
                        m.missed += 1
        for m, note in notes:
            self._report(m, note)

    def _lacks(self, m: _Member, when: datetime) -> bool:
        phase = m.feed.sync_phase()
        if phase is None:
            return False
        have = m.got(phase)
        if m.behind:
            if have is None or m.late_until is None or have < m.late_until:
                return False  # given up on: not waited for until it caught up
            m.behind = False
        if m.late_until is not None and when <= m.late_until:
            return False
        return have is None or have < when

    @staticmethod
    def _past_bound(m: _Member, when: datetime, frontier: datetime | None, waited: float,
                    p: Any) -> bool:
        if m.feed.sync_phase() == HISTORY and not m.hist_done:
            return waited >= float(m.feed.p.hist_timeout)
        if frontier is not None and frontier >= when + timedelta(seconds=float(p.syncwait)):
            return True
        return waited >= float(p.synctimeout)

    @staticmethod
    def _give_up(m: _Member, when: datetime, frontier: datetime | None, syncwait: float) -> str:
        m.behind = True
        m.late_until = _max(m.late_until, when)
        m.missed += 1
        clock = f"the feed clock is at {_fmt(frontier)}" if frontier is not None else \
            "no live bar has arrived"
        return (f"IBData {m.name!r}: no bar of {_fmt(when)} yet ({clock}; syncwait "
                f"{syncwait:g}s): the Strategy runs that time with {m.name}'s previous bar; "
                f"its late bars will be merged into its next one")

    @staticmethod
    def _report(m: _Member, note: str) -> None:
        report = m.feed.p.report
        if report is None:
            log.warning("%s", note)
        else:
            report(note)


__all__ = ["ArrivalQueue", "LiveBarSync"]
