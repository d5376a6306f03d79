"""Render the quantstats tearsheet in a separate process while the caller goes on.

quantstats needs about a second to import (matplotlib, scipy.stats, seaborn) and a few more to
draw its sixteen charts, all in Python under one GIL. :class:`TearsheetWorker` starts one
worker process (``python -m bt_ibkr.tearsheet_worker``) that imports them at once, so the import overlaps whatever the caller does
next (loading bars, simulating); :meth:`TearsheetWorker.submit` then hands it one
:func:`analyzers.tearsheet.write_tearsheet` call, and :meth:`TearsheetJob.result` waits for the
file. The worker is shared by the calls of one process (started once, ended at exit).

The page is the same as when rendered in the caller's process: the worker runs the very same
``write_tearsheet`` on the same (pickled) inputs in a fresh interpreter, in the caller's working
directory and environment as they are when the job is handed over, and the log records it
emits (e.g. "tearsheet written to ...") are re-emitted by the caller's loggers. When the worker
cannot be started or dies, the call runs in the caller's process instead (a warning in the log
says why), so a report is never lost to the parallelism.

``BT_IBKR_REPORT_WORKER=0`` in the environment renders in the caller's process (no second
process: for a machine without a spare core, or to compare). ``matplotlib_cache_dir()`` gives matplotlib a persistent configuration/cache directory when its
default one is not writable (matplotlib would otherwise rebuild its font list in a new temporary
directory on every run, several seconds).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import types
from pathlib import Path
from typing import Any

from bt_ibkr.mpl_cache import matplotlib_cache_dir

__all__ = ["WORKER_ENV", "TearsheetJob", "TearsheetWorker", "matplotlib_cache_dir",
           "shared_worker"]

log = logging.getLogger("bt_ibkr.tearsheet")

WORKER_ENV = "BT_IBKR_REPORT_WORKER"
"""Set to ``0`` to render tearsheets in the caller's process (no worker process)."""


# -- in the worker ------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


class _ImportedOnFirstUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is read: then the
    real module is imported (replacing this one in ``sys.modules``) and answers."""

    def __getattr__(self, attr: str) -> Any:
        import importlib
        import sys

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


def _defer_import(name: str) -> None:
    """Let ``import name`` succeed at once and import the module on first attribute use;
    nothing when it is imported already or not installed."""
    import importlib.util
    import sys

    if name not in sys.modules and importlib.util.find_spec(name) is not None:
        sys.modules[name] = _ImportedOnFirstUse(name)


def _warm_up() -> int:
    """Import what a report needs (in the worker, while the caller works); return the pid.

    quantstats imports yfinance at its top (about half a second) for downloads that a report
    of given return series never makes: in the worker that import waits for a first use.
    """
    _defer_import("yfinance")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import quantstats  # noqa: F401

    import analyzers.tearsheet  # noqa: F401

    return os.getpid()


def _render(job: dict[str, Any]) -> tuple[str | None, str | None, list[tuple[str, int, str]]]:
    """Run write_tearsheet(**job["kwargs"]) in the caller's working directory and environment
    (relative paths, the secrets the page is masked with); return (path, ValueError text, log
    records)."""
    from analyzers.tearsheet import write_tearsheet

    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    kwargs = job["kwargs"]

    handler = _Collect()
    root = logging.getLogger("bt_ibkr")
    old_level, old_propagate = root.level, root.propagate
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    root.propagate = False  # the caller's handlers decide where records go
    try:
        path = write_tearsheet(**kwargs)
        return str(path), None, handler.records
    except ValueError as exc:  # write_tearsheet's documented refusal, raised again by the caller
        return None, str(exc), handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        root.propagate = old_propagate


def _read_frame(stream: Any) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "big")
    data = stream.read(size)
    return data if len(data) == size else None


def _write_frame(stream: Any, data: bytes) -> None:
    stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def _serve() -> None:
    """The worker's main loop (``python -m bt_ibkr.tearsheet_worker``): import, then render
    each pickled job read from stdin, answering on stdout, until stdin ends."""
    import pickle

    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # a library's stray print cannot garble the replies
    try:
        _warm_up()
    except BaseException as exc:  # noqa: BLE001 - every job then says why
        broken = f"the worker could not import what a report needs: {type(exc).__name__}: {exc}"
    else:
        broken = None
    while True:
        data = _read_frame(inp)
        if data is None:
            return
        try:
            reply: Any = broken or _render(pickle.loads(data))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, which renders itself
            reply = f"{type(exc).__name__}: {exc}"
        _write_frame(out, pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


# -- in the caller --------------------------------------------------------------------------------


class TearsheetJob:
    """One tearsheet being written; :meth:`result` waits for it."""

    def __init__(self, worker: TearsheetWorker | None, kwargs: dict[str, Any]) -> None:
        self._worker = worker
        self._kwargs = kwargs

    def done(self) -> bool:
        """True when :meth:`result` would not wait."""
        return self._worker is None or self._worker.ready()

    def result(self) -> Path:
        """Wait for the file and return its path.

        Raises ValueError when ``write_tearsheet`` refused the input (e.g. fewer than two
        days), and whatever it raises when it runs in this process after the worker failed.
        """
        if self._worker is not None:
            worker, self._worker = self._worker, None
            reply = worker.receive()
            if isinstance(reply, tuple):
                path, refusal, records = reply
                for name, level, message in records:
                    logging.getLogger(name).log(level, "%s", message)
                if refusal is not None:
                    raise ValueError(refusal)
                return Path(path)
            log.warning("tearsheet worker failed (%s); rendering in this process", reply)
        from analyzers.tearsheet import write_tearsheet

        return write_tearsheet(**self._kwargs)


def _worker_env() -> dict[str, str]:
    """The caller's environment with the folders holding analyzers and bt_ibkr first on
    PYTHONPATH, so the worker imports the very same code."""
    import importlib.util

    roots = []
    for name in ("analyzers", "bt_ibkr"):  # found, not imported (analyzers imports pandas)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots.append(str(Path(spec.origin).resolve().parent.parent))
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(roots + rest))
    return env


class TearsheetWorker:
    """One worker process that renders tearsheets, one at a time (see the module docstring).

    It reads jobs on its stdin; when the caller exits (or closes it) stdin ends and so does the
    worker, even in the middle of its imports.
    """

    def __init__(self) -> None:
        self._process: Any = None
        self._sender: threading.Thread | None = None
        self._send_error: str | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the process and its imports now (idempotent; returns at once)."""
        import subprocess
        import sys

        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            matplotlib_cache_dir()  # inherited by the worker's environment
            if os.environ.get(WORKER_ENV, "").strip() == "0":
                return  # asked for: every job renders in the caller's process
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "bt_ibkr.tearsheet_worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                    env=_worker_env(), close_fds=True)
            except Exception as exc:  # noqa: BLE001 - e.g. no processes allowed: render here
                log.warning("tearsheet worker not started (%s: %s); rendering in this process",
                            type(exc).__name__, exc)
                self._process = None

    def submit(self, **kwargs: Any) -> TearsheetJob:
        """Hand one ``write_tearsheet(**kwargs)`` call to the worker; return its job.

        The inputs are pickled here and written from a thread (the worker may still be
        importing); when they cannot be pickled, or the worker is not running, the job runs in
        this process when its result is asked for.
        """
        import pickle

        self.start()
        process = self._process
        if process is None:
            return TearsheetJob(None, kwargs)
        job = {"cwd": os.getcwd(), "env": dict(os.environ), "kwargs": kwargs}
        try:
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - unpicklable input: render here
            log.warning("tearsheet inputs cannot go to the worker (%s: %s); rendering in this "
                        "process", type(exc).__name__, exc)
            return TearsheetJob(None, kwargs)
        self._send_error = None

        def send() -> None:
            try:
                _write_frame(process.stdin, payload)
            except Exception as exc:  # noqa: BLE001 - seen by receive()
                self._send_error = f"{type(exc).__name__}: {exc}"

        self._sender = threading.Thread(target=send, name="bt_ibkr-tearsheet-send", daemon=True)
        self._sender.start()
        return TearsheetJob(self, kwargs)

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def ready(self) -> bool:
        """True when a reply (or the worker's end) is waiting to be received."""
        import select

        process = self._process
        if process is None:
            return True
        try:
            return bool(select.select([process.stdout], [], [], 0)[0])
        except (OSError, ValueError):  # e.g. pipes on Windows: say "not yet"
            return False

    def receive(self) -> Any:
        """Wait for the reply to the job sent last: (path, refusal, log records), or a text
        saying why there is none (the worker failed or died)."""
        import pickle

        if self._sender is not None:
            self._sender.join()
        if self._send_error is not None:
            self.close()
            return self._send_error
        process = self._process
        data = _read_frame(process.stdout) if process is not None else None
        if data is None:
            code = process.poll() if process is not None else None
            self.close()
            return f"the worker ended without a reply (exit code {code})"
        return pickle.loads(data)

    def close(self) -> None:
        """End the process (a render under way is abandoned); idempotent."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(5)
        except Exception:  # noqa: BLE001 - it will not go: kill it
            process.kill()


_SHARED: TearsheetWorker | None = None
_SHARED_LOCK = threading.Lock()


def shared_worker() -> TearsheetWorker:
    """Return this process's worker (created on first use, ended at interpreter exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = TearsheetWorker()
            atexit.register(_SHARED.close)
        return _SHARED


if __name__ == "__main__":
    _serve()
