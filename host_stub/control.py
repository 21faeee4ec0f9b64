"""HTTP JSON control API of the stub host (aiohttp): faults, clock, settings, registry, ledgers, journal.

Every route is one row of :data:`ROUTES`; the router and the OpenAPI document (``GET
/openapi.json``) are both built from that table, and a test compares the served document with
the router, so the two cannot drift apart.

Errors are JSON: ``{"error": "<found, expected>: <where>", "key": "<the bad key>"}`` with 400 for a
bad body or filter, 404 for something that does not exist, 409 for a conflict.  Card numbers appear
in paths (``/registry/cards/{pan}``) but never in answers (masked) or logs (no access log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import structlog
from aiohttp import web

from specs.crypto import kcv
from specs.masking import mask_pan, mask_value

from host_stub.faults import Fault
from host_stub.keys import tmk_of
from host_stub.registry import Card, Merchant, Terminal, generate_from_dict
from host_stub.validation import ConfigError, check_keys, want_datetime, want_number

if TYPE_CHECKING:
    from host_stub.runtime import HostRuntime

log = structlog.get_logger("pos_host")

Handler = Callable[["ControlApi", web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """One served route and its documentation."""

    method: str
    path: str
    handler: str
    summary: str
    query: tuple[str, ...] = ()
    body: Mapping[str, Any] | None = None


_LEDGER_FILTERS = ("tid", "mid", "batch", "stan", "status")
_OBJECT = {"type": "object", "additionalProperties": True}

#: The whole API.  The router and ``/openapi.json`` are generated from this table.
ROUTES: tuple[Route, ...] = (
    Route(method="GET", path="/openapi.json", handler="openapi", summary="This document (OpenAPI 3)."),
    Route(method="GET", path="/faults", handler="list_faults", summary="Active faults, in order, with counters."),
    Route(method="POST", path="/faults", handler="add_fault",
          summary="Add a fault: {when: {...}, action: {type: ..., ...}, times?, id?}; answers it with its id.",
          body={"type": "object", "required": ["action"], "properties": {
              "when": _OBJECT, "action": {"type": "object", "required": ["type"]}, "times": {"type": "integer"},
              "id": {"type": "string"}}}),
    Route(method="DELETE", path="/faults", handler="clear_faults", summary="Remove every fault."),
    Route(method="DELETE", path="/faults/{id}", handler="remove_fault", summary="Remove one fault."),
    Route(method="GET", path="/clock", handler="get_clock", summary="Business clock, business date, cutover window."),
    Route(method="POST", path="/clock", handler="set_clock",
          summary="Move the business clock: {set: ISO datetime} or {advance_seconds: N}.",
          body={"type": "object", "properties": {"set": {"type": "string", "format": "date-time"},
                                                 "advance_seconds": {"type": "number"}}}),
    Route(method="GET", path="/settings", handler="get_settings", summary="Host policy settings."),
    Route(method="PUT", path="/settings", handler="put_settings", summary="Change some settings (partial update).",
          body=_OBJECT),
    Route(method="GET", path="/registry/merchants", handler="list_merchants", summary="Every merchant."),
    Route(method="GET", path="/registry/merchants/{mid}", handler="get_merchant", summary="One merchant."),
    Route(method="PUT", path="/registry/merchants/{mid}", handler="put_merchant",
          summary="Create or change a merchant (partial update); clearing payout_hold (or a frozen status) "
                  "releases the payouts it held.", body=_OBJECT),
    Route(method="GET", path="/registry/terminals", handler="list_terminals", summary="Every terminal (keys as KCVs)."),
    Route(method="GET", path="/registry/terminals/{tid}", handler="get_terminal", summary="One terminal."),
    Route(method="PUT", path="/registry/terminals/{tid}", handler="put_terminal",
          summary="Create or change a terminal (partial update; mid required to create).", body=_OBJECT),
    Route(method="GET", path="/registry/cards", handler="list_cards", summary="Every card (PAN masked)."),
    Route(method="GET", path="/registry/cards/{pan}", handler="get_card", summary="One card."),
    Route(method="PUT", path="/registry/cards/{pan}", handler="put_card",
          summary="Create or change a card (partial update).", body=_OBJECT),
    Route(method="POST", path="/registry/generate", handler="generate_registry",
          summary="Add seeded Faker merchants, terminals and cards: {seed, merchants, terminals_per_merchant, cards}.",
          body=_OBJECT),
    Route(method="GET", path="/ledger/authorizations", handler="list_authorizations",
          summary="Authorization ledger: every request and its fate.", query=_LEDGER_FILTERS),
    Route(method="GET", path="/ledger/settlements", handler="list_settlements",
          summary="Settlement ledger: terminal vs host totals, result, uploads.", query=_LEDGER_FILTERS),
    Route(method="GET", path="/ledger/payouts", handler="list_payouts",
          summary="Payout ledger: funds to merchants per closed batch.", query=_LEDGER_FILTERS),
    Route(method="POST", path="/ledger/payouts/{id}/release", handler="release_payout",
          summary="Release a held payout."),
    Route(method="GET", path="/journal", handler="get_journal", summary="Received requests, masked, oldest first.",
          query=("tid", "mti", "outcome", "limit")),
    Route(method="POST", path="/reset", handler="reset",
          summary="Empty books, faults and journal; back to the start configuration."),
)


class ApiError(Exception):
    """An answer with an error status: ``{"error": text, "key": key}``."""

    def __init__(self, status: int, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.key = key


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document of :data:`ROUTES`."""
    error = {"description": "Error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}, "key": {"type": "string", "nullable": True}}}}}}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_params(route.path)]
        parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                       for name in route.query]
        operation: dict[str, Any] = {
            "operationId": route.handler, "summary": route.summary,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
                          "400": error, "404": error},
        }
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(route.body)}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.0.3",
            "info": {"title": "pos-harness stub host control API", "version": "1.0.0",
                     "description": "Faults, business clock, settings, registry, ledgers and journal of the stub "
                                    "acquirer host. Card data is masked in every answer."},
            "paths": paths}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


class ControlApi:
    """The aiohttp application over one :class:`~host_stub.runtime.HostRuntime`."""

    def __init__(self, runtime: "HostRuntime") -> None:
        self.runtime = runtime
        self.app = web.Application(middlewares=[self._errors])
        for route in ROUTES:
            self.app.router.add_route(route.method, route.path, self._bind(getattr(ControlApi, route.handler)))
        self._runner: web.AppRunner | None = None

    def _bind(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def bound(request: web.Request) -> web.Response:
            return await handler(self, request)
        return bound

    async def start(self, bind: str, port: int) -> int:
        self._runner = web.AppRunner(self.app, access_log=None)  # no access log: paths may hold card numbers
        await self._runner.setup()
        site = web.TCPSite(self._runner, bind, port)
        await site.start()
        server = site._server  # aiohttp keeps the asyncio server here; its socket tells the port picked
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json({"error": exc.text, "key": exc.key}, status=exc.status)
        except ConfigError as exc:
            return _json({"error": str(exc), "key": exc.key}, status=400)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "Body is not JSON, expecting a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"Body is a JSON {type(body).__name__}, expecting a JSON object")
        return body

    def _now(self) -> datetime:
        return self.runtime.clock.now()

    # ---------------------------------------------------------------- routes

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def list_faults(self, request: web.Request) -> web.Response:
        return _json({"faults": mask_value(self.runtime.faults.describe())})

    async def add_fault(self, request: web.Request) -> web.Response:
        fault = Fault.from_dict(await self._body(request), where="body")
        try:
            added = self.runtime.faults.add(fault)
        except ConfigError as exc:
            raise ApiError(409, str(exc), exc.key) from None
        shown = mask_value(added.as_dict())  # a "pan" criterion is card data: never shown in clear
        log.info("fault added", fault=shown)
        return _json(shown, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        removed = len(self.runtime.faults)
        self.runtime.faults.clear()
        return _json({"removed": removed})

    async def remove_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["id"]
        try:
            fault = self.runtime.faults.remove(fault_id)
        except KeyError:
            raise ApiError(404, f"No fault {fault_id!r}", "id") from None
        return _json(mask_value(fault.as_dict()))

    async def get_clock(self, request: web.Request) -> web.Response:
        now = self._now()
        calendar = self.runtime.host.settings.calendar
        return _json({"now": now.isoformat(timespec="seconds"), "business_date": calendar.business_date(now).isoformat(),
                      "in_cutover_window": calendar.in_cutover_window(now)})

    async def set_clock(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        check_keys(body, {"set", "advance_seconds"}, where="body")
        if not body:
            raise ApiError(400, "Body holds nothing, expecting one of set, advance_seconds", "set")
        if len(body) > 1:
            raise ApiError(400, "Body holds both set and advance_seconds, expecting one of them", "advance_seconds")
        if "set" in body:
            self.runtime.clock.set(want_datetime(body, "set", where="body"))
        else:
            self.runtime.clock.advance(want_number(body, "advance_seconds", where="body"))
        self.runtime.host.refresh_payouts(self._now())
        return await self.get_clock(request)

    async def get_settings(self, request: web.Request) -> web.Response:
        return _json(self.runtime.host.settings.as_dict())

    async def put_settings(self, request: web.Request) -> web.Response:
        self.runtime.host.settings = self.runtime.host.settings.updated(await self._body(request), where="body")
        return _json(self.runtime.host.settings.as_dict())

    async def list_merchants(self, request: web.Request) -> web.Response:
        return _json({"merchants": [m.as_dict() for m in self.runtime.registry.merchants()]})

    async def get_merchant(self, request: web.Request) -> web.Response:
        mid = request.match_info["mid"]
        merchant = self.runtime.registry.merchant(mid)
        if merchant is None:
            raise ApiError(404, f"No merchant {mid!r}", "mid")
        return _json(merchant.as_dict())

    async def put_merchant(self, request: web.Request) -> web.Response:
        mid = request.match_info["mid"]
        body = await self._body(request)
        existing = self.runtime.registry.merchant(mid)
        merchant = existing.updated(body, where="body") if existing else Merchant.from_dict({**body, "mid": mid},
                                                                                            where="body")
        self.runtime.registry.put(merchant)
        # A hold lifted (payout_hold cleared, status no longer frozen) releases the payouts it held.
        self.runtime.host.merchant_changed(existing, merchant, self._now())
        return _json(merchant.as_dict(), status=200 if existing else 201)

    async def list_terminals(self, request: web.Request) -> web.Response:
        return _json({"terminals": [_terminal_view(t) for t in self.runtime.registry.terminals()]})

    async def get_terminal(self, request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        terminal = self.runtime.registry.terminal(tid)
        if terminal is None:
            raise ApiError(404, f"No terminal {tid!r}", "tid")
        return _json(_terminal_view(terminal))

    async def put_terminal(self, request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        body = await self._body(request)
        existing = self.runtime.registry.terminal(tid)
        terminal = existing.updated(body, where="body") if existing else Terminal.from_dict({**body, "tid": tid},
                                                                                            where="body")
        self.runtime.registry.put(terminal)
        return _json(_terminal_view(terminal), status=200 if existing else 201)

    async def list_cards(self, request: web.Request) -> web.Response:
        return _json({"cards": [_card_view(c) for c in self.runtime.registry.cards()]})

    async def get_card(self, request: web.Request) -> web.Response:
        pan = request.match_info["pan"]
        card = self.runtime.registry.card(pan)
        if card is None:
            raise ApiError(404, f"No card {mask_pan(pan)!r}", "pan")
        return _json(_card_view(card))

    async def put_card(self, request: web.Request) -> web.Response:
        pan = request.match_info["pan"]
        body = await self._body(request)
        if "pan" in body:
            raise ApiError(400, "Key 'pan' is taken from the path, expecting it absent from the body", "pan")
        existing = self.runtime.registry.card(pan)
        card = existing.updated(body, where="body") if existing else Card.from_dict({**body, "pan": pan}, where="body")
        self.runtime.registry.put(card)
        return _json(_card_view(card), status=200 if existing else 201)

    async def generate_registry(self, request: web.Request) -> web.Response:
        entries = generate_from_dict(await self._body(request), where="body")
        for entry in entries:
            self.runtime.registry.put(entry)
        return _json({"merchants": [e.as_dict() for e in entries if isinstance(e, Merchant)],
                      "terminals": [_terminal_view(e) for e in entries if isinstance(e, Terminal)],
                      "cards": [_card_view(e) for e in entries if isinstance(e, Card)]}, status=201)

    def _ledger_rows(self, request: web.Request, table: str) -> list[dict[str, Any]]:
        filters = dict(request.query)
        allowed = self.runtime.ledger.filter_keys(table)
        for key in filters:
            if key not in allowed:
                raise ApiError(400, f"Unknown filter {key!r}, expecting one of {', '.join(sorted(allowed))}", key)
        reader = {"authorizations": self.runtime.ledger.authorizations, "settlements": self.runtime.ledger.settlements,
                  "payouts": self.runtime.ledger.payouts}[table]
        return reader(**filters)

    async def list_authorizations(self, request: web.Request) -> web.Response:
        return _json({"authorizations": self._ledger_rows(request, "authorizations")})

    async def list_settlements(self, request: web.Request) -> web.Response:
        return _json({"settlements": self._ledger_rows(request, "settlements")})

    async def list_payouts(self, request: web.Request) -> web.Response:
        self.runtime.host.refresh_payouts(self._now())
        return _json({"payouts": self._ledger_rows(request, "payouts")})

    async def release_payout(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not raw.isdigit():
            raise ApiError(400, f"Payout id {raw!r} is not a number", "id")
        try:
            return _json(self.runtime.host.release_payout(int(raw), self._now()))
        except KeyError:
            raise ApiError(404, f"No payout {raw}", "id") from None
        except ValueError as exc:
            raise ApiError(409, str(exc), "status") from None

    async def get_journal(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        check_keys(query, {"tid", "mti", "outcome", "limit"}, where="query")
        limit = query.pop("limit", None)
        if limit is not None and not limit.isdigit():
            raise ApiError(400, f"Filter 'limit' holds {limit!r}, expecting a number", "limit")
        return _json({"journal": mask_value(self.runtime.journal.entries(
            **query, limit=int(limit) if limit else None))})

    async def reset(self, request: web.Request) -> web.Response:
        self.runtime.reset()
        return _json({"reset": True})


def _terminal_view(terminal: Terminal) -> dict[str, Any]:
    """A terminal as the API shows it: keys replaced by their check values."""
    view = terminal.as_dict()
    view["tmk_kcv"] = kcv(tmk_of(view.pop("tmk"))).hex().upper()
    for name in ("pik", "mak", "tdk"):
        value = view.pop(name)
        view[f"{name}_kcv"] = kcv(bytes.fromhex(value)).hex().upper() if value else None
    return view


def _card_view(card: Card) -> dict[str, Any]:
    view = card.as_dict()
    view["pin"] = None if card.pin is None else "*" * len(card.pin)
    return view
