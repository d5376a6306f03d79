"""Secrets out of every output of the CLIs: the files they write, the lines they print, the logs.

The live run masks its outputs with :class:`bt_ibkr.masking.Redactor` (the secrets of the
environment: ``TWS_PASSWORD`` and the other :data:`~bt_ibkr.masking.SECRET_ENV_VARS`, and
variables whose names look like secrets). The other CLIs (backtest, sweep, parity, doctor) use
the same Redactor, in three places shared by all of them:

* files: :func:`write_json` and :func:`write_text` are the writers of every JSON summary and
  HTML page (backtest, tearsheet, sweep, walk-forward, parity); they mask the text as written,
  including a secret as JSON or HTML escapes it (:class:`OutputRedactor`);
* printed lines: :func:`masked_main` (:func:`masked_output`) wraps ``sys.stdout`` and
  ``sys.stderr`` for the run of a CLI's ``main`` (its summary, its one-line errors,
  argparse's messages);
* logs: :func:`bt_ibkr.logs.setup_logging` puts a
  :class:`~bt_ibkr.masking.RedactingFilter` on the log file and console handlers.

A secret that appears in a path given to a CLI (``--json``, ``--replay``, ``--csv`` ...) is
therefore shown as ``***`` everywhere it would be printed or written.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from bt_ibkr.masking import MIN_SECRET_LEN, Redactor

__all__ = ["MaskedStream", "OutputRedactor", "env_redactor", "masked_main", "masked_output",
           "write_json", "write_text"]


class OutputRedactor(Redactor):
    """A :class:`Redactor` that also masks each secret in the forms a JSON or HTML file holds
    it: JSON-escaped (``\\"``, ``\\\\``, ``\\uXXXX``) and HTML-escaped (``&amp;``, ``&quot;``).

    Masking a rendered file's text is then as safe as masking its data before rendering.
    Args as :class:`Redactor` (default: the secrets of ``os.environ``).
    """

    def add(self, *secrets: str) -> None:
        """Mask these values, and their JSON- and HTML-escaped forms, from now on."""
        forms: list[str] = []
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= MIN_SECRET_LEN:
                forms += [json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                          html.escape(secret), html.escape(secret, quote=False)]
        super().add(*secrets, *(f for f in forms if f not in secrets))


def env_redactor() -> OutputRedactor:
    """Return the :class:`OutputRedactor` of the secrets in ``os.environ`` now.

    One instance per distinct environment, so its warning about a secret too short to mask
    inside text shows once per run, not once per file written.
    """
    return _redactor_for(frozenset(os.environ.items()))


@functools.lru_cache(maxsize=8)
def _redactor_for(env: frozenset[tuple[str, str]]) -> OutputRedactor:
    return OutputRedactor(env=dict(env))


def write_text(text: str, path: str | Path, redactor: Redactor | None = None) -> Path:
    """Write ``text`` to ``path`` (parent folders created) with every secret masked; return
    the path. ``redactor`` defaults to :func:`env_redactor`.

    Raises OSError when the file cannot be written.
    """
    redactor = redactor or env_redactor()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redactor.text(text), encoding="utf-8")
    return path


def write_json(data: Any, path: str | Path, *, indent: int | None = 2, newline: bool = True,
               redactor: Redactor | None = None) -> Path:
    """Write ``data`` as JSON (``default=str`` for dates, paths ...) to ``path`` with every
    secret masked (:func:`write_text`); return the path. Raises OSError as write_text."""
    text = json.dumps(data, indent=indent, default=str) + ("\n" if newline else "")
    return write_text(text, path, redactor)


class MaskedStream:
    """A text stream that writes to ``stream`` with ``redactor``'s secrets masked; every other
    attribute (``isatty``, ``encoding``, ``fileno`` ...) is the wrapped stream's."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self.stream = stream
        self.redactor = redactor

    def write(self, text: str) -> int:
        """Write ``text``, masked; return the length of ``text`` (as the caller gave it)."""
        self.stream.write(self.redactor.text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each line, masked."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def masked_output(redactor: Redactor | None = None) -> Iterator[Redactor]:
    """Mask secrets in everything printed to ``sys.stdout`` and ``sys.stderr`` inside the
    ``with`` block (a CLI's ``main``); yield the redactor (default: :func:`env_redactor`).
    The streams are restored on exit."""
    redactor = redactor or env_redactor()
    saved = sys.stdout, sys.stderr
    sys.stdout = MaskedStream(saved[0], redactor)  # type: ignore[assignment]
    sys.stderr = MaskedStream(saved[1], redactor)  # type: ignore[assignment]
    try:
        yield redactor
    finally:
        sys.stdout, sys.stderr = saved


def masked_main(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a CLI's ``main`` so that it runs inside :func:`masked_output`: everything it
    prints (its one-line errors and argparse's too) has the environment's secrets masked."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> int:
        with masked_output():
            return main(*args, **kwargs)

    return run
