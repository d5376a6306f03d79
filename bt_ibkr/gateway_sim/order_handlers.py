"""Order/account request handlers of the gateway simulator, wired to a SimBroker.

``register(server)`` creates ``server.broker`` and installs ``server.handlers`` for
3 placeOrder, 4 cancelOrder, 58 reqGlobalCancel, 5 reqOpenOrders, 16 reqAllOpenOrders,
15 reqAutoOpenOrders, 99 reqCompletedOrders, 7 reqExecutions, 61/64 reqPositions/cancel,
74/75 reqPositionsMulti/cancel, 6 reqAccountUpdates, 62/63 reqAccountSummary/cancel,
76/77 reqAccountUpdatesMulti/cancel, 92/93 reqPnL/cancel and 94/95 reqPnLSingle/cancel.

What one API client sees of another's orders (IB's rules, as the TWS API documentation and
ib_async's ``Wrapper.openOrder`` describe them):

* pushed order messages (openOrder, orderStatus, execDetails, commissionReport) go to the
  PLACING client's connection(s) and to the connection of the *Master API client ID*
  (``server.master_client_id``, a TWS setting, None by default); order errors to the placing
  client only. No other client hears of an order as it changes;
* 5 reqOpenOrders answers the asking client's own working orders; 16 reqAllOpenOrders every
  client's, once (no subscription), each with the clientId that placed it (another client
  cannot modify or cancel it: order ids belong to their client, a cancel of an id the asking
  client does not have gets 10147);
* 15 reqAutoOpenOrders(True) (clientId 0 only, else error 321) binds orders placed by hand in
  TWS to client 0; the simulator has no manual orders, so it routes nothing more;
* 7 reqExecutions filters by ExecutionFilter.clientId: 0 = every client's executions, N =
  those of orders client N placed (each with its commissionReport);
* 99 reqCompletedOrders answers the account's filled and cancelled orders, every client's
  (the completedOrder message carries no clientId).

Position/account/PnL pushes go to the connections that subscribed, each for the account it
named (several accounts under one login, :mod:`bt_ibkr.gateway_sim.managed`): portfolio rows
and values of reqAccountUpdates(account), reqPnL(account), reqPnLSingle(account, conId) and
reqPositionsMulti(account) ("": every account's) follow that account; reqAccountSummary(group
"All") lists every managed account. State lives in the broker, so it
survives disconnects and ``server.restart()``.

Subscription state is kept in ``conn.subscriptions`` under these keys: "positions" (bool),
"auto_open_orders" (bool), "account_updates" (bool), "account_summary" ({reqId: tags}),
"account_multi" ({reqId: modelCode}), "positions_multi" (set of reqIds), "pnl" ({reqId: None}),
"pnl_single" ({reqId: conId}), and the account each subscription named in "account_codes"
({"updates" | ("multi", reqId) | ("pnl", reqId) | ("pnl_single", reqId) |
("positions_multi", reqId): code}).
"""

from __future__ import annotations

import logging
from typing import Any

from .broker import SimBroker
from .order_codec import (
    account_download_end_fields,
    account_summary_fields,
    account_time_fields,
    account_update_multi_fields,
    account_value_fields,
    commission_report_fields,
    completed_order_fields,
    exec_details_fields,
    ib_time,
    open_order_fields,
    order_status_fields,
    parse_place_order,
    pnl_fields,
    pnl_single_fields,
    portfolio_value_fields,
    position_fields,
)
from .records import (
    AccountChanged,
    Executed,
    OrderError,
    OrderUpdated,
    PortfolioRevalued,
    PositionChanged,
    SimOrder,
)
from .wire import FieldReader

log = logging.getLogger("bt_ibkr.gateway_sim.orders")

NO_SECDEF = "No security definition has been found for the request"


def register(server: Any, **broker_options: Any) -> SimBroker:
    """Create ``server.broker`` and install the order/account handlers; return the broker.

    ``broker_options`` (else ``server.broker_options`` when the server has it) are passed to
    ``SimBroker`` (fill_mode, partial_fill_qty, cash, commission_per_share, currency, ...),
    except ``fx_rates`` (``{ccy: value of one unit in the base currency}``), which go to its
    ledger: a base ``currency`` other than USD needs a USD rate (ConfigError otherwise).
    """
    options = dict(getattr(server, "broker_options", None) or {})
    options.update(broker_options)
    fx_rates = options.pop("fx_rates", None)
    options.setdefault("faults", getattr(server, "faults", None))
    market = server.market
    if callable(getattr(market, "in_session", None)):
        options.setdefault("is_open", lambda c: market.in_session(
            c, int(server.clock.now().timestamp())))
        options.setdefault("is_session_end", lambda c, t: not market.in_session(
            c, int(t.timestamp())))
    broker = SimBroker(server.account, clock=server.clock.now, quote=server.market.quote,
                       **options)
    broker.ledger.set_fx_rates(fx_rates)
    server.broker = broker
    router = OrderRouter(server, broker)
    router.install()
    server.order_router = router
    return broker


class OrderRouter:
    """Turns client requests into broker calls and broker events into TWS messages."""

    def __init__(self, server: Any, broker: SimBroker) -> None:
        self.server = server
        self.broker = broker

    def install(self) -> None:
        """Subscribe to the broker and put the handlers into ``server.handlers``."""
        self.broker.subscribe(self.on_event)
        self.install_handlers()

    def install_handlers(self) -> None:
        """Put this router's handlers into ``server.handlers`` (the login's account is this
        router's broker's: :meth:`GatewayServer.login_as` switches between them)."""
        h = self.server.handlers
        h[3] = self.on_place_order
        h[4] = self.on_cancel_order
        h[58] = self.on_global_cancel
        h[5] = self.on_open_orders
        h[16] = self.on_all_open_orders
        h[15] = self.on_auto_open_orders
        h[99] = self.on_completed_orders
        h[7] = self.on_executions
        h[61] = self.on_positions
        h[64] = self.on_cancel_positions
        h[74] = self.on_positions_multi
        h[75] = self.on_cancel_positions_multi
        h[6] = self.on_account_updates
        h[62] = self.on_account_summary
        h[63] = self.on_cancel_account_summary
        h[76] = self.on_account_updates_multi
        h[77] = self.on_cancel_account_updates_multi
        h[92] = self.on_pnl
        h[93] = self.on_cancel_pnl
        h[94] = self.on_pnl_single
        h[95] = self.on_cancel_pnl_single

    # ------------------------------------------------------------ targets

    def _conns(self) -> list[Any]:
        return [s for s in list(self.server.connections) if not getattr(s, "closed", False)]

    def _order_targets(self, client_id: int) -> list[Any]:
        """The connections that hear of an order of ``client_id`` as it changes: that client's and
        the Master API client's (module docstring)."""
        master = getattr(self.server, "master_client_id", None)
        return [s for s in self._conns() if s.client_id == client_id
                or (master is not None and s.client_id == master)]

    def _subscribed(self, key: str) -> list[Any]:
        return [s for s in self._conns() if s.subscriptions.get(key)]

    # ------------------------------------------------------------ encoders

    def _send_order(self, conn: Any, order: SimOrder, with_status: bool = True) -> None:
        v = conn.server_version
        conn.send(open_order_fields(order.order_id, order.client_id, order.perm_id,
                                       order.contract, order.spec, v, order.order_state(),
                                       order.contract_spec))
        if with_status:
            conn.send(order_status_fields(
                order.order_id, order.status, order.filled, order.remaining,
                order.avg_fill_price, order.perm_id, order.parent_id, order.last_fill_price,
                order.client_id, order.why_held))

    def _send_execution(self, conn: Any, ex: Any, req_id: int) -> None:
        conn.send(exec_details_fields(ex, req_id, conn.server_version))
        conn.send(commission_report_fields(ex.exec_id, ex.commission, ex.currency,
                                              ex.realized_pnl))

    def _send_portfolio(self, conn: Any, contract: Any) -> None:
        """Send the portfolio row of ``contract`` in the account ``conn``'s reqAccountUpdates
        named (nothing when that account never held it)."""
        code = self._code(conn, "updates")
        item = self.broker.accounts.portfolio_item(contract, code)
        if item is None:
            return
        conn.send(portfolio_value_fields(
            code, item.contract, item.position, item.market_price,
            item.market_value, item.average_cost, item.unrealized_pnl, item.realized_pnl))

    @staticmethod
    def _changed(conn: Any, key: Any, rows: list[tuple[str, str, str]],
                 full: bool) -> list[tuple[str, str, str]]:
        """Return the rows of ``rows`` this subscription (``key``) has not been sent yet with
        that value (all of them when ``full``: a new subscription gets the whole snapshot).
        TWS pushes an account value when it changes, not the whole account every time."""
        sent = conn.subscriptions.setdefault("account_sent", {})
        if full:
            sent[key] = {}
        last = sent.setdefault(key, {})
        out = []
        for row in rows:
            if full or last.get((row[0], row[2])) != row[1]:
                last[(row[0], row[2])] = row[1]
                out.append(row)
        return out

    def _send_account_values(self, conn: Any, rows: list[tuple[str, str, str]],
                             full: bool = False) -> None:
        code = self._code(conn, "updates")
        for key, value, ccy in self._changed(conn, "updates", rows, full):
            conn.send(account_value_fields(key, value, ccy, code))

    def _code(self, conn: Any, key: Any) -> str:
        """Return the account a subscription (``key``: "updates" or ("multi", reqId)) asked
        for: another managed account's, or the login's own."""
        code = conn.subscriptions.get("account_codes", {}).get(key)
        return self.broker.accounts.code(code) if code else self.server.account

    def _rows(self, conn: Any, key: Any, own: list[tuple[str, str, str]]) -> list:
        """Return the account-value rows for subscription ``key``: ``own`` (the login's
        account's) or the other managed account's it asked for."""
        code = self._code(conn, key)
        return own if code == self.server.account else self.broker.accounts.values(code)

    def _send_account_time(self, conn: Any) -> None:
        from zoneinfo import ZoneInfo

        now = self.server.clock.now().astimezone(ZoneInfo("America/New_York"))
        conn.send(account_time_fields(now))

    def _send_multi(self, conn: Any, req_id: int, model: str,
                    rows: list[tuple[str, str, str]], full: bool = False) -> None:
        code = self._code(conn, ("multi", req_id))
        for key, value, ccy in self._changed(conn, ("multi", req_id), rows, full):
            conn.send(account_update_multi_fields(req_id, code, model, key, value, ccy))

    def _send_pnl(self, conn: Any, req_id: int) -> None:
        conn.send(pnl_fields(req_id, *self.broker.pnl(self._code(conn, ("pnl", req_id)))))

    def _send_pnl_single(self, conn: Any, req_id: int, con_id: int) -> None:
        code = self._code(conn, ("pnl_single", req_id))
        conn.send(pnl_single_fields(req_id, *self.broker.accounts.pnl_single(con_id, code)))

    def _push_pnl(self, con_id: int | None = None, account: str | None = None) -> None:
        """Push reqPnL / reqPnLSingle (of ``con_id``) to the subscriptions of ``account``
        (None: every account's)."""
        for s in self._conns():
            for req_id in list(s.subscriptions.get("pnl", {}) or {}):
                if account is None or self._code(s, ("pnl", req_id)) == account:
                    self._send_pnl(s, req_id)
            for req_id, cid in list((s.subscriptions.get("pnl_single", {}) or {}).items()):
                if (con_id is None or cid == con_id) and (
                        account is None or self._code(s, ("pnl_single", req_id)) == account):
                    self._send_pnl_single(s, req_id, cid)

    # ------------------------------------------------------------ broker events

    def on_event(self, event: Any) -> None:
        """Deliver one broker event to the connections that should see it (none when the
        gateway is logged into another account than this router's)."""
        if getattr(self.server, "broker", self.broker) is not self.broker:
            return
        if isinstance(event, OrderUpdated):
            order = event.order
            if order.spec.whatIf:
                for s in self._conns():
                    if s.client_id == event.client_id:
                        self._send_order(s, order, with_status=False)
                return
            for s in self._order_targets(event.client_id):
                self._send_order(s, order)
        elif isinstance(event, Executed):
            for s in self._order_targets(event.client_id):
                self._send_execution(s, event.execution, -1)
        elif isinstance(event, OrderError):
            for s in self._conns():
                if s.client_id == event.client_id:
                    self.server.error(s, event.order_id, event.code, event.text)
        elif isinstance(event, PositionChanged):
            account = self.broker.accounts.code(event.account)
            for s in self._subscribed("positions"):
                s.send(position_fields(account, event.contract, event.position,
                                       event.avg_cost))
            for s in self._conns():
                for req_id in sorted(s.subscriptions.get("positions_multi", ()) or ()):
                    if self._multi_account(s, req_id) in ("", account):
                        s.send(_position_multi(req_id, account, event.contract,
                                               event.position, event.avg_cost))
            for s in self._subscribed("account_updates"):  # the account each one named
                if self._code(s, "updates") == account:
                    self._send_portfolio(s, event.contract)
            self._push_pnl(event.contract.conId, account)
        elif isinstance(event, PortfolioRevalued):
            con_id = event.contract.conId
            for s in self._subscribed("account_updates"):  # where the account holds it
                if self.broker.accounts.ledger_for(self._code(s, "updates")).held(con_id):
                    self._send_portfolio(s, event.contract)
            self._push_pnl(event.contract.conId)
        elif isinstance(event, AccountChanged):
            for s in self._subscribed("account_updates"):
                self._send_account_values(s, self._rows(s, "updates", event.values))
                self._send_account_time(s)
            for s in self._conns():
                for req_id, model in list((s.subscriptions.get("account_multi", {})
                                           or {}).items()):
                    self._send_multi(s, req_id, model,
                                     self._rows(s, ("multi", req_id), event.values))
                for req_id, tags in list((s.subscriptions.get("account_summary", {})
                                          or {}).items()):
                    for code, tag, value, ccy in self.broker.accounts.summary_all(tags):
                        s.send(account_summary_fields(req_id, code, tag, value, ccy))

    # ------------------------------------------------------------ order requests

    def on_place_order(self, conn: Any, reader: FieldReader) -> None:
        """3 placeOrder -> broker.place (errors 200 unknown contract, 320 unreadable)."""
        try:
            request = parse_place_order(reader, conn.server_version)
        except (IndexError, ValueError) as exc:
            order_id = _safe_int(reader.fields[1]) if len(reader.fields) > 1 else -1
            log.warning("client %d placeOrder %s unreadable: %s", conn.client_id,
                        order_id, exc)
            self.server.error(conn, order_id, 320,
                              f"Error reading request:placeOrder could not be parsed ({exc})")
            return
        c = request.contract
        if c.conId:
            contract = self.server.contracts.by_conid(c.conId)
        else:
            contract = self.server.contracts.resolve(
                conId=0, symbol=c.symbol, secType=c.secType, exchange=c.exchange,
                currency=c.currency,
                lastTradeDateOrContractMonth=c.lastTradeDateOrContractMonth,
                strike=c.strike, right=c.right)
        if contract is None:
            self.server.error(conn, request.order_id, 200, NO_SECDEF)
            return
        self.broker.place(conn.client_id, request.order_id, contract, request.order, c)

    def on_cancel_order(self, conn: Any, reader: FieldReader) -> None:
        """4 cancelOrder [4, 1, orderId, (manualCancelOrderTime)]."""
        reader.skip()
        self.broker.cancel(conn.client_id, reader.int())

    def on_global_cancel(self, conn: Any, reader: FieldReader) -> None:
        """58 reqGlobalCancel: cancel every working order of every client."""
        self.broker.global_cancel()

    def on_open_orders(self, conn: Any, reader: FieldReader) -> None:
        """5 reqOpenOrders: this client's working orders, then openOrderEnd."""
        for order in self.broker.open_orders(conn.client_id):
            self._send_order(conn, order)
        conn.send([53, 1])

    def on_all_open_orders(self, conn: Any, reader: FieldReader) -> None:
        """16 reqAllOpenOrders: every client's working orders, then openOrderEnd."""
        for order in self.broker.open_orders():
            self._send_order(conn, order)
        conn.send([53, 1])

    def on_auto_open_orders(self, conn: Any, reader: FieldReader) -> None:
        """15 reqAutoOpenOrders(bAutoBind): clientId 0 only; binds orders placed by hand in TWS
        (the simulator has none). Other API clients' orders are not bound by it."""
        reader.skip()
        flag = reader.bool()
        if conn.client_id != 0:
            self.server.error(conn, -1, 321, "Error validating request.-'bK' : cause - "
                              "reqAutoOpenOrders is only allowed for client id 0")
            return
        conn.subscriptions["auto_open_orders"] = flag

    def on_completed_orders(self, conn: Any, reader: FieldReader) -> None:
        """99 reqCompletedOrders(apiOnly): Filled/Cancelled orders, then [102]."""
        for order in self.broker.completed_orders():
            when = order.completed_at or self.server.clock.now()
            parent = (self.broker.get_order(order.client_id, order.parent_id)
                      if order.parent_id else None)
            conn.send(completed_order_fields(
                order.perm_id, order.contract, order.spec, conn.server_version,
                order.status, ib_time(when), order.completed_status, order.filled,
                order.contract_spec, parent.perm_id if parent else 0))
        conn.send([102])

    def on_executions(self, conn: Any, reader: FieldReader) -> None:
        """7 reqExecutions [7, 3, reqId, clientId, acct, time, symbol, secType, exch, side]."""
        reader.skip()
        req_id = reader.int()
        found = self.broker.executions(
            client_id=reader.int(), acct_code=reader.str(), time_from=reader.str(),
            symbol=reader.str(), sec_type=reader.str(), exchange=reader.str(),
            side=reader.str())
        for ex in found:
            self._send_execution(conn, ex, req_id)
        conn.send([55, 1, req_id])

    # ------------------------------------------------------------ positions / account

    def on_positions(self, conn: Any, reader: FieldReader) -> None:
        """61 reqPositions: held positions, positionEnd, then pushes on every change."""
        conn.subscriptions["positions"] = True
        for account, pos in self.broker.accounts.positions():  # every managed account's
            if pos.position:
                conn.send(position_fields(account, pos.contract, pos.position,
                                             pos.avg_cost))
        conn.send([62, 1])

    def on_cancel_positions(self, conn: Any, reader: FieldReader) -> None:
        """64 cancelPositions: stop the position pushes."""
        conn.subscriptions["positions"] = False

    def on_positions_multi(self, conn: Any, reader: FieldReader) -> None:
        """74 reqPositionsMulti [74, 1, reqId, account, modelCode] -> 71*, [72, 1, reqId]."""
        reader.skip()
        req_id = reader.int()
        wanted = reader.str()  # "": every managed account's positions
        conn.subscriptions.setdefault("positions_multi", set()).add(req_id)
        conn.subscriptions.setdefault("account_codes", {})[("positions_multi", req_id)] = wanted
        for account, pos in self.broker.accounts.positions():
            if pos.position and wanted in ("", account):
                conn.send(_position_multi(req_id, account, pos.contract, pos.position,
                                          pos.avg_cost))
        conn.send([72, 1, req_id])

    @staticmethod
    def _multi_account(conn: Any, req_id: int) -> str:
        """Return the account reqPositionsMulti ``req_id`` named ("": every account)."""
        return conn.subscriptions.get("account_codes", {}).get(("positions_multi", req_id), "")

    def on_cancel_positions_multi(self, conn: Any, reader: FieldReader) -> None:
        """75 cancelPositionsMulti [75, 1, reqId]."""
        reader.skip()
        conn.subscriptions.get("positions_multi", set()).discard(reader.int())

    def on_account_updates(self, conn: Any, reader: FieldReader) -> None:
        """6 reqAccountUpdates [6, 2, subscribe, acct] -> 6*, 7*, 8, 54; then pushes."""
        reader.skip()
        subscribe = reader.bool()
        account = reader.str() or self.server.account
        conn.subscriptions["account_updates"] = subscribe
        if not subscribe:
            return
        conn.subscriptions.setdefault("account_codes", {})["updates"] = account
        self._send_account_values(conn, self._rows(conn, "updates",
                                                      self.broker.accounts.values(None)), full=True)
        for item in self.broker.accounts.portfolio(account):  # the account asked for
            if item.position:
                self._send_portfolio(conn, item.contract)
        self._send_account_time(conn)
        conn.send(account_download_end_fields(account))

    def on_account_summary(self, conn: Any, reader: FieldReader) -> None:
        """62 reqAccountSummary [62, 1, reqId, group, tags] -> 63*, 64; then pushes."""
        reader.skip()
        req_id = reader.int()
        reader.str()  # group ("All")
        tags = reader.str()
        conn.subscriptions.setdefault("account_summary", {})[req_id] = tags
        for code, tag, value, ccy in self.broker.accounts.summary_all(tags):  # every account's
            conn.send(account_summary_fields(req_id, code, tag, value, ccy))
        conn.send([64, 1, req_id])

    def on_cancel_account_summary(self, conn: Any, reader: FieldReader) -> None:
        """63 cancelAccountSummary [63, 1, reqId]."""
        reader.skip()
        conn.subscriptions.get("account_summary", {}).pop(reader.int(), None)

    def on_account_updates_multi(self, conn: Any, reader: FieldReader) -> None:
        """76 reqAccountUpdatesMulti [76, 1, reqId, account, model, ledgerAndNLV] -> 73*, 74."""
        reader.skip()
        req_id = reader.int()
        account = reader.str() or self.server.account
        model = reader.str()
        conn.subscriptions.setdefault("account_multi", {})[req_id] = model
        conn.subscriptions.setdefault("account_codes", {})[("multi", req_id)] = account
        self._send_multi(conn, req_id, model, self._rows(
            conn, ("multi", req_id), self.broker.accounts.values(None)), full=True)
        conn.send([74, 1, req_id])

    def on_cancel_account_updates_multi(self, conn: Any, reader: FieldReader) -> None:
        """77 cancelAccountUpdatesMulti [77, 1, reqId]."""
        reader.skip()
        conn.subscriptions.get("account_multi", {}).pop(reader.int(), None)

    def on_pnl(self, conn: Any, reader: FieldReader) -> None:
        """92 reqPnL [92, reqId, account, modelCode] -> 94 now and on every change."""
        req_id = reader.int()
        conn.subscriptions.setdefault("pnl", {})[req_id] = None
        conn.subscriptions.setdefault("account_codes", {})[("pnl", req_id)] = reader.str()
        self._send_pnl(conn, req_id)

    def on_cancel_pnl(self, conn: Any, reader: FieldReader) -> None:
        """93 cancelPnL [93, reqId]."""
        conn.subscriptions.get("pnl", {}).pop(reader.int(), None)

    def on_pnl_single(self, conn: Any, reader: FieldReader) -> None:
        """94 reqPnLSingle [94, reqId, account, modelCode, conId] -> 95 now and on change."""
        req_id = reader.int()
        account = reader.str()
        reader.str()
        con_id = reader.int()
        conn.subscriptions.setdefault("pnl_single", {})[req_id] = con_id
        conn.subscriptions.setdefault("account_codes", {})[("pnl_single", req_id)] = account
        self._send_pnl_single(conn, req_id, con_id)

    def on_cancel_pnl_single(self, conn: Any, reader: FieldReader) -> None:
        """95 cancelPnLSingle [95, reqId]."""
        conn.subscriptions.get("pnl_single", {}).pop(reader.int(), None)


def _position_multi(req_id: int, account: str, contract: Any, position: float,
                    avg_cost: float) -> list[object]:
    """positionMulti (71), 18 fields, strict."""
    fields = position_fields(account, contract, position, avg_cost)
    return [71, 1, req_id, account, *fields[3:], ""]


def _safe_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1
