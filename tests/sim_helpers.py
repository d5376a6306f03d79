"""Helpers shared by the gateway simulator's contract tests (real clients, no mocks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DECODER_LOGGERS = ("ib_async.Decoder", "ib_insync.decoder", "ib_async.decoder")


class DecoderErrorCatcher(logging.Handler):
    """Collects ERROR records from the clients' decoders (G3: a dropped message logs only)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> DecoderErrorCatcher:
        for name in DECODER_LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def remove(self) -> None:
        for name in DECODER_LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def messages(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


def wait_until(cond: Callable[[], object], pump: Callable[[float], object],
               timeout: float = 5.0) -> None:
    """Pump the client's loop (``ib.sleep``) until ``cond()`` is truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (hang guard)")
        pump(0.01)


def poll_until(pred: Callable[[], object], timeout: float = 120.0, what: str = "condition",
               interval: float = 0.005) -> None:
    """Poll ``pred()`` from this thread until truthy (for code whose own threads do the work,
    e.g. IBStore's loop); raise AssertionError naming ``what`` after ``timeout`` (hang guard)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
