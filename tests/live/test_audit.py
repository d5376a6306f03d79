"""Audit log: JSON lines, fsync'd, thread-safe, and never a secret in the file."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bt_ibkr.live.audit import AuditLog, RedactingFilter, Redactor, audit_path, read_audit
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Fill


def test_records_are_json_lines_with_utc_timestamps(tmp_path):
    path = tmp_path / "logs" / "audit.jsonl"
    with AuditLog(path, env={}) as log:
        log.write("decision", symbol="SPY", target=0.6, regime="bull_quiet")
        log.write("order", order_ref="bt1:RAE:SPY:20240105:1", side="BUY", quantity=100,
                  decision_time=datetime(2024, 1, 5, 16, 0, tzinfo=timezone(timedelta(hours=-5))))
        log.write("fill", fill=Fill("e1", "bt1:RAE:SPY:20240105:1", "SPY", "BUY", 100, 470.0,
                                    datetime(2024, 1, 5, 14, 31, tzinfo=UTC)))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    records = read_audit(path)
    assert [r["kind"] for r in records] == ["decision", "order", "fill"]
    for r in records:
        ts = datetime.fromisoformat(r["ts"])
        assert ts.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - ts) < timedelta(minutes=5)
    assert records[0]["target"] == 0.6 and records[0]["regime"] == "bull_quiet"
    assert records[1]["decision_time"] == "2024-01-05T21:00:00+00:00"  # converted to UTC
    assert records[2]["fill"]["exec_id"] == "e1" and records[2]["fill"]["shares"] == 100


def test_unknown_kind_is_refused(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", env={}) as log, pytest.raises(ValueError, match="audit kind 'trade'"):
        log.write("trade", x=1)


def test_reserved_field_names_do_not_clobber_ts_and_kind(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", env={}) as log:
        rec = log.write("error", kind="oops", ts="then", message="boom")
    assert rec["kind"] == "error" and rec["_kind"] == "oops" and rec["_ts"] == "then"


def test_secret_from_the_environment_never_reaches_the_file(tmp_path):
    env = {"TWS_USERID": "trader_joe", "TWS_PASSWORD": "Pa55-w0rd!xyz",
           "BT_IBKR_ALERT_TOKEN": "tok_abcdef123456", "SOME_API_KEY": "k-9876543210",
           "SHORT_KEY": "1", "HOME": "/home/joe"}
    cfg = load_config(None, env=env)
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, secrets=cfg.secrets.values(), env=env) as log:
        log.write("connection", event="login", user="trader_joe", password="Pa55-w0rd!xyz")
        log.write("error", message="login failed for trader_joe with Pa55-w0rd!xyz at 127.0.0.1")
        log.write("connection", config=cfg.redacted(), headers={"Authorization": "tok_abcdef123456"})
        log.write("decision", note="key=k-9876543210", nested=[{"api_token": "zzz"}, ("Pa55-w0rd!xyz",)])
        log.write("run", config_object=cfg, home="/home/joe", count=1)
    text = path.read_text()
    for secret in ("Pa55-w0rd!xyz", "trader_joe", "tok_abcdef123456", "k-9876543210", "zzz"):
        assert secret not in text
    recs = read_audit(path)
    assert recs[0]["password"] == "***" and recs[0]["user"] == "***"
    assert recs[1]["message"] == "login failed for *** with *** at 127.0.0.1"
    assert recs[2]["headers"] == {"Authorization": "***"}
    assert recs[3]["nested"] == [{"api_token": "***"}, ["***"]]
    assert recs[4]["home"] == "/home/joe" and recs[4]["count"] == 1  # ordinary values untouched
    assert "1" in text  # a 1-character value of a *_KEY variable is not treated as a secret


def test_redactor_masks_the_longest_secret_whole():
    r = Redactor(["secret", "secret-longer"], env={})
    assert r("xx secret-longer yy secret") == "xx *** yy ***"
    assert r({"passphrase": None, "note": b"secret"}) == {"passphrase": None, "note": "***"}
    assert r(float("nan")) == "nan" and r(Path("/tmp/secret")) == "/tmp/***"


def test_a_short_secret_never_masks_ordinary_words_and_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="bt_ibkr.live.audit"):
        r = Redactor(["SPY", "abc"], env={"TWS_PASSWORD": "RAE"})
    ref = "bt1:RAE:SPY:20161230:1"
    assert r({"symbol": "SPY", "orderRef": ref, "note": "abc"}) == {
        "symbol": "SPY", "orderRef": ref, "note": "abc"}
    assert r({"password": "RAE"}) == {"password": "***"}  # under a secret-named key: masked
    warned = [rec.getMessage() for rec in caplog.records]
    assert len(warned) == 3 and all("3 characters is too short" in m for m in warned)
    assert not any(word in m for m in warned for word in ("SPY", "abc", "RAE"))


def test_redacting_filter_masks_log_file_and_stderr_records(tmp_path, capsys):
    logger = logging.getLogger("bt_ibkr.test_redaction")
    handler = logging.FileHandler(tmp_path / "x.log")
    logger.addHandler(handler)
    flt = RedactingFilter(Redactor(["hunter2-secret"], env={})).install(logger)
    try:
        logger.warning("account %s connected", "hunter2-secret")
        try:
            raise RuntimeError("bad hunter2-secret")
        except RuntimeError:
            logger.exception("failed")
    finally:
        flt.remove(logger)
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "x.log").read_text()
    assert "hunter2-secret" not in text
    assert "account *** connected" in text and "RuntimeError: bad ***" in text


def test_dataclass_fields_hidden_from_repr_stay_hidden():
    @dataclass
    class Thing:
        name: str
        secrets: dict

    assert Redactor(env={})(Thing("a", {"TWS_PASSWORD": "x"})) == {"name": "a", "secrets": "***"}


def test_concurrent_writers_produce_whole_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, env={})

    def work(n):
        for i in range(100):
            log.write("order", thread=n, i=i, pad="x" * 500)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    log.close()
    recs = read_audit(path)
    assert len(recs) == 400
    assert sorted((r["thread"], r["i"]) for r in recs) == [(n, i) for n in range(4) for i in range(100)]


def test_torn_last_line_is_skipped_but_corruption_elsewhere_is_an_error(tmp_path):
    path = tmp_path / "audit.jsonl"
    good = json.dumps({"ts": "2024-01-05T00:00:00+00:00", "kind": "run"})
    path.write_text(good + "\n" + '{"ts": "2024-01-05T00:00:01+00:00", "ki')
    assert read_audit(path) == [json.loads(good)]
    path.write_text(good + "\n{broken\n" + good + "\n")
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        read_audit(path)


def test_appends_across_reopen_and_audit_path(tmp_path):
    path = audit_path(tmp_path / "logs", datetime(2024, 1, 5, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
    assert path == tmp_path / "logs" / "audit-20240106.jsonl"  # UTC date
    with AuditLog(path, env={}) as log:
        log.write("run", event="start")
    with AuditLog(path, env={}) as log:
        log.write("run", event="end")
    assert [r["event"] for r in read_audit(path)] == ["start", "end"]


def test_process_environment_secret_is_masked_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("TWS_PASSWORD", "env-only-Secret-771")
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:  # no secrets passed: taken from os.environ
        log.write("error", message="gateway login with env-only-Secret-771 failed", code=502)
    text = path.read_text()
    assert "env-only-Secret-771" not in text
    assert read_audit(path)[0]["message"] == "gateway login with *** failed"
