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

:func:`iter_lines` / :func:`iter_records` read every part in order, one line at a time.
Raises ConfigError for a gzip part that cannot be read (the message names the file).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

from bt_ibkr.errors import ConfigError

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

    Raises OSError when the folder or file cannot be written.
    """

    def __init__(self, directory: Path, part_bytes: int = DEFAULT_PART_BYTES,
                 background: bool = True) -> None:
        if int(part_bytes) < 1:
            raise ValueError(f"part_bytes {part_bytes!r}: must be at least 1")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part_bytes = int(part_bytes)
        self.background = background
        self._lock = self._take_lock()
        for line in repair(self.dir, owned=True):
            log.info("session record: %s", line)
        parts = closed_parts(self.dir)
        self._next = max(parts, default=0) + 1
        self._job: threading.Thread | None = None
        self.errors: list[str] = []
        self._open_active()

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

    def write(self, line: str) -> None:
        """Append one line (``line`` without its newline) and flush; rotate past the limit."""
        data = line.encode("utf-8") + b"\n"
        self._fh.write(data)
        self._fh.flush()
        self._size += len(data)
        if self._size >= self.part_bytes:
            self.rotate()

    def rotate(self) -> Path | None:
        """Close the active part as the next numbered part and start a new one; compress the
        closed part (in the background unless ``background`` is False). Return the closed
        part's plain path (None when the active part was empty)."""
        if not self._size:
            return None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        closed = part_path(self.dir, self._next)
        os.replace(self.dir / BARS, closed)
        fsync_dir(self.dir)
        self._next += 1
        self._open_active()
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

    def wait(self) -> None:
        """Wait for a background compression to finish."""
        job, self._job = self._job, None
        if job is not None:
            job.join()

    def close(self) -> None:
        """Flush; close the active part as a compressed part when it holds ``SEAL_BYTES``
        (or half ``part_bytes``) or more; wait for compression; release the lock.
        Idempotent."""
        if self._fh.closed:
            return
        sealed = self._size >= max(1, min(SEAL_BYTES, self.part_bytes // 2))
        if sealed:
            self.background = False
            self.rotate()
        self._fh.close()
        if sealed:  # the new active part is empty: a finished session is all parts
            with contextlib.suppress(FileNotFoundError):
                (self.dir / BARS).unlink()
        self.wait()
        if self._lock is not None:  # no other writer waits on it: remove it, then unlock
            with contextlib.suppress(FileNotFoundError):
                (self.dir / LOCK).unlink()
            self._lock.close()
            self._lock = None
