"""LoopThread: one asyncio event loop in one daemon thread, and the thread-safe ways in.

backtrader's thread never runs the loop and never waits on it per bar: it hands work over with
:meth:`LoopThread.post` (fire and forget, ``call_soon_threadsafe``) or, for start-up calls,
:meth:`LoopThread.run` / :meth:`LoopThread.call` (``run_coroutine_threadsafe``, blocking for
the result).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread; ``run(coro)`` blocks for its result."""

    def __init__(self, name: str = "bt_ibkr-ib") -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            try:
                self.loop.run_forever()
            finally:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.close()

        self.thread = threading.Thread(target=main, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    @property
    def alive(self) -> bool:
        """True while the loop runs."""
        return self.thread.is_alive() and not self.loop.is_closed()

    def in_thread(self) -> bool:
        """Return True when called from the loop's own thread."""
        return threading.current_thread() is self.thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (blocks the caller).

        Raises TypeError for a non-coroutine, RuntimeError when called from the loop thread
        (it would deadlock), ``TimeoutError`` after ``timeout`` seconds (the coroutine is
        cancelled) and whatever the coroutine raises.
        """
        if not asyncio.iscoroutine(coro):
            raise TypeError("run() needs a coroutine object: wrap the IB call in an async function "
                            "so that it is created on the connection's loop, not in this thread")
        if self.in_thread():
            coro.close()
            raise RuntimeError("run() called from the loop thread would deadlock")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
        """Call the plain function ``fn(*args)`` in the loop thread and return its result."""

        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper(), timeout=timeout)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` in the loop thread and return at once (fire and forget)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs) and join the thread (idempotent)."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
