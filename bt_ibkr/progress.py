"""Progress on stderr for long work (downloads, backtests), with rich; silent when not wanted.

``with progress(total, "IB 1 day") as advance: ... advance("SPY")`` shows one bar that
``advance(label)`` moves by one step (the label names what was just done). Below ``minimum``
steps, or with ``enabled=False``, nothing is drawn and ``advance`` does nothing, so callers
never branch on whether progress is shown. The bar is transient: it disappears when done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["progress"]


@contextlib.contextmanager
def progress(total: int | None, what: str, enabled: bool = True,
             minimum: int = 2) -> Iterator[Callable[..., None]]:
    """Yield ``advance(label: str = "", steps: int = 1)`` over a rich progress bar.

    ``total`` None draws a bar without a known end (elapsed time only); ``minimum`` is the
    smallest ``total`` that gets a bar. Returns nothing; raises nothing of its own.
    """
    if not enabled or (total is not None and total < minimum):
        yield lambda label="", steps=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task(what, total=total)

        def advance(label: str = "", steps: int = 1) -> None:
            bar.update(task, advance=steps,
                       description=f"{what} {label}".rstrip() if label else what)

        yield advance
