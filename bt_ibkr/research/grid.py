"""Parsing the research specs: ``--grid name=v1,v2`` and ``--walk-forward train=5y,test=1y``.

Every parser raises :class:`GridSpecError` (a ConfigError) whose message is one line naming the
spec as the user typed it and what is wrong, so the CLI can reject it before any work starts.
Grid values are typed for the Strategy's params by the parser ``--param`` uses
(:func:`bt_ibkr.params.convert_param`).

    >>> parse_grid(["band=0.05,0.1", "use_hmm=false,true"])
    {'band': [0.05, 0.1], 'use_hmm': [False, True]}
    >>> expand_grid({"band": [0.05, 0.1], "target_vol": [0.12]})
    [{'band': 0.05, 'target_vol': 0.12}, {'band': 0.1, 'target_vol': 0.12}]
    >>> parse_walk_forward("train=5y,test=1y,anchored")
    WalkForwardSpec(train=Period(n=5, unit='y'), test=Period(n=1, unit='y'), anchored=True)
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.params import convert_param, resolve_strategy

__all__ = [
    "GridSpecError",
    "Period",
    "WalkForwardSpec",
    "expand_grid",
    "parse_grid",
    "parse_walk_forward",
    "split_values",
]


class GridSpecError(ConfigError):
    """A malformed ``--grid`` or ``--walk-forward`` spec (the message names it)."""


_OPEN = {"[": "]", "{": "}", "(": ")"}


def split_values(text: str) -> list[str]:
    """Split ``text`` on commas that are not inside brackets, braces or double quotes.

    ``'0.1,{"a": 1, "b": 2}'`` -> ``['0.1', '{"a": 1, "b": 2}']``. Raises ValueError on an
    unbalanced bracket or quote.
    """
    out: list[str] = []
    stack: list[str] = []
    quoted = False
    cur: list[str] = []
    for ch in text:
        if quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in _OPEN.values():
            if not stack or stack.pop() != ch:
                raise ValueError(f"unbalanced {ch!r}")
        elif ch == "," and not stack:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quoted or stack:
        raise ValueError("unbalanced quote or bracket")
    out.append("".join(cur))
    return [v.strip() for v in out]


def parse_grid(items: list[str] | tuple[str, ...],
               strategy: type | None = None) -> dict[str, list[Any]]:
    """Return ``{param: [values...]}`` from ``["name=v1,v2", ...]``, in the order given.

    Each value is typed for ``strategy``'s param (default: RegimeAwareEnsemble, as
    ``SweepConfig.strategy``) by :func:`bt_ibkr.params.convert_param`, the parser ``--param``
    uses: ``use_hmm=maybe`` is refused, not passed on as a truthy text.

    Raises GridSpecError (one line, naming the item) when an item has no ``=``, an empty or
    non-identifier name, no values, an empty value, the same value twice, or a name given
    twice, and (naming ``--grid``, the param and the value) for a param the Strategy does not
    have or a value of the wrong type.
    """
    strategy = strategy or resolve_strategy(None)
    grid: dict[str, list[Any]] = {}
    for item in items:
        where = f"--grid {item!r}"
        if "=" not in item:
            raise GridSpecError(f"{where}: expected name=v1,v2,... e.g. --grid band=0.05,0.1")
        name, text = item.split("=", 1)
        name = name.strip()
        if not name.isidentifier():
            raise GridSpecError(f"{where}: {name!r} is not a parameter name")
        if name in grid:
            raise GridSpecError(f"{where}: {name} is given twice; put all its values in one --grid")
        try:
            raw = split_values(text)
        except ValueError as exc:
            raise GridSpecError(f"{where}: {exc}") from None
        if not text.strip() or any(not v for v in raw):
            raise GridSpecError(f"{where}: empty value; expected name=v1,v2,... with no blanks")
        try:
            values = [convert_param(strategy, name, v, "--grid") for v in raw]
        except ConfigError as exc:
            raise GridSpecError(str(exc)) from None
        seen: list[str] = []
        for v in values:
            key = json.dumps(v, sort_keys=True, default=str)
            if key in seen:
                raise GridSpecError(f"{where}: value {v!r} is listed twice")
            seen.append(key)
        grid[name] = values
    return grid


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Return every combination of ``grid`` as a param dict (first param varies slowest).

    An empty grid gives one empty combination (a single run with the Strategy's defaults).
    """
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


@dataclass(frozen=True)
class Period:
    """A calendar length: ``n`` years (``y``), months (``m``), weeks (``w``) or days (``d``)."""

    n: int
    unit: str

    def offset(self, times: int = 1) -> pd.DateOffset:
        """Return ``times`` x this period as a pandas DateOffset."""
        k = self.n * times
        return {
            "y": pd.DateOffset(years=k),
            "m": pd.DateOffset(months=k),
            "w": pd.DateOffset(weeks=k),
            "d": pd.DateOffset(days=k),
        }[self.unit]

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"


@dataclass(frozen=True)
class WalkForwardSpec:
    """Train/test window lengths; ``anchored`` keeps every train window starting at the first date."""

    train: Period
    test: Period
    anchored: bool = False

    def __str__(self) -> str:
        return f"train={self.train},test={self.test}" + (",anchored" if self.anchored else "")


def _period(where: str, key: str, text: str) -> Period:
    m = re.fullmatch(r"\s*(\d+)\s*([ymwd])\s*", text.lower())
    if not m or int(m.group(1)) <= 0:
        raise GridSpecError(
            f"{where}: {key}={text!r} is not a length; use a positive number with y, m, w or d "
            f"(e.g. {key}=5y, {key}=18m)"
        )
    return Period(int(m.group(1)), m.group(2))


def parse_walk_forward(text: str) -> WalkForwardSpec:
    """Return the WalkForwardSpec of ``"train=5y,test=1y[,anchored]"``.

    Raises GridSpecError (one line, naming the spec) for an unknown key, a missing train or
    test length, or a length that is not ``<positive int><y|m|w|d>``.
    """
    where = f"--walk-forward {text!r}"
    train = test = None
    anchored = False
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise GridSpecError(f"{where}: empty item; expected train=5y,test=1y[,anchored]")
        if part.lower() in ("anchored", "rolling"):
            anchored = part.lower() == "anchored"
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("train", "test"):
            raise GridSpecError(
                f"{where}: unknown item {part!r}; expected train=5y,test=1y[,anchored]"
            )
        if key == "train":
            train = _period(where, key, value)
        else:
            test = _period(where, key, value)
    if train is None or test is None:
        missing = "train" if train is None else "test"
        raise GridSpecError(f"{where}: no {missing}= length; expected train=5y,test=1y[,anchored]")
    return WalkForwardSpec(train=train, test=test, anchored=anchored)
