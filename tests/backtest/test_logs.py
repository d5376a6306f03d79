"""The console keeps IB client lines that bt_ibkr handles itself off; the log file keeps all."""

from __future__ import annotations

import logging

from bt_ibkr.logs import setup_logging


def _emit(name: str, level: int, msg: str) -> None:
    logging.getLogger(name).log(level, msg)


def test_console_drops_only_what_bt_ibkr_reports_itself(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path))
    for name in ("ib_async.client", "ib_async.wrapper", "ib_insync.wrapper", "bt_ibkr.live"):
        logger = logging.getLogger(name)  # as a fresh process has them, whatever ran before
        monkeypatch.setattr(logger, "level", logging.DEBUG)  # e.g. the doctor quiets them
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "propagate", True)
    path = setup_logging("t")
    try:
        _emit("ib_async.client", logging.ERROR,
              "API connection failed: ConnectionRefusedError(111, 'refused')")
        _emit("ib_async.client", logging.ERROR, "Make sure API port on TWS/IBG is open")
        _emit("ib_insync.wrapper", logging.ERROR, "Error 162, reqId 8: Historical Market Data "
              "Service error message:HMDS query returned no data: SPY@SMART TRADES")
        _emit("ib_async.wrapper", logging.ERROR, "Error 200, reqId 5: No security definition "
              "has been found for the request")
        kept = [("ib_async.wrapper", "Error 162, reqId 9: Historical Market Data Service error "
                 "message:API historical data query cancelled: 9"),
                ("ib_async.wrapper", "Error 354, reqId 3: Requested market data is not "
                 "subscribed"),
                ("ib_async.client", "Peer closed connection"),
                ("bt_ibkr.live", "API connection failed (our own words are never dropped)")]
        for name, msg in kept:
            _emit(name, logging.ERROR, msg)
    finally:
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_bt_ibkr", None)]:
            h.flush()
            root.removeHandler(h)
            h.close()
    err = capsys.readouterr().err
    assert "API connection failed: Conn" not in err and "Make sure API port" not in err
    assert "returned no data" not in err and "No security definition" not in err
    for _, msg in kept:
        assert msg in err
    text = path.read_text(encoding="utf-8")  # the file has everything
    assert "Make sure API port" in text and "returned no data" in text
    assert all(msg in text for _, msg in kept)
