"""The roll registry: one :class:`FutureSpec` per futures root, shared by backtest and live.

Each spec says where the root trades (IB exchange, currency, multiplier), which contract
months are held (the *held cycle*: GC trades every month but only Feb/Apr/Jun/Aug/Oct/Dec are
liquid), when a contract expires (its last trade date), when its first notice day is (physically
settled roots), and when the held position rolls: ``roll_days`` business days before the *roll
anchor*, which is the first notice day of a physically settled contract (a long past it can be
assigned delivery) and the last trade date of a cash-settled one. The same idea as
pysystemtrade's ``rollconfig.csv`` (HoldRollCycle, RollOffsetDays, ExpiryOffset), with the
expiry computed from the exchange's rule instead of a fixed day offset.

Business days are the CME Group's, from exchange_calendars (weekends plus the holidays of
``CMES`` and ``XNYS``, any year, see :data:`CALENDAR`), so a holiday moves an expiry or a roll
the way the exchange moves it.

    spec = get_spec("ES")
    spec.last_trade(2024, 3)            # date(2024, 3, 15), the third Friday
    spec.roll_date(2024, 3)             # 5 CME business days earlier
    spec.held_contract(date(2024, 3, 12)) # ContractMonth("ES", 2024, 6): already rolled

Unknown roots raise :class:`~bt_ibkr.errors.ConfigError` naming the known ones.
"""

from __future__ import annotations

import calendar as _cal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np

from bt_ibkr.errors import ConfigError

__all__ = [
    "MONTH_CODES",
    "REGISTRY",
    "ContractMonth",
    "FutureSpec",
    "business_offset",
    "get_spec",
    "known_roots",
]

MONTH_CODES = "FGHJKMNQUVXZ"
"""CME month letters, January (F) to December (Z)."""

CALENDAR = "CMES+XNYS"
"""exchange_calendars codes (joined by ``+``) whose holidays together define a CME Group
business day: CMES alone lists only the days Globex is fully closed (New Year, Good Friday,
Christmas), while the exchange's business-day count for expiries also skips the US holidays on
which Globex runs an abbreviated session without a settlement (Memorial Day, Juneteenth, ...),
which XNYS lists."""


@lru_cache(maxsize=4)
def _busdays(calendar: str) -> np.busdaycalendar:
    """A numpy business-day calendar with the holidays of every exchange_calendars code in
    ``calendar`` (joined by ``+``) from 1990 to 2100."""
    import exchange_calendars as xcals

    hol: list = []
    for name in calendar.split("+"):
        cal = xcals.get_calendar(name)
        if cal.regular_holidays is not None:
            hol += list(cal.regular_holidays.holidays("1990-01-01", "2100-12-31"))
        hol += list(cal.adhoc_holidays or [])
    days = sorted({np.datetime64(h.date(), "D") for h in hol})
    return np.busdaycalendar(weekmask="1111100", holidays=days)


def business_offset(day: date, n: int, calendar: str = CALENDAR) -> date:
    """Return the business day ``n`` business days after ``day`` (before it when ``n`` < 0).

    ``day`` itself need not be a business day: it is first moved to the previous business day
    for ``n`` <= 0 and to the next one for ``n`` > 0 (so ``business_offset(d, 0)`` is the last
    business day on or before ``d``).
    """
    roll = "backward" if n <= 0 else "forward"
    out = np.busday_offset(np.datetime64(day, "D"), n, roll=roll, busdaycal=_busdays(calendar))
    return out.astype(object)


def is_business_day(day: date, calendar: str = CALENDAR) -> bool:
    """True when ``day`` is a business day of ``calendar``."""
    return bool(np.is_busday(np.datetime64(day, "D"), busdaycal=_busdays(calendar)))


def business_days_between(first: date, last: date, calendar: str = CALENDAR) -> int:
    """Return the number of business days in ``[first, last)`` (negative when reversed)."""
    return int(np.busday_count(np.datetime64(first, "D"), np.datetime64(last, "D"),
                               busdaycal=_busdays(calendar)))


def _prior_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _last_day(year: int, month: int) -> date:
    return date(year, month, _cal.monthrange(year, month)[1])


# -- expiry rules: (year, month, calendar) -> last trade date ------------------------------------
def third_friday_rule(year: int, month: int, calendar: str) -> date:
    """Third Friday of the contract month, or the business day before it on a holiday
    (CME equity index futures: ES, NQ)."""
    first = date(year, month, 1)
    friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
    return business_offset(friday, 0, calendar)


def crude_rule(year: int, month: int, calendar: str) -> date:
    """NYMEX WTI crude (CL): trading ends 3 business days before the 25th calendar day of the
    month before the contract month; when the 25th is not a business day, 3 business days
    before the last business day preceding the 25th."""
    y, m = _prior_month(year, month)
    anchor = business_offset(date(y, m, 25), 0, calendar)
    return business_offset(anchor, -3, calendar)


def third_last_business_day_rule(year: int, month: int, calendar: str) -> date:
    """Third-last business day of the contract month (COMEX gold, GC)."""
    return business_offset(business_offset(_last_day(year, month), 0, calendar), -2, calendar)


def treasury_note_rule(year: int, month: int, calendar: str) -> date:
    """Seventh business day before the last business day of the contract month (CBOT ZN)."""
    return business_offset(business_offset(_last_day(year, month), 0, calendar), -7, calendar)


def prior_month_end_notice(year: int, month: int, calendar: str) -> date:
    """First notice day: the last business day of the month before the contract month
    (COMEX GC, CBOT ZN)."""
    y, m = _prior_month(year, month)
    return business_offset(_last_day(y, m), 0, calendar)


@dataclass(frozen=True, order=True)
class ContractMonth:
    """One contract of a root: ``root`` and the contract ``year``/``month``."""

    root: str
    year: int
    month: int

    @property
    def code(self) -> str:
        """The contract month as IB's ``lastTradeDateOrContractMonth`` wants it: ``YYYYMM``."""
        return f"{self.year:04d}{self.month:02d}"

    @property
    def local_symbol(self) -> str:
        """CME-style local symbol, e.g. ``ESH4`` (IB's localSymbol for CME index futures)."""
        return f"{self.root}{MONTH_CODES[self.month - 1]}{self.year % 10}"

    def __str__(self) -> str:
        return f"{self.root} {self.code}"


@dataclass(frozen=True)
class FutureSpec:
    """How one futures root trades, expires and rolls (see the module docstring).

    ``held_months``: month letters held (the roll goes from one to the next).
    ``settlement``: "cash" or "physical". ``roll_days``: business days before the roll anchor
    (first notice when physical and a notice rule exists, else the last trade date) on which
    the held contract changes. ``close_out_days``: a physically settled contract may not be
    opened from this many business days before its first notice (or last trade) day;
    ``warn_days``: a warning is logged (and a live run says it) from this many business days
    before: 10, a week before the roll of the registered roots, so a position the roll could
    not move is flagged well before its window.
    """

    root: str
    description: str
    exchange: str
    currency: str
    multiplier: float
    held_months: str
    settlement: str
    expiry_rule: Callable[[int, int, str], date]  # (year, month, calendar) -> last trade
    notice_rule: Callable[[int, int, str], date] | None = None  # -> first notice day
    roll_days: int = 5
    close_out_days: int = 2
    warn_days: int = 10
    calendar: str = CALENDAR

    def __post_init__(self) -> None:
        if self.settlement not in ("cash", "physical"):
            raise ConfigError(f"{self.root}: settlement must be 'cash' or 'physical', "
                              f"got {self.settlement!r}")
        bad = [c for c in self.held_months if c not in MONTH_CODES]
        if bad or not self.held_months:
            raise ConfigError(f"{self.root}: held_months must be CME month letters "
                              f"({MONTH_CODES}), got {self.held_months!r}")
        if self.multiplier <= 0:
            raise ConfigError(f"{self.root}: multiplier must be positive, got {self.multiplier}")

    @property
    def physical(self) -> bool:
        """True for a physically settled root."""
        return self.settlement == "physical"

    @property
    def months(self) -> tuple[int, ...]:
        """The held contract months as numbers (1..12), ascending."""
        return tuple(sorted(MONTH_CODES.index(c) + 1 for c in self.held_months))

    def last_trade(self, year: int, month: int) -> date:
        """Return the last trade date of the ``year``-``month`` contract."""
        return self.expiry_rule(year, month, self.calendar)

    def first_notice(self, year: int, month: int) -> date | None:
        """Return the first notice day of the contract, or None (cash settled, or no notice
        before the last trade, as for CL)."""
        if self.notice_rule is None:
            return None
        return self.notice_rule(year, month, self.calendar)

    def roll_anchor(self, year: int, month: int) -> date:
        """The date the roll and the close-out count back from: the first notice day when
        there is one, else the last trade date."""
        notice = self.first_notice(year, month)
        last = self.last_trade(year, month)
        return min(notice, last) if notice is not None else last

    def roll_date(self, year: int, month: int) -> date:
        """Return the business day on which a position in the contract is rolled to the next
        held contract (``roll_days`` business days before the roll anchor)."""
        return business_offset(self.roll_anchor(year, month), -self.roll_days, self.calendar)

    def close_out_start(self, year: int, month: int) -> date | None:
        """First day on which opening the contract is refused (physical roots only)."""
        if not self.physical:
            return None
        return business_offset(self.roll_anchor(year, month), -self.close_out_days,
                               self.calendar)

    def warn_start(self, year: int, month: int) -> date | None:
        """First day on which holding or opening the contract logs a close-out warning."""
        if not self.physical:
            return None
        return business_offset(self.roll_anchor(year, month), -self.warn_days, self.calendar)

    def contract(self, year: int, month: int) -> ContractMonth:
        """Return the ``year``-``month`` contract; ConfigError when it is not a held month."""
        if month not in self.months:
            raise ConfigError(f"{self.root}: month {month} is not held; held months are "
                              f"{', '.join(str(m) for m in self.months)} ({self.held_months})")
        return ContractMonth(self.root, year, month)

    def contract_of(self, expiry: str) -> ContractMonth | None:
        """Return the contract IB's ``lastTradeDateOrContractMonth`` names, or None when it
        is not one: ``YYYYMM`` is the contract month; ``YYYYMMDD`` (a qualified contract's,
        a position's) is a last trade date, which for CL falls in the month BEFORE the
        contract month, so it is matched against this root's rule for its own month and the
        two after it (the first whose last trade date it is; its own month when none is)."""
        code = str(expiry or "").strip()[:8]
        if len(code) not in (6, 8) or not code.isdigit() or not 1 <= int(code[4:6]) <= 12:
            return None
        year, month = int(code[:4]), int(code[4:6])
        if len(code) == 8:
            day = date(year, month, int(code[6:8]))
            y, m = year, month
            for _ in range(3):
                if self.last_trade(y, m) == day:
                    return ContractMonth(self.root, y, m)
                y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return ContractMonth(self.root, year, month)

    def next_contract(self, c: ContractMonth) -> ContractMonth:
        """Return the held contract after ``c``."""
        for m in self.months:
            if m > c.month:
                return ContractMonth(self.root, c.year, m)
        return ContractMonth(self.root, c.year + 1, self.months[0])

    def held_contract(self, day: date) -> ContractMonth:
        """Return the contract held on ``day``: the first held contract whose roll date is
        after ``day`` (on the roll date itself the position is already in the next one)."""
        c = ContractMonth(self.root, day.year - 1, self.months[-1])
        while self.roll_date(c.year, c.month) <= day:
            c = self.next_contract(c)
        return c

    def roll_schedule(self, first: date, last: date) -> list[tuple[date, ContractMonth,
                                                                     ContractMonth]]:
        """Return every roll in ``(first, last]``: (roll date, contract left, contract entered)."""
        out = []
        c = self.held_contract(first)
        while True:
            when = self.roll_date(c.year, c.month)
            if when > last:
                return out
            nxt = self.next_contract(c)
            out.append((when, c, nxt))
            c = nxt


REGISTRY: dict[str, FutureSpec] = {
    s.root: s
    for s in (
        FutureSpec("ES", "E-mini S&P 500", "CME", "USD", 50.0, "HMUZ", "cash",
                   third_friday_rule, roll_days=5),
        FutureSpec("NQ", "E-mini Nasdaq-100", "CME", "USD", 20.0, "HMUZ", "cash",
                   third_friday_rule, roll_days=5),
        FutureSpec("CL", "Light Sweet Crude Oil (WTI)", "NYMEX", "USD", 1000.0,
                   "FGHJKMNQUVXZ", "physical", crude_rule, roll_days=5, close_out_days=2,
                   warn_days=10),
        FutureSpec("GC", "Gold", "COMEX", "USD", 100.0, "GJMQVZ", "physical",
                   third_last_business_day_rule, prior_month_end_notice, roll_days=5,
                   close_out_days=2, warn_days=10),
        FutureSpec("ZN", "10-Year T-Note", "CBOT", "USD", 1000.0, "HMUZ", "physical",
                   treasury_note_rule, prior_month_end_notice, roll_days=5,
                   close_out_days=2, warn_days=10),
    )
}
"""Every root this package knows, by root symbol."""


def known_roots() -> list[str]:
    """Return the registered roots, sorted."""
    return sorted(REGISTRY)


def get_spec(root: str) -> FutureSpec:
    """Return the spec of ``root`` (case-insensitive).

    Raises:
        ConfigError: unknown root; the message names the known ones.
    """
    key = str(root or "").strip().upper()
    try:
        return REGISTRY[key]
    except KeyError:
        raise ConfigError(f"unknown futures root {root!r}: known roots are "
                          f"{', '.join(known_roots())} (add a FutureSpec to "
                          "bt_ibkr.futures.registry.REGISTRY for another)") from None
