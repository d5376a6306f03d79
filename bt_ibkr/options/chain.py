"""Option chains: what IB lists for an underlying, and picking one contract from it.

``fetch_chain(ib, underlying)`` asks IB (``reqSecDefOptParams``) for the chain of a
*qualified* underlying and returns an :class:`OptionChain` (expirations and strikes of one
exchange's row; IB sends one row per exchange, SMART preferred). ``pick_option(chain, ...)``
returns the ib_async ``Option`` for the first expiry on or after a date, the listed strike
nearest a target, and a right. The returned contract is not qualified: IB lists the union of
strikes over all expirations, so qualify it (``ib.qualifyContracts``) before use; a pair IB does
not list then comes back unqualified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from bt_ibkr.errors import ConfigError

__all__ = ["OptionChain", "chain_from_rows", "fetch_chain", "fetch_chain_async", "pick_option"]


@dataclass(frozen=True)
class OptionChain:
    """The options IB lists on one underlying on one exchange.

    ``expirations``: sorted ``date`` values; ``strikes``: sorted floats; ``multiplier``: the
    contract multiplier as IB sends it (e.g. "100").
    """

    symbol: str
    underlying_con_id: int
    exchange: str
    trading_class: str
    multiplier: str
    expirations: tuple[date, ...]
    strikes: tuple[float, ...]

    @property
    def multiplier_value(self) -> float:
        """Return the multiplier as a number (the value of one contract per $1 of premium)."""
        return float(self.multiplier or 1)


def _ymd(text: str) -> date:
    return datetime.strptime(str(text)[:8], "%Y%m%d").date()


def chain_from_rows(symbol: str, rows: list, exchange: str = "SMART") -> OptionChain:
    """Return the chain of ``exchange`` from ib_async ``OptionChain`` rows.

    Raises ConfigError naming ``symbol`` when IB listed no options, or none on ``exchange``.
    """
    if not rows:
        raise ConfigError(f"IB lists no options on {symbol!r}; check the symbol and that the "
                          "underlying is optionable")
    row = next((r for r in rows if r.exchange == exchange), None)
    if row is None:
        listed = ", ".join(sorted({r.exchange for r in rows}))
        raise ConfigError(f"IB lists no {symbol!r} options on exchange {exchange!r}; "
                          f"use one of: {listed}")
    if not row.expirations or not row.strikes:
        raise ConfigError(f"IB lists no {symbol!r} expirations or strikes on {exchange!r}")
    return OptionChain(
        symbol=symbol, underlying_con_id=int(row.underlyingConId), exchange=row.exchange,
        trading_class=row.tradingClass, multiplier=str(row.multiplier),
        expirations=tuple(sorted({_ymd(e) for e in row.expirations})),
        strikes=tuple(sorted({float(k) for k in row.strikes})))


async def fetch_chain_async(ib, underlying, exchange: str = "SMART") -> OptionChain:
    """Return the chain of the qualified ``underlying`` (an ib_async Contract) on ``exchange``.

    Raises ConfigError when ``underlying`` has no conId (qualify it first) or IB lists none.
    """
    if not getattr(underlying, "conId", 0):
        raise ConfigError(f"underlying {underlying.symbol!r} has no conId: qualify it "
                          "(ib.qualifyContracts) before asking for its option chain")
    rows = await ib.reqSecDefOptParamsAsync(underlying.symbol, "", underlying.secType,
                                            underlying.conId)
    return chain_from_rows(underlying.symbol, list(rows or []), exchange)


def fetch_chain(ib, underlying, exchange: str = "SMART") -> OptionChain:
    """Blocking :func:`fetch_chain_async` (for a caller outside ib_async's event loop)."""
    return ib.run(fetch_chain_async(ib, underlying, exchange))


def pick_option(chain: OptionChain, on_or_after: date, target_strike: float, right: str,
                exchange: str = "SMART", currency: str = "USD"):
    """Return the ib_async ``Option`` for the first expiry on or after ``on_or_after``, the
    listed strike nearest ``target_strike`` (the lower one on a tie) and ``right``.

    Raises ConfigError when ``right`` is not C/CALL/P/PUT, the target is not positive, or no
    expiry is on or after ``on_or_after``.
    """
    from ib_async import Option

    r = str(right).strip().upper()
    if r not in ("C", "CALL", "P", "PUT"):
        raise ConfigError(f"option right {right!r} is not valid; use 'C' (call) or 'P' (put)")
    if not target_strike or target_strike <= 0:
        raise ConfigError(f"target strike {target_strike!r} must be a positive price")
    expiry = next((e for e in chain.expirations if e >= on_or_after), None)
    if expiry is None:
        last = chain.expirations[-1].isoformat() if chain.expirations else "none"
        raise ConfigError(f"{chain.symbol} lists no expiry on or after {on_or_after}; the last "
                          f"listed is {last}")
    strike = min(chain.strikes, key=lambda k: (abs(k - target_strike), k))
    return Option(chain.symbol, expiry.strftime("%Y%m%d"), strike, r[0], exchange,
                  multiplier=chain.multiplier, currency=currency,
                  tradingClass=chain.trading_class)
