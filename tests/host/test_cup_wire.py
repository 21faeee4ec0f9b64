"""CUP host conventions: 0810 with 32 and 37, the foreign 对账应答码, settlement and upload without
MAC, and the full-record batch upload (literal bytes of the request, then the host's reading)."""

from __future__ import annotations

from datetime import datetime

from emulator.messages import Profile, UploadItem, cup_record_upload
from host_stub.host import ACQUIRER_ID
from specs.codec import decode, encode
from specs.dialects import get_dialect
from specs.totals import Totals, cup_field_48, parse_cup_field_48, parse_cup_field_48_foreign
from tests.host.helpers import ask, make_host, make_terminal, signed_on, totals


def test_the_cup_sign_on_answer_names_the_acquirer_and_carries_an_rrn() -> None:
    host, terminal = make_host("cup"), make_terminal("cup")
    answer = ask(host, terminal.sign_on())
    assert answer["32"] == ACQUIRER_ID and len(answer["37"]) == 12 and answer["37"].isdigit()
    intl = ask(make_host("intl-bcd"), make_terminal("intl-bcd").sign_on())
    assert "32" not in intl and "37" not in intl


def test_the_foreign_reconciliation_code_comes_from_the_foreign_totals() -> None:
    host, terminal = signed_on("cup")
    request = terminal.financial("sale", 1000)
    assert ask(host, terminal.mac(request))["39"] == "00"
    answer = ask(host, terminal.settlement(totals([1000])))
    assert parse_cup_field_48(answer["48"])[1] == "1" and parse_cup_field_48_foreign(answer["48"]) == (Totals(), "1")

    host, terminal = signed_on("cup")
    assert ask(host, terminal.mac(terminal.financial("sale", 1000)))["39"] == "00"
    foreign = cup_field_48(totals([1000]), foreign=Totals(debit_count=1, debit_minor=500))
    answer = ask(host, {**terminal.settlement(totals([1000])), "48": foreign})
    # domestic totals agree, foreign ones do not: each part says so for itself
    assert parse_cup_field_48(answer["48"])[1] == "1" and parse_cup_field_48_foreign(answer["48"])[1] == "2"


def test_cup_settlement_without_a_mac_is_not_refused_when_macs_are_required() -> None:
    host, terminal = signed_on("cup", require_mac=True)
    assert ask(host, terminal.mac(terminal.financial("sale", 1000)))["39"] == "00"
    assert ask(host, terminal.financial("sale", 2000), mac=False)["39"] == "A0"  # a financial request must carry one
    assert ask(host, terminal.settlement(totals([1000])))["39"] == "00"  # 0500: the CUP spec carries no 64


def test_a_full_record_upload_literal_bytes_and_the_host_reading() -> None:
    item = UploadItem(mti="0220", processing_code="200000", stan="000003", invoice="000003", kind="refund",
                      amount_minor=300, pan="6229141777631700", expiry="3012", rrn="263260000002",
                      auth_code="", local_date="1122", local_time="093015", condition="00")
    message = cup_record_upload(Profile(family="cup"), item, stan="000009", batch="000001", original_batch="000001",
                                now=datetime(2026, 11, 22, 10, 0, 0))
    wire = (b"\x03\x20"
            b"\x70\x3C\x04\x80\x08\xC0\x80\x18"  # bits 2 3 4 | 11 12 13 14 | 22 | 25 | 37 | 41 42 | 49 | 60 61
            b"\x16\x62\x29\x14\x17\x77\x63\x17\x00" b"\x20\x00\x00" b"\x00\x00\x00\x00\x03\x00" b"\x00\x00\x09"
            b"\x09\x30\x15" b"\x11\x22" b"\x30\x12" b"\x01\x20" b"\x00" b"263260000002"
            b"10000001" b"123456789012345" b"156"
            b"\x00\x11\x25\x00\x00\x01\x20\x10"  # 60: 60.1 = 25 (refund), batch, 60.3 = 201
            b"\x00\x16\x00\x00\x01\x00\x00\x03\x11\x22")  # 61: original batch, STAN, date
    cup = get_dialect("cup")
    assert encode(message, cup) == wire
    assert decode(wire, cup) == message

    host, terminal = signed_on("cup")
    sale = terminal.financial("sale", 1000)
    sold = ask(host, terminal.mac(sale))
    refund = terminal.financial("refund", 300, original=sale, answer=sold)
    assert ask(host, terminal.mac(refund))["39"] == "00"
    answer = ask(host, {**decode(wire, cup), "61": "000001" + refund["11"] + refund["13"]})
    assert answer["39"] == "00"
    [row] = [r for r in host.ledger.uploads() if r["match"] != "host_only"]
    assert (row["kind"], row["original_stan"], row["amount_minor"], row["rrn"]) == (
        "refund", refund["11"], 300, "263260000002")


def test_a_full_record_upload_that_names_no_original_is_a_format_error() -> None:
    host, terminal = signed_on("cup")
    request = {**terminal.base("0320"), "2": "6229141777631700", "3": "200000", "4": "000000000300",
               "60": "25000001201", "61": "12"}
    assert ask(host, request)["39"] == "30"
