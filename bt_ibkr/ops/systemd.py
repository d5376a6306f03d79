"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``) without a dependency.

A service started by systemd with ``Type=notify`` gets ``NOTIFY_SOCKET`` in its environment: a
datagram socket (a path, or an abstract name starting with ``@``) to which it sends
``READY=1`` once it is up, ``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds (else
systemd restarts it) and ``STATUS=...`` lines that ``systemctl status`` shows. Outside
systemd every call does nothing.
"""

from __future__ import annotations

import os
import socket

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    """Send sd_notify messages to ``$NOTIFY_SOCKET`` (nothing when it is unset)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = environ if environ is not None else os.environ
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 else None
        """Seconds between WATCHDOG=1 pings (half of systemd's WatchdogSec), None: no watchdog."""

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notify socket."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``) as one datagram; return
        True when sent (False outside systemd or when the socket is gone)."""
        if not self.address:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        """Tell systemd the service is up (``READY=1``, with a status line)."""
        return self.notify("READY=1", *( [f"STATUS={status}"] if status else []))

    def watchdog(self, status: str = "") -> bool:
        """Tell systemd the service is alive (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        """Tell systemd the service is stopping (``STOPPING=1``)."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))
