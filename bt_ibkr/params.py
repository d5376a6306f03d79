"""Which strategy, with which params: names and ``key=value`` strings into a Strategy class and
typed backtrader params, with clear errors."""

from __future__ import annotations

import difflib
import importlib
import json
import math
from typing import Any

from bt_ibkr.errors import ConfigError


def param_defaults(strategy_cls: type) -> dict[str, Any]:
    """Return {name: default} of a backtrader Strategy class's params."""
    params = strategy_cls.params
    names = params._getkeys() if hasattr(params, "_getkeys") else [k for k, _ in params]
    defaults = params._getdefaults() if hasattr(params, "_getdefaults") else [v for _, v in params]
    return dict(zip(names, defaults, strict=True))


TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")
"""The texts a bool param accepts (any case): nothing else, so a typo is refused, not truthy."""


def first_non_finite(value: Any) -> float | None:
    """Return the first NaN/infinite float in ``value`` (nested lists/dicts too), else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    items = value.values() if isinstance(value, dict) else value \
        if isinstance(value, (list, tuple)) else ()
    for item in items:
        bad = first_non_finite(item)
        if bad is not None:
            return bad
    return None


def convert_value(name: str, text: str, default: Any, flag: str = "--param") -> Any:
    """Return ``text`` converted to the type of the param's ``default``.

    bool: ``true/false``, ``1/0`` or ``yes/no`` (any case) only; int: an integer; float: a
    finite number; dict, list, tuple: JSON (a list becomes a tuple for a tuple default);
    None: JSON, else the text; str: the text (a JSON string such as ``"a,b"`` is unquoted).

    Raises ConfigError naming ``flag``, the param and the text, and what was expected.
    """
    where = f"{flag} {name}={text}"
    low = text.strip().lower()
    if isinstance(default, bool):
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ConfigError(f"{where}: expected true/false (or 1/0, yes/no)")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer (default {default})") from None
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number (default {default:g})")
        return value
    if isinstance(default, (dict, list, tuple)) or default is None:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if default is None:
                return text
            raise ConfigError(
                f"{where}: expected JSON like {json.dumps(default)} ({exc.msg})"
            ) from None
        bad = first_non_finite(value)
        if bad is not None:
            raise ConfigError(f"{where}: {bad} is not a finite number")
        if isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        return value
    if isinstance(default, str) and text.strip().startswith('"'):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        return value if isinstance(value, str) else text
    return text


def convert_param(strategy_cls: type, name: str, text: str, flag: str = "--param") -> Any:
    """Return ``text`` typed for ``strategy_cls``'s param ``name`` (see :func:`convert_value`).

    The one typed parser of strategy params: ``--param`` (backtest, live, parity, sweep) and
    every ``--grid`` value of the sweep. Raises ConfigError naming ``flag`` when ``name`` is
    not a param of the Strategy (with the closest names) or ``text`` has the wrong type.
    """
    check_param_names(strategy_cls, [name], flag)
    return convert_value(name, text, param_defaults(strategy_cls)[name], flag)


def _type_problem(value: Any, default: Any) -> str | None:
    """Return what is wrong with ``value`` for a param whose default is ``default`` (the types
    :func:`convert_value` gives text), or None when it fits."""
    bad = first_non_finite(value)
    if bad is not None:
        return "expected a finite number" if isinstance(value, float) \
            else f"{bad} is not a finite number"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "expected true/false"
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected an integer (default {default})"
    if isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"expected a number (default {default:g})"
    if isinstance(default, dict):
        return None if isinstance(value, dict) else f"expected an object like {json.dumps(default)}"
    if isinstance(default, list | tuple):
        return None if isinstance(value, list | tuple) else f"expected a list like {json.dumps(default)}"
    if isinstance(default, str):
        return None if isinstance(value, str) else "expected a text"
    return None


def check_param_values(strategy_cls: type, params: dict[str, Any], where: str) -> None:
    """Return None when every value of ``params`` (already typed, e.g. from a JSON config) has
    the type :func:`convert_param` would give its text: a bool for a bool param (never
    ``"maybe"``), an int for an int param, a finite number for a float param, and so on.

    Names the Strategy does not have are left to :func:`check_param_names`. Raises
    ConfigError naming ``where`` and the param (``strategy.params.use_hmm``), the value and
    what was expected.
    """
    defaults = param_defaults(strategy_cls)
    for name, value in params.items():
        if name in defaults:
            problem = _type_problem(value, defaults[name])
            if problem is not None:
                raise ConfigError(f"{where}.{name}: {problem}, got {value!r}")


def parse_params(strategy_cls: type, items: list[str] | None) -> dict[str, Any]:
    """Return typed params from ``["key=value", ...]`` for ``strategy_cls``.

    Values are converted to the type of the param's default by :func:`convert_param` (bool
    from true/false, 1/0 or yes/no only; int; finite float; JSON for dicts and lists; text
    otherwise).

    Raises:
        ConfigError: an item has no ``=``, names an unknown param (the message suggests the
            closest names and lists the valid ones) or has a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected key=value, e.g. --param band=0.05")
        name, text = item.split("=", 1)
        out[name.strip()] = convert_param(strategy_cls, name.strip(), text)
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
