"""Configuration of a live or paper run: a JSON file, environment variables, then CLI flags.

Precedence, lowest to highest: the dataclass defaults < the JSON file (``--config FILE``) <
environment variables (connection settings and secrets) < command-line overrides. Every value is
validated when it is loaded; a bad one raises :class:`~bt_ibkr.errors.ConfigError` whose message
names where it came from (file and key path, environment variable, or command-line flag), what
was expected and, for a misspelt key, the closest valid name.

File layout (every section and key optional; see ``examples/live.example.json``)::

    {
      "mode": "paper",                      # "paper" | "live"
      "run_mode": "daily",                  # "daily" | "stream"
      "symbols": ["SPY"],
      "futures": {},                        # futures symbols: {"ES": "ES"} or "ES,NQ"
      "bar_size": "1 day",
      "strategy": {"name": "RegimeAwareEnsemble", "params": {"band": 0.1}},
      "read_only": false,
      "connection": {"host": "127.0.0.1", "port": 4002, "client_id": 1, "account": null,
                     "timeout": 10.0, "readonly": false},
      "risk": {"max_position_per_symbol": null, "max_position_notional": null,
               "max_order_notional": null, "max_daily_loss": 0.03,
               "max_margin_fraction": null, "cancel_on_exit": true},
      "paths": {"journal": "state/{account}/journal.sqlite", "logs": "logs",
                "reports": "reports/{account}", "equity": "state/{account}/equity.csv"},
      "sessions": {"part_mb": 16, "keep_days": null, "expired": "delete", "archive": null}
    }

``{account}`` in a path is the account the run trades (journals, equity curves, session records
and reports are per account: :mod:`bt_ibkr.live.account_paths`, which also moves a journal left
at the old default ``state/journal.sqlite``); ``paths.logs`` cannot name it.

Keys starting with ``_`` (``"_comment"``) are ignored at every level. ``confirm_live`` is
deliberately not accepted from the file or the environment: confirming live trading takes an
explicit command-line flag on each run.

Secrets (``TWS_USERID``, ``TWS_PASSWORD``, ``BT_IBKR_ALERT_URLS``, ``BT_IBKR_HTTP_TOKEN`` ...) are read only from the
environment into :attr:`LiveConfig.secrets`, which is left out of ``repr()`` and shown as
``"***"`` by :meth:`LiveConfig.redacted`.

The checks of single values (types, ranges, choices, ``decide_at``) live in
:mod:`bt_ibkr.live.config_values`; :func:`parse_decide_at` is importable from here too.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.bars import BAR_SIZES
from bt_ibkr.live.config_types import (  # noqa: F401 - the data types, re-exported
    DEFAULT_PORT_BY_MODE,
    ENV_CONNECTION,
    MODES,
    RUN_MODES,
    SECTION_TYPES,
    ConnectionConfig,
    LiveConfig,
    OpsConfig,
    PathsConfig,
    RiskConfig,
    SessionsConfig,
    mask_keys,
)
from bt_ibkr.live.config_values import (
    Where,
    as_bool,
    as_choice,
    as_float,
    as_futures,
    as_int,
    as_str,
    as_symbols,
    parse_decide_at,
    unknown_key,
)
from bt_ibkr.masking import SECRET_ENV_VARS, SECRET_NAME_RE  # noqa: F401 - also re-exported

# --------------------------------------------------------------------------------------------
# applying one layer (file, environment, overrides) onto a draft of a LiveConfig

Draft = SimpleNamespace
"""A LiveConfig being built: the same attributes (sections as Drafts too), assignable."""


def draft(config: LiveConfig | None = None) -> Draft:
    """Return a mutable Draft of ``config`` (default: the defaults), for :func:`freeze`."""
    config = LiveConfig() if config is None else config
    top = {f.name: getattr(config, f.name) for f in fields(LiveConfig)}
    for name, cls in SECTION_TYPES.items():
        section = top[name]
        top[name] = Draft(**{f.name: copy.copy(getattr(section, f.name)) for f in fields(cls)})
    top["symbols"], top["params"] = list(top["symbols"]), dict(top["params"])
    top["futures"] = dict(top["futures"])
    top["secrets"] = dict(top["secrets"])
    return Draft(**top)


def freeze(cfg: Draft) -> LiveConfig:
    """Return the frozen LiveConfig of the Draft ``cfg``."""
    values = dict(vars(cfg))
    for name, cls in SECTION_TYPES.items():
        values[name] = cls(**vars(values[name]))
    return LiveConfig(**values)


def _set_connection(cfg: Draft, where: Where, key: str, value: Any) -> None:
    path = f"connection.{key}"
    c = cfg.connection
    if key == "host":
        c.host = as_str(where, path, value)
    elif key == "port":
        c.port = None if value is None else as_int(where, path, value, 1, 65535)
    elif key == "client_id":
        c.client_id = as_int(where, path, value, 0, 2**31 - 1)
    elif key == "account":  # IB's account ids are capitals: "du111" is account DU111
        text = as_str(where, path, value, nullable=True)
        c.account = text.upper() if text else None
    elif key == "timeout":
        c.timeout = as_float(where, path, value, lo=0.0)
    elif key == "readonly":
        c.readonly = as_bool(where, path, value)
    else:  # pragma: no cover - callers check names first
        raise unknown_key(where, "connection", key, _names(ConnectionConfig))


def _set_risk(cfg: Draft, where: Where, key: str, value: Any) -> None:
    path = f"risk.{key}"
    r = cfg.risk
    if key in ("max_position_per_symbol", "max_position_notional", "max_order_notional"):
        setattr(r, key, as_float(where, path, value, lo=0.0, nullable=True))
    elif key == "max_daily_loss":
        r.max_daily_loss = as_float(where, path, value, lo=0.0, hi=1.0, nullable=True)
    elif key == "max_margin_fraction":
        r.max_margin_fraction = as_float(where, path, value, lo=0.0, hi=1.0, hi_open=False,
                                         nullable=True)
    elif key == "cancel_on_exit":
        r.cancel_on_exit = as_bool(where, path, value)
    elif key == "capital":
        r.capital = as_float(where, path, value, lo=0.0, nullable=True)
    elif key == "ramp_sessions":
        r.ramp_sessions = as_int(where, path, value, 0, 10_000)
    elif key == "ramp_start":
        r.ramp_start = as_float(where, path, value, lo=0.0, hi=1.0,
                                 hi_open=False)
    elif key == "shrink":
        names = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)):
            raise where.error(key, f"expected a list of limit names, got {value!r}")
        shrinkable = ("max_order_notional", "max_position_notional", "max_position_per_symbol",
                      "max_margin_fraction")
        for name in names:
            if name not in shrinkable:
                raise where.error(key, f"{name!r} cannot shrink an order; choose from "
                                       f"{', '.join(shrinkable)}")
        r.shrink = [n for n in names if n]
    else:  # pragma: no cover
        raise unknown_key(where, "risk", key, _names(RiskConfig))


def _set_path(cfg: Draft, where: Where, key: str, value: Any) -> None:
    text = as_str(where, f"paths.{key}", str(value) if isinstance(value, Path) else value)
    rest = (text or "").replace("{account}", "")
    if "{" in rest or "}" in rest:
        raise where.error(f"paths.{key}", f"{text!r}: the only field a path can name is "
                                          "{account} (the account the run trades)")
    if key == "logs" and "{account}" in (text or ""):
        raise where.error("paths.logs", f"{text!r}: the logs folder cannot name {{account}} "
                                        "(the log opens before the gateway names the "
                                        "account); give a plain folder")
    setattr(cfg.paths, key, Path(os.path.expanduser(text or "")))  # as_str: never None here


def _set_sessions(cfg: Draft, where: Where, key: str, value: Any) -> None:
    path = f"sessions.{key}"
    s = cfg.sessions
    if key == "part_mb":
        s.part_mb = as_float(where, path, value, lo=0.0, hi=4096.0,
                              hi_open=False)
    elif key == "keep_days":
        s.keep_days = as_float(where, path, value, lo=0.0, nullable=True)
    elif key == "expired":
        s.expired = as_choice(where, path, value, ("delete", "archive"))
    elif key == "archive":
        text = as_str(where, path, str(value) if isinstance(value, Path) else value,
                       nullable=True)
        s.archive = None if text is None else Path(os.path.expanduser(text))
    else:  # pragma: no cover
        raise unknown_key(where, "sessions", key, _names(SessionsConfig))


def _set_ops(cfg: Draft, where: Where, key: str, value: Any) -> None:
    path = f"ops.{key}"
    o = cfg.ops
    if key == "http_host":
        o.http_host = as_str(where, path, value)
    elif key == "http_port":
        o.http_port = None if value is None else as_int(where, path, value, 0, 65535)
    elif key == "restart_window":
        text = as_str(where, path, value, nullable=True)
        if text is not None:
            from bt_ibkr.ib.restart_window import RestartWindow

            try:
                RestartWindow.parse(text, where=path)
            except ConfigError as exc:
                raise where.error(key, str(exc)) from None
        o.restart_window = text
    elif key == "decide_at":
        text = as_str(where, path, value)
        try:
            parse_decide_at(text)
        except ConfigError as exc:
            raise where.error(key, str(exc)) from None
        o.decide_at = text
    elif key == "calendar":
        from bt_ibkr.calendars import get_calendar

        text = as_str(where, path, value)
        try:
            get_calendar(str(text))
        except ConfigError as exc:
            raise where.error(key, str(exc)) from None
        o.calendar = text
    else:  # pragma: no cover
        raise unknown_key(where, "ops", key, _names(OpsConfig))


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


_TOP_KEYS = ["mode", "run_mode", "symbols", "futures", "bar_size", "strategy", "params",
             "read_only", "connection", "risk", "paths", "sessions", "ops"]
_SECTIONS = {
    "connection": (ConnectionConfig, _set_connection),
    "risk": (RiskConfig, _set_risk),
    "paths": (PathsConfig, _set_path),
    "sessions": (SessionsConfig, _set_sessions),
    "ops": (OpsConfig, _set_ops),
}


def _set_top(cfg: Draft, where: Where, key: str, value: Any) -> None:
    if key == "mode":
        cfg.mode = as_choice(where, key, value, MODES)
    elif key == "run_mode":
        cfg.run_mode = as_choice(where, key, value, RUN_MODES)
    elif key == "symbols":
        cfg.symbols = as_symbols(where, key, value)
    elif key == "futures":
        cfg.futures = as_futures(where, key, value)
    elif key == "bar_size":
        if not isinstance(value, str) or value.strip() not in BAR_SIZES:
            close = difflib.get_close_matches(str(value), BAR_SIZES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise where.error(key, f"expected an IB bar size like '1 day' or '5 mins', got {value!r}{hint}")
        cfg.bar_size = value.strip()
    elif key == "read_only":
        cfg.read_only = as_bool(where, key, value)
    elif key == "confirm_live":
        cfg.confirm_live = as_bool(where, key, value)
    elif key == "strategy":
        if isinstance(value, str):
            cfg.strategy = as_str(where, key, value)
            return
        if not isinstance(value, Mapping):
            raise where.error(key, f'expected {{"name": ..., "params": {{...}}}} or a name, got {value!r}')
        for sub, subval in value.items():
            if str(sub).startswith("_"):
                continue
            if sub == "name":
                cfg.strategy = as_str(where, "strategy.name", subval)
            elif sub == "params":
                _set_top(cfg, where, "strategy.params", subval)
            else:
                raise unknown_key(where, "strategy", str(sub), ["name", "params"])
    elif key in ("params", "strategy.params"):
        if not isinstance(value, Mapping):
            raise where.error(key, f"expected an object of strategy params, got {value!r}")
        cfg.params = {**cfg.params, **{str(k): v for k, v in value.items()}}
    else:  # pragma: no cover
        raise unknown_key(where, "", key, _TOP_KEYS)


def _apply_file(cfg: Draft, where: Where, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.origin}: expected a JSON object at the top level, got {type(data).__name__}")
    for key, value in data.items():
        key = str(key)
        if key.startswith("_"):
            continue
        if key == "confirm_live":
            raise where.error(key, "not accepted in a config file: confirm live trading on the "
                                   "command line (--live --confirm-live) on each run")
        if key == "secrets" or key in SECRET_ENV_VARS:
            raise where.error(key, "secrets are not read from config files: set them in the "
                                   f"environment ({', '.join(SECRET_ENV_VARS)})")
        if key in _SECTIONS:
            cls, setter = _SECTIONS[key]
            if not isinstance(value, Mapping):
                raise where.error(key, f"expected an object, got {value!r}")
            valid = _names(cls)
            for sub, subval in value.items():
                sub = str(sub)
                if sub.startswith("_"):
                    continue
                if sub not in valid:
                    raise unknown_key(where, key, sub, valid)
                setter(cfg, where, sub, subval)
        elif key in _TOP_KEYS:
            _set_top(cfg, where, key, value)
        else:
            raise unknown_key(where, "", key, _TOP_KEYS)


def _apply_env(cfg: Draft, env: Mapping[str, str]) -> None:
    for var, path in ENV_CONNECTION.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        # errors read "BT_IBKR_PORT='x': expected an integer 1..65535, got 'x'"
        _apply_dotted(cfg, Where(f"{var}={raw!r}", name_key=False), path, raw)
    secrets = {}
    for var, value in env.items():
        if not value:
            continue
        if var in SECRET_ENV_VARS or (var.startswith("BT_IBKR_") and SECRET_NAME_RE.search(var)):
            secrets[var] = value
    cfg.secrets = secrets


def _apply_dotted(cfg: Draft, where: Where, dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    if key and section in _SECTIONS:
        cls, setter = _SECTIONS[section]
        if key not in _names(cls):
            raise unknown_key(where, section, key, _names(cls))
        setter(cfg, where, key, value)
    elif section == "strategy" and key in ("name", "params"):
        _set_top(cfg, where, "strategy" if key == "name" else "strategy.params", value)
    elif not key and (section in _TOP_KEYS or section == "confirm_live") and section not in _SECTIONS:
        _set_top(cfg, where, section, value)
    else:
        raise unknown_key(where, "", dotted, _TOP_KEYS + ["confirm_live"])


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted in _SECTIONS:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _read_json(path: Path) -> Any:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config {name}: file not found (copy examples/live.example.json and edit it)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config {name}: cannot read ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config {name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def load_config(
    path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LiveConfig:
    """Return the validated :class:`LiveConfig` for a run.

    Args:
        path: the JSON config file, or None for defaults only.
        env: environment variables (default ``os.environ``); ``BT_IBKR_HOST``, ``BT_IBKR_PORT``,
            ``BT_IBKR_CLIENT_ID``, ``BT_IBKR_ACCOUNT`` and ``BT_IBKR_MODE`` override the file;
            secrets (:data:`SECRET_ENV_VARS`, and ``BT_IBKR_*`` names containing PASS, SECRET,
            TOKEN, KEY or CREDENTIAL) go to ``secrets``.
        overrides: command-line values, highest precedence. Either dotted keys
            (``{"connection.port": 4002, "symbols": "SPY,QQQ"}``) or nested sections
            (``{"connection": {"port": 4002}}``); None values are skipped, so argparse
            defaults of None can be passed straight through.

    Raises:
        ConfigError: the file is missing or not valid JSON (file, line and column named), a key
            is unknown (closest valid key suggested), a value has the wrong type or range
            (key path and source named), or ``confirm_live``/secrets appear in the file.
    """
    env = os.environ if env is None else env
    cfg = draft()
    if path is not None:
        path = Path(path)
        cfg.source = str(path)
        _apply_file(cfg, Where(f"config {path}"), _read_json(path))
    _apply_env(cfg, env)
    if overrides:
        where = Where("command line")
        for dotted, value in _flatten(overrides).items():
            if value is None:
                continue
            _apply_dotted(cfg, where, dotted, value)
    if cfg.connection.port is None:
        cfg.connection.port = DEFAULT_PORT_BY_MODE[cfg.mode]
    stray = [s for s in cfg.futures if s not in cfg.symbols]
    if stray:
        raise ConfigError(f"futures {', '.join(stray)}: not among the symbols "
                          f"({', '.join(cfg.symbols)}); add it, e.g. --symbols {stray[0]}")
    by_root: dict[str, list[str]] = {}
    for sym, root in cfg.futures.items():
        by_root.setdefault(root, []).append(sym)
    twice = {root: syms for root, syms in by_root.items() if len(syms) > 1}
    if twice:  # each symbol would trade the root's ONE held contract: twice the exposure
        root, syms = next(iter(twice.items()))
        raise ConfigError(f"futures {', '.join(syms)}: all trade {root}'s held contract, so the "
                          f"run would hold it {len(syms)} times over; keep one of them "
                          f"(a root the registry lacks, e.g. a micro contract, needs its own "
                          f"entry in bt_ibkr.futures.registry)")
    return freeze(cfg)
