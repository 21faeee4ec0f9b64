"""The HTTP control API: every route, its errors, and the OpenAPI document against the router."""

from __future__ import annotations

from typing import Any

import pytest

from host_stub.control import ROUTES, ControlApi, openapi_document
from host_stub.ledger import LEDGER_FILTERS
from specs.cards import seeded_card
from tests.conftest import run_bounded
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import MID, TID, make_terminal, totals


def served_routes(api: ControlApi) -> set[tuple[str, str]]:
    return {(route.method, route.resource.canonical) for route in api.app.router.routes()  # type: ignore[union-attr]
            if route.method != "HEAD"}


def test_openapi_document_matches_the_served_routes() -> None:
    async def scenario() -> tuple[set[tuple[str, str]], dict[str, Any]]:
        async with running("intl-ascii") as h:
            status, document = await h.api.get("/openapi.json")
            assert status == 200
            return served_routes(h.runtime._control), document  # type: ignore[arg-type]

    served, document = run_bounded(scenario())
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == served
    assert document["openapi"].startswith("3.")
    assert document == openapi_document()
    for path, item in document["paths"].items():
        for operation in item.values():
            named = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


async def _exercise_every_route(h: HostUnderTest) -> list[tuple[str, str, int, Any]]:
    """Call every route into every status it can answer: [(method, route path, status, body)]."""
    card = seeded_card(seed=11, scheme="unionpay")
    terminal = make_terminal("intl-ascii")
    calls: list[tuple[str, str, str, Any]] = [
        ("GET", "/openapi.json", "/openapi.json", None),
        ("POST", "/faults", "/faults", {"when": {"mti": "0800"}, "action": {"type": "delay_response", "seconds": 0},
                                        "id": "x"}),
        ("POST", "/faults", "/faults", {"action": {"type": "drop_response"}, "id": "x"}),
        ("POST", "/faults", "/faults", {"when": {"kind": "foo"}, "action": {"type": "drop_response"}}),
        ("GET", "/faults", "/faults", None),
        ("DELETE", "/faults/{id}", "/faults/x", None),
        ("DELETE", "/faults/{id}", "/faults/x", None),
        ("DELETE", "/faults", "/faults", None),
        ("GET", "/clock", "/clock", None),
        ("POST", "/clock", "/clock", {"advance_seconds": 1}),
        ("POST", "/clock", "/clock", {"advance_seconds": "1"}),
        ("GET", "/settings", "/settings", None),
        ("PUT", "/settings", "/settings", {"payout_days": 1}),
        ("PUT", "/settings", "/settings", {"payout_dayz": 1}),
        ("GET", "/registry/merchants/{mid}", f"/registry/merchants/{MID}", None),
        ("PUT", "/registry/merchants/{mid}", f"/registry/merchants/{MID}", {"payout_hold": "legal_hold"}),
        ("PUT", "/registry/merchants/{mid}", f"/registry/merchants/{MID}", {"payout_hold": "legal_hold"}),
        ("PUT", "/registry/merchants/{mid}", f"/registry/merchants/{MID}", {"status": "closed"}),
        ("GET", "/registry/merchants/{mid}", f"/registry/merchants/{MID}", None),
        ("GET", "/registry/merchants", "/registry/merchants", None),
        ("GET", "/registry/terminals/{tid}", "/registry/terminals/10000002", None),
        ("PUT", "/registry/terminals/{tid}", "/registry/terminals/10000002", {"status": "active"}),
        ("PUT", "/registry/terminals/{tid}", "/registry/terminals/10000002", {"mid": MID}),
        ("PUT", "/registry/terminals/{tid}", "/registry/terminals/10000002", {"batch": 3}),
        ("GET", "/registry/terminals/{tid}", "/registry/terminals/10000002", None),
        ("GET", "/registry/terminals", "/registry/terminals", None),
        ("GET", "/registry/cards/{pan}", f"/registry/cards/{card.pan}", None),
        ("PUT", "/registry/cards/{pan}", f"/registry/cards/{card.pan}", {"balance_minor": 5}),
        ("PUT", "/registry/cards/{pan}", f"/registry/cards/{card.pan}", {"balance_minor": 6}),
        ("PUT", "/registry/cards/{pan}", f"/registry/cards/{card.pan}", {"pan": card.pan}),
        ("GET", "/registry/cards/{pan}", f"/registry/cards/{card.pan}", None),
        ("GET", "/registry/cards", "/registry/cards", None),
        ("POST", "/registry/generate", "/registry/generate", {"seed": 1, "merchants": 1, "cards": 1}),
        ("POST", "/registry/generate", "/registry/generate", {"seed": "one"}),
    ]

    seen: list[tuple[str, str, int, Any]] = []
    for method, route, path, payload in calls:
        status, answer = await h.api.call(method, path, payload)
        seen.append((method, route, status, answer))
    client = await h.connect()  # a closed batch whose payout is held (the merchant's legal_hold)
    try:
        for request in (terminal.sign_on(), terminal.financial("sale", 100), terminal.settlement(totals([100]))):
            assert (await client.exchange(request))["39"] == "00"  # type: ignore[index]
    finally:
        await client.close()
    [payout] = (await h.api.get("/ledger/payouts"))[1]["payouts"]
    for method, route, path in (
        ("GET", "/ledger/authorizations", "/ledger/authorizations?kind=sale"),
        ("GET", "/ledger/authorizations", "/ledger/authorizations?kind=sale&kind=void"),
        ("GET", "/ledger/settlements", "/ledger/settlements?stan=2"),
        ("GET", "/ledger/settlements", "/ledger/settlements?stann=2"),
        ("GET", "/ledger/payouts", "/ledger/payouts?batch=1"),
        ("GET", "/ledger/payouts", "/ledger/payouts?batch=x"),
        ("POST", "/ledger/payouts/{id}/release", f"/ledger/payouts/{payout['id']}/release"),  # held: 200
        ("POST", "/ledger/payouts/{id}/release", f"/ledger/payouts/{payout['id']}/release"),  # not held: 409
        ("POST", "/ledger/payouts/{id}/release", "/ledger/payouts/99/release"),
        ("POST", "/ledger/payouts/{id}/release", "/ledger/payouts/x/release"),
        ("GET", "/journal", "/journal?mti=0200"),
        ("GET", "/journal", "/journal?limit=x"),
        ("POST", "/reset", "/reset"),
    ):
        status, answer = await h.api.call(method, path)
        seen.append((method, route, status, answer))
    return seen


def test_every_route_answers_exactly_the_status_codes_it_documents() -> None:
    seen = run_api(_exercise_every_route)
    document = openapi_document()
    documented = {(method.upper(), path): {int(code) for code in operation["responses"]}
                  for path, item in document["paths"].items() for method, operation in item.items()}
    answered: dict[tuple[str, str], set[int]] = {}
    for method, route, status, answer in seen:
        answered.setdefault((method, route), set()).add(status)
        response = document["paths"][route][method.lower()]["responses"].get(str(status))
        assert response is not None, f"{method} {route} answered {status}, documented {documented[method, route]}"
        schema = _resolve(document, response["content"]["application/json"]["schema"])
        assert isinstance(answer, dict), f"{method} {route} {status}: not a JSON object"
        assert set(schema.get("required", ())) <= set(answer), (method, route, status, answer)
        if status >= 400:
            assert schema == document["components"]["schemas"]["Error"] and answer["error"]
    # Every route exercised, into every documented status and no other; the guard's answers (401,
    # 403, 413, 415: the same on every route) are exercised against a real host in test_control_guard.
    guard = {401, 403, 413, 415}
    assert answered == {route: codes - guard for route, codes in documented.items()}


def test_documented_query_parameters_are_the_accepted_ones() -> None:
    document = openapi_document()
    queried = {path: [p for p in item["get"].get("parameters", []) if p["in"] == "query"]
               for path, item in document["paths"].items() if "get" in item}
    for table in ("authorizations", "settlements", "payouts"):
        assert [p["name"] for p in queried[f"/ledger/{table}"]] == ["limit", "offset", *LEDGER_FILTERS[table]]
    assert {p["name"] for p in queried["/ledger/authorizations"]} >= {"tid", "mid", "batch", "stan", "status", "kind"}

    async def body(h: HostUnderTest) -> list[tuple[str, int, Any]]:
        out = []
        for path, parameters in queried.items():
            for parameter in parameters:
                value = "1" if parameter["schema"]["type"] == "integer" or "pattern" in parameter["schema"] else "x"
                status, answer = await h.api.get(f"{path}?{parameter['name']}={value}")
                out.append((f"{path}?{parameter['name']}", status, answer))
            if parameters:
                status, answer = await h.api.get(f"{path}?undocumented=1")
                out.append((f"{path}?undocumented", status, answer))
        return out

    results = run_api(body)
    assert len(results) > 40
    for where, status, answer in results:
        if where.endswith("?undocumented"):
            assert (status, answer["key"]) == (400, "undocumented"), where
            assert "expecting one of" in answer["error"], where
        else:
            assert status == 200, (where, answer)


def test_issue_routes_are_all_served() -> None:
    required = {("GET", "/openapi.json"), ("GET", "/faults"), ("POST", "/faults"), ("DELETE", "/faults/{id}"),
                ("DELETE", "/faults"), ("GET", "/clock"), ("POST", "/clock"),
                ("GET", "/registry/merchants/{mid}"), ("PUT", "/registry/merchants/{mid}"),
                ("GET", "/registry/terminals/{tid}"), ("PUT", "/registry/terminals/{tid}"),
                ("GET", "/registry/cards/{pan}"), ("PUT", "/registry/cards/{pan}"),
                ("GET", "/ledger/authorizations"), ("GET", "/ledger/settlements"), ("GET", "/ledger/payouts"),
                ("GET", "/journal"), ("POST", "/reset")}
    assert required <= {(r.method, r.path) for r in ROUTES}


def run_api(body: Any, config: dict[str, Any] | None = None, dialect_name: str = "intl-ascii") -> Any:
    async def scenario() -> Any:
        async with running(dialect_name, config=config) as h:
            return await body(h)
    return run_bounded(scenario())


def test_faults_add_list_remove_and_errors() -> None:
    async def body(h: HostUnderTest) -> None:
        api = h.api
        status, fault = await api.post("/faults", {"when": {"mti": "0200", "nth": 2},
                                                   "action": {"type": "delay_response", "seconds": 0.5}})
        assert (status, fault["id"], fault["action"]) == (201, "f1", {"type": "delay_response", "seconds": 0.5})
        assert (await api.post("/faults", {"action": {"type": "drop_response"}, "id": "mine"}))[0] == 201
        assert (await api.post("/faults", {"action": {"type": "drop_response"}, "id": "mine"}))[0] == 409
        status, listing = await api.get("/faults")
        assert [f["id"] for f in listing["faults"]] == ["f1", "mine"]
        assert listing["faults"][0]["occurrences"] == 0
        assert await api.delete("/faults/f1") == (200, {**fault, "times": None})
        assert (await api.delete("/faults/f1"))[0] == 404
        assert await api.delete("/faults") == (200, {"removed": 1})
        assert (await api.get("/faults"))[1] == {"faults": []}

    run_api(body)


@pytest.mark.parametrize(("body", "key", "text"), [
    ({"when": {}}, "action", "Missing key 'action'"),
    ({"action": {"type": "drop_respons"}}, "type", "expecting one of bad_length_prefix"),
    ({"action": {"type": "delay_response", "secnds": 1}}, "secnds", "Unknown key 'secnds'"),
    ({"action": {"type": "respond_rc", "rc": "123"}}, "rc", "expecting a 2-character response code"),
    ({"when": {"mtii": "0200"}, "action": {"type": "drop_response"}}, "mtii", "body.when.mtii"),
    ({"when": {"nth": 0}, "action": {"type": "drop_response"}}, "nth", "expecting at least 1"),
    ({"when": {"probability": 2}, "action": {"type": "drop_response"}}, "probability", "expecting 0 to 1"),
    ({"when": {"between": ["10:00"]}, "action": {"type": "drop_response"}}, "between", "expecting [start, end]"),
    ({"when": {"fields": {"999": "x"}}, "action": {"type": "drop_response"}}, "999", "Unknown key '999'"),
    ({"action": {"type": "maintenance_window", "rc": "05"}}, "rc", "expecting one of 91, 96"),
    ({"action": {"type": "reversal_rc_for_unknown_original", "rc": "05"}}, "rc", "expecting one of 00, 12, 25"),
    ({"action": {"type": "drop_response"}, "times": 0}, "times", "expecting at least 1"),
])
def test_bad_fault_bodies_are_400_naming_the_key(body: dict[str, Any], key: str, text: str) -> None:
    async def scenario(h: HostUnderTest) -> tuple[int, Any]:
        return await h.api.post("/faults", body)

    status, answer = run_api(scenario)
    assert status == 400
    assert answer["key"] == key and text in answer["error"]


def test_body_must_be_a_json_object() -> None:
    async def scenario(h: HostUnderTest) -> list[tuple[int, Any]]:
        return [await h.api.post("/faults", raw=b"{not json", content_type="application/json"),
                await h.api.post("/faults", [1, 2]),
                await h.api.put("/settings", "x")]

    for status, answer in run_api(scenario):
        assert status == 400 and answer["key"] is None and "expecting a JSON object" in answer["error"]


def test_clock_set_and_advance() -> None:
    async def body(h: HostUnderTest) -> None:
        api = h.api
        assert (await api.get("/clock"))[1]["now"] == "2026-11-23T09:30:15"
        status, clock = await api.post("/clock", {"set": "2026-12-31T23:00:00"})
        assert (status, clock["now"], clock["business_date"]) == (200, "2026-12-31T23:00:00", "2026-12-31")
        status, clock = await api.post("/clock", {"advance_seconds": 3600.5})
        assert clock["now"] == "2027-01-01T00:00:00"
        assert (await api.put("/settings", {"cutover": "23:30", "cutover_window_seconds": 600}))[0] == 200
        await api.post("/clock", {"set": "2026-12-31T23:35:00"})
        clock = (await api.get("/clock"))[1]
        assert (clock["business_date"], clock["in_cutover_window"]) == ("2027-01-01", True)
        assert (await api.post("/clock", {}))[1]["key"] == "set"
        assert (await api.post("/clock", {"set": "2026-01-01T00:00", "advance_seconds": 1}))[1]["key"] == "advance_seconds"
        assert (await api.post("/clock", {"set": "yesterday"}))[1]["key"] == "set"
        assert (await api.post("/clock", {"advance_seconds": "1"}))[1]["key"] == "advance_seconds"
        assert (await api.post("/clock", {"sett": "x"}))[1]["key"] == "sett"

    run_api(body)


def test_settings_read_and_partial_update() -> None:
    async def body(h: HostUnderTest) -> None:
        status, settings = await h.api.get("/settings")
        assert (status, settings["reversal_unknown_rc"], settings["cup_unbalanced_mode"]) == (200, "25", "flag")
        status, settings = await h.api.put("/settings", {"reversal_unknown_rc": "12", "holidays": ["2026-12-25"]})
        assert (settings["reversal_unknown_rc"], settings["holidays"], settings["strict_batch"]) == (
            "12", ["2026-12-25"], False)
        assert h.runtime.host.settings.reversal_unknown_rc == "12"
        status, error = await h.api.put("/settings", {"strict_bach": True})
        assert (status, error["key"]) == (400, "strict_bach")
        status, error = await h.api.put("/settings", {"holidays": ["25 Dec"]})
        assert (status, error["key"]) == (400, "holidays")

    run_api(body)


def test_registry_merchants_terminals_cards() -> None:
    card = seeded_card(seed=11, scheme="unionpay")

    async def body(h: HostUnderTest) -> None:
        api = h.api
        assert (await api.get(f"/registry/merchants/{MID}"))[0] == 404
        status, merchant = await api.put(f"/registry/merchants/{MID}", {"status": "frozen", "limits": {"daily_count": 5}})
        assert (status, merchant["status"], merchant["limits"]["daily_count"]) == (201, "frozen", 5)
        status, merchant = await api.put(f"/registry/merchants/{MID}", {"status": "active"})
        assert (status, merchant["status"], merchant["limits"]["daily_count"]) == (200, "active", 5)
        status, error = await api.put(f"/registry/merchants/{MID}", {"status": "closed"})
        assert (status, error["key"]) == (400, "status")
        status, error = await api.put("/registry/merchants/123", {})
        assert (status, error["key"]) == (400, "mid")

        status, error = await api.put(f"/registry/terminals/{TID}", {"status": "active"})
        assert (status, error["key"]) == (400, "mid")
        status, terminal = await api.put(f"/registry/terminals/{TID}", {"mid": MID, "batch": 7})
        assert (status, terminal["batch"], terminal["tmk_kcv"]) == (201, 7, "08D7B4FB")
        assert "tmk" not in terminal and "mak" not in terminal
        assert (await api.get(f"/registry/terminals/{TID}"))[1] == terminal
        assert (await api.get("/registry/terminals/99999999"))[0] == 404

        status, stored = await api.put(f"/registry/cards/{card.pan}", {"pin": "1234", "balance_minor": 500})
        assert (status, stored["pin"], stored["balance_minor"]) == (201, "****", 500)
        assert stored["pan_masked"] == card.pan[:6] + "******" + card.pan[-4:]
        status, again = await api.get(f"/registry/cards/{card.pan}")
        assert again == stored and card.pan not in str(again)
        assert (await api.get("/registry/cards/6200000000000000"))[1]["error"] == "No card '620000******0000'"
        status, error = await api.put("/registry/cards/1234567890123", {})
        assert (status, error["key"]) == (400, "pan")
        status, error = await api.put(f"/registry/cards/{card.pan}", {"pan": card.pan})
        assert (status, error["key"]) == (400, "pan")
        listing = (await api.get("/registry/cards"))[1]["cards"]
        assert len(listing) == 1 and card.pan not in str(listing)
        assert len((await api.get("/registry/merchants"))[1]["merchants"]) == 1
        assert len((await api.get("/registry/terminals"))[1]["terminals"]) == 1
        assert h.runtime.registry.card_by_token(h.runtime.ledger.pan_token(card.pan)) is not None

    run_api(body)


def test_registry_generate_is_seeded() -> None:
    async def body(h: HostUnderTest) -> Any:
        status, made = await h.api.post("/registry/generate", {"seed": 5, "merchants": 2, "terminals_per_merchant": 2,
                                                               "cards": 3})
        assert status == 201
        return made

    first, second = run_api(body), run_api(body)
    assert first == second
    assert (len(first["merchants"]), len(first["terminals"]), len(first["cards"])) == (2, 4, 3)
    assert first["cards"][0]["pan_masked"].startswith("62")
    pans = [seeded_card(seed=5000 + i, scheme=s).pan for i, s in enumerate(("unionpay", "visa", "mastercard"))]
    assert [c["pan_masked"][-4:] for c in first["cards"]] == [p[-4:] for p in pans]


def test_ledgers_are_filterable_and_journal_is_masked() -> None:
    terminal = make_terminal("intl-ascii")

    async def body(h: HostUnderTest) -> None:
        client = await h.connect()
        try:
            for request in (terminal.sign_on(), terminal.financial("sale", 100), terminal.financial("sale", 200)):
                assert (await client.exchange(request))["39"] == "00"  # type: ignore[index]
        finally:
            await client.close()
        api = h.api
        rows = (await api.get("/ledger/authorizations?kind=sale"))[1]["authorizations"]
        assert [r["amount_minor"] for r in rows] == [100, 200]
        assert (await api.get(f"/ledger/authorizations?tid={TID}&stan=000002&status=approved"))[1][
            "authorizations"][0]["amount_minor"] == 100
        assert (await api.get("/ledger/authorizations?tid=nobody"))[1]["authorizations"] == []
        status, error = await api.get("/ledger/authorizations?stann=1")
        assert (status, error["key"]) == (400, "stann")
        assert (await api.get(f"/ledger/settlements?tid={TID}"))[1]["settlements"] == []
        assert (await api.get("/ledger/payouts?status=paid"))[1]["payouts"] == []
        status, journal = await api.get("/journal?mti=0200")
        assert status == 200 and [e["stan"] for e in journal["journal"]] == ["000002", "000003"]
        assert terminal.card.pan not in str(journal) and "******" in journal["journal"][0]["request"]["2"]
        assert len((await api.get("/journal?limit=1"))[1]["journal"]) == 1
        assert (await api.get("/journal?limit=x"))[1]["key"] == "limit"
        assert (await api.get("/journal?pan=1"))[1]["key"] == "pan"

    run_api(body)


def test_settlements_and_payouts_filters_and_release() -> None:
    terminal = make_terminal("cup")

    async def body(h: HostUnderTest) -> None:
        api = h.api
        await api.put(f"/registry/merchants/{MID}", {"payout_hold": "legal_hold"})
        client = await h.connect()
        try:
            sale = terminal.financial("sale", 100)
            for request in (terminal.sign_on(), sale):
                assert (await client.exchange(request))["39"] == "00"  # type: ignore[index]
            assert (await client.exchange(terminal.settlement(totals([100]))))["39"] == "00"  # type: ignore[index]
        finally:
            await client.close()
        [settlement] = (await api.get("/ledger/settlements?batch=000001&status=closed"))[1]["settlements"]
        assert settlement["result"] == "balanced"
        [by_stan] = (await api.get(f"/ledger/settlements?stan={sale['11']}"))[1]["settlements"]
        assert by_stan == settlement  # the batch that holds the sale, uploaded or not
        [payout] = (await api.get(f"/ledger/payouts?mid={MID}&stan={sale['11']}"))[1]["payouts"]
        assert (payout["status"], payout["hold_reason"]) == ("held", "legal_hold")
        assert (await api.get("/ledger/payouts?stan=999999"))[1]["payouts"] == []
        await api.post("/clock", {"advance_seconds": 86400 * 3})
        status, released = await api.post(f"/ledger/payouts/{payout['id']}/release")
        assert (status, released["status"]) == (200, "paid")
        assert (await api.post(f"/ledger/payouts/{payout['id']}/release"))[0] == 409
        assert (await api.post("/ledger/payouts/99/release"))[0] == 404
        assert (await api.post("/ledger/payouts/x/release"))[0] == 400

    run_api(body, dialect_name="cup")


def test_reset_returns_to_the_configuration() -> None:
    config = {"faults": [{"when": {"mti": "0800"}, "action": {"type": "respond_rc", "rc": "91"}}],
              "registry": {"merchants": [{"mid": MID, "status": "frozen"}]},
              "settings": {"reversal_unknown_rc": "00"}}
    terminal = make_terminal("intl-ascii")

    async def body(h: HostUnderTest) -> None:
        api = h.api
        client = await h.connect()
        try:
            assert (await client.exchange(terminal.sign_on()))["39"] == "91"  # type: ignore[index]
        finally:
            await client.close()
        await api.delete("/faults")
        await api.put(f"/registry/merchants/{MID}", {"status": "active"})
        await api.put("/settings", {"reversal_unknown_rc": "12"})
        await api.post("/clock", {"advance_seconds": 999})
        assert (await api.post("/reset"))[1] == {"reset": True}
        assert (await api.get("/ledger/authorizations"))[1]["authorizations"] == []
        assert [f["action"]["type"] for f in (await api.get("/faults"))[1]["faults"]] == ["respond_rc"]
        assert (await api.get(f"/registry/merchants/{MID}"))[1]["status"] == "frozen"
        assert (await api.get("/settings"))[1]["reversal_unknown_rc"] == "00"
        assert (await api.get("/journal"))[1] == {"journal": []}
        assert (await api.get("/registry/terminals"))[1] == {"terminals": []}

    run_api(body, config=config)


def test_unknown_route_and_method_answer_json() -> None:
    pan = seeded_card(seed=11, scheme="unionpay").pan

    async def body(h: HostUnderTest) -> list[tuple[int, Any]]:
        return [await h.api.get("/nothing"), await h.api.call("PATCH", "/faults"),
                await h.api.get("/faults/f1"), await h.api.get(f"/registry/card/{pan}")]

    (missing, missing_body), (patch, patch_body), (get_one, get_one_body), (typo, typo_body) = run_api(body)
    assert missing == 404 and missing_body["key"] is None
    assert missing_body["error"].startswith("Path /nothing is not served, expecting one of /clock, /faults")
    assert set(missing_body["allowed"]) == {r.path for r in ROUTES}
    assert (patch, patch_body["allowed"]) == (405, ["DELETE", "GET", "POST"])
    assert patch_body["error"] == "Method PATCH is not served on /faults, expecting one of DELETE, GET, POST"
    assert (get_one, get_one_body["allowed"]) == (405, ["DELETE"])
    assert typo == 404 and pan not in str(typo_body) and "******" in typo_body["error"]
