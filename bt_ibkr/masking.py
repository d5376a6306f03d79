"""What counts as a secret and how it is masked: one leaf module for every output.

:class:`Redactor` masks secrets in any data (the values of :data:`SECRET_ENV_VARS` and of
variables whose names match :data:`SECRET_NAME_RE`); :class:`RedactingFilter` applies it to log
records. The live run's audit log, its config printout, the CLIs' files and lines
(:mod:`bt_ibkr.redaction`) and the log handlers (:mod:`bt_ibkr.logs`) all mask through these.
It imports nothing of bt_ibkr, so any floor of the house may use it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

__all__ = ["MASK", "MIN_SECRET_LEN", "RedactingFilter", "Redactor", "SECRET_ENV_VARS",
           "SECRET_NAME_RE"]

log = logging.getLogger("bt_ibkr.masking")

SECRET_ENV_VARS = (
    "BT_IBKR_ALERT_URLS",
    "BT_IBKR_HTTP_TOKEN",
    "TWS_USERID",
    "TWS_PASSWORD",
    "TWS_USERID_PAPER",
    "TWS_PASSWORD_PAPER",
)
"""Environment variables always treated as secrets (read into ``LiveConfig.secrets``)."""

SECRET_NAME_RE = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)
"""A key or variable name that matches this holds a secret (used by redaction everywhere)."""

MASK = "***"
MIN_SECRET_LEN = 6
"""Secrets shorter than this are not masked inside text (they would hit ordinary words)."""


class Redactor:
    """Masks secrets in arbitrary data (dicts, lists, dataclasses, strings ...).

    Args:
        secrets: secret values to mask wherever they appear in a string.
        env: environment to take secrets from (default ``os.environ``): the variables in
            ``SECRET_ENV_VARS`` (any non-empty value) and any variable whose name matches
            ``pass|secret|token|key|credential`` (values of 6+ characters). Pass ``{}`` to
            use only ``secrets``.

    Secrets shorter than :data:`MIN_SECRET_LEN` are not masked inside text (a warning is
    logged once per such secret, naming its length only); values under secret-looking keys
    are masked whatever their length.
    """

    def __init__(self, secrets: Iterable[str] = (), env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        found = {s for s in secrets if isinstance(s, str) and s}
        for name, value in env.items():
            if not value:
                continue
            if name in SECRET_ENV_VARS:
                found.add(value)
            elif SECRET_NAME_RE.search(name) and len(value) >= MIN_SECRET_LEN:
                found.add(value)
        self._secrets: list[str] = []
        self._warned: set[int] = set()
        self.add(*found)

    def add(self, *secrets: str) -> None:
        """Mask these values too from now on (too short ones: see the class docstring)."""
        keep = set(self._secrets)
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                continue
            if len(secret) < MIN_SECRET_LEN:
                key = hash(secret)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("a secret of %d characters is too short to mask inside logs and "
                                "summaries without hiding ordinary words (symbols, orderRefs); "
                                "it is masked only under secret-named keys: use a longer one",
                                len(secret))
                continue
            keep.add(secret)
        # longest first, so a secret that contains another is masked whole
        self._secrets = sorted(keep, key=len, reverse=True)

    def text(self, value: str) -> str:
        """Return ``value`` with every known secret replaced by ``***``."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def __call__(self, value: Any) -> Any:
        """Return a JSON-able copy of ``value`` with secrets masked."""
        return self._clean(value, 0)

    def _clean(self, value: Any, depth: int) -> Any:
        if depth > 20:
            return self.text(repr(value))
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC)
            return value.isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return self._clean(value.value, depth + 1)
        if isinstance(value, Path):
            return self.text(str(value))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                     if f.repr}
        if isinstance(value, Mapping):
            return {
                str(k): (MASK if SECRET_NAME_RE.search(str(k))
                         and v is not None and v != "" and not isinstance(v, bool)
                         else self._clean(v, depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v, depth + 1) for v in value]
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return self.text(str(value))


class RedactingFilter(logging.Filter):
    """A logging filter that masks a :class:`Redactor`'s secrets in each record's message and
    traceback; add it to a handler (:meth:`install`) so the file and stderr never show them."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        # The record is shared by every handler (and filter) after this one: it is rewritten
        # only where a secret shows, so the others keep its message template and arguments.
        try:
            message = record.getMessage()
            masked = self.redactor.text(message)
        except Exception:  # noqa: BLE001 - a bad format string still gets logged, masked
            message = None
            masked = self.redactor.text(f"{record.msg!r} {record.args!r}")
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            clean = self.redactor.text(text)
            if clean != text:
                record.exc_info, record.exc_text = None, clean
        elif record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        return True

    def install(self, logger: logging.Logger | None = None) -> RedactingFilter:
        """Add this filter to every handler of ``logger`` (default: the root logger)."""
        for handler in (logger or logging.getLogger()).handlers:
            if self not in handler.filters:
                handler.addFilter(self)
        return self

    def remove(self, logger: logging.Logger | None = None) -> None:
        """Take it off the handlers again."""
        for handler in (logger or logging.getLogger()).handlers:
            handler.removeFilter(self)
