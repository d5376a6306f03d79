"""Logging set-up shared by the command-line entry points: a file under ``logs/`` plus stderr."""

from __future__ import annotations

import logging
import os
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    """Return the log folder (``$BT_IBKR_LOG_DIR`` or ``./logs``), created if missing."""
    path = Path(os.environ.get("BT_IBKR_LOG_DIR", "logs"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class OneLineFormatter(logging.Formatter):
    """A formatter for the console: the message only, never a traceback or stack (those go
    to the log file), so a failing command still ends in one clear line."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        return self.formatMessage(record)


class ClientConnectNoise(logging.Filter):
    """Keep the IB client library's lines about what bt_ibkr handles itself off the console
    (they stay in the log file): a failed connect (the session reports it in one line that
    names the host, the port and what to check; reconnect attempts would repeat it every
    time), IB's "HMDS query returned no data" (162 for a stretch without sessions, which
    the history download reads as no bars) and "No security definition" (200, which the
    contract lookup reports itself, naming the symbol and the expected form)."""

    CONNECT = ("API connection failed", "Make sure API port")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("ib_async.", "ib_insync.")):
            return True
        text = record.getMessage()
        if record.name.endswith(".client"):
            return not text.startswith(self.CONNECT)
        if record.name.endswith(".wrapper"):
            return not ((text.startswith("Error 162") and "returned no data" in text)
                        or text.startswith("Error 200,"))
        return True


def setup_logging(name: str, *, console_level: int = logging.WARNING) -> Path:
    """Send bt_ibkr's logs to ``logs/<name>.log`` (INFO and up, with tracebacks) and stderr
    (``console_level``, one line per record, no tracebacks), the environment's secrets masked
    in both (:func:`bt_ibkr.redaction.env_redactor`, the live run's Redactor).

    Returns the log file's path. A second call replaces the handlers of the first.
    """
    from bt_ibkr.masking import RedactingFilter
    from bt_ibkr.redaction import env_redactor

    path = log_dir() / f"{name}.log"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [h for h in root.handlers if getattr(h, "_bt_ibkr", None)]:
        root.removeHandler(handler)
        handler.close()
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setLevel(logging.INFO)
    fh.setFormatter(logging.Formatter(_FORMAT))
    fh._bt_ibkr = "file"  # type: ignore[attr-defined]
    root.addHandler(fh)
    sh = logging.StreamHandler()
    sh.setLevel(console_level)
    sh.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    sh.addFilter(ClientConnectNoise())
    sh._bt_ibkr = "console"  # type: ignore[attr-defined]
    root.addHandler(sh)
    masking = RedactingFilter(env_redactor())
    fh.addFilter(masking)
    sh.addFilter(masking)
    for noisy in ("matplotlib", "matplotlib.font_manager", "yfinance", "peewee", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return path
