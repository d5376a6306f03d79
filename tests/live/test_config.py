"""Config loading: file < environment < CLI, validation errors that name the bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.codes import LIVE_PORTS, PAPER_PORTS
from bt_ibkr.live.config import ConnectionConfig, LiveConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "live.example.json"


def write(tmp_path: Path, data, name: str = "live.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_defaults_without_file():
    cfg = load_config(None, env={})
    assert cfg.mode == "paper"
    assert cfg.connection.port == 4002  # Gateway paper
    assert cfg.port == 4002
    assert cfg.symbols == ["SPY"]
    assert cfg.strategy == "RegimeAwareEnsemble"
    assert cfg.risk.max_daily_loss == 0.03
    assert str(cfg.paths.journal) == "state/{account}/journal.sqlite"  # one per account
    assert cfg.confirm_live is False and cfg.read_only is False
    assert PAPER_PORTS == {7497, 4002} and LIVE_PORTS == {7496, 4001}


def test_live_mode_defaults_to_gateway_live_port():
    cfg = load_config(None, env={"BT_IBKR_MODE": "live"})
    assert cfg.mode == "live"
    assert cfg.connection.port == 4001


def test_example_file_loads_and_sets_every_section():
    cfg = load_config(EXAMPLE, env={})
    assert cfg.mode == "paper"
    assert cfg.connection.port in PAPER_PORTS
    assert cfg.symbols and all(isinstance(s, str) for s in cfg.symbols)
    assert cfg.risk.max_order_notional is not None
    assert cfg.risk.max_daily_loss is not None and 0 < cfg.risk.max_daily_loss < 1
    assert cfg.source == str(EXAMPLE)


def test_file_values_are_loaded(tmp_path):
    path = write(tmp_path, {
        "_comment": "ignored",
        "mode": "paper",
        "run_mode": "stream",
        "symbols": ["SPY", "QQQ"],
        "bar_size": "5 mins",
        "strategy": {"name": "RegimeAwareEnsemble", "params": {"band": 0.05, "use_hmm": True}},
        "connection": {"host": "10.0.0.5", "port": 7497, "client_id": 7, "account": "DU123",
                       "timeout": 20, "readonly": True},
        "risk": {"max_position_per_symbol": 500, "max_order_notional": 50000,
                 "max_daily_loss": 0.02, "cancel_on_exit": False},
        "paths": {"journal": "var/j.sqlite", "logs": "var/logs"},
        "read_only": True,
    })
    cfg = load_config(path, env={})
    assert cfg.run_mode == "stream"
    assert cfg.symbols == ["SPY", "QQQ"]
    assert cfg.bar_size == "5 mins"
    assert cfg.params == {"band": 0.05, "use_hmm": True}
    assert cfg.connection == ConnectionConfig("10.0.0.5", 7497, 7, "DU123", 20.0, True)
    assert cfg.risk.max_position_per_symbol == 500.0
    assert cfg.risk.max_order_notional == 50000.0
    assert cfg.risk.max_daily_loss == 0.02
    assert cfg.risk.cancel_on_exit is False
    assert cfg.paths.journal == Path("var/j.sqlite")
    assert cfg.paths.reports == Path("reports/{account}")  # untouched default
    assert cfg.read_only is True


def test_precedence_file_then_env_then_cli(tmp_path):
    path = write(tmp_path, {"connection": {"host": "file-host", "port": 4002, "client_id": 3},
                            "symbols": ["SPY"]})
    env = {"BT_IBKR_HOST": "env-host", "BT_IBKR_PORT": "7497", "BT_IBKR_ACCOUNT": "DU999"}
    cfg = load_config(path, env=env)
    assert (cfg.connection.host, cfg.connection.port, cfg.connection.client_id) == (
        "env-host", 7497, 3)
    assert cfg.connection.account == "DU999"
    cfg = load_config(path, env=env, overrides={
        "connection.port": 4002, "connection": {"client_id": 11}, "symbols": "QQQ, IWM",
        "connection.host": None,  # an unset CLI flag changes nothing
    })
    assert (cfg.connection.host, cfg.connection.port, cfg.connection.client_id) == (
        "env-host", 4002, 11)
    assert cfg.symbols == ["QQQ", "IWM"]


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, {"risk": {"max_order_notionl": 1000}})
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (
        f"config {path}: risk.max_order_notionl: unknown key (did you mean max_order_notional?)"
    )


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, {"symbol": ["SPY"]})
    with pytest.raises(ConfigError, match=r"symbol: unknown key \(did you mean symbols\?\)"):
        load_config(path, env={})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"connection": {"port": "abc"}}, "connection.port: expected an integer 1..65535, got 'abc'"),
        ({"connection": {"port": 70000}}, "connection.port: expected an integer 1..65535, got 70000"),
        ({"connection": {"port": True}}, "connection.port: expected an integer 1..65535, got True"),
        ({"connection": {"client_id": -1}}, "connection.client_id: expected an integer"),
        ({"connection": {"timeout": 0}}, "connection.timeout: expected a number > 0, got 0.0"),
        ({"risk": {"max_daily_loss": 3}}, "risk.max_daily_loss: expected a number > 0 and < 1"),
        ({"risk": {"max_order_notional": "lots"}}, "risk.max_order_notional: expected a number"),
        ({"risk": {"cancel_on_exit": "maybe"}}, "risk.cancel_on_exit: expected true or false"),
        ({"mode": "papr"}, "mode: expected one of 'paper', 'live', got 'papr' (did you mean 'paper'?)"),
        ({"run_mode": "weekly"}, "run_mode: expected one of 'daily', 'stream'"),
        ({"symbols": []}, "symbols: expected a non-empty list of symbols"),
        ({"symbols": ["SPY", "SPY"]}, "symbols[1]: duplicate symbol 'SPY'"),
        ({"bar_size": "1 days"}, "bar_size: expected an IB bar size like '1 day' or '5 mins', got '1 days' (did you mean '1 day'?)"),
        ({"strategy": {"nme": "X"}}, "strategy.nme: unknown key (did you mean name?)"),
        ({"strategy": {"params": [1, 2]}}, "strategy.params: expected an object of strategy params"),
        ({"connection": 4002}, "connection: expected an object, got 4002"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value).startswith(f"config {path}: ")
    assert message in str(err.value)


def test_confirm_live_is_refused_in_file(tmp_path):
    path = write(tmp_path, {"mode": "live", "confirm_live": True})
    with pytest.raises(ConfigError, match="confirm_live: not accepted in a config file"):
        load_config(path, env={})
    # ... but the command line may give it
    cfg = load_config(None, env={}, overrides={"mode": "live", "confirm_live": True})
    assert cfg.confirm_live is True and cfg.mode == "live"


def test_secrets_in_file_are_refused(tmp_path):
    path = write(tmp_path, {"TWS_PASSWORD": "x"})
    with pytest.raises(ConfigError, match="secrets are not read from config files"):
        load_config(path, env={})


def test_malformed_json_names_line_and_column(tmp_path):
    path = write(tmp_path, '{\n  "mode": "paper",\n  "symbols": ["SPY"\n}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value).startswith(f"config {path}: invalid JSON at line 4, column 1:")


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="file not found .*examples/live.example.json"):
        load_config(tmp_path / "nope.json", env={})


def test_top_level_must_be_an_object(tmp_path):
    with pytest.raises(ConfigError, match="expected a JSON object at the top level, got list"):
        load_config(write(tmp_path, "[1, 2]"), env={})


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"BT_IBKR_PORT": "x"})
    assert str(err.value) == "BT_IBKR_PORT='x': expected an integer 1..65535, got 'x'"
    with pytest.raises(ConfigError, match=r"BT_IBKR_MODE='paperr': expected one of"):
        load_config(None, env={"BT_IBKR_MODE": "paperr"})


def test_bad_cli_override_names_the_key():
    with pytest.raises(ConfigError, match=r"command line: connection\.client_id: expected an integer"):
        load_config(None, env={}, overrides={"connection.client_id": "seven"})
    with pytest.raises(ConfigError, match=r"command line: connection\.prot: unknown key \(did you mean port\?\)"):
        load_config(None, env={}, overrides={"connection.prot": 1})


def test_secrets_come_from_environment_and_never_print():
    env = {"TWS_USERID": "alice", "TWS_PASSWORD": "s3cr3t-pw-42", "BT_IBKR_ALERT_TOKEN": "tok-777",
           "BT_IBKR_SMTP_PASSWORD": "mailpw-9", "BT_IBKR_HOST": "127.0.0.1", "HOME": "/root"}
    cfg = load_config(None, env=env)
    assert cfg.secrets == {"TWS_USERID": "alice", "TWS_PASSWORD": "s3cr3t-pw-42",
                           "BT_IBKR_ALERT_TOKEN": "tok-777", "BT_IBKR_SMTP_PASSWORD": "mailpw-9"}
    shown = repr(cfg) + json.dumps(cfg.redacted()) + str(cfg)
    for secret in ("s3cr3t-pw-42", "tok-777", "mailpw-9", "alice"):
        assert secret not in shown
    assert cfg.redacted()["secrets"] == {"BT_IBKR_ALERT_TOKEN": "***", "BT_IBKR_SMTP_PASSWORD": "***",
                                         "TWS_PASSWORD": "***", "TWS_USERID": "***"}


def test_redacted_masks_secret_looking_params_and_is_json():
    cfg = LiveConfig(params={"band": 0.1, "api_key": "abc123"})
    data = cfg.redacted()
    assert data["strategy"]["params"] == {"band": 0.1, "api_key": "***"}
    assert data["connection"]["port"] == 4002
    json.dumps(data)  # plain data only


def test_setup_guide_shows_the_example_file_and_documents_every_key():
    """docs/SETUP.md's config block must stay equal to examples/live.example.json."""
    import re
    from dataclasses import fields

    from bt_ibkr.live.config import (
        ConnectionConfig,
        OpsConfig,
        PathsConfig,
        RiskConfig,
        SessionsConfig,
    )

    guide = (EXAMPLE.parents[1] / "docs" / "SETUP.md").read_text()
    block = re.search(r"```json\n(.*?)```", guide, re.S).group(1)
    shown = {k: v for k, v in json.loads(block).items() if not k.startswith("_")}
    example = {k: v for k, v in json.loads(EXAMPLE.read_text()).items() if not k.startswith("_")}
    assert shown == example
    for section, cls in (("connection", ConnectionConfig), ("risk", RiskConfig),
                         ("paths", PathsConfig), ("sessions", SessionsConfig),
                         ("ops", OpsConfig)):
        for f in fields(cls):
            assert f"| `{section}.{f.name}` |" in guide, f"{section}.{f.name} not documented"
    for key in ("mode", "run_mode", "symbols", "bar_size", "strategy.name", "strategy.params",
                "read_only"):
        assert f"| `{key}` |" in guide, f"{key} not documented"
