"""Alerts for an unattended run, through Apprise: one setting reaches mail, chat and webhooks.

``BT_IBKR_ALERT_URLS`` holds one or more Apprise URLs (separated by spaces, commas or
newlines), e.g. ``mailtos://user:pass@example.com``, ``tgram://bottoken/chatid``,
``ntfys://topic``, ``json://host:port/path``; see Apprise's documentation for the rest. The URLs
carry credentials: they are read only from the environment and masked in every log line and
output (:class:`~bt_ibkr.live.audit.Redactor`).

:class:`Alerter` never blocks trading: :meth:`Alerter.send` queues the alert and returns at
once, one background thread delivers it. Delivery failures are logged (masked) and never
raised. Repeats are deduplicated: an alert with the same ``key`` within ``repeat_after``
seconds is held back and counted, and the next one delivered says how many were held. A
rate limit caps deliveries per hour; past it, alerts are dropped and logged (one line per
hour). The last alerts are kept for the status page (:meth:`Alerter.recent`).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bt_ibkr.errors import ConfigError

__all__ = ["ALERT_URLS_ENV", "Alert", "Alerter", "alert_urls"]

log = logging.getLogger("bt_ibkr.alerts")

ALERT_URLS_ENV = "BT_IBKR_ALERT_URLS"
"""The environment variable that holds the Apprise URLs (a secret: masked everywhere)."""

LEVELS = ("info", "success", "warning", "failure")


@dataclass(frozen=True)
class Alert:
    """One alert: ``kind`` (start, stop, fill, rejection, halt, account, stale_data,
    disconnect, gateway_login, crash ...), a one-line ``title``, a ``body``, a ``level``
    (info, success, warning, failure) and a dedupe ``key`` (default: kind + title)."""

    kind: str
    title: str
    body: str = ""
    level: str = "info"
    key: str = ""
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def dedupe_key(self) -> str:
        """Return the key repeats are recognised by."""
        return self.key or f"{self.kind}:{self.title}"


def alert_urls(environ: dict[str, str] | None = None) -> list[str]:
    """Return the Apprise URLs of ``BT_IBKR_ALERT_URLS`` (empty list when unset)."""
    text = (environ if environ is not None else os.environ).get(ALERT_URLS_ENV, "")
    return [u for u in re.split(r"[\s,]+", text) if u]


class Alerter:
    """Deliver alerts through Apprise in a background thread (see the module docstring).

    Args:
        urls: Apprise URLs; None reads ``BT_IBKR_ALERT_URLS``. No URL: alerts are only logged
            and kept for the status page.
        mask: turns a text into its masked form (a Redactor's ``text``); the URLs are always
            masked.
        repeat_after: seconds during which a repeat of the same key is held back.
        max_per_hour: deliveries per rolling hour; more are dropped (logged).
        clock: monotonic seconds (tests pass their own).
        timeout: seconds Apprise may take per delivery.

    Raises:
        ConfigError: a URL Apprise does not understand (the message names the variable and the
            URL's scheme, never the URL).
    """

    def __init__(self, urls: Iterable[str] | None = None, *,
                 mask: Callable[[str], str] | None = None, repeat_after: float = 600.0,
                 max_per_hour: int = 60, clock: Callable[[], float] = time.monotonic,
                 timeout: float = 10.0) -> None:
        import apprise

        self.urls = list(alert_urls() if urls is None else urls)
        self._secrets = [u for u in self.urls if u]
        self._mask_extra = mask
        self._apprise = apprise.Apprise()
        for url in self.urls:
            if not self._apprise.add(url):
                scheme = url.split("://", 1)[0] if "://" in url else "?"
                raise ConfigError(
                    f"{ALERT_URLS_ENV}: Apprise does not understand a URL of scheme "
                    f"{scheme!r}; check the URL against Apprise's list of services")
        self.repeat_after = float(repeat_after)
        self.max_per_hour = int(max_per_hour)
        self.timeout = float(timeout)
        self._clock = clock
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._sent_times: deque[float] = deque()
        self._dropped_logged_at: float | None = None
        self._recent: deque[tuple[Alert, str]] = deque(maxlen=50)
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._work, name="bt_ibkr-alerts", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ masking
    def mask(self, text: str) -> str:
        """Return ``text`` with the alert URLs (and the given mask's secrets) hidden."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return self._mask_extra(text) if self._mask_extra else text

    @property
    def enabled(self) -> bool:
        """True when at least one URL is configured."""
        return bool(self.urls)

    # ------------------------------------------------------------------ sending
    def send(self, alert: Alert) -> str:
        """Queue ``alert`` for delivery; return what happened to it: ``"queued"``, ``"held"``
        (a repeat within ``repeat_after``), ``"dropped"`` (past the hourly limit) or
        ``"logged"`` (no URL configured). Never raises, never blocks."""
        try:
            return self._admit(alert)
        except Exception:  # noqa: BLE001 - an alert must never stop trading
            log.exception("alert %s could not be queued", alert.kind)
            return "failed"

    def _admit(self, alert: Alert) -> str:
        now = self._clock()
        key = alert.dedupe_key()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and now - last < self.repeat_after:
                self._held[key] = self._held.get(key, 0) + 1
                self._recent.append((alert, "held"))
                return "held"
            while self._sent_times and now - self._sent_times[0] >= 3600.0:
                self._sent_times.popleft()
            if len(self._sent_times) >= self.max_per_hour:
                if self._dropped_logged_at is None or now - self._dropped_logged_at >= 3600:
                    self._dropped_logged_at = now
                    log.warning("alerts: more than %d in an hour; dropping until the hour "
                                "passes (each is still in the log)", self.max_per_hour)
                log.info("alert dropped (rate limit): %s", self.mask(alert.title))
                self._recent.append((alert, "dropped"))
                return "dropped"
            self._last_sent[key] = now
            self._sent_times.append(now)
            held = self._held.pop(key, 0)
        outcome = "queued" if self.enabled else "logged"
        self._recent.append((alert, outcome))
        # the log file keeps every alert; the console has already said what happened
        log.info("alert [%s] %s", alert.kind, self.mask(alert.title))
        if self.enabled:
            self._queue.put((alert, held))
        return outcome

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            alert, held = item
            try:
                self._deliver(alert, held)
            except Exception as exc:  # noqa: BLE001 - logged, never raised
                self.failed += 1
                log.warning("alert [%s] not delivered: %s", alert.kind,
                            self.mask(f"{type(exc).__name__}: {exc}"))
            finally:
                self._queue.task_done()

    def _deliver(self, alert: Alert, held: int) -> None:
        from apprise import NotifyType

        body = alert.body or alert.title
        if held:
            body += f"\n({held} more of these since the last one were held back)"
        kind = alert.level if alert.level in LEVELS else "info"
        ok = self._apprise.notify(body=self.mask(body), title=self.mask(f"bt_ibkr: {alert.title}"),
                                  notify_type=NotifyType(kind), timeout=self.timeout)
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning("alert [%s] not delivered by at least one service (see the Apprise "
                        "log lines above)", alert.kind)

    # ------------------------------------------------------------------ queries
    def recent(self, n: int = 20) -> list[dict]:
        """Return the last ``n`` alerts, newest first, as dicts (time, kind, level, title,
        outcome), masked."""
        items = list(self._recent)[-n:]
        return [{"time": a.time.isoformat(timespec="seconds"), "kind": a.kind, "level": a.level,
                 "title": self.mask(a.title), "outcome": outcome}
                for a, outcome in reversed(items)]

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert is delivered or failed (at most ``timeout`` seconds);
        return True when the queue is empty."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (at most ``timeout`` seconds), then stop the thread."""
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout=1.0)
