"""Acquirer policy the scenarios rely on: the minimum CUP software version (C07), new mandatory fields
(C33), the fee date basis (C34), holds lifted by a registry change (C11, C36), records posted from a
batch upload (C13), and the shape of payout rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from host_stub.host import Directives
from host_stub.settings import HostSettings
from host_stub.validation import ConfigError
from specs.codec import encode
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING, CupHeader, Frame, Tpdu, pack
from tests.conftest import run_bounded
from tests.host.conftest import running
from tests.host.helpers import MID, NOW, TID, ask, make_terminal, signed_on, totals

# ------------------------------------------------------------------------------ settings


def test_policy_settings_round_trip_and_are_checked() -> None:
    s = HostSettings.from_dict({"min_software_version": "310002", "required_fields": {"0800": ["62"], 200: [63]},
                                "fee_date_basis": "settlement"})
    assert (s.min_software_version, s.fee_date_basis) == ("310002", "settlement")
    assert s.required_for("0800") == ("62",) and s.required_for("0200") == ("63",) and s.required_for("0220") == ()
    assert s.as_dict()["required_fields"] == {"0800": ["62"], "0200": ["63"]}
    assert HostSettings.from_dict(s.as_dict()) == s
    for body, text in (({"min_software_version": "31"}, "expecting 6 digits: settings.min_software_version"),
                       ({"fee_date_basis": "value"}, "expecting one of settlement, transaction"),
                       ({"required_fields": {"08000": ["62"]}}, "is not an MTI, expecting 4 digits"),
                       ({"required_fields": {"0800": ["x"]}}, "expecting data element numbers 2 to 128")):
        with pytest.raises(ConfigError, match=text):
            HostSettings.from_dict(body)


# ------------------------------------------------------------------------------ C07 software version


def test_older_cup_software_gets_30_on_financial_requests_and_processing_requirement_6_on_every_answer() -> None:
    host, terminal = signed_on("cup", min_software_version="310002")
    old = host.answer(terminal.financial("sale", 5000), now=NOW, software_version="310001")
    assert (old.response["39"], old.processing_requirement) == ("30", "6")
    [row] = host.ledger.authorizations(kind="sale")
    assert (row["status"], row["reason"]) == ("declined", "software_version:310001<310002")
    echo = host.answer(terminal.network("echo"), now=NOW, software_version="310001")
    assert (echo.response["39"], echo.processing_requirement) == ("00", "6")  # answered, and told to update
    current = host.answer(terminal.mac(terminal.financial("sale", 5000)), now=NOW, software_version="310002")
    assert (current.response["39"], current.processing_requirement) == ("00", None)
    intl_host, intl = signed_on("intl-bcd", min_software_version="310002")
    no_header = intl_host.answer(intl.mac(intl.financial("sale", 100)), now=NOW, software_version=None)
    assert (no_header.response["39"], no_header.processing_requirement) == ("00", None)  # no header, no gate


def _frame(dialect_name: str, message: dict[str, str], software_version: str) -> bytes:
    framing = DEFAULT_FRAMING[dialect_name]
    return pack(Frame(message=encode(message, get_dialect(dialect_name)), tpdu=Tpdu(destination="0112", source="0000"),
                      header=CupHeader(software_version=software_version)), framing)


def test_the_server_reads_the_software_version_from_the_cup_header_and_sets_the_answer_header() -> None:
    terminal = make_terminal("cup")

    async def scenario() -> None:
        async with running("cup", config={"settings": {"min_software_version": "310002"}}) as h:
            client = await h.connect()
            try:
                await client.send_raw(_frame("cup", terminal.sign_on(), "310001"))
                frame = await client.receive_frame()
                assert frame is not None and frame.header is not None
                assert frame.header.processing_requirement == "6"
                # A fault's 处理要求 wins over the core's.
                await h.api.fault({"kind": "echo"}, {"type": "header_processing_requirement", "value": "3"})
                await client.send_raw(_frame("cup", terminal.network("echo"), "310001"))
                frame = await client.receive_frame()
                assert frame is not None and frame.header is not None and frame.header.processing_requirement == "3"
                await client.send_raw(_frame("cup", terminal.network("echo"), "310002"))
                frame = await client.receive_frame()
                assert frame is not None and frame.header is not None and frame.header.processing_requirement == "3"
                status, body = await h.api.put("/settings", {"min_software_version": None})
                assert status == 200 and body["min_software_version"] is None
            finally:
                await client.close()

    run_bounded(scenario())


# ------------------------------------------------------------------------------ C33 required fields


def test_a_request_missing_a_required_field_gets_30_and_processing_requirement_1() -> None:
    host, terminal = signed_on("cup")
    host.settings = host.settings.updated({"required_fields": {"0800": ["62"]}})
    bare = host.answer(terminal.sign_on(), now=NOW)
    assert (bare.response["39"], bare.processing_requirement) == ("30", "1")
    assert host.ledger.authorizations(kind="sign_on")[-1]["reason"] == "missing_required_field:62"
    compliant = host.answer({**terminal.sign_on(), "62": "0123456789ABCDEF"}, now=NOW)
    assert (compliant.response["39"], compliant.processing_requirement) == ("00", None)
    # Only 0800 is ruled (the sign-on just above issued new keys: the sale is MACed under them).
    terminal.take_keys(compliant.response)
    assert host.answer(terminal.mac(terminal.financial("sale", 100)), now=NOW).response["39"] == "00"


# ------------------------------------------------------------------------------ C34 fee date basis


@pytest.mark.parametrize(("basis", "fee", "net"), [("transaction", 980, 199_020), ("settlement", 1200, 198_800)])
def test_fee_date_basis_picks_the_rule_by_transaction_or_settlement_date(basis: str, fee: int, net: int) -> None:
    schedule = [{"effective_from": "2026-01-01", "rate_bps": 38}, {"effective_from": "2026-11-23", "rate_bps": 60}]
    host, terminal = signed_on("intl-bcd", fee_schedule=schedule, fee_date_basis=basis)
    assert ask(host, terminal.financial("sale", 100_000), now=NOW - timedelta(days=1))["39"] == "00"
    assert ask(host, terminal.financial("sale", 100_000), now=NOW)["39"] == "00"
    assert ask(host, terminal.settlement(totals([100_000, 100_000])), now=NOW)["39"] == "00"
    [payout] = host.ledger.payouts()
    assert (payout["fee_minor"], payout["net_minor"], payout["amount_minor"]) == (fee, net, net)


# ------------------------------------------------------------------------------ payouts: shape, holds lifted


def test_payout_rows_carry_what_the_funding_invariant_reads() -> None:
    host, terminal = signed_on("cup", payout_days=1)
    assert ask(host, terminal.financial("sale", 2500))["39"] == "00"
    assert ask(host, terminal.settlement(totals([2500])))["39"] == "00"
    [payout] = host.ledger.payouts()
    assert {k: payout[k] for k in ("mid", "batch", "status", "amount_minor", "fee_minor", "value_date",
                                   "hold_reason")} == {
        "mid": MID, "batch": "000001", "status": "pending", "amount_minor": 2500, "fee_minor": 0,
        "value_date": "2026-11-24", "hold_reason": None}
    host.refresh_payouts(NOW + timedelta(days=1))
    assert host.ledger.payouts()[0]["status"] == "paid"


@pytest.mark.parametrize(("held_by", "lifted_by"), [
    ({"payout_hold": "legal_hold"}, {"payout_hold": None}),
    ({"payout_hold": "risk"}, {"payout_hold": "risk_review_2"}),
    ({"status": "frozen_payout"}, {"status": "active"}),
])
def test_lifting_a_merchant_hold_releases_its_held_payouts(held_by: dict[str, Any], lifted_by: dict[str, Any]) -> None:
    host, terminal = signed_on("intl-bcd")
    merchant = host.registry.merchant(MID)
    assert merchant is not None
    host.registry.put(merchant.updated(held_by))
    assert ask(host, terminal.financial("sale", 700))["39"] == "00"
    assert ask(host, terminal.settlement(totals([700])), directives=Directives())["39"] == "00"
    assert host.ledger.payouts()[0]["status"] == "held"
    before = host.registry.merchant(MID)
    after = before.updated(lifted_by)  # type: ignore[union-attr]
    host.registry.put(after)
    [released] = host.merchant_changed(before, after, NOW + timedelta(days=3))
    assert (released["status"], released["released_at"][:10]) == ("paid", "2026-11-26")  # value date passed
    new_reason = after.payout_hold
    if new_reason:  # a different hold reason now applies to new payouts, not to this one
        assert ask(host, terminal.financial("sale", 100))["39"] == "00"


def test_a_fault_hold_is_not_lifted_by_a_merchant_change() -> None:
    host, terminal = signed_on("intl-bcd")
    assert ask(host, terminal.financial("sale", 700))["39"] == "00"
    assert ask(host, terminal.settlement(totals([700])), directives=Directives(payout_hold="risk"))["39"] == "00"
    before = host.registry.merchant(MID)
    assert before is not None
    assert host.merchant_changed(before, before.updated({"name": "renamed"}), NOW) == []
    assert host.ledger.payouts()[0]["status"] == "held"


def test_clearing_payout_hold_through_the_control_api_releases_the_payout() -> None:
    terminal = make_terminal("cup")

    async def scenario() -> None:
        async with running("cup", config={"settings": {"payout_days": 1}, "registry": {
                "merchants": [{"mid": MID, "payout_hold": "legal_hold"}]}}) as h:
            client = await h.connect()
            try:
                answer = await client.exchange(terminal.sign_on())
                assert answer is not None and answer["39"] == "00"
                assert (await client.exchange(terminal.financial("sale", 50_000)))["39"] == "00"  # type: ignore[index]
                assert (await client.exchange(terminal.settlement(totals([50_000]))))["39"] == "00"  # type: ignore[index]
            finally:
                await client.close()
            [held] = (await h.api.get("/ledger/payouts?status=held"))[1]["payouts"]
            assert (held["hold_reason"], held["amount_minor"]) == ("legal_hold", 50_000)
            status, _ = await h.api.put(f"/registry/merchants/{MID}", {"payout_hold": None})
            assert status == 200
            [pending] = (await h.api.get("/ledger/payouts"))[1]["payouts"]
            assert (pending["status"], pending["value_date"]) == ("pending", "2026-11-24")
            await h.api.post("/clock", {"set": "2026-11-25T10:00:00"})
            [paid] = (await h.api.get("/ledger/payouts"))[1]["payouts"]
            assert paid["status"] == "paid"

    run_bounded(scenario())


# ------------------------------------------------------------------------------ C13 posting from the upload


def test_intl_upload_posts_the_advice_the_host_acknowledged_but_never_posted() -> None:
    host, terminal = signed_on("intl-bcd")
    sale = terminal.financial("sale", 5000)
    sale_answer = ask(host, sale)
    advice = {**terminal.financial("offline_sale", 3000), "38": "Y00002"}
    assert ask(host, advice, directives=Directives(drop_advice_posting=True))["39"] == "00"
    assert ask(host, terminal.settlement(totals([5000, 3000])))["39"] == "95"
    for request, answer in ((sale, sale_answer), (advice, {"37": "", "38": "Y00002"})):
        upload = terminal.intl_upload(request, {**answer, "37": answer.get("37") or "000000000000"})
        if not answer.get("37"):
            upload.pop("37")
        assert ask(host, upload)["39"] == "00"
    assert ask(host, terminal.settlement(totals([5000, 3000]), processing_code="960000"))["39"] == "00"
    posted = [r for r in host.ledger.authorizations(stan=advice["11"]) if r["status"] == "approved"]
    assert [(r["kind"], r["mti"], r["amount_minor"], r["reason"], r["settled"], r["batch"]) for r in posted] == [
        ("offline_sale", "0220", 3000, "posted_from_upload", 1, "000001")]
    [settlement] = host.ledger.settlements()
    assert (settlement["result"], settlement["posted_from_upload"]) == ("uploaded", 1)
    [payout] = host.ledger.payouts()
    assert payout["amount_minor"] == 8000


def test_cup_upload_posts_what_the_host_lacked_but_never_revives_a_reversed_record() -> None:
    host, terminal = signed_on("cup")
    kept = terminal.financial("sale", 1000)
    assert ask(host, kept)["39"] == "00"
    reversed_sale = terminal.financial("sale", 2000)
    assert ask(host, reversed_sale)["39"] == "00"
    assert ask(host, terminal.reversal(reversed_sale))["39"] == "00"
    lost = {**terminal.financial("offline_sale", 4000), "38": "Y00003"}
    assert ask(host, lost, directives=Directives(drop_advice_posting=True))["39"] == "00"
    answer = ask(host, terminal.settlement(totals([1000, 2000, 4000])))
    assert answer["48"][30] == "2"
    assert ask(host, terminal.cup_upload([(kept, 1000), (reversed_sale, 2000), (lost, 4000)]))["39"] == "00"
    assert ask(host, terminal.cup_upload_end(3))["39"] == "00"
    approved = {r["stan"]: r for r in host.ledger.authorizations(status="approved") if r["kind"] != "sign_on"
                and r["mti"] not in ("0500", "0320", "0400")}
    assert sorted(approved) == sorted([kept["11"], lost["11"]])
    assert approved[lost["11"]]["kind"] == "offline_sale" and approved[lost["11"]]["reason"] == "posted_from_upload"
    assert [r["status"] for r in host.ledger.authorizations(stan=reversed_sale["11"], mti="0200")] == ["reversed"]
    [settlement] = host.ledger.settlements()
    assert (settlement["result"], settlement["posted_from_upload"]) == ("uploaded", 1)
    assert settlement["exceptions"]["terminal_only"] == 2  # both are the terminal's word; one was posted


def test_reversal_and_void_change_the_status_of_the_original_row() -> None:
    host, terminal = signed_on("intl-bcd")
    first, second = terminal.financial("sale", 100), terminal.financial("sale", 200)
    ask(host, first)
    second_answer = ask(host, second)
    ask(host, terminal.reversal(first))
    ask(host, terminal.financial("void", 200, answer=second_answer))
    rows = {r["stan"]: r for r in host.ledger.authorizations(tid=TID, kind="sale")}
    assert (rows[first["11"]]["mti"], rows[first["11"]]["status"]) == ("0200", "reversed")
    assert (rows[second["11"]]["mti"], rows[second["11"]]["status"]) == ("0200", "voided")
    assert len(host.ledger.authorizations(tid=TID)) == 5  # one row per request: 0800, 2 x 0200, 0400, void
