"""The journal's SQLite schema (:mod:`bt_ibkr.live.journal`): its tables and their version.

One table per kind of row: ``intents`` (an order intent and its status), ``fills`` (one per
IB execution, by execId), ``start_positions`` (adopted positions), ``runs``, ``events`` (an
append-only log) and ``meta`` (schema version, journal id, bound account). A file written with
another :data:`SCHEMA_VERSION` is refused.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    order_ref     TEXT PRIMARY KEY,
    run_id        TEXT,
    strategy      TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity      REAL NOT NULL CHECK (quantity > 0),
    order_type    TEXT NOT NULL,
    limit_price   REAL,
    stop_price    REAL,
    tif           TEXT,
    account       TEXT,
    decision_time TEXT NOT NULL,
    created       TEXT NOT NULL,
    status        TEXT NOT NULL,
    order_id      INTEGER,
    perm_id       INTEGER,
    filled        REAL NOT NULL DEFAULT 0,
    avg_price     REAL,
    sent_at       TEXT,
    updated       TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS intents_status ON intents (status);
CREATE TABLE IF NOT EXISTS fills (
    exec_id    TEXT PRIMARY KEY,
    order_ref  TEXT,
    symbol     TEXT NOT NULL,
    side       TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    shares     REAL NOT NULL CHECK (shares > 0),
    price      REAL NOT NULL,
    time       TEXT NOT NULL,
    commission REAL,
    order_id   INTEGER,
    perm_id    INTEGER,
    recorded   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_ref ON fills (order_ref);
CREATE INDEX IF NOT EXISTS fills_symbol ON fills (symbol);
CREATE TABLE IF NOT EXISTS start_positions (
    symbol   TEXT PRIMARY KEY,
    quantity REAL NOT NULL,
    adopted  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id  TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    ended   TEXT,
    mode    TEXT,
    account TEXT,
    pid     INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        TEXT NOT NULL,
    run_id    TEXT,
    kind      TEXT NOT NULL,
    order_ref TEXT,
    detail    TEXT NOT NULL DEFAULT '{}'
);
"""
SCHEMA_VERSION = "1"
