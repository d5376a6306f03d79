"""The bar file of a session record: rotated into numbered parts, closed parts gzip'd.

A session folder holds its bars as JSON lines (one :class:`~bt_ibkr.records.recorder.BarRecord`
per line) in

* ``bars.000001.jsonl.gz``, ``bars.000002.jsonl.gz`` ...: closed parts, oldest first;
* ``bars.jsonl``: the active part, appended and flushed line by line (a killed process loses
  at most the line being written; a torn last line is skipped when read).

:class:`BarsWriter` appends to ``bars.jsonl``; once it reaches ``part_bytes`` (default
:data:`DEFAULT_PART_BYTES`) it is renamed to the next numbered part and a new ``bars.jsonl``
is started, and the closed part is compressed in the background (:func:`compress_part`). On a
clean close an active part of :data:`SEAL_BYTES` (or half a part) or more is closed and
compressed too, so a finished stream session is all gzip; a small one (a daily run's) stays
plain ``bars.jsonl``.
A session recorded before rotation existed (only ``bars.jsonl``) reads the same.

Compression is crash-safe: the gzip is written to a hidden temporary file, fsync'd, checked
against the plain part, renamed to ``bars.NNNNNN.jsonl.gz`` (atomic), and only then is the
plain part removed. A kill at any point leaves either the plain part alone, or the plain part
and a stray temporary (ignored), or both the plain part and its complete gzip: readers take
exactly one file per part number (the gzip, or the plain part when the gzip is damaged), so no
bar is lost or read twice. :func:`repair` finishes such interrupted work; the writer holds a
lock on ``.lock`` in the folder while it writes so that :func:`repair` (and retention, see
:mod:`bt_ibkr.records.retention`) leave a session being written alone.

A record that cannot be written (a full disk, a read-only folder, something in the way of a
part, a part that cannot be compressed) raises :class:`~bt_ibkr.errors.RecordsError`, whose
message names the file and what to do (:func:`records_error`); a compression that fails in
the background is raised by the writer's next ``write`` or its ``close``.

:func:`iter_lines` / :func:`iter_records` read every part in order, one line at a time.
Raises ConfigError for a gzip part that cannot be read (the message names the file).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from bt_ibkr.errors import ConfigError, RecordsError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, sessions are never seen as busy
    fcntl = None

log = logging.getLogger("bt_ibkr.records")

BARS = "bars.jsonl"
LOCK = ".lock"
MIB = 1024 * 1024
DEFAULT_PART_BYTES = 16 * MIB
"""Rotate ``bars.jsonl`` past this size (about a week of 5-second bars of one symbol)."""
SEAL_BYTES = MIB
"""On a clean close an active part at least this large (or half ``part_bytes``, if that is
smaller) is closed and compressed too."""
PART_RE = re.compile(r"^bars\.(\d+)\.jsonl(\.gz)?$")
_TMP_RE = re.compile(r"^\.bars\.\d+\.jsonl\.gz\..*\.tmp$")
_CHUNK = MIB


def part_path(directory: Path, number: int, gz: bool = False) -> Path:
    """Return the path of closed part ``number`` (``bars.000001.jsonl[.gz]``)."""
    return Path(directory) / f"bars.{number:06d}.jsonl{'.gz' if gz else ''}"


def closed_parts(directory: Path) -> dict[int, dict[str, Path]]:
    """Return ``{number: {"gz": path, "plain": path}}`` of the closed parts in ``directory``
    (either key may be missing)."""
    parts: dict[int, dict[str, Path]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            m = PART_RE.match(entry.name)
            if m:
                kind = "gz" if m.group(2) else "plain"
                parts.setdefault(int(m.group(1)), {})[kind] = Path(entry.path)
    return dict(sorted(parts.items()))


def part_files(directory: Path) -> list[Path]:
    """Return the files a reader takes, in reading order: per closed part its gzip (else its
    plain file), then the active ``bars.jsonl`` if there is one."""
    out = [p.get("gz") or p["plain"] for p in closed_parts(directory).values()]
    active = Path(directory) / BARS
    if active.is_file():
        out.append(active)
    return out


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_IN_THE_WAY = {errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY}


def records_error(exc: OSError, path: Path, doing: str, note: str = "") -> RecordsError:
    """Return the :class:`~bt_ibkr.errors.RecordsError` for ``exc``, raised while ``doing``
    (e.g. "append a bar to it") to the record file ``path``: one line naming the file, the
    OS's reason (and ``note``) and what to do. A RecordsError is returned as it is."""
    if isinstance(exc, RecordsError):
        return exc
    path = Path(path)
    folder = path.parent
    code = exc.errno
    reason = exc.strerror or str(exc) or type(exc).__name__
    if note:
        reason = f"{reason}; {note}"
    if code in _FULL:
        advice = f"free disk space where {folder} is (or raise its quota or file-size limit)"
    elif code in _DENIED:
        advice = f"make {folder} writable (permissions, read-only mount)"
    elif code in _IN_THE_WAY:  # a rename's target (filename2) is what is in the way
        blocker = exc.filename2 or exc.filename or path
        advice = f"move {blocker}, which is in the way, out of the session folder"
    else:
        advice = f"check the disk of {folder}"
    return RecordsError(f"session record {path}: cannot {doing} ({reason}); {advice}, then run "
                        "again; a live run stops when its record cannot be written (the "
                        "journal is safe)", path, code)


def fsync_dir(directory: Path) -> None:
    """fsync ``directory`` so that a rename or unlink in it survives a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ reading
def _gz_lines(path: Path) -> Iterator[str]:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        yield from fh


def _plain_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from fh


def _skip(n: int, lines: Iterator[str]) -> Iterator[str]:
    for k, line in enumerate(lines):
        if k >= n:
            yield line


def _part_lines(directory: Path, number: int, files: dict[str, Path]) -> Iterator[str]:
    """One part's lines: its gzip; the plain file when the gzip is damaged (from the line the
    gzip stopped at); the gzip when the plain file was compressed away since it was listed."""
    gz, plain = files.get("gz"), files.get("plain")
    done = 0
    if gz is not None:
        try:
            for line in _gz_lines(gz):
                yield line
                done += 1
            return
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            if plain is None or not plain.is_file():
                raise ConfigError(f"session part {gz} cannot be read ({exc}) after {done} "
                                  "lines; restore it from a backup, or move it out of the "
                                  "folder to read the other parts") from None
            log.warning("session part %s cannot be read (%s): reading %s from line %d",
                        gz, exc, plain.name, done)
    try:
        yield from _skip(done, _plain_lines(plain))
    except FileNotFoundError:
        try:
            yield from _skip(done, _gz_lines(part_path(directory, number, gz=True)))
        except FileNotFoundError:
            raise ConfigError(f"session part {plain} was removed while it was being read "
                              "(by retention?); read the session again") from None


def iter_lines(directory: Path) -> Iterator[str]:
    """Yield every line of the session's bar file, closed parts in order then the active one."""
    directory = Path(directory)
    for number, files in closed_parts(directory).items():
        yield from _part_lines(directory, number, files)
    active = directory / BARS
    with contextlib.suppress(FileNotFoundError):
        yield from _plain_lines(active)


def check_record(directory: Path) -> list[str]:
    """Check a record's files before a replay; return notes (a torn LAST line of the active
    file: a run killed mid-write, skipped).

    Raises:
        ConfigError: a closed part is missing (``bars.000002.jsonl.gz`` gone while 1 and 3
            exist), or a line inside the record does not parse (file and line named): the
            record cannot be replayed as it was written.
    """
    from bt_ibkr.errors import ConfigError

    directory = Path(directory)
    parts = closed_parts(directory)
    if parts:
        missing = [n for n in range(1, max(parts) + 1) if n not in parts]
        if missing:
            raise ConfigError(f"--replay {directory}: part {missing[0]} of the record is missing "
                              f"(bars.{missing[0]:06d}.jsonl.gz): it cannot be replayed as it was "
                              "written; restore the file or move the record away")
    notes = []
    files = part_files(directory)
    for path in files:
        lines = _gz_lines(path) if path.suffix == ".gz" else _plain_lines(path)
        bad = []
        count = 0
        for count, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError:
                bad.append(count)
        if not bad:
            continue
        if path.name == BARS and bad == [count]:
            notes.append(f"{path}: its last line ({count}) is torn (a run killed while writing "
                         "it): skipped")
            continue
        raise ConfigError(f"--replay {path}: line {bad[0]} does not parse"
                          + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                          + ": the record was damaged after it was written; restore it or move "
                          "it away")
    return notes


def iter_records(directory: Path):
    """Yield each :class:`~bt_ibkr.records.recorder.BarRecord` of the session in order (a torn
    or otherwise unreadable line is skipped)."""
    from bt_ibkr.records.recorder import BarRecord

    for line in iter_lines(directory):
        try:
            yield BarRecord(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue  # a line cut by a killed process


# ------------------------------------------------------------------------------ compressing
def compress_part(plain: Path) -> Path | None:
    """Compress closed part ``plain`` to ``<plain>.gz`` crash-safely (see the module
    docstring) and remove ``plain``; return the gzip's path, or None when ``plain`` was gone
    (compressed by someone else). Raises OSError (the plain part is then left as it was)."""
    plain = Path(plain)
    gz = plain.with_name(plain.name + ".gz")
    tmp = plain.with_name(f".{plain.name}.gz.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        src = open(plain, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    try:
        size = 0
        st = os.fstat(src.fileno())
        with src, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            raw.flush()
            os.fsync(raw.fileno())
        got = 0
        with gzip.open(tmp, "rb") as check:
            while chunk := check.read(_CHUNK):
                got += len(chunk)
        if got != size:  # pragma: no cover - a disk that returns what it was not given
            raise OSError(f"{tmp}: read back {got} bytes of {size}")
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # the part's time, for retention
        os.replace(tmp, gz)
        fsync_dir(plain.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(plain)
    fsync_dir(plain.parent)
    return gz


def _gz_ok(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_CHUNK):
                pass
        return True
    except (OSError, EOFError, zlib.error):
        return False


def repair(directory: Path, *, owned: bool = False) -> list[str]:
    """Finish compressions a killed process left undone in a session folder that no process
    is writing (``owned``: the caller is its writer): remove stray temporaries, remove a plain
    part whose gzip is complete, compress a plain part without one (or with a damaged one).
    Return what was done, one line each."""
    directory = Path(directory)
    if not owned and is_being_written(directory):
        return []
    done = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if _TMP_RE.match(entry.name):
                os.unlink(entry.path)
                done.append(f"removed the unfinished {entry.path}")
    for files in closed_parts(directory).values():
        plain = files.get("plain")
        if plain is None:
            continue
        gz = files.get("gz")
        if gz is not None and _gz_ok(gz):
            os.unlink(plain)
            done.append(f"removed {plain} (already compressed to {gz.name})")
        else:
            compress_part(plain)
            done.append(f"compressed {plain}")
    if done:
        fsync_dir(directory)
    return done


# ------------------------------------------------------------------------------ the lock
def is_being_written(directory: Path) -> bool:
    """Return whether a live :class:`BarsWriter` (any process) holds the folder's lock."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(Path(directory) / LOCK, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


# ------------------------------------------------------------------------------ writing
class BarsWriter:
    """Appends lines to ``directory/bars.jsonl``, rotating and compressing (module docstring).

    Args:
        directory: the session folder (created).
        part_bytes: rotate the active part once it holds this many bytes (>= 1).
        background: compress closed parts in a background thread (False: at once, in the
            caller's thread).

    Raises :class:`~bt_ibkr.errors.RecordsError` (an OSError naming the file) when the folder
    or a file cannot be written, now or by a background compression (raised by the next
    :meth:`write` or :meth:`close`); ConfigError when another process writes the folder.
    """

    def __init__(self, directory: Path, part_bytes: int = DEFAULT_PART_BYTES,
                 background: bool = True) -> None:
        if int(part_bytes) < 1:
            raise ValueError(f"part_bytes {part_bytes!r}: must be at least 1")
        self.dir = Path(directory)
        self.part_bytes = int(part_bytes)
        self.background = background
        self._job: threading.Thread | None = None
        self.errors: list[str] = []
        #: the first failure (a RecordsError); every later write raises it again
        self.failure: RecordsError | None = None
        self._raised = False
        self._closed = False
        self._lock = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = self._take_lock()
            for line in repair(self.dir, owned=True):
                log.info("session record: %s", line)
            parts = closed_parts(self.dir)
            self._next = max(parts, default=0) + 1
            self._open_active()
        except OSError as exc:
            self._release()
            where = Path(exc.filename) if exc.filename else self.dir / BARS
            raise records_error(exc, where, "start the record there") from exc

    def _take_lock(self):
        if fcntl is None:  # pragma: no cover
            return None
        fh = open(self.dir / LOCK, "a+b")  # noqa: SIM115 - held while writing
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise ConfigError(f"session folder {self.dir} is being written by another "
                              "process") from None
        return fh

    def _open_active(self) -> None:
        path = self.dir / BARS
        self._fh = open(path, "ab")  # noqa: SIM115 - kept open
        self._size = self._fh.tell()
        if self._size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line torn by a killed process: end it there
                    self._fh.write(b"\n")
                    self._size += 1

    def _fail(self, err: RecordsError) -> RecordsError:
        """Keep ``err`` as the writer's failure (the first one wins); return the failure."""
        if self.failure is None:
            self.failure = err
        self._raised = True
        return self.failure

    def write(self, line: str) -> None:
        """Append one line (``line`` without its newline) and flush; rotate past the limit.
        Raises RecordsError (see the class), also for an earlier background failure."""
        if self.failure is not None:
            raise self._fail(self.failure)
        data = line.encode("utf-8") + b"\n"
        try:
            self._fh.write(data)
            self._fh.flush()
        except OSError as exc:
            raise self._fail(records_error(exc, self.dir / BARS, "append a bar to it")) from exc
        self._size += len(data)
        if self._size >= self.part_bytes:
            self.rotate()

    def rotate(self) -> Path | None:
        """Close the active part as the next numbered part and start a new one; compress the
        closed part (in the background unless ``background`` is False). Return the closed
        part's plain path (None when the active part was empty). Raises RecordsError."""
        if not self._size:
            return None
        active = self.dir / BARS
        closed = part_path(self.dir, self._next)
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            raise self._fail(records_error(exc, active, "write it to disk")) from exc
        try:
            os.replace(active, closed)
            fsync_dir(self.dir)
        except OSError as exc:
            raise self._fail(records_error(exc, closed, f"close {BARS} as this part")) from exc
        self._next += 1
        try:
            self._open_active()
        except OSError as exc:
            raise self._fail(records_error(exc, active, "start a new part")) from exc
        self._compress(closed)
        return closed

    def _compress(self, plain: Path) -> None:
        self.wait()
        if not self.background:
            self._compress_now(plain)
            return
        self._job = threading.Thread(target=self._compress_now, args=(plain,),
                                     name="bt_ibkr-session-gzip", daemon=True)
        self._job.start()

    def _compress_now(self, plain: Path) -> None:
        try:
            compress_part(plain)
        except OSError as exc:  # the plain part stays readable; repair() retries later
            self.errors.append(f"{plain}: {exc}")
            log.warning("session part %s left uncompressed: %s", plain, exc)
            if self.failure is None:
                self.failure = records_error(exc, plain, "compress it",
                                             "its bars are kept uncompressed")

    def wait(self) -> None:
        """Wait for a background compression to finish."""
        job, self._job = self._job, None
        if job is not None:
            job.join()

    def close(self) -> None:
        """Flush; close the active part as a compressed part when it holds ``SEAL_BYTES``
        (or half ``part_bytes``) or more; wait for compression; release the lock.
        Idempotent. Raises RecordsError for a failure not raised yet (e.g. a background
        compression); the files are closed and the lock released all the same."""
        if self._closed:
            return
        self._closed = True
        sealed = False
        try:
            if self.failure is None:
                sealed = self._size >= max(1, min(SEAL_BYTES, self.part_bytes // 2))
                if sealed:
                    self.background = False
                    self.rotate()
                self._fh.close()
        except RecordsError:
            self._raised = False  # new in close (kept as self.failure): raised below
        except OSError as exc:
            self._fail(records_error(exc, self.dir / BARS, "write it to disk"))
            self._raised = False
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._fh.close()
            self.wait()
            if sealed and self.failure is None:  # the new active part is empty: a finished
                with contextlib.suppress(FileNotFoundError):  # session is all parts
                    (self.dir / BARS).unlink()
            self._release()
        if self.failure is not None and not self._raised:
            raise self._fail(self.failure)

    def abort(self) -> None:
        """Close without sealing or raising (a run that stops on an error): what could be
        written is on disk, the lock is released. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, ValueError):
            self._fh.close()
        self.wait()
        self._release()

    def _release(self) -> None:
        """Remove and release the folder's lock (no other writer waits on it)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.dir / LOCK).unlink()
            self._lock.close()
            self._lock = None

