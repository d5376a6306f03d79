"""The run's one optional HTTP port: ``/healthz``, ``/metrics`` (Prometheus) and ``/`` (the
status page).

Bound to loopback by default. Any other address needs a token (``BT_IBKR_HTTP_TOKEN``, a
secret): requests must carry ``Authorization: Bearer <token>`` or ``?token=<token>``, else
401. ``/healthz`` answers 200 ``ok`` or 503 ``degraded: <reasons>``, so it can be a container
or load-balancer health check. The server runs in its own daemon thread and never touches
the IB client: it only reads the :class:`~bt_ibkr.ops.status.RunStatus` snapshot.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from bt_ibkr.errors import ConfigError
from bt_ibkr.ops.metrics import RunMetrics
from bt_ibkr.ops.status import RunStatus, health, render_page

__all__ = ["HTTP_TOKEN_ENV", "StatusServer"]

log = logging.getLogger("bt_ibkr.http")

HTTP_TOKEN_ENV = "BT_IBKR_HTTP_TOKEN"


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusServer:
    """Serve a run's health, metrics and status page (see the module docstring).

    Args:
        status: returns the current snapshot (a copy is rendered).
        host, port: where to listen (port 0: any free port; see :attr:`url`).
        token: required when ``host`` is not loopback.
        metrics: the run's :class:`RunMetrics` (made from ``status`` when None).

    Raises:
        ConfigError: a non-loopback host without a token; a port that cannot be bound (the
            message names it).
    """

    def __init__(self, status: Callable[[], RunStatus], host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, metrics: RunMetrics | None = None) -> None:
        if not _loopback(host) and not token:
            raise ConfigError(f"http host {host!r} is not loopback: set {HTTP_TOKEN_ENV} (a "
                              "token every request must carry) or listen on 127.0.0.1")
        self._status = status
        self.metrics = metrics or RunMetrics(lambda: status())
        self.token = token or None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server._handle(self)

            def log_message(self, fmt, *args):
                log.debug("http %s", fmt % args)

        try:
            self._httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as exc:
            raise ConfigError(f"http port {host}:{port}: cannot listen ({exc.strerror or exc}); "
                              "choose another --http-port") from None
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> StatusServer:
        """Serve in a daemon thread; return self."""
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="bt_ibkr-http", daemon=True)
        self._thread.start()
        log.info("status page %s/ (health %s/healthz, metrics %s/metrics)", self.url,
                 self.url, self.url)
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def _authorized(self, req: BaseHTTPRequestHandler) -> bool:
        if not self.token:
            return True
        given = ""
        auth = req.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        else:
            given = (parse_qs(urlsplit(req.path).query).get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = urlsplit(req.path).path
        if not self._authorized(req):
            self._send(req, 401, b"token required\n", "text/plain")
            return
        try:
            if path == "/healthz":
                h = health(self._status().copy())
                self._send(req, 200 if h.ok else 503, (h.text() + "\n").encode(), "text/plain")
            elif path == "/metrics":  # its collector reads the snapshot itself, once
                self._send(req, 200, self.metrics.render(),
                           "text/plain; version=0.0.4; charset=utf-8")
            elif path in ("/", "/index.html"):
                self._send(req, 200, render_page(self._status().copy()).encode(),
                           "text/html; charset=utf-8")
            else:
                self._send(req, 404, b"not found\n", "text/plain")
        except Exception:  # noqa: BLE001 - a page error must never reach the run
            log.exception("http %s failed", path)
            self._send(req, 500, b"internal error (see the log)\n", "text/plain")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(body)
