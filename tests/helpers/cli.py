"""``python -m examples.backtest`` run in-process, as the CLI tests drive it."""

from __future__ import annotations

from examples.backtest import main


def run_backtest(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the backtest CLI with ``args`` (progress off); return (exit code, stdout, stderr)."""
    code = main(["--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err
