"""Back-adjusted continuous futures series from individual contracts' bars, and their cache.

:func:`build_continuous` stitches the held contract of each day (the registry's roll rule,
:meth:`FutureSpec.held_contract`) into one series and removes the price gap at each roll:

- ``"ratio"``: every bar before a roll is multiplied by ``new / old``, both closes taken on the
  last bar before the roll (the day the position is switched at the close). The series' daily
  returns are then exactly the held contract's returns, roll days included; prices keep their
  sign and percentage moves, dollar moves before a roll are scaled.
- ``"difference"``: ``new - old`` is added instead: dollar moves equal the held contract's,
  old prices may turn negative and percentage returns before a roll are distorted.

The newest contract is never adjusted (its prices are real). Each :class:`Roll` records the
date the new contract's first bar enters the series, both contracts and both closes used.

:func:`store_continuous` / :func:`load_continuous` keep a series in the parquet bar cache
(source ``continuous``) with the rolls in a JSON sidecar next to it, so that a reload returns
the same roll dates; a parquet without its roll sidecar is a cache miss.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.errors import ConfigError, DataError
from bt_ibkr.futures.registry import ContractMonth, FutureSpec, get_spec
from bt_ibkr.validation import validate_bars

__all__ = ["METHODS", "ContinuousSeries", "Roll", "build_continuous", "cached_continuous",
           "continuous_key",
           "load_continuous", "store_continuous"]

log = logging.getLogger("bt_ibkr.futures.continuous")

METHODS = ("ratio", "difference")
_PRICES = ["open", "high", "low", "close"]


@dataclass(frozen=True)
class Roll:
    """One roll in a continuous series.

    ``day``: the first bar taken from ``new`` (ISO date text in JSON). ``old_close`` and
    ``new_close``: both contracts' closes on ``measured``, the last bar before ``day``, from
    which the adjustment (ratio ``new/old`` or difference ``new - old``) is computed.
    """

    day: date
    old: str
    new: str
    measured: date
    old_close: float
    new_close: float

    @property
    def ratio(self) -> float:
        """``new_close / old_close``."""
        return self.new_close / self.old_close

    @property
    def difference(self) -> float:
        """``new_close - old_close``."""
        return self.new_close - self.old_close

    def to_json(self) -> dict:
        """A JSON-safe dict (dates as ISO text)."""
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["measured"] = self.measured.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict) -> Roll:
        """Inverse of :meth:`to_json`."""
        return cls(date.fromisoformat(d["day"]), str(d["old"]), str(d["new"]),
                   date.fromisoformat(d["measured"]), float(d["old_close"]),
                   float(d["new_close"]))


@dataclass(frozen=True)
class ContinuousSeries:
    """A back-adjusted series: ``frame`` (canonical daily bars), ``rolls`` (oldest first),
    ``held`` (the contract code held on each bar, same index), ``root`` and ``method``."""

    root: str
    method: str
    frame: pd.DataFrame
    rolls: tuple[Roll, ...]
    held: pd.Series

    @property
    def roll_dates(self) -> list[date]:
        """The dates of the rolls, oldest first."""
        return [r.day for r in self.rolls]


def _day(ts: pd.Timestamp) -> date:
    return pd.Timestamp(ts).date()


def build_continuous(root: str, contracts: Mapping[ContractMonth | str, pd.DataFrame],
                     method: str = "ratio", spec: FutureSpec | None = None) -> ContinuousSeries:
    """Return the back-adjusted continuous series of ``root`` from its contracts' daily bars.

    ``contracts`` maps a :class:`ContractMonth` (or its ``YYYYMM`` code) to that contract's
    canonical daily bar frame. On each date where the held contract (registry rule) has a bar,
    that bar enters the series; it starts on the first day whose held contract is given.
    Raises ConfigError for an unknown root or method, DataError when a held contract after
    the start has no bars, or when the new contract has no bar on the last day before a roll
    (the gap cannot be measured).
    """
    if method not in METHODS:
        raise ConfigError(f"continuous adjustment {method!r}: use one of {', '.join(METHODS)}")
    spec = spec or get_spec(root)
    frames: dict[str, pd.DataFrame] = {}
    sources = {str(f.attrs.get("source", "csv")) for f in contracts.values()}
    for key, frame in contracts.items():
        code = key.code if isinstance(key, ContractMonth) else str(key)
        frames[code] = validate_bars(frame, f"{spec.root} {code}", intraday=False)
    if not frames:
        raise DataError(f"{spec.root}: no contract bars given")
    days = sorted({_day(t) for f in frames.values() for t in f.index})
    rows, held_codes, index = [], [], []
    rolls: list[Roll] = []
    prev_code: str | None = None
    prev_day: date | None = None
    for d in days:
        c = spec.held_contract(d)
        frame = frames.get(c.code)
        if frame is None and prev_code is None:
            continue  # before the first contract given: the series starts later
        if frame is None:
            raise DataError(f"{spec.root}: no bars for {c} which is held on {d} "
                            f"(have {', '.join(sorted(frames))})")
        ts = pd.Timestamp(d)
        if ts not in frame.index:
            continue  # the held contract did not trade that day
        if prev_code is not None and c.code != prev_code:
            old_f, new_f = frames[prev_code], frame
            at = pd.Timestamp(prev_day)
            if at not in new_f.index:
                raise DataError(f"{spec.root}: {c} has no bar on {prev_day}, the last day "
                                f"before the roll from {prev_code} on {d}; the roll gap cannot "
                                "be measured")
            rolls.append(Roll(d, prev_code, c.code, prev_day, float(old_f.at[at, "close"]),
                              float(new_f.at[at, "close"])))
        rows.append(frame.loc[ts])
        held_codes.append(c.code)
        index.append(ts)
        prev_code, prev_day = c.code, d
    out = pd.DataFrame(rows, index=pd.DatetimeIndex(index, name="datetime"))
    out = out[["open", "high", "low", "close", "volume"]].astype(float)
    held = pd.Series(held_codes, index=out.index, name="contract")
    # back-adjust, newest roll first so each factor applies to everything before it
    prices = out[_PRICES].to_numpy(copy=True)
    for r in reversed(rolls):
        before = out.index < pd.Timestamp(r.day)
        if method == "ratio":
            prices[before] *= r.ratio
        else:
            prices[before] += r.difference
    out[_PRICES] = prices
    out = validate_bars(out, f"{spec.root} continuous", intraday=False,
                        attrs={"symbol": spec.root,
                               "source": sources.pop() if len(sources) == 1 else "csv",
                               "tz": "UTC",
                               "adjusted": True})
    return ContinuousSeries(spec.root, method, out, tuple(rolls), held)


def continuous_key(root: str, method: str = "ratio", source: str = "continuous") -> CacheKey:
    """The cache key of ``root``'s continuous series built with ``method``; ``source`` names
    where its contracts' bars came from ("continuous": given bars; "ibkr-continuous" /
    "ibkr-sim-continuous": IB's contracts / the gateway simulator's, see
    :mod:`bt_ibkr.data.futures_contracts`)."""
    if method not in METHODS:
        raise ConfigError(f"continuous adjustment {method!r}: use one of {', '.join(METHODS)}")
    return CacheKey(source=source, symbol=f"{root.upper()}.{method}",
                    what_to_show="TRADES", adjusted=True)


def _rolls_path(cache: BarCache, key: CacheKey) -> Path:
    return cache.path_for(key).with_suffix(".rolls.json")


def store_continuous(cache: BarCache, series: ContinuousSeries, *, source: str = "continuous",
                     request: Mapping | None = None) -> Path:
    """Store ``series`` (bars replaced, not merged) and its rolls under
    ``continuous_key(root, method, source)``; return the parquet path. ``request`` (JSON-safe,
    e.g. the span and contracts it was built for) is kept with the rolls for
    :func:`load_continuous` to match.

    The rolls sidecar is written atomically after the bars, so a crash in between leaves a
    parquet without (or with the previous) sidecar; :func:`load_continuous` then compares the
    sidecar's row count and last date with the bars and treats a mismatch as a miss.
    """
    key = continuous_key(series.root, series.method, source)
    path = cache.store(key, series.frame, replace=True)
    meta = {"root": series.root, "method": series.method, "bars": int(len(series.frame)),
            "request": dict(request) if request is not None else None,
            "last": _day(series.frame.index[-1]).isoformat(),
            "rolls": [r.to_json() for r in series.rolls],
            "held": {_day(t).isoformat(): c for t, c in series.held.items()}}
    target = _rolls_path(cache, key)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, target)
    return path


def load_continuous(cache: BarCache, root: str, method: str = "ratio", *,
                    source: str = "continuous",
                    request: Mapping | None = None) -> ContinuousSeries | None:
    """Return the cached continuous series of ``root`` with its rolls, or None (no file, no or
    unreadable roll sidecar, a sidecar that does not describe the stored bars, or, when
    ``request`` is given, one stored for another request)."""
    spec = get_spec(root)
    key = continuous_key(spec.root, method, source)
    frame = cache.load(key)
    target = _rolls_path(cache, key)
    if frame is None or not target.exists():
        return None
    try:
        meta = json.loads(target.read_text())
        rolls = tuple(Roll.from_json(r) for r in meta["rolls"])
        held = pd.Series([meta["held"][_day(t).isoformat()] for t in frame.index],
                         index=frame.index, name="contract")
        ok = meta["bars"] == len(frame) and meta["last"] == _day(frame.index[-1]).isoformat()
        if request is not None and meta.get("request") != dict(request):
            return None  # built for another span: not this request's series
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("continuous cache: roll sidecar %s unreadable (%s); rebuilding", target, exc)
        return None
    if not ok:
        log.warning("continuous cache: roll sidecar %s does not match the bars; rebuilding",
                    target)
        return None
    frame.attrs["source"] = "cache"
    return ContinuousSeries(spec.root, method, frame, rolls, held)


def cached_continuous(cache: BarCache, root: str,
                      contracts: Mapping[ContractMonth | str, pd.DataFrame] | None,
                      method: str = "ratio") -> ContinuousSeries:
    """Return ``root``'s continuous series from the cache when it has one, else build it from
    ``contracts`` and store it. Raises DataError when neither is available, and what
    :func:`build_continuous` raises."""
    hit = load_continuous(cache, root, method)
    if hit is not None:
        return hit
    if not contracts:
        raise DataError(f"{root}: no cached {method} continuous series in {cache.root} and no "
                        "contract bars given to build one")
    series = build_continuous(root, contracts, method)
    store_continuous(cache, series)
    return series
