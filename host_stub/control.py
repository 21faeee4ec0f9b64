"""HTTP JSON control API of the stub host (aiohttp): faults, clock, settings, registry, ledgers, journal.

Every route is one row of :data:`ROUTES`; the router and the OpenAPI document (``GET
/openapi.json``) are both built from that table, and a test compares the served document with
the router, so the two cannot drift apart.

Errors are JSON: ``{"error": "<found, expected>: <where>", "key": "<the bad key>"}`` with 400 for a
bad body or filter, 404 for something that does not exist (or a path that is not served), 405 for
a method a path does not serve (both with ``allowed``), 409 for a conflict.  Each route's status
codes are part of its row in :data:`ROUTES`, and so of the OpenAPI document.  Card numbers appear
in paths (``/registry/cards/{pan}``) but never in answers (masked) or logs (no access log).

Who may drive it: with a token (``pos-host serve --control-token`` or ``POS_HOST_CONTROL_TOKEN``)
every route but ``GET /openapi.json`` needs ``Authorization: Bearer <token>`` (401 otherwise); a
request from a browser page of another origin (an ``Origin`` header that is not this API's own
address) is refused (403), and a body must be ``application/json`` (415) of at most
:data:`MAX_BODY_BYTES` (413), nested at most :data:`MAX_JSON_DEPTH` deep, with finite numbers
(400) — so a web page cannot ``POST /reset`` with a ``text/plain`` form.  Ledger listings are
paginated (``limit``, ``offset``; the answer says ``total`` and the ``next`` page).

A route that changes the faults or the clock, or resets, awaits :meth:`HostRuntime.changed
<host_stub.runtime.HostRuntime.changed>` before it answers: by the time the answer arrives, the
TCP server listens or refuses connects as the ``refuse_connect`` faults say.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import structlog
from aiohttp import web

from host_stub.faults import Fault, action_schemas, when_schema
from host_stub.keys import tmk_of
from host_stub.ledger import COLUMNS, FILTER_NOTES, JSON_COLUMNS, LEDGER_FILTERS, SIX_DIGIT_FILTERS, ledger_filters
from host_stub.registry import Card, Merchant, Terminal, generate_from_dict
from host_stub.settings import HostSettings
from host_stub.validation import ConfigError, check_keys, want_datetime, want_number
from specs.crypto import kcv
from specs.masking import mask_pan, mask_value

if TYPE_CHECKING:
    from host_stub.runtime import HostRuntime

log = structlog.get_logger("pos_host")

Handler = Callable[["ControlApi", web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Route:
    """One served route and its documentation.

    Attributes:
        ok: the success statuses it answers -> (description, JSON schema of the body).
        errors: the error statuses it answers -> when (the body is always :data:`ERROR_SCHEMA`).
        query: query parameter -> (JSON schema of its value, description).
        body: JSON schema of the request body, None when it takes none.
    """

    method: str
    path: str
    handler: str
    summary: str
    ok: Mapping[int, tuple[str, Mapping[str, Any]]]
    errors: Mapping[int, str] = field(default_factory=dict)
    query: Mapping[str, tuple[Mapping[str, Any], str]] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None


#: Largest request body (bytes), deepest JSON nesting, and ledger page sizes.
MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _listing(key: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: {"type": "array", "items": item}}}


def _ledger_listing(key: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """One page of a ledger listing: the rows, the filtered total, and the path of the next page."""
    page = _listing(key, item)
    page["required"] = [key, "total", "limit", "offset", "next"]
    page["properties"].update({"total": {"type": "integer"}, "limit": {"type": "integer"},
                               "offset": {"type": "integer"},
                               "next": {"type": "string", "nullable": True,
                                        "description": "path and query of the next page; null on the last"}})
    return page


_PAGE_QUERY: dict[str, tuple[Mapping[str, Any], str]] = {
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
              f"rows per page (default {DEFAULT_PAGE}, at most {MAX_PAGE})"),
    "offset": ({"type": "integer", "minimum": 0, "default": 0}, "rows to skip (oldest first)"),
}


def _ledger_query(table: str) -> dict[str, tuple[Mapping[str, Any], str]]:
    """The documented query of one ledger listing: :data:`host_stub.ledger.LEDGER_FILTERS` and the page."""
    out: dict[str, tuple[Mapping[str, Any], str]] = dict(_PAGE_QUERY)
    for name, kind in LEDGER_FILTERS[table].items():
        note = FILTER_NOTES.get((table, name)) or FILTER_NOTES.get(("*", name)) or f"{name} equals this value"
        schema: dict[str, Any] = {"type": kind}
        if name in SIX_DIGIT_FILTERS:
            schema["pattern"] = "^[0-9]{1,6}$"
        out[name] = (schema, note)
    return out


_OBJECT = {"type": "object", "additionalProperties": True}
_BAD_BODY = "The body is not a JSON object, or a key is unknown or holds a bad value (the error names the key)."
_BAD_FILTER = ("An unknown filter (the error lists the known ones), a filter given more than once (filters "
               "combine with AND, one value each), or a value of the wrong form; the error names the filter.")
_JOURNAL_QUERY: Mapping[str, tuple[Mapping[str, Any], str]] = {
    "tid": ({"type": "string"}, "field 41"), "mti": ({"type": "string"}, "request MTI"),
    "outcome": ({"type": "string"}, "answered, closed_before_processing, bad_frame, listener_closed ..."),
    "limit": ({"type": "integer", "minimum": 0}, "keep only the newest entries"),
}
_PUT_ENTRY = {200: ("Changed", _OBJECT), 201: ("Created", _OBJECT)}

#: The whole API.  The router and ``/openapi.json`` are generated from this table.
ROUTES: tuple[Route, ...] = (
    Route(method="GET", path="/openapi.json", handler="openapi", summary="This document (OpenAPI 3).",
          ok={200: ("The OpenAPI document", {"type": "object"})}),
    Route(method="GET", path="/faults", handler="list_faults", summary="Active faults, in order, with counters.",
          ok={200: ("Active faults", _listing("faults", _ref("FaultState")))}),
    Route(method="POST", path="/faults", handler="add_fault",
          summary="Add a fault: {when: {...}, action: {type: ..., ...}, times?, id?}; answers it with its id.",
          ok={201: ("The fault added, with its id", _ref("Fault"))},
          errors={400: _BAD_BODY + " A when criterion that could never match is refused.",
                  409: "The id is already in use."},
          body=_ref("NewFault")),
    Route(method="DELETE", path="/faults", handler="clear_faults", summary="Remove every fault.",
          ok={200: ("How many were removed", {"type": "object", "required": ["removed"],
                                               "properties": {"removed": {"type": "integer"}}})}),
    Route(method="DELETE", path="/faults/{id}", handler="remove_fault", summary="Remove one fault.",
          ok={200: ("The fault removed", _ref("Fault"))}, errors={404: "No fault has this id."}),
    Route(method="GET", path="/clock", handler="get_clock", summary="Business clock, business date, cutover window.",
          ok={200: ("The business clock", _ref("Clock"))}),
    Route(method="POST", path="/clock", handler="set_clock",
          summary="Move the business clock: {set: ISO datetime} or {advance_seconds: N}.",
          ok={200: ("The business clock, moved", _ref("Clock"))}, errors={400: _BAD_BODY},
          body={"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
                "properties": {"set": {"type": "string", "format": "date-time"},
                               "advance_seconds": {"type": "number"}}}),
    Route(method="GET", path="/settings", handler="get_settings", summary="Host policy settings.",
          ok={200: ("The settings", _ref("Settings"))}),
    Route(method="PUT", path="/settings", handler="put_settings", summary="Change some settings (partial update).",
          ok={200: ("The settings, changed", _ref("Settings"))}, errors={400: _BAD_BODY}, body=_OBJECT),
    Route(method="GET", path="/registry/merchants", handler="list_merchants", summary="Every merchant.",
          ok={200: ("Every merchant", _listing("merchants", _OBJECT))}),
    Route(method="GET", path="/registry/merchants/{mid}", handler="get_merchant", summary="One merchant.",
          ok={200: ("The merchant", _OBJECT)}, errors={404: "No merchant has this MID."}),
    Route(method="PUT", path="/registry/merchants/{mid}", handler="put_merchant",
          summary="Create or change a merchant (partial update); clearing payout_hold (or a frozen status) "
                  "releases the payouts it held.", ok=_PUT_ENTRY, errors={400: _BAD_BODY}, body=_OBJECT),
    Route(method="GET", path="/registry/terminals", handler="list_terminals", summary="Every terminal (keys as KCVs).",
          ok={200: ("Every terminal", _listing("terminals", _OBJECT))}),
    Route(method="GET", path="/registry/terminals/{tid}", handler="get_terminal", summary="One terminal.",
          ok={200: ("The terminal (keys as KCVs)", _OBJECT)}, errors={404: "No terminal has this TID."}),
    Route(method="PUT", path="/registry/terminals/{tid}", handler="put_terminal",
          summary="Create or change a terminal (partial update; mid required to create).", ok=_PUT_ENTRY,
          errors={400: _BAD_BODY}, body=_OBJECT),
    Route(method="GET", path="/registry/cards", handler="list_cards", summary="Every card (PAN masked).",
          ok={200: ("Every card", _listing("cards", _OBJECT))}),
    Route(method="GET", path="/registry/cards/{pan}", handler="get_card", summary="One card.",
          ok={200: ("The card (PAN masked)", _OBJECT)}, errors={404: "No card has this PAN."}),
    Route(method="PUT", path="/registry/cards/{pan}", handler="put_card",
          summary="Create or change a card (partial update).", ok=_PUT_ENTRY,
          errors={400: _BAD_BODY + " The PAN comes from the path only."}, body=_OBJECT),
    Route(method="POST", path="/registry/generate", handler="generate_registry",
          summary="Add seeded Faker merchants, terminals and cards: {seed, merchants, terminals_per_merchant, cards}.",
          ok={201: ("What was added", {"type": "object", "required": ["merchants", "terminals", "cards"],
                                       "properties": {k: {"type": "array", "items": _OBJECT}
                                                      for k in ("merchants", "terminals", "cards")}})},
          errors={400: _BAD_BODY}, body=_OBJECT),
    Route(method="GET", path="/ledger/authorizations", handler="list_authorizations",
          summary="Authorization ledger: every request and its fate.",
          ok={200: ("One page of rows, oldest first", _ledger_listing("authorizations", _ref("AuthorizationRow")))},
          errors={400: _BAD_FILTER}, query=_ledger_query("authorizations")),
    Route(method="GET", path="/ledger/settlements", handler="list_settlements",
          summary="Settlement ledger: terminal vs host totals, result, uploads.",
          ok={200: ("One page of rows, oldest first", _ledger_listing("settlements", _ref("SettlementRow")))},
          errors={400: _BAD_FILTER}, query=_ledger_query("settlements")),
    Route(method="GET", path="/ledger/payouts", handler="list_payouts",
          summary="Payout ledger: funds to merchants per closed batch.",
          ok={200: ("One page of rows, oldest first", _ledger_listing("payouts", _ref("PayoutRow")))},
          errors={400: _BAD_FILTER}, query=_ledger_query("payouts")),
    Route(method="POST", path="/ledger/payouts/{id}/release", handler="release_payout",
          summary="Release a held payout.", ok={200: ("The payout, pending or paid", _ref("PayoutRow"))},
          errors={400: "The id is not a number.", 404: "No payout has this id.", 409: "The payout is not held."}),
    Route(method="GET", path="/journal", handler="get_journal",
          summary="Received requests, masked, oldest first; also listener closes and reopens (refuse_connect).",
          ok={200: ("Journal entries", _listing("journal", _OBJECT))}, errors={400: _BAD_FILTER},
          query=_JOURNAL_QUERY),
    Route(method="POST", path="/reset", handler="reset",
          summary="Empty books, faults and journal; back to the start configuration.",
          ok={200: ("Done", {"type": "object", "required": ["reset"], "properties": {"reset": {"type": "boolean"}}})}),
)

#: Errors every guarded route may answer, and those of a route that takes a body.
_GUARD_ERRORS: Mapping[int, str] = {401: "A token is configured and the request does not carry it as a bearer.",
                                    403: "The request comes from a web page of another origin."}
_BODY_ERRORS: Mapping[int, str] = {413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
                                   415: "The body is not application/json."}

#: The body of every error answer.  ``allowed`` comes with 404 and 405 for an unserved path or method.
ERROR_SCHEMA: Mapping[str, Any] = {
    "type": "object", "required": ["error", "key"],
    "properties": {"error": {"type": "string", "description": "what was found, what was expected, where"},
                   "key": {"type": "string", "nullable": True, "description": "the bad key or filter"},
                   "allowed": {"type": "array", "items": {"type": "string"},
                               "description": "the paths (404) or methods (405) that are served"}}}


class ApiError(Exception):
    """An answer with an error status: ``{"error": text, "key": key}``."""

    def __init__(self, status: int, text: str, key: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.key = key


def _row_schema(table: str) -> dict[str, Any]:
    """A ledger row as listed: every column of :data:`host_stub.ledger.COLUMNS`."""
    properties: dict[str, Any] = {
        column: {"type": "object", "nullable": True} if column in JSON_COLUMNS.get(table, ())
        else {"type": "integer" if kind == "INTEGER" else "string", "nullable": True}
        for column, kind in COLUMNS[table].items()}
    if table == "settlements":
        properties["uploads"] = {"type": "array", "items": _row_schema("uploads")}
    return {"type": "object", "required": sorted(properties), "properties": properties}


def _settings_schema() -> dict[str, Any]:
    """The settings as answered: the keys of :meth:`HostSettings.as_dict`, typed by their defaults."""
    types = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    defaults = HostSettings().as_dict()
    return {"type": "object", "required": sorted(defaults),
            "properties": {name: {"type": types[type(value)]} if value is not None else {"nullable": True}
                           for name, value in defaults.items()}}


def _components() -> dict[str, Any]:
    actions = action_schemas()
    fault: dict[str, Any] = {"type": "object", "required": ["id", "when", "action", "times"], "properties": {
        "id": {"type": "string"}, "when": _ref("When"), "action": _ref("Action"),
        "times": {"type": "integer", "minimum": 1, "nullable": True}}}
    return {
        "Error": dict(ERROR_SCHEMA),
        "When": when_schema(),
        "Action": {"oneOf": [_ref(f"Action.{kind}") for kind in actions],
                   "discriminator": {"propertyName": "type",
                                     "mapping": {kind: f"#/components/schemas/Action.{kind}" for kind in actions}}},
        **{f"Action.{kind}": schema for kind, schema in actions.items()},
        "NewFault": {"type": "object", "required": ["action"], "additionalProperties": False, "properties": {
            "when": _ref("When"), "action": _ref("Action"),
            "times": {"type": "integer", "minimum": 1, "nullable": True}, "id": {"type": "string", "nullable": True}}},
        "Fault": fault,
        "FaultState": {**fault, "required": [*fault["required"], "occurrences", "fired"], "properties": {
            **fault["properties"], "occurrences": {"type": "integer"}, "fired": {"type": "integer"}}},
        "Clock": {"type": "object", "required": ["now", "business_date", "in_cutover_window"], "properties": {
            "now": {"type": "string", "format": "date-time"}, "business_date": {"type": "string", "format": "date"},
            "in_cutover_window": {"type": "boolean"}}},
        "Settings": _settings_schema(),
        "AuthorizationRow": _row_schema("authorizations"),
        "SettlementRow": _row_schema("settlements"),
        "PayoutRow": _row_schema("payouts"),
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document of :data:`ROUTES`: every route with its parameters and status codes."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _path_params(route.path)]
        parameters += [{"name": name, "in": "query", "required": False, "description": note, "schema": dict(schema)}
                       for name, (schema, note) in route.query.items()]
        responses: dict[str, Any] = {
            str(status): {"description": description, "content": {"application/json": {"schema": dict(schema)}}}
            for status, (description, schema) in route.ok.items()}
        errors = dict(route.errors)
        if route.handler != "openapi":
            errors.update(_GUARD_ERRORS if route.body is None else {**_GUARD_ERRORS, **_BODY_ERRORS})
        responses.update({str(status): {"description": description,
                                        "content": {"application/json": {"schema": _ref("Error")}}}
                          for status, description in errors.items()})
        operation: dict[str, Any] = {"operationId": route.handler, "summary": route.summary,
                                     "responses": dict(sorted(responses.items()))}
        if parameters:
            operation["parameters"] = parameters
        if route.handler == "openapi":
            operation["security"] = []  # readable without the token
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": dict(route.body)}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.0.3",
            "security": [{"bearer": []}],
            "info": {"title": "pos-harness stub host control API", "version": "1.0.0",
                     "description": "Faults, business clock, settings, registry, ledgers and journal of the stub "
                                    "acquirer host. Card data is masked in every answer. Every error is JSON "
                                    "(components/schemas/Error); a path that is not served answers 404 and a "
                                    "method a path does not serve 405, both with the allowed paths or methods."},
            "paths": paths,
            "components": {"schemas": _components(), "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "Needed when the host runs with --control-token (or POS_HOST_CONTROL_TOKEN); "
                               "mandatory when the control API listens beyond loopback."}}}}


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=str))


def _shown_path(path: str) -> str:
    """A request path as an answer may show it: card numbers in it masked."""
    return re.sub(r"[0-9]{12,19}", lambda m: mask_pan(m.group()), path)


def _single_values(request: web.Request) -> list[tuple[str, str]]:
    """The query's (key, value) pairs; a key given twice is refused (one value per filter)."""
    pairs = list(request.query.items())
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            times = sum(1 for k, _ in pairs if k == key)
            raise ApiError(400, f"Filter {key!r} is given {times} times, expecting it once (filters combine with AND)"
                                f": query.{key}", key)
        seen.add(key)
    return pairs


class ControlApi:
    """The aiohttp application over one :class:`~host_stub.runtime.HostRuntime`."""

    def __init__(self, runtime: HostRuntime, *, token: str | None = None) -> None:
        self.runtime = runtime
        self.token = token or None
        self._origins: frozenset[str] = frozenset()
        self.app = web.Application(middlewares=[self._errors, self._guard], client_max_size=MAX_BODY_BYTES)
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
        port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        names = {bind, "127.0.0.1", "localhost", "[::1]"} - {"0.0.0.0", "::", ""}
        self._origins = frozenset(f"http://{name}:{port}" for name in names)
        return port

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
        except web.HTTPMethodNotAllowed as exc:
            allowed = sorted(exc.allowed_methods)
            return _json({"error": f"Method {exc.method} is not served on {_shown_path(request.path)}, expecting one "
                                   f"of {', '.join(allowed)}", "key": None, "allowed": allowed},
                         status=405, headers={"Allow": ", ".join(allowed)})
        except web.HTTPNotFound:
            paths = sorted({route.path for route in ROUTES})
            return _json({"error": f"Path {_shown_path(request.path)} is not served, expecting one of "
                                   f"{', '.join(paths)} (GET /openapi.json describes them)", "key": None,
                          "allowed": paths}, status=404)
        except web.HTTPException as exc:  # anything else aiohttp refuses (a body too large ...): JSON too
            if exc.status < 400:
                raise
            return _json({"error": f"{exc.reason}: {request.method} {_shown_path(request.path)}", "key": None},
                         status=exc.status)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        """Only the owner drives the API: the bearer token when one is set, no foreign web page,
        JSON bodies only."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._origins:
            raise ApiError(403, f"Origin {origin!r} is not this control API's own "
                                f"({', '.join(sorted(self._origins))}): a web page may not drive it", "Origin")
        if self.token is not None and not (request.method == "GET" and request.path == "/openapi.json"):
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
                raise ApiError(401, "Authorization is " + ("missing" if not given else "not the bearer token")
                               + ", expecting 'Authorization: Bearer <token>' (pos-host --control-token)",
                               "Authorization")
        if request.body_exists and request.content_type != "application/json":
            raise ApiError(415, f"Content-Type is {request.content_type!r}, expecting application/json",
                           "Content-Type")
        return await handler(request)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        text = await request.text()  # over MAX_BODY_BYTES: aiohttp raises 413, answered as JSON
        try:
            body = json.loads(text, parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "Body is not JSON, expecting a JSON object") from None
        except ValueError as exc:  # NaN / Infinity
            raise ApiError(400, f"Body holds {exc}, expecting finite numbers only") from None
        except RecursionError:
            raise ApiError(400, f"Body is nested too deeply, expecting at most {MAX_JSON_DEPTH} levels") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"Body is a JSON {type(body).__name__}, expecting a JSON object")
        if _depth(body) > MAX_JSON_DEPTH:
            raise ApiError(400, f"Body is nested more than {MAX_JSON_DEPTH} levels deep, expecting at most "
                                f"{MAX_JSON_DEPTH}")
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
        await self.runtime.changed()
        return _json(shown, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        removed = len(self.runtime.faults)
        self.runtime.faults.clear()
        await self.runtime.changed()
        return _json({"removed": removed})

    async def remove_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["id"]
        try:
            fault = self.runtime.faults.remove(fault_id)
        except KeyError:
            raise ApiError(404, f"No fault {fault_id!r}", "id") from None
        await self.runtime.changed()
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
        try:
            if "set" in body:
                self.runtime.clock.set(want_datetime(body, "set", where="body"))
            else:
                self.runtime.clock.advance(want_number(body, "advance_seconds", where="body"))
        except ValueError as exc:  # outside the clock's range (a ConfigError is a ValueError too: re-raised)
            if isinstance(exc, ConfigError):
                raise
            raise ApiError(400, f"{exc}: body.{next(iter(body))}", next(iter(body))) from None
        self.runtime.host.refresh_payouts(self._now())
        await self.runtime.changed()
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
        card = (replace(existing.updated(body, where="body"), pan=pan) if existing
                else Card.from_dict({**body, "pan": pan}, where="body"))
        self.runtime.registry.put(card)
        return _json(_card_view(card), status=200 if existing else 201)

    async def generate_registry(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        # Faker's work (bounded by MAX_GENERATE) runs off the event loop: terminals keep being served.
        entries = await asyncio.to_thread(generate_from_dict, body, where="body")
        for entry in entries:
            self.runtime.registry.put(entry)
        return _json({"merchants": [e.as_dict() for e in entries if isinstance(e, Merchant)],
                      "terminals": [_terminal_view(e) for e in entries if isinstance(e, Terminal)],
                      "cards": [_card_view(e) for e in entries if isinstance(e, Card)]}, status=201)

    def _ledger_page(self, request: web.Request, table: str) -> web.Response:
        """One page of a listing: at most ``limit`` rows from ``offset``, the filtered ``total`` and
        the ``next`` page's path (None on the last).  A page is bounded, so the event loop is too."""
        query = dict(_single_values(request))
        limit = _page_number(query.pop("limit", None), "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        offset = _page_number(query.pop("offset", None), "offset", 0, minimum=0, maximum=10**12)
        filters = ledger_filters(table, query.items())
        rows, total = self.runtime.ledger.listing(table, filters, limit=limit, offset=offset)
        following = offset + len(rows)
        next_page = None
        if following < total:
            next_page = f"{request.path}?{urlencode({**query, 'limit': limit, 'offset': following})}"
        return _json({table: rows, "total": total, "limit": limit, "offset": offset, "next": next_page})

    async def list_authorizations(self, request: web.Request) -> web.Response:
        return self._ledger_page(request, "authorizations")

    async def list_settlements(self, request: web.Request) -> web.Response:
        return self._ledger_page(request, "settlements")

    async def list_payouts(self, request: web.Request) -> web.Response:
        self.runtime.host.refresh_payouts(self._now())
        return self._ledger_page(request, "payouts")

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
        query = dict(_single_values(request))
        check_keys(query, _JOURNAL_QUERY, where="query")
        limit = query.pop("limit", None)
        if limit is not None and not limit.isdigit():
            raise ApiError(400, f"Filter 'limit' holds {limit!r}, expecting a number", "limit")
        return _json({"journal": mask_value(self.runtime.journal.entries(
            **query, limit=int(limit) if limit else None))})

    async def reset(self, request: web.Request) -> web.Response:
        self.runtime.reset()
        await self.runtime.changed()
        return _json({"reset": True})


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _depth(value: Any) -> int:
    """How deeply a parsed JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level > MAX_JSON_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def _page_number(raw: str | None, key: str, default: int, *, minimum: int, maximum: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ApiError(400, f"Filter {key!r} holds {raw!r}, expecting a number from {minimum} to {maximum}: "
                            f"query.{key}", key)
    return int(raw)


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
    del view["pin_verifier"]
    view["pin"] = "****" if card.has_pin else None  # only whether one is set
    return view
