"""Which strategy, with which params: names and ``key=value`` strings into a Strategy class and
typed backtrader params, with clear errors."""

from __future__ import annotations

import difflib
import importlib
import json
from typing import Any

from bt_ibkr.errors import ConfigError


def param_defaults(strategy_cls: type) -> dict[str, Any]:
    """Return {name: default} of a backtrader Strategy class's params."""
    params = strategy_cls.params
    names = params._getkeys() if hasattr(params, "_getkeys") else [k for k, _ in params]
    defaults = params._getdefaults() if hasattr(params, "_getdefaults") else [v for _, v in params]
    return dict(zip(names, defaults, strict=True))


def _convert(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--param {name}={text}: expected true/false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--param {name}={text}: expected an integer (default {default})") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--param {name}={text}: expected a number (default {default})") from None
    if isinstance(default, (dict, list, tuple)) or default is None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if default is None:
                return text
            raise ConfigError(
                f"--param {name}={text}: expected JSON like {json.dumps(default)} ({exc.msg})"
            ) from None
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        return value
    return text


def parse_params(strategy_cls: type, items: list[str] | None) -> dict[str, Any]:
    """Return typed params from ``["key=value", ...]`` for ``strategy_cls``.

    Values are converted to the type of the param's default (bool, int, float, JSON for dicts
    and lists, text otherwise).

    Raises:
        ConfigError: an item has no ``=``, names an unknown param (the message suggests the
            closest names and lists the valid ones) or has a value of the wrong type.
    """
    defaults = param_defaults(strategy_cls)
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected key=value, e.g. --param band=0.05")
        name, text = item.split("=", 1)
        name = name.strip()
        check_param_names(strategy_cls, [name], "--param")
        out[name] = _convert(name, text, defaults[name])
    return out


def check_param_names(strategy_cls: type, names: list[str], flag: str) -> None:
    """Return None when every name is a param of ``strategy_cls``.

    Raises ConfigError naming ``flag`` and the first unknown name, suggesting the closest
    names and listing the valid ones.
    """
    defaults = param_defaults(strategy_cls)
    for name in names:
        if name not in defaults:
            close = difflib.get_close_matches(name, list(defaults), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{flag} {name}: {strategy_cls.__name__} has no such param.{hint} "
                f"Valid params: {', '.join(sorted(defaults))}"
            )


DEFAULT_STRATEGY = "RegimeAwareEnsemble"
"""The strategy backtests and live runs use when none is named."""


def resolve_strategy(name: str | None = None, flag: str = "strategy.name") -> type:
    """Return the Strategy class ``name`` stands for: ``"RegimeAwareEnsemble"`` (the default,
    also ``"strategies.RegimeAwareEnsemble"``) or ``"package.module:ClassName"``.

    Raises ConfigError naming ``flag`` (the setting or CLI flag it came from) and ``name`` when
    it cannot be imported, is not a backtrader Strategy class, or has neither form.
    """
    name = (name or DEFAULT_STRATEGY).strip()
    if name in (DEFAULT_STRATEGY, f"strategies.{DEFAULT_STRATEGY}"):
        from strategies import RegimeAwareEnsemble

        return RegimeAwareEnsemble
    if ":" in name:
        mod, _, cls = name.partition(":")
        try:
            found = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"{flag} {name!r}: cannot import ({exc})") from None
        import backtrader as bt

        if not (isinstance(found, type) and issubclass(found, bt.Strategy)):
            raise ConfigError(f"{flag} {name!r}: {type(found).__name__} is not a "
                              "backtrader Strategy class; name a bt.Strategy subclass")
        return found
    raise ConfigError(f"{flag} {name!r}: expected {DEFAULT_STRATEGY!r} or "
                      "'package.module:ClassName'")
