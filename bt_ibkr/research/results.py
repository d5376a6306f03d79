"""Research results on disk: a parquet table of metrics, a parquet file of returns, a JSON summary.

- ``results.parquet``: one row per task (task_id, kind, window, symbols, start and end of the
  metrics' period — after the Strategy's warm-up, as ``examples.backtest`` labels a run —
  data_start and data_end of the bars it was fed, params as
  JSON plus one ``param.<name>`` column per param, the metrics, trades, final_value, bars,
  error, seconds, worker).
- ``returns.parquet``: long format (task_id, date, ret), written by :class:`ReturnsWriter` as
  results arrive, so the client never holds every task's series at once.
- JSON: ``{"tasks": N, "failed": [...], "results": [...], ...}`` (see :func:`summary_json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bt_ibkr import redaction
from bt_ibkr.research.tasks import METRICS, TaskResult

__all__ = [
    "ReturnsWriter",
    "read_returns",
    "results_frame",
    "summary_json",
    "write_json",
    "write_results_parquet",
]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _param_column(values: list[Any]) -> list[Any]:
    """One parquet-friendly column: keep a single scalar type, else JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) == 1 and kinds <= {bool, int, float, str}:
        return values
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values]
    return [None if v is None else json.dumps(v, sort_keys=True, default=str) for v in values]


def results_frame(results: Sequence[TaskResult]) -> pd.DataFrame:
    """Return one row per result (see the module docstring for the columns)."""
    names: list[str] = []
    for r in results:
        names.extend(k for k in r.params if k not in names)
    rows = {
        "task_id": [r.task_id for r in results],
        "kind": [r.kind for r in results],
        "window": pd.array([r.window for r in results], dtype="Int64"),
        "symbols": [",".join(r.symbols) for r in results],
        "start": [r.period()[0].isoformat() for r in results],
        "end": [r.period()[1].isoformat() for r in results],
        "data_start": [r.start.isoformat() for r in results],
        "data_end": [r.end.isoformat() for r in results],
        "params": [json.dumps(r.params, sort_keys=True, default=str) for r in results],
    }
    for name in names:
        rows[f"param.{name}"] = _param_column([r.params.get(name) for r in results])
    for name in METRICS:
        rows[name] = pd.array([getattr(r, name) for r in results], dtype="Float64")
    rows["trades"] = pd.array([r.trades for r in results], dtype="Int64")
    rows["final_value"] = pd.array([r.final_value for r in results], dtype="Float64")
    rows["bars"] = [r.bars for r in results]
    rows["error"] = [r.error for r in results]
    rows["seconds"] = [r.seconds for r in results]
    rows["worker"] = [r.worker for r in results]
    return pd.DataFrame(rows)


def write_results_parquet(results: Sequence[TaskResult], path: Path | str) -> Path:
    """Write results_frame(results) to ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results_frame(results).to_parquet(path, index=False)
    return path


class ReturnsWriter:
    """Append each result's daily returns to one parquet file, a row group per ``batch`` results.

    Use as a context manager or call ``close()``; ``add`` ignores failed results.
    """

    def __init__(self, path: Path | str, batch: int = 32) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.batch = batch
        self._parts: list[pd.DataFrame] = []
        self._writer = None
        self.count = 0

    def add(self, result: TaskResult) -> None:
        """Queue ``result.returns`` (written when the batch is full or on close)."""
        if result.returns is None or not result.ok:
            return
        r = result.returns
        self._parts.append(pd.DataFrame({
            "task_id": pd.Series(result.task_id, index=range(len(r)), dtype="int64"),
            "date": pd.DatetimeIndex(r.index).as_unit("ns"),
            "ret": r.to_numpy(dtype="float64"),
        }))
        self.count += 1
        if len(self._parts) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._parts:
            return
        table = pa.Table.from_pandas(pd.concat(self._parts, ignore_index=True), preserve_index=False)
        self._parts = []
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """Write what is queued and close the file (an empty file with the schema if nothing)."""
        self._flush()
        if self._writer is None:
            empty = pd.DataFrame({"task_id": pd.Series(dtype="int64"),
                                  "date": pd.Series(dtype="datetime64[ns]"),
                                  "ret": pd.Series(dtype="float64")})
            empty.to_parquet(self.path, index=False)
        else:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ReturnsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_returns(path: Path | str, task_ids: Iterable[int]) -> dict[int, pd.Series]:
    """Return {task_id: daily returns} for ``task_ids`` from a file written by ReturnsWriter."""
    ids = [int(i) for i in task_ids]
    if not ids:
        return {}
    frame = pd.read_parquet(path, filters=[("task_id", "in", ids)])
    out: dict[int, pd.Series] = {}
    for tid, part in frame.groupby("task_id", sort=False):
        out[int(tid)] = pd.Series(part["ret"].to_numpy(), index=pd.DatetimeIndex(part["date"]),
                                  name="return")
    return out


def summary_json(results: Sequence[TaskResult], **extra: Any) -> dict[str, Any]:
    """Return ``{"tasks", "failed", "results", **extra}``; failed tasks carry their ``error``."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    out: dict[str, Any] = {
        "tasks": len(results),
        "failed": [r.record() for r in failed],
        "results": [{k: _clean(v) for k, v in r.record().items()} for r in ok],
    }
    out.update(extra)
    return out


def write_json(data: dict[str, Any], path: Path | str) -> Path:
    """Write ``data`` as indented JSON to ``path`` (parents created, the environment's secrets
    masked: :func:`bt_ibkr.redaction.write_json`) and return the path."""
    return redaction.write_json(data, path)
