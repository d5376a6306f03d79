"""A loopback HTTP receiver for alerts sent through real Apprise."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# ----------------------------------------------------------------------------------- alerts
class Receiver:
    """An HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        bodies: list[dict] = []
        arrived = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                data = json.loads(self.rfile.read(length) or b"{}")
                self.send_response(status)
                self.end_headers()
                with arrived:
                    bodies.append(data)
                    arrived.notify_all()

            def log_message(self, *args):
                pass

        self.bodies = bodies
        self._arrived = arrived
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def wait_for(self, n: int, timeout: float = 30.0) -> list[dict]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.bodies) >= n, timeout=timeout)
        return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
