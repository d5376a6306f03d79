"""Replay is strict (issue 18, point 7): every divergence class of a recorded session (orders,
fills, positions, value) reaches the exit code and the summary line, not only the decisions;
a malformed meta.json is exit 2 with one line; an empty record in a folder is skipped with a
note while the others replay. The records are real: a ``--simulate`` run records them, then
the test alters them as a user's disk or hand could."""

from __future__ import annotations

import json
import shutil

import pytest

from examples import live as live_cli
from examples import parity as parity_cli


@pytest.fixture
def session(in_tmp):
    assert live_cli.main(["--paper", "--simulate", "--json", "run.json",
                          "--max-runtime", "60"]) == 0
    return in_tmp / json.loads((in_tmp / "run.json").read_text())["session_dir"]


def _edit_last_bar(session, edit) -> None:
    path = session / "bars.jsonl"
    lines = path.read_text().splitlines()
    bar = json.loads(lines[-1])
    edit(bar)
    lines[-1] = json.dumps(bar)
    path.write_text("\n".join(lines) + "\n")


def _replay(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = parity_cli.main(["--replay", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_an_untouched_record_replays_clean(session, capsys):
    code, out, _ = _replay(capsys, session)
    assert code == 0 and "diverged: nothing" in out


@pytest.mark.slow
def test_a_doubled_order_size_is_an_order_divergence(session, capsys):
    def double(bar):
        bar["orders"][0]["size"] *= 2
    _edit_last_bar(session, double)
    code, out, _ = _replay(capsys, session)
    assert code == 4, out
    assert "diverged: orders (1)" in out


@pytest.mark.slow
def test_a_position_and_cash_that_never_were_diverge(session, capsys):
    def fake(bar):
        bar["position"] = {k: 999.0 for k in bar["position"]}
        bar["cash"], bar["value"] = 1.0, 1.0
    _edit_last_bar(session, fake)
    code, out, _ = _replay(capsys, session)
    assert code == 4, out
    line = next(x for x in out.splitlines() if x.startswith("diverged: "))
    assert "positions (1)" in line and "value (" in line and "beyond the tolerance" in line


@pytest.mark.slow
@pytest.mark.parametrize("meta_edit, field", [
    (lambda m: m.update(start_cash="abc"), "start_cash"),
    (lambda m: m.update(params={"no_such_param": 1}), "params"),
    (lambda m: m.update(params={"use_hmm": "maybe"}), "strategy/params"),
    (lambda m: m.update(start_positions={"SPY": "lots"}), "start_positions.SPY"),
    (lambda m: m.update(start_positions=[1, 2]), "start_positions"),
])
def test_a_malformed_meta_is_exit_2_with_one_line(session, capsys, meta_edit, field):
    meta = json.loads((session / "meta.json").read_text())
    meta_edit(meta)
    (session / "meta.json").write_text(json.dumps(meta))
    code, out, err = _replay(capsys, session)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --replay ") and f"meta.json {field}:" in err, err


def test_a_meta_that_is_a_list_is_exit_2(session, capsys):
    (session / "meta.json").write_text("[1, 2, 3]")
    code, _, err = _replay(capsys, session)
    assert code == 2 and "expected a JSON object, got list" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_an_empty_record_in_a_folder_is_skipped_with_a_note(session, capsys):
    empty = session.parent / "20991231T000000Z-deadbeef"
    shutil.copytree(session, empty)
    (empty / "bars.jsonl").write_text("")
    code, out, _ = _replay(capsys, session.parent)
    assert code == 0, out
    assert f"note: skipped {empty}: the session recorded no bars" in out
    assert "diverged: nothing" in out


def test_records_are_checked_against_the_digest_their_run_kept(session, capsys):
    code, out, _ = _replay(capsys, session)
    assert code == 0 and "records: 1 of 1 verified against the journal's digests" in out
    # a change that no decision would show (an early bar's volume) is still caught
    path = session / "bars.jsonl"
    lines = path.read_text().splitlines()
    bar = json.loads(lines[5])
    sym = next(iter(bar["bars"]))
    bar["bars"][sym][4] += 1.0
    lines[5] = json.dumps(bar)
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = _replay(capsys, session)
    assert code == 4, out
    assert "record altered: the bars of" in out


def test_a_meta_changed_after_the_run_is_an_altered_record(session, capsys):
    meta = json.loads((session / "meta.json").read_text())
    meta["start_cash"] = float(meta["start_cash"]) + 1.0
    (session / "meta.json").write_text(json.dumps(meta))
    code, out, _ = _replay(capsys, session)
    assert code == 4 and "meta.json differs from what the run wrote" in out


def test_without_the_journal_the_records_are_unverified(session, capsys, tmp_path):
    moved = tmp_path / "elsewhere" / session.name
    shutil.copytree(session, moved)
    code, out, _ = _replay(capsys, moved)
    assert code == 0 and "unverified: no journal beside the records" in out


def test_a_torn_last_line_is_named_and_skipped(session, capsys, tmp_path):
    """A run killed while writing a bar leaves a torn last line (and no digest: it never
    reached its end): the replay names it and skips it."""
    killed = tmp_path / "killed" / session.name
    shutil.copytree(session, killed)
    path = killed / "bars.jsonl"
    path.write_text(path.read_text() + '{"i": 99999, "dt": "2017-01-0')
    code, out, _ = _replay(capsys, killed)
    assert code == 0, out
    assert f"note: {path}: its last line" in out and "is torn" in out


def test_a_torn_line_inside_the_record_is_exit_2_naming_it(session, capsys):
    path = session / "bars.jsonl"
    lines = path.read_text().splitlines()
    lines[10] = lines[10][:20]
    path.write_text("\n".join(lines) + "\n")
    code, _, err = _replay(capsys, session)
    assert code == 2 and f"{path}: line 11 does not parse" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_part_is_named(in_tmp, capsys):
    assert live_cli.main(["--paper", "--simulate", "--json", "run.json", "--max-runtime", "60",
                          "--session-part-mb", "0.01"]) == 0
    session = in_tmp / json.loads((in_tmp / "run.json").read_text())["session_dir"]
    parts = sorted(session.glob("bars.*.jsonl.gz"))
    assert len(parts) >= 3
    parts[1].unlink()
    code, _, err = _replay(capsys, session)
    assert code == 2 and "part 2 of the record is missing (bars.000002.jsonl.gz)" in err
