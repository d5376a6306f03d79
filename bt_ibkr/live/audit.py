"""Audit log: one JSON object per line for every decision, order, fill and connection event.

Each line is ``{"ts": "<UTC ISO-8601>", "kind": "<kind>", ...fields}``, written, flushed and
fsync'd before :meth:`AuditLog.write` returns, so a crash loses at most the line being written
(:func:`read_audit` skips such a torn last line). Safe to call from several threads.

No secrets: every value passes :class:`Redactor` first. Values under keys that look like secrets
(``password``, ``token``, ``api_key``, ``credentials`` ...) become ``"***"``, and every known
secret value (``LiveConfig.secrets``, ``TWS_PASSWORD`` and the other variables of
:data:`bt_ibkr.live.config.SECRET_ENV_VARS`, environment variables whose names look like secrets) is
masked wherever it appears inside a string. A secret shorter than :data:`MIN_SECRET_LEN` is
not masked inside text (it would hide ordinary words: a 3-letter secret hits symbols and
orderRefs); a warning says so once, without the value.

The same :class:`Redactor` guards every other output of a run: :class:`RedactingFilter` on the
log handlers (the log file and stderr), the status lines and the JSON summary.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bt_ibkr.live.config import SECRET_ENV_VARS, SECRET_NAME_RE

KINDS = ("run", "decision", "order", "fill", "connection", "risk", "reconcile", "error", "data",
         "alert")
"""The kinds of audit records."""
MASK = "***"
MIN_SECRET_LEN = 6
"""Secrets shorter than this are not masked inside text (they would hit ordinary words)."""

log = logging.getLogger(__name__)


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


class AuditLog:
    """Append-only JSON-lines audit file (parent folders created).

    Args:
        path: the file (e.g. ``logs/audit-20240105.jsonl``, see :func:`audit_path`).
        secrets: extra secret values to mask (e.g. ``LiveConfig.secrets.values()``).
        env: environment to take secrets from (default ``os.environ``).
    """

    def __init__(self, path: Path | str, secrets: Iterable[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.redact = Redactor(secrets, env)
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")  # closed in close()
        #: called with every record as written (redacted), after it is on disk: the
        #: operator's status, metrics and alerts (bt_ibkr.ops.operator); a listener that
        #: raises is logged and never stops the write or the run
        self.listeners: list = []

    def write(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Append one record; return it as written (after redaction).

        Raises:
            ValueError: ``kind`` is not one of :data:`KINDS`.
            OSError: the file cannot be written (``filename`` is the audit log).
        """
        if kind not in KINDS:
            raise ValueError(f"audit kind {kind!r}: expected one of {', '.join(KINDS)}")
        record: dict[str, Any] = {"ts": datetime.now(UTC).isoformat(), "kind": kind}
        for key, value in self.redact(fields).items():
            record[f"_{key}" if key in ("ts", "kind") else key] = value
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._fh.write(line)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:  # a write to an open file names none: name the log
                if exc.filename:
                    raise
                raise type(exc)(exc.errno, exc.strerror or str(exc), str(self.path)) from exc
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # noqa: BLE001 - a listener never stops the audit or the run
                logging.getLogger("bt_ibkr.live").exception("audit listener failed")
        return record

    def close(self) -> None:
        """Close the file (idempotent). Never raises for the disk: every line was flushed
        when written, so only a line whose write already raised can be left behind."""
        with self._lock:
            if not self._fh.closed:
                try:
                    self._fh.close()
                except OSError:  # a full disk: the line that failed was raised at write()
                    pass

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audit_path(logs_dir: Path | str, when: datetime | None = None) -> Path:
    """Return the audit file for a day: ``<logs_dir>/audit-YYYYMMDD.jsonl`` (UTC date)."""
    when = when or datetime.now(UTC)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return Path(logs_dir) / f"audit-{when:%Y%m%d}.jsonl"


def read_audit(path: Path | str) -> list[dict[str, Any]]:
    """Return every record of an audit file, in order.

    A torn last line (the process died while writing it) is skipped.

    Raises:
        ValueError: a line other than the last is not valid JSON (names the file and line).
        FileNotFoundError: no such file.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines):  # last piece has no trailing newline: torn write
                break
            raise ValueError(f"audit log {path}: line {i} is not valid JSON ({exc.msg})") from None
    return out
