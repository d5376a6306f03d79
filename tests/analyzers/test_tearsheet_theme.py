"""quantstats' theme (seaborn's, applied as a side effect of its first import) is on every
tearsheet a process renders, not only the first, and never leaks into the process's own
matplotlib settings. Run in a fresh interpreter: the bug only shows when the report is the
first thing in the process to import quantstats' plotting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import matplotlib
import numpy as np, pandas as pd
from analyzers.tearsheet import write_tearsheet
idx = pd.bdate_range("2020-01-01", periods=300)
v = pd.Series(100 * np.cumprod(1 + np.random.default_rng(1).normal(0, 0.01, 300)), index=idx)
grid_before = matplotlib.rcParams["grid.color"]
pages = []
for i in range(2):
    text = write_tearsheet(v, f"{sys.argv[1]}/page{i}.html").read_text()
    pages.append({"theme_grid": text.count("#dddddd"), "default_grid": text.count("#b0b0b0")})
print(json.dumps({"pages": pages, "grid_before": grid_before,
                  "grid_after": matplotlib.rcParams["grid.color"]}))
"""


@pytest.mark.slow
def test_every_tearsheet_of_a_process_has_the_theme_and_none_leaks(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    first, second = got["pages"]
    assert first["theme_grid"] > 0, "the first page lacks quantstats' grid colour"
    assert second == first, "the second page of the process is drawn differently"
    assert got["grid_after"] == got["grid_before"], "the report changed the process's matplotlib"
