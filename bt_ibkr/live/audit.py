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

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bt_ibkr.masking import (  # noqa: F401 - re-exported: the audit log's masking
    MASK,
    MIN_SECRET_LEN,
    SECRET_ENV_VARS,
    SECRET_NAME_RE,
    RedactingFilter,
    Redactor,
)

KINDS = ("run", "decision", "order", "fill", "connection", "risk", "reconcile", "error", "data",
         "alert")
"""The kinds of audit records."""

log = logging.getLogger(__name__)






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
