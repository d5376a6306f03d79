"""Checks of single configuration values (:mod:`bt_ibkr.live.config` applies them key by key).

Each ``as_*`` function returns the value converted to its type, or raises
:class:`~bt_ibkr.errors.ConfigError` through a :class:`Where`, whose message names where the
value came from (file and key path, environment variable, command-line flag), what was
expected and, for a misspelt key or choice, the closest valid name.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from bt_ibkr.errors import ConfigError


class Where:
    """Builds error messages that name the source of a value (file, environment, CLI)."""

    def __init__(self, origin: str, *, name_key: bool = True) -> None:
        self.origin = origin
        self.name_key = name_key

    def error(self, key: str, message: str) -> ConfigError:
        if not self.name_key:
            return ConfigError(f"{self.origin}: {message}")
        return ConfigError(f"{self.origin}: {key}: {message}")


def unknown_key(where: Where, section: str, key: str, valid: list[str]) -> ConfigError:
    path = f"{section}.{key}" if section else key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else f" (valid keys: {', '.join(valid)})"
    return where.error(path, f"unknown key{hint}")


def as_futures(where: Where, key: str, value: Any) -> dict[str, str]:
    """``{symbol: root}`` of a futures value: ``"ES"``, ``"ES,NQ"``, ``"ES=F:ES"`` (the ``--futures``
    grammar ``SYMBOL[:ROOT]``), a list of symbols, or ``{"ES": "ES"}``; every root checked
    against the roll registry."""
    from collections.abc import Mapping

    from bt_ibkr.futures.registry import get_spec

    if isinstance(value, str):
        parts = [p.partition(":") for p in value.split(",") if p.strip()]
        value = {s.strip(): (r.strip() or s.strip()) for s, _, r in parts}
    elif isinstance(value, (list, tuple)):
        value = {v: v for v in value}
    if not isinstance(value, Mapping):
        raise where.error(key, f'expected "ES", "ES,NQ", "ES=F:ES" or {{"ES": "ES"}}, got {value!r}')
    out: dict[str, str] = {}
    for sym, root in value.items():
        if not isinstance(sym, str) or not sym.strip() or not isinstance(root, str):
            raise where.error(key, f"expected a symbol and its futures root, got {sym!r}: "
                                   f"{root!r}")
        try:
            out[sym.strip()] = get_spec(root).root
        except ConfigError as exc:
            raise where.error(f"{key}.{sym.strip()}", str(exc)) from None
    return out


def as_int(where: Where, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise where.error(key, f"expected an integer {lo}..{hi}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise where.error(key, f"expected an integer {lo}..{hi}, got {value!r}") from None
    if not isinstance(value, int) or not lo <= value <= hi:
        raise where.error(key, f"expected an integer {lo}..{hi}, got {value!r}")
    return value


def as_float(
    where: Where, key: str, value: Any, *, lo: float, hi: float | None = None,
    lo_open: bool = True, hi_open: bool = True, nullable: bool = False,
) -> float | None:
    if value is None and nullable:
        return None
    expected = "a number" + (" or null" if nullable else "")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise where.error(key, f"expected {expected}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(key, f"expected {expected}, got {value!r}")
    value = float(value)
    too_low = value <= lo if lo_open else value < lo
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        rng = f"{'>' if lo_open else '>='} {lo:g}"
        if hi is not None:
            rng += f" and {'<' if hi_open else '<='} {hi:g}"
        raise where.error(key, f"expected a number {rng}, got {value!r}")
    return value


def as_bool(where: Where, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
    raise where.error(key, f"expected true or false, got {value!r}")


def as_str(where: Where, key: str, value: Any, *, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip():
        raise where.error(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def as_choice(where: Where, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.strip().lower(), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise where.error(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}{hint}")


def as_symbols(where: Where, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [s for s in (part.strip() for part in value.split(",")) if s]
    if not isinstance(value, (list, tuple)) or not value:
        raise where.error(key, f"expected a non-empty list of symbols, got {value!r}")
    out: list[str] = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise where.error(f"{key}[{i}]", f"expected a symbol string, got {item!r}")
        sym = item.strip()
        if sym in out:
            raise where.error(f"{key}[{i}]", f"duplicate symbol {sym!r}")
        out.append(sym)
    return out


_DECIDE_AT = re.compile(r"^\s*(close|open)\s*(?:([+-])\s*(\d+)\s*(m|min|h))?\s*$")


def parse_decide_at(text: str | None) -> tuple[str, int]:
    """Return ``(anchor, minutes)`` of a decision time like ``close+5m``, ``open-15m``,
    ``close`` or ``close+1h`` (minutes after the anchor; negative: before).

    Raises:
        ConfigError: anything else (the message shows the form).
    """
    m = _DECIDE_AT.match(str(text or ""))
    if not m:
        raise ConfigError(f"decide_at {text!r}: expected close|open[+-N m|h], e.g. close+5m or "
                          "open-15m")
    anchor, sign, n, unit = m.groups()
    minutes = int(n or 0) * (60 if unit == "h" else 1) * (-1 if sign == "-" else 1)
    if abs(minutes) > 12 * 60:
        raise ConfigError(f"decide_at {text!r}: at most 12 hours from the {anchor}")
    return anchor, minutes
