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
    """Keep the IB client library's own connect-failure lines off the console (they stay in
    the log file): the session reports a failed connect itself, in one line that names the
    host, the port and what to check, and reconnect attempts would repeat them every time."""

    LOGGERS = ("ib_async.client", "ib_insync.client")
    TEXTS = ("API connection failed", "Make sure API port")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name not in self.LOGGERS:
            return True
        text = record.getMessage()
        return not any(text.startswith(t) for t in self.TEXTS)


def setup_logging(name: str, *, console_level: int = logging.WARNING) -> Path:
    """Send bt_ibkr's logs to ``logs/<name>.log`` (INFO and up, with tracebacks) and stderr
    (``console_level``, one line per record, no tracebacks).

    Returns the log file's path. A second call replaces the handlers of the first.
    """
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
    for noisy in ("matplotlib", "matplotlib.font_manager", "yfinance", "peewee", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    return path
