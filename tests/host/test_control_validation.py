"""What the control API (and the ``--config`` file) refuses, and how ledger filters read their values.

Fault selectors that could never match a request are refused with 400 naming the key; the same
parser reads the faults of a configuration file.  Ledger filters: STAN and batch zero-padded,
integers checked, a repeated or unknown filter a 400 naming it; a settlement (and its payout) is
found by the STAN of any request of its batch.
"""

from __future__ import annotations

import doctest
from pathlib import Path
from typing import Any

import pytest

import host_stub.ledger
from host_stub.faults import ACTIONS, REQUEST_KINDS, REQUEST_MTIS, Fault, action_from_dict, action_schemas
from host_stub.host import Directives
from host_stub.ledger import LEDGER_FILTERS, ledger_filters
from host_stub.runtime import HostRuntime, read_config_file
from host_stub.validation import ConfigError
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.host.conftest import HostUnderTest
from tests.host.helpers import TID, ask, make_terminal, signed_on, totals
from tests.host.test_control import run_api

DROP = {"type": "drop_response"}


# ------------------------------------------------------------------ fault selectors that never match


@pytest.mark.parametrize(("when", "key", "text"), [
    ({"mti": "02x0"}, "mti", "expecting a request MTI the host knows (0100"),
    ({"mti": "0210"}, "mti", "expecting a request MTI the host knows"),  # a response: faults see requests only
    ({"mti": 128}, "mti", "quote MTIs in YAML"),  # what YAML makes of an unquoted 0200
    ({"mti": []}, "mti", "expecting a value or a non-empty list"),
    ({"kind": "foo"}, "kind", "expecting a request kind (balance, sale"),
    ({"processing_code": "abc"}, "processing_code", "expecting 6 digits (field 3)"),
    ({"processing_code": 0}, "processing_code", "quote it in YAML"),
    ({"tid": 5}, "tid", "holds 5 (int), expecting a string of 8 characters (field 41)"),
    ({"tid": ["10000001", "1000001"]}, "tid", "holds '1000001' (str), expecting a string of 8 characters"),
    ({"mid": "12345"}, "mid", "expecting a string of 15 characters (field 42)"),
    ({"mid": 123456789012345}, "mid", "expecting a string of 15 characters"),
    ({"pan": "4111-1111"}, "pan", "expecting 12-19 digits (a card number)"),
    ({"bin": "4x"}, "bin", "expecting 1-19 digits"),
    ({"amount_min": 500, "amount_max": 100}, "amount_max", "expecting at least amount_min (500)"),
    ({"fields": {"39": 5}}, "39", "holds 5 (int), expecting a string"),
    ({"fields": {"25": ["00", 0]}}, "25", "holds 0 (int), expecting a string"),
    ({"between": ["10:00", "10:00"]}, "between", "an empty window"),
    ({"between": ["2026-11-23T12:00:00", "2026-11-23T11:00:00"]}, "between", "an empty window"),
])
def test_a_selector_that_can_never_match_is_400_naming_the_key(when: dict[str, Any], key: str, text: str) -> None:
    async def scenario(h: HostUnderTest) -> tuple[int, Any, int]:
        status, answer = await h.api.post("/faults", {"when": when, "action": DROP})
        return status, answer, len(h.runtime.faults)

    status, answer, active = run_api(scenario)
    assert (status, answer["key"], active) == (400, key, 0)
    assert text in answer["error"] and answer["error"].endswith(f".{key}")


@pytest.mark.parametrize(("action", "key", "text"), [
    ({"type": "omit_fields", "fields": ["999"]}, "fields", "expecting field numbers 1-128"),
    ({"type": "omit_fields", "fields": ["041"]}, "fields", "expecting field numbers 1-128"),
    ({"type": "omit_fields", "fields": []}, "fields", "expecting at least one field number"),
    ("drop_response", "action", "expecting an object like {\"type\": \"drop_response\"}"),
    (["drop_response"], "action", "expecting an object like {\"type\": \"drop_response\"} (type one of"),
    ({"seconds": 1}, "type", "Missing key 'type', expecting an object like {\"type\""),
])
def test_bad_actions_are_400_naming_the_key(action: Any, key: str, text: str) -> None:
    async def scenario(h: HostUnderTest) -> tuple[int, Any]:
        return await h.api.post("/faults", {"action": action})

    status, answer = run_api(scenario)
    assert (status, answer["key"]) == (400, key)
    assert text in answer["error"]


@pytest.mark.parametrize(("body", "key", "error"), [
    ({"when": "0200", "action": DROP}, "when", "Key 'when' holds '0200' (str), expecting an object: body.when"),
    ({"when": [], "action": DROP}, "when", "Key 'when' holds [] (list), expecting an object: body.when"),
])
def test_a_when_that_is_not_an_object_names_when(body: dict[str, Any], key: str, error: str) -> None:
    async def scenario(h: HostUnderTest) -> tuple[int, Any]:
        return await h.api.post("/faults", body)

    assert run_api(scenario) == (400, {"error": error, "key": key})


def test_good_selectors_still_read() -> None:
    fault = Fault.from_dict({"when": {"mti": [200, "0400"], "processing_code": "000000", "kind": "sale",
                                      "tid": "10000001", "mid": "123456789012345", "bin": "62",
                                      "fields": {"25": ["00", "06"]}, "amount_min": 100, "amount_max": 100,
                                      "between": ["23:55", "00:05"]},
                             "action": {"type": "omit_fields", "fields": [41, "11"]}})
    assert fault.when.mti == ("0200", "0400")
    assert fault.action.fields == ("41", "11")  # type: ignore[union-attr]
    assert "0200" in REQUEST_MTIS and "0210" not in REQUEST_MTIS
    assert {"sale", "reversal", "settlement", "upload", "sign_on", "echo"} <= set(REQUEST_KINDS)


def test_action_schemas_cover_every_action_and_its_parameters() -> None:
    schemas = action_schemas()
    assert set(schemas) == set(ACTIONS)
    assert schemas["delay_response"]["properties"]["seconds"] == {"type": "number", "minimum": 0, "default": 1.0}
    assert schemas["maintenance_window"]["properties"]["rc"]["enum"] == ["91", "96"]
    assert schemas["drop_response"]["properties"] == {"type": {"type": "string", "enum": ["drop_response"]}}
    for kind, schema in schemas.items():  # every documented parameter is one the parser reads
        params = {name: 1 for name in schema["properties"] if name not in ("type", "mode", "value", "rc", "reason",
                                                                               "fields")}
        action_from_dict({"type": kind, **params})


def test_config_file_faults_go_through_the_same_checks(tmp_path: Path) -> None:
    path = tmp_path / "host.yaml"
    path.write_text("faults:\n  - when: {mti: 0200}\n    action: {type: drop_response}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        HostRuntime(dialect=get_dialect("intl-ascii"), framing=DEFAULT_FRAMING["intl-ascii"],
                    config=read_config_file(path))
    assert (excinfo.value.key, excinfo.value.path) == ("mti", "faults[0].when.mti")
    assert "holds 128 (int)" in str(excinfo.value) and "quote MTIs in YAML" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        HostRuntime(dialect=get_dialect("intl-ascii"), framing=DEFAULT_FRAMING["intl-ascii"],
                    config={"faults": [{"action": DROP}, {"when": {"kind": "foo"}, "action": DROP}]})
    assert excinfo.value.path == "faults[1].when.kind"


# ------------------------------------------------------------------ ledger filters


def test_ledger_filter_docstring_examples() -> None:
    failures, attempted = doctest.testmod(host_stub.ledger, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


def test_ledger_filters_normalise_and_refuse() -> None:
    assert ledger_filters("authorizations", [("batch", "1"), ("stan", "2"), ("settled", "1")]) == {
        "batch": "000001", "stan": "000002", "settled": 1}
    assert ledger_filters("payouts", [("stan", "000002"), ("amount_minor", "-5")]) == {"stan": "000002",
                                                                                       "amount_minor": -5}
    assert {"kind", "rc", "rrn", "mti", "amount_minor"} <= set(LEDGER_FILTERS["authorizations"])
    assert "terminal_totals" not in LEDGER_FILTERS["settlements"]  # JSON documents are not filters
    for pairs, key, text in (
        ([("tid", "A"), ("tid", "B")], "tid", "Filter 'tid' is given 2 times, expecting it once"),
        ([("stan", "1234567")], "stan", "expecting 1 to 6 digits"),
        ([("batch", "x1")], "batch", "expecting 1 to 6 digits"),
        ([("amount_minor", "1.5")], "amount_minor", "expecting an integer"),
        ([("stann", "1")], "stann", "Unknown authorizations filter 'stann', expecting one of amount_minor, auth_code"),
    ):
        with pytest.raises(ConfigError) as excinfo:
            ledger_filters("authorizations", pairs)
        assert excinfo.value.key == key and text in str(excinfo.value)


def test_a_settlement_is_found_by_any_stan_of_its_batch() -> None:
    host, terminal = signed_on("intl-ascii")  # sign-on: STAN 000001
    sale = terminal.financial("sale", 100)  # 000002
    assert ask(host, sale)["39"] == "00"
    declined = terminal.financial("sale", 200)  # 000003, declined: still a request of batch 1
    assert ask(host, declined, directives=Directives(respond_rc="05"))["39"] == "05"
    settle = terminal.settlement(totals([100]))  # 000004
    assert ask(host, settle)["39"] == "00"
    [settlement] = host.ledger.settlements()
    for stan in (sale["11"], declined["11"], settle["11"], "2", 4):
        assert host.ledger.settlements(stan=stan) == [settlement], stan
        assert len(host.ledger.payouts(stan=stan)) == 1, stan
    assert host.ledger.settlements(stan="000001") == []  # the sign-on belongs to no batch
    assert host.ledger.settlements(batch="1") == [settlement] == host.ledger.settlements(batch=1)
    assert [r["stan"] for r in host.ledger.authorizations(stan="2")] == [sale["11"]]
    later = terminal.financial("sale", 300)  # batch 2, never settled
    assert ask(host, later)["39"] == "00"
    assert host.ledger.settlements(stan=later["11"]) == []


def test_an_uploaded_stan_finds_its_settlement() -> None:
    host, terminal = signed_on("intl-ascii")
    sale = terminal.financial("sale", 100)
    answer = ask(host, sale)
    assert ask(host, terminal.settlement(totals([100, 50])))["39"] == "95"  # unbalanced: upload follows
    assert ask(host, terminal.intl_upload(sale, answer))["39"] == "00"
    [settlement] = host.ledger.settlements()
    assert settlement["status"] == "awaiting_upload"
    assert host.ledger.settlements(stan=sale["11"]) == [settlement]


def test_ledger_query_filters_over_http() -> None:
    terminal = make_terminal("intl-ascii")

    async def body(h: HostUnderTest) -> None:
        client = await h.connect()
        try:
            for request in (terminal.sign_on(), terminal.financial("sale", 100), terminal.settlement(totals([100]))):
                assert (await client.exchange(request))["39"] == "00"  # type: ignore[index]
        finally:
            await client.close()
        api = h.api
        [sale] = (await api.get("/ledger/authorizations?stan=2&batch=1"))[1]["authorizations"]
        assert (sale["stan"], sale["kind"], sale["batch"]) == ("000002", "sale", "000001")
        assert len((await api.get("/ledger/authorizations?kind=sale&amount_minor=100&settled=1"))[1][
            "authorizations"]) == 1
        for stan in ("2", "3", "000003"):  # the sale and the 0500
            [settlement] = (await api.get(f"/ledger/settlements?stan={stan}"))[1]["settlements"]
            assert settlement["batch"] == "000001"
            assert len((await api.get(f"/ledger/payouts?stan={stan}&batch=1"))[1]["payouts"]) == 1
        assert (await api.get(f"/ledger/settlements?batch=1&tid={TID}"))[1]["settlements"] == [settlement]
        status, error = await api.get(f"/ledger/authorizations?tid={TID}&tid=10000002")
        assert (status, error["key"]) == (400, "tid") and "given 2 times" in error["error"]
        status, error = await api.get("/ledger/payouts?batch=1&batch=1")
        assert (status, error["key"]) == (400, "batch")
        status, error = await api.get("/ledger/settlements?kind=sale")  # settlements have no kind
        assert (status, error["key"]) == (400, "kind")
        assert "expecting one of" in error["error"] and "stan" in error["error"] and "result" in error["error"]
        status, error = await api.get("/ledger/authorizations?stan=abc")
        assert (status, error["key"]) == (400, "stan")
        status, error = await api.get("/journal?tid=a&tid=b")
        assert (status, error["key"]) == (400, "tid")

    run_api(body)
