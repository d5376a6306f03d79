"""Command-line spelling of futures: ``--futures ES,ES=F:ES`` (``SYMBOL[:ROOT]``; a colon,
because Yahoo's continuous futures symbols contain ``=``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bt_ibkr.errors import ConfigError, UnknownSymbolError
from bt_ibkr.futures.registry import REGISTRY, get_spec

__all__ = ["futures_hint", "futures_roots"]


def futures_hint(exc: BaseException, symbols: Iterable[str],
                 futures: Mapping[str, str] | None) -> str:
    """Return the text to add to ``exc``'s one line when it is an unknown symbol that is a
    futures root of the registry left out of ``--futures`` (" -- ES is a futures root: add
    --futures ES"), else ""."""
    if not isinstance(exc, UnknownSymbolError):
        return ""
    text, futures = str(exc), futures or {}
    for sym in symbols:
        if sym not in futures and sym.upper() in REGISTRY and repr(sym) in text:
            return (f" -- {sym} is a futures root of the roll registry: add --futures {sym} "
                    "to trade its continuous future")
    return ""


def futures_roots(text: str | None) -> dict[str, str]:
    """Return ``{symbol: root}`` of a ``--futures`` text (``SYMBOL[:ROOT]`` comma-separated;
    the root defaults to the symbol). Empty or None gives ``{}``.

    Raises ConfigError naming the flag for an empty item or an unknown root (the message
    lists the known roots).
    """
    if text is None:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        symbol, _, root = item.strip().partition(":")
        symbol, root = symbol.strip(), (root.strip() or symbol.strip())
        if not symbol:
            raise ConfigError(f"--futures {text!r}: empty item; give e.g. --futures ES or "
                              "--futures ES=F:ES")
        try:
            out[symbol] = get_spec(root).root
        except ConfigError as exc:
            raise ConfigError(f"--futures {item.strip()}: {exc}") from None
    return out
