"""The flows of the pure core, against a scripted host: order of actions, durable books, wire shape."""

from __future__ import annotations

import dataclasses

import pytest

from emulator.settings import TerminalSettings
from emulator.terminal import (
    Adjust,
    Balance,
    Completion,
    CompletionVoid,
    Echo,
    OfflineSale,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Reference,
    Refund,
    Reverse,
    Sale,
    Settle,
    SettlementStage,
    SignOff,
    SignOn,
    Void,
)
from specs.crypto import DEFAULT_TEST_TMK, build_key_block
from specs.masking import mask_pan
from specs.totals import cup_field_48, parse_cup_upload_field_48, parse_intl_field_63
from tests.emulator.helpers import (
    CLOSE,
    MAK,
    NO_ANSWER,
    NOW,
    PIK,
    UNREADABLE,
    Reply,
    Rig,
    Run,
    card_for,
    declined,
    when,
)

FAMILIES = ["intl", "cup"]
FAST = dict(backoff_initial_seconds=0.0, backoff_max_seconds=0.0)


def settings(**changes: object) -> TerminalSettings:
    return TerminalSettings(**{**FAST, **changes})  # type: ignore[arg-type]


def sale(rig: Rig, amount: int = 1000, pin: str | None = None) -> Run:
    return rig.run(Sale(now=NOW, amount_minor=amount, card=card_for(rig.family), pin=pin))


# --------------------------------------------------------------------------- sign-on, keys, MAC


@pytest.mark.parametrize("family", FAMILIES)
def test_sign_on_loads_checked_keys_and_macs_every_financial_request(family: str) -> None:
    rig = Rig(family)
    run = rig.run(SignOn(now=NOW))
    assert run.result.outcome is Outcome.APPROVED and run.result.details["keys_loaded"] is True
    assert run.sent[0]["t"] == "0800" and (run.sent[0]["60"][8:] == "003" if family == "cup" else
                                           run.sent[0]["70"] == "001")
    assert rig.books.signed_on and rig.books.key_block == rig.host.key_block
    assert rig.books.clock_offset_seconds == (10 * 3600 + 15 * 60) - (9 * 3600 + 30 * 60 + 15)
    sale_run = sale(rig)
    [send] = sale_run.sends()
    assert send.mac_key == MAK
    assert send.mac_algorithm == ("cup-ecb" if family == "cup" else "x9.19")


def test_sign_on_with_a_key_failing_its_check_value_stays_signed_off() -> None:
    rig = Rig("cup")
    block = bytearray(build_key_block(DEFAULT_TEST_TMK, [PIK, MAK]))
    block[-1] ^= 0xFF  # the MAK's check value no longer matches
    rig.host.key_block = block.hex().upper()
    run = rig.run(SignOn(now=NOW))
    assert run.result.outcome is Outcome.DECLINED
    assert run.result.text.startswith("key check failed, still signed off: MAK check value ")
    assert not rig.books.signed_on and rig.books.key_block == "" and rig.books.signon_required
    rig.host.key_block = build_key_block(DEFAULT_TEST_TMK, [PIK, MAK]).hex().upper()
    run = sale(rig)  # the host told us nothing new, but our keys are bad: sign on first
    assert run.mtis() == ["0800", "0200"] and run.result.details["signed_on_again"] is True


def test_cup_sign_on_adopts_the_host_batch_and_key_mode_004() -> None:
    rig = Rig("cup", settings=settings(key_mode="004"))
    tdk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    rig.host.key_block = build_key_block(DEFAULT_TEST_TMK, [PIK, MAK, tdk]).hex().upper()
    rig.host.rules.append(when("0800", lambda r: {**rig.host.approve(r), "60": "00" + "000042" + "004"}))
    run = rig.run(SignOn(now=NOW))
    assert run.sent[0]["60"] == "00000001004" and run.result.outcome is Outcome.APPROVED
    assert rig.books.batch == 42 and sale(rig).sent[-1]["60"] == "2200004200050"  # 60.1 60.2 60.3 + 60.4 read capability 5, 60.5 IC condition 0


@pytest.mark.parametrize("family", FAMILIES)
def test_sign_off_and_echo(family: str) -> None:
    rig = Rig(family)
    rig.run(SignOn(now=NOW))
    echo = rig.run(Echo(now=NOW))
    assert echo.result.outcome is Outcome.APPROVED
    assert echo.sent[0]["t"] == ("0820" if family == "cup" else "0800") and "64" not in echo.sent[0]
    off = rig.run(SignOff(now=NOW))
    assert off.result.outcome is Outcome.APPROVED and not rig.books.signed_on and not rig.terminal.has_keys
    assert (off.sent[0]["60"][8:] == "002") if family == "cup" else (off.sent[0]["70"] == "002")


def test_approval_with_a_bad_mac_is_never_committed_and_is_reversed_with_a0() -> None:
    rig = Rig("cup")
    rig.run(SignOn(now=NOW))
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), mac_valid=False), times=1))
    run = sale(rig)
    assert run.result.outcome is Outcome.MAC_FAILED and rig.books.records == []
    assert [(r.stan, r.reason) for r in rig.books.reversals] == [(run.sent[0]["11"], "A0")]
    assert run.result.text == "approval with a bad MAC: not committed, to be reversed with reason A0"
    rev = rig.run(Reverse(now=NOW))
    assert rev.sent[0]["t"] == "0400" and rev.sent[0]["39"] == "A0" and rev.sent[0]["11"] == run.sent[0]["11"]
    assert rev.result.outcome is Outcome.APPROVED and rig.books.reversals == []
    assert (rev.result.mti, rev.result.response_mti, rev.result.rc) == ("0400", "0410", "00")


def test_a_reverse_command_reports_the_answer_that_made_the_reversal_final() -> None:
    rig = Rig("intl")
    rig.host.rules += [when("0200", NO_ANSWER, times=1), when("0400", declined("25"))]
    lost = sale(rig)
    rev = rig.run(Reverse(now=NOW))
    assert rev.result.outcome is Outcome.APPROVED and rig.books.reversals == []
    assert (rev.result.stan, rev.result.response_mti, rev.result.rc) == (lost.sent[0]["11"], "0410", "25")


def test_mac_verification_toggle_off_commits_the_forged_approval() -> None:
    rig = Rig("intl", settings=settings(verify_response_mac=False))
    rig.run(SignOn(now=NOW))
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), mac_valid=False)))
    assert sale(rig).result.outcome is Outcome.APPROVED and len(rig.books.records) == 1


def test_pin_block_goes_in_52_and_never_into_the_reversal() -> None:
    rig = Rig("cup")
    refused = sale(rig, pin="1234")
    assert refused.result.outcome is Outcome.REFUSED and refused.sent == []
    rig.run(SignOn(now=NOW))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    run = sale(rig, pin="1234")
    assert run.sent[0]["22"] == "011" and len(run.sent[0]["52"]) == 16 and run.sent[0]["26"] == "12"
    [reversal] = rig.books.reversals
    assert "52" not in reversal.message and reversal.message["11"] == run.sent[0]["11"]


# --------------------------------------------------------------------------- reversal-first (F4, F7)


@pytest.mark.parametrize("family", FAMILIES)
def test_pending_reversal_is_stored_before_the_request_is_written(family: str) -> None:
    rig = Rig(family)
    run = sale(rig)
    assert run.kinds()[:7] == ["Connect", "SaveCounters", "SaveReversal", "Crash a", "Send 0200", "Crash b",
                               "StartTimer"]
    assert run.kinds()[7:] == ["Crash c", "CommitApproval", "Crash d", "Print", "UpdateJournal", "Disconnect",
                               "Finish"]
    assert run.result.outcome is Outcome.APPROVED and rig.books.reversals == []
    [record] = rig.books.records
    assert (record.kind, record.amount_minor, record.printed, record.rrn) == ("sale", 1000, True, "263260000001")


def test_the_pax_order_stores_the_reversal_only_after_the_send() -> None:
    rig = Rig("intl", settings=settings(save_reversal_before_send=False))
    assert sale(rig).kinds()[:7] == ["Connect", "SaveCounters", "Crash a", "Send 0200", "Crash b", "SaveReversal",
                                     "StartTimer"]


@pytest.mark.parametrize(("failure", "reason", "text"), [
    (NO_ANSWER, "98", "no answer within 0.5 s"),
    (CLOSE, "98", "connection lost before the answer: closed by host"),
    (UNREADABLE, "06", "unreadable answer: Field 39 holds '0\\x00': field 39 pos 40 mti 0210"),
])
def test_no_answer_keeps_the_reversal_with_its_reason(failure: str, reason: str, text: str) -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", failure, times=1))
    run = sale(rig)
    assert (run.result.outcome, run.result.text, run.result.details["reversal_pending"]) == (
        Outcome.NO_ANSWER, text, True)
    assert [(r.stan, r.reason, r.kind) for r in rig.books.reversals] == [("000001", reason, "sale")]
    assert rig.books.records == [] and "Disconnect" in run.kinds()


def test_a_decline_clears_the_reversal_and_journals_nothing() -> None:
    rig = Rig("intl")
    rig.host.rules.append(when("0200", declined("51")))
    run = sale(rig)
    assert (run.result.outcome, run.result.rc, run.result.text) == (Outcome.DECLINED, "51", "not sufficient funds")
    assert rig.books.reversals == [] and rig.books.records == [] and "DeleteReversal" in run.kinds()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_reversal_goes_first_then_the_new_sale_with_a_new_stan(family: str) -> None:
    rig = Rig(family)
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    first = sale(rig)
    second = sale(rig, 2000)
    assert second.mtis() == ["0400", "0200"]
    reversal, new_sale = second.sent
    assert reversal["11"] == first.sent[0]["11"] == "000001" and new_sale["11"] == "000002"
    assert {k: v for k, v in reversal.items() if k not in ("t", "39")} == {
        k: v for k, v in first.sent[0].items() if k != "t"}
    assert ("39" in reversal) is (family == "cup") and reversal.get("39", "98") == "98"
    assert second.result.details["reversal_sent"] is True and second.result.details["reversal_cleared"] is True
    assert second.result.stan == "000002" and rig.books.reversals == []


def test_reversal_first_off_sends_the_new_sale_while_a_reversal_is_owed() -> None:
    rig = Rig("intl", settings=settings(reversal_first=False))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    sale(rig)
    assert sale(rig).mtis() == ["0200"] and len(rig.books.reversals) == 1


def test_a_host_answering_25_clears_the_reversal_when_25_is_final() -> None:
    rig = Rig("cup")
    rig.host.rules += [when("0200", NO_ANSWER, times=1), when("0400", declined("25"))]
    sale(rig)
    run = sale(rig)
    assert run.mtis() == ["0400", "0200"] and run.result.details["reversal_rc"] == "25"
    assert rig.books.reversals == [] and run.result.outcome is Outcome.APPROVED


def test_only_00_final_blocks_sales_and_then_refuses_them_without_traffic() -> None:
    rig = Rig("cup", settings=settings(final_reversal_codes=("00",), park_stuck_reversal=False))
    rig.host.rules += [when("0200", NO_ANSWER, times=1), when("0400", declined("25"))]
    sale(rig)
    blocked = sale(rig)
    assert blocked.mtis() == ["0400"] * 3 and "Backoff" in blocked.kinds()
    assert (blocked.result.outcome, blocked.result.mti, blocked.result.rc) == (Outcome.DECLINED, "0400", "25")
    assert blocked.result.text.startswith("pending reversal of STAN 000001 not cleared: host answered 25")
    [stuck] = rig.books.reversals
    assert (stuck.attempts, stuck.refusals, stuck.last_rc) == (3, 3, "25")
    refused = sale(rig)
    assert refused.sent == [] and refused.result.outcome is Outcome.REFUSED
    assert refused.result.text.startswith("reversal of STAN 000001 stuck: refused 3 times (last rc 25)")
    forced = rig.run(Reverse(now=NOW))  # the operator forces it: still 25, still owed
    assert forced.mtis() == ["0400"] * 3 and len(rig.books.reversals) == 1


def test_a_stuck_reversal_is_parked_for_manual_follow_up_and_sales_resume() -> None:
    rig = Rig("cup", settings=settings(final_reversal_codes=("00",)))
    rig.host.rules += [when("0200", NO_ANSWER, times=1), when("0400", declined("25"))]
    sale(rig)
    run = sale(rig)
    assert run.mtis() == ["0400"] * 3 + ["0200"] and run.result.outcome is Outcome.APPROVED
    assert rig.books.reversals == [] and rig.books.parked == [("reversal", "000001", "refused 3 times, last rc 25")]
    assert rig.journal.exceptions()[0]["detail"]["stan"] == "000001"


def test_retry_codes_and_no_answer_do_not_count_as_refusals() -> None:
    rig = Rig("intl", settings=settings(final_reversal_codes=("00",)))
    rig.host.rules += [when("0200", NO_ANSWER, times=1), when("0400", declined("96"), times=1),
                       when("0400", NO_ANSWER, times=2)]
    sale(rig)
    run = sale(rig)
    assert run.mtis() == ["0400"] * 3 and run.result.outcome is Outcome.NO_ANSWER
    [r] = rig.books.reversals
    assert (r.attempts, r.refusals) == (3, 0)


def test_card_removed_after_approval_is_reversed_with_96() -> None:
    rig = Rig("cup", settings=settings(card_removed_after_approval=True))
    run = sale(rig)
    assert run.result.outcome is Outcome.DECLINED and rig.books.records == []
    assert [r.reason for r in rig.books.reversals] == ["96"]


# --------------------------------------------------------------------------- commit before print (C29)


def test_printer_failure_after_commit_keeps_the_approval_and_asks_for_a_reprint() -> None:
    rig = Rig("intl")
    rig.printer_ok = False
    run = sale(rig)
    assert run.result.outcome is Outcome.APPROVED and run.result.details["printed"] is False
    assert run.result.text == "approved; printer failed: PLEASE REPRINT"
    assert [r.printed for r in rig.books.records] == [False] and rig.books.reversals == []


def test_printing_before_commit_loses_the_approval_when_the_printer_fails() -> None:
    rig = Rig("intl", settings=settings(commit_before_print=False))
    rig.printer_ok = False
    run = sale(rig)
    assert run.kinds()[7:11] == ["Crash c", "DeleteReversal", "Print", "Disconnect"]
    assert run.result.details["committed"] is False
    assert rig.books.records == [] and rig.books.reversals == []  # the host has an approval nobody will reverse


# --------------------------------------------------------------------------- host instructions


def test_header_processing_requirement_3_makes_the_next_transaction_sign_on_first() -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), requirement="3"), times=1))
    sale(rig)
    assert rig.books.signon_required
    run = sale(rig)
    assert run.mtis() == ["0800", "0200"] and not rig.books.signon_required


def test_header_processing_requirement_6_is_recorded_as_a_parameter_download_marker() -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), requirement="6"), times=1))
    sale(rig)
    assert rig.books.param_download == "6" and not rig.books.signon_required


@pytest.mark.parametrize("rc", ["77", "A0", "99"])
def test_resign_on_codes_sign_on_at_once_when_auto_sign_on_is_on(rc: str) -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", declined(rc), times=1))
    run = sale(rig)
    assert run.mtis() == ["0200", "0800"] and run.result.rc == rc
    assert run.result.text.endswith("; signed on again") and not rig.books.signon_required
    assert sale(rig).mtis() == ["0200"]


def test_without_auto_sign_on_a_77_leaves_the_terminal_as_it_was() -> None:
    rig = Rig("cup", settings=settings(auto_signon_on_77=False))
    rig.host.rules.append(when("0200", declined("77")))
    assert sale(rig).mtis() == ["0200"] and sale(rig).mtis() == ["0200"]


# --------------------------------------------------------------------------- local refusals


def test_batch_full_and_amount_cap_are_refused_without_traffic() -> None:
    rig = Rig("intl", settings=settings(max_tranlog=2, max_batch_amount_minor=2500))
    sale(rig, 1000)
    capped = sale(rig, 1600)
    assert capped.sent == [] and capped.result.outcome is Outcome.REFUSED
    assert capped.result.text == "batch amount cap reached: 10.00 + 16.00 exceeds 25.00; settle first"
    sale(rig, 1500)
    full = sale(rig, 1)
    assert full.sent == [] and full.result.text == "batch full: 2 of 2 records; settle first"
    assert rig.run(Settle(now=NOW)).result.outcome is Outcome.BALANCED
    assert sale(rig, 1).result.outcome is Outcome.APPROVED


def test_void_without_an_eligible_original_is_refused() -> None:
    rig = Rig("intl")
    run = rig.run(Void(now=NOW))
    assert run.sent == [] and run.result.text == "no eligible sale in the open batch for void"
    sale(rig)
    run = rig.run(Void(now=NOW, original=Reference(invoice="7")))
    assert run.result.text == "no eligible sale with invoice 7 in the open batch for void"


# --------------------------------------------------------------------------- references to originals (F5, F8)


@pytest.mark.parametrize("family", FAMILIES)
def test_void_refers_to_its_original_and_removes_it_from_the_totals(family: str) -> None:
    rig = Rig(family)
    sale(rig, 1000)
    sale(rig, 2000)
    run = rig.run(Void(now=NOW, original=Reference(invoice="1")))
    void_request = run.sent[0]
    original = rig.books.records[0]
    assert (void_request["t"], void_request["3"]) == (("0200", "200000") if family == "cup" else ("0200", "020000"))
    assert (void_request["37"], void_request["38"], void_request["4"]) == (original.rrn, original.auth_code,
                                                                           "000000001000")
    if family == "cup":
        assert void_request["61"] == "000001" + "000001" + "1122" and void_request["60"][:2] == "23"
    assert [r.status for r in rig.books.records] == ["voided", "approved", "approved"]
    assert rig.books.open_batch_totals().debit_minor == 2000
    again = rig.run(Void(now=NOW, original=Reference(invoice="1")))
    assert again.sent == [] and again.result.outcome is Outcome.REFUSED


@pytest.mark.parametrize("family", FAMILIES)
def test_preauth_completion_and_their_voids(family: str) -> None:
    rig = Rig(family)
    pre = rig.run(PreAuth(now=NOW, amount_minor=5000, card=card_for(family)))
    assert pre.sent[0]["t"] == "0100" and pre.sent[0]["25"] == "06" and pre.result.outcome is Outcome.APPROVED
    comp = rig.run(Completion(now=NOW, amount_minor=4500))
    request = comp.sent[0]
    assert request["t"] == ("0200" if family == "cup" else "0220") and request["38"] == rig.books.records[0].auth_code
    assert [r.status for r in rig.books.records] == ["completed", "approved"]
    assert rig.books.open_batch_totals().debit_minor == 4500
    if family == "cup":
        assert rig.books.reversals == [] and "SaveReversal" in comp.kinds()
    else:  # INTL completion is an advice: queued durably before it is sent, never reversed
        assert "SaveAdvice" in comp.kinds() and "SaveReversal" not in comp.kinds() and rig.books.advices == []
    cvoid = rig.run(CompletionVoid(now=NOW))
    assert cvoid.sent[0]["25"] == "06" and rig.books.records[1].status == "voided"
    pre2 = rig.run(PreAuth(now=NOW, amount_minor=700, card=card_for(family)))
    assert pre2.result.outcome is Outcome.APPROVED
    pvoid = rig.run(PreAuthVoid(now=NOW))
    assert pvoid.sent[0]["t"] == ("0100" if family == "cup" else "0120")
    assert rig.books.records[-2].status == "voided" and rig.books.open_batch_totals().debit_minor == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_refund_of_a_sale_from_a_closed_batch(family: str) -> None:
    rig = Rig(family)
    sale(rig, 3000)
    rig.run(Settle(now=NOW))
    closed = rig.books.history[0]
    assert closed.pan == mask_pan(card_for(family).pan)  # only the masked PAN is kept after the batch closed
    no_card = rig.run(Refund(now=NOW, amount_minor=1200))
    assert no_card.sent == [] and "present the card again" in no_card.result.text
    run = rig.run(Refund(now=NOW, amount_minor=1200, card=card_for(family)))
    request = run.sent[0]
    assert request["2"] == card_for(family).pan
    assert (request["t"], request["3"]) == (("0220", "200000") if family == "cup" else ("0200", "200000"))
    assert request["37"] == rig.books.history[0].rrn
    if family == "cup":
        assert request["61"][:12] == "000001000001"
    assert run.result.outcome is Outcome.APPROVED
    assert rig.books.open_batch_totals().credit_minor == 1200 and rig.books.records[0].batch == "000002"
    too_much = rig.run(Refund(now=NOW, amount_minor=3001, card=card_for(family)))
    assert too_much.sent == [] and too_much.result.text == "refund of 30.01 exceeds the original 30.00"


def test_cup_refund_is_an_advice_repeated_as_0221_when_unanswered() -> None:
    rig = Rig("cup")
    sale(rig, 3000)
    rig.host.rules.append(when("0220", NO_ANSWER, times=1))
    run = rig.run(Refund(now=NOW, amount_minor=500))
    assert run.result.outcome is Outcome.NO_ANSWER and run.result.details["advice_queued"] is True
    assert rig.books.reversals == [] and len(rig.books.advices) == 1
    assert [r.kind for r in rig.books.records] == ["sale"]  # journalled only when the host takes it
    nxt = sale(rig, 100)
    assert nxt.mtis() == ["0200", "0221"] and nxt.sent[1]["11"] == run.sent[0]["11"]
    assert rig.books.advices == [] and [r.kind for r in rig.books.records] == ["sale", "sale", "refund"]


# --------------------------------------------------------------------------- advices (F6)


@pytest.mark.parametrize("family", FAMILIES)
def test_offline_sale_is_journalled_and_queued_at_once_then_trickled_after_the_next_online_sale(family: str) -> None:
    rig = Rig(family)
    off = rig.run(OfflineSale(now=NOW, amount_minor=700, card=card_for(family)))
    assert off.sent == [] and off.kinds() == ["SaveCounters", "SaveAdvice", "Crash d", "Print", "UpdateJournal",
                                              "Finish"]
    assert off.result.outcome is Outcome.APPROVED and off.result.details["auth_code"] == "Y00001"
    assert len(rig.books.advices) == 1 and rig.books.open_batch_totals().debit_minor == 700
    run = sale(rig)
    assert run.mtis() == ["0200", "0220"] and run.result.details["advices_sent"] == 1
    assert run.sent[1]["38"] == "Y00001" and "37" not in run.sent[1]
    assert rig.books.advices == [] and rig.books.records[0].rrn == "263260000002"


def test_trickle_sends_one_advice_per_online_transaction_and_repeats_use_0221() -> None:
    rig = Rig("intl")
    for amount in (100, 200):
        rig.run(OfflineSale(now=NOW, amount_minor=amount, card=card_for("intl")))
    rig.host.rules.append(when("0220", NO_ANSWER, times=1))
    first = sale(rig)
    assert first.mtis() == ["0200", "0220"]
    assert [a.attempts for a in rig.books.advices] == [1, 0]
    second = sale(rig)
    assert second.mtis() == ["0200", "0221"] and second.sent[1]["11"] == first.sent[1]["11"]
    third = sale(rig)
    assert third.mtis() == ["0200", "0220"] and rig.books.advices == []


def test_trickle_toggle_off_keeps_advices_until_settlement() -> None:
    rig = Rig("intl", settings=settings(trickle_saf=False))
    rig.run(OfflineSale(now=NOW, amount_minor=100, card=card_for("intl")))
    assert sale(rig).mtis() == ["0200"]
    assert rig.run(Settle(now=NOW)).mtis() == ["0220", "0500"]


def test_advice_retry_codes_back_off_then_a_final_decline_marks_the_record_declined() -> None:
    rig = Rig("intl")
    rig.run(OfflineSale(now=NOW, amount_minor=100, card=card_for("intl")))
    rig.host.rules += [when("0220", declined("91"), times=1), when("0221", declined("05"))]
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0220", "0221", "0500"] and "Backoff" in run.kinds()
    assert rig.books.history[0].status == "declined" and run.result.details["sale_count"] == 0


def test_an_advice_never_answered_is_parked_after_its_attempts_and_settlement_goes_on() -> None:
    rig = Rig("intl", settings=settings(saf_max_attempts=3))
    rig.run(OfflineSale(now=NOW, amount_minor=100, card=card_for("intl")))
    rig.host.rules += [when("0220", NO_ANSWER), when("0221", NO_ANSWER)]
    run = rig.run(Settle(now=NOW))
    assert run.mtis()[:3] == ["0220", "0221", "0221"] and run.mtis()[3] == "0500"
    assert rig.books.parked == [("advice", "000001", "3 attempts, last: no answer within 0.5 s")]


@pytest.mark.parametrize("family", FAMILIES)
def test_tip_adjust_changes_the_sale_amount_at_once_and_is_sent_as_an_advice(family: str) -> None:
    rig = Rig(family)
    sale(rig, 1000)
    run = rig.run(Adjust(now=NOW, tip_minor=250))
    assert run.sent == [] and run.result.details["tip_minor"] == 250
    assert (rig.books.records[0].amount_minor, rig.books.records[0].tip_minor) == (1250, 250)
    advice = rig.books.advices[0].message
    assert (advice["t"], advice["4"], advice["37"]) == ("0220", "000000001250", rig.books.records[0].rrn)
    assert advice["3"] == ("000000" if family == "cup" else "020000")
    assert advice.get("60", "")[:2] == "34" if family == "cup" else advice["60"] == "000000001000"
    settle = rig.run(Settle(now=NOW))
    assert settle.mtis()[0] == "0220" and settle.result.details["sale_amount_minor"] == 1250


def test_a_declined_adjust_restores_the_original_amount() -> None:
    rig = Rig("intl")
    sale(rig, 1000)
    rig.run(Adjust(now=NOW, new_amount_minor=1100))
    rig.host.rules.append(when("0220", declined("12")))
    sale(rig, 1)
    assert rig.books.records[0].amount_minor == 1000 and rig.books.advices == []


# --------------------------------------------------------------------------- settlement (F9, F10)


def test_intl_unbalanced_settlement_uploads_every_record_then_closes_with_960000() -> None:
    rig = Rig("intl")
    for amount in (1000, 2050):
        sale(rig, amount)
    rig.run(Refund(now=NOW, amount_minor=300, original=Reference(invoice="1")))
    rig.run(Void(now=NOW, original=Reference(invoice="2")))
    rig.host.balanced = False
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0500", "0320", "0320", "0500"]
    first, up1, up2, last = run.sent
    assert (first["3"], last["3"], first["60"]) == ("920000", "960000", "000001")
    assert parse_intl_field_63(first["63"]).debit_minor == 1000 and parse_intl_field_63(first["63"]).credit_count == 1
    assert (up1["3"], up1["60"], up1["62"], up1["4"]) == ("000001", "0200000001" + " " * 12, "000001", "000000001000")
    assert (up2["3"], up2["60"][:10]) == ("200001", "0200000003")
    assert run.kinds().index("Crash e") < run.kinds().index("Send 0320") < run.kinds().index("Crash f")
    assert run.kinds().index("Crash g") < run.kinds().index("CloseBatch")
    result = run.result
    assert (result.outcome, result.rc, result.stan, result.details["uploaded"]) == (Outcome.UNBALANCED, "95",
                                                                                  first["11"], 2)
    assert result.details["batch_closed"] is True and rig.books.batch == 2 and rig.books.settlement is None


@pytest.mark.parametrize(("balanced", "end_code"), [(True, "207"), (False, "202")])
def test_cup_settlement_uploads_in_messages_of_8_and_ends_with_202_or_207(balanced: bool, end_code: str) -> None:
    rig = Rig("cup")
    for amount in range(1, 10):
        sale(rig, amount * 100)
    rig.host.balanced = balanced
    run = rig.run(Settle(now=NOW))
    if balanced:
        assert run.mtis() == ["0500", "0320"] and run.sent[1]["48"] == "0000"
    else:
        assert run.mtis() == ["0500", "0320", "0320", "0320"]
        assert [len(parse_cup_upload_field_48(m["48"])) for m in run.sent[1:3]] == [8, 1]
        assert parse_cup_upload_field_48(run.sent[1]["48"])[0].stan == "000001"
        assert run.sent[3]["48"] == "0009"
    assert run.sent[-1]["60"][8:] == end_code and run.sent[0]["60"] == "00000001201"
    assert run.result.outcome is (Outcome.BALANCED if balanced else Outcome.UNBALANCED) and rig.books.batch == 2


def test_cup_imbalance_signalled_with_39_95_is_uploaded_too() -> None:
    rig = Rig("cup")
    sale(rig)
    rig.host.rules.append(when("0500", declined("95")))
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0500", "0320", "0320"] and run.sent[-1]["60"][8:] == "202"


def test_batch_upload_toggle_off_closes_the_batch_without_telling_the_host() -> None:
    rig = Rig("intl", settings=settings(batch_upload_on_unbalanced=False))
    sale(rig)
    rig.host.balanced = False
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0500"] and run.result.text == "settlement unbalanced: batch closed without upload"
    assert rig.books.batch == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_an_interrupted_upload_blocks_sales_and_resumes_where_it_stopped(family: str) -> None:
    rig = Rig(family)
    count = 2 if family == "intl" else 9
    for amount in range(1, count + 1):
        sale(rig, amount * 100)
    rig.host.balanced = False
    rig.host.rules.append(when("0320", NO_ANSWER, times=1, field=("60", "0200000002" + " " * 12))
                          if family == "intl" else when("0320", NO_ANSWER, times=1,
                                                        field=("48", rig_second_chunk(rig))))
    run = rig.run(Settle(now=NOW))
    assert run.result.outcome is Outcome.UNBALANCED and run.result.details["batch_closed"] is False
    assert run.result.details["failed_step"]["outcome"] == "no_answer" and run.result.rc == ("95" if family ==
                                                                                             "intl" else "00")
    state = rig.books.settlement
    assert state is not None and state.stage is SettlementStage.UPLOADING
    assert state.uploaded == (1 if family == "intl" else 8)
    refused = sale(rig)
    assert refused.sent == [] and refused.result.text.startswith("settlement of batch 000001 is pending (uploading)")
    rig.restart()
    resumed = rig.run(Settle(now=NOW))
    assert resumed.mtis() == (["0320", "0500"] if family == "intl" else ["0320", "0320"])
    assert resumed.result.details["resumed"] == "uploading" and resumed.result.details["uploaded"] == count
    assert rig.books.batch == 2 and rig.books.settlement is None


def rig_second_chunk(rig: Rig) -> str:
    """Field 48 of the CUP upload message carrying the 9th record."""
    from emulator.messages import cup_card_org
    r = rig.books.records[8]
    return f"01{cup_card_org(r.pan)}{r.stan}{r.pan.zfill(20)}{r.amount_minor:012d}"


def test_settlement_with_no_answer_stays_pending_and_is_resent_whole() -> None:
    rig = Rig("intl")
    sale(rig)
    rig.host.rules.append(when("0500", NO_ANSWER, times=1))
    run = rig.run(Settle(now=NOW))
    assert run.result.outcome is Outcome.NO_ANSWER and run.result.details["settlement_pending"] is True
    assert run.kinds().index("SaveSettlement") < run.kinds().index("Send 0500")
    assert run.sent[0] and "no answer within 0.75 s" in run.result.text  # settlement waits 1.5 x
    again = rig.run(Settle(now=NOW))
    assert again.mtis() == ["0500"] and again.result.outcome is Outcome.BALANCED


def test_settlement_sends_pending_reversals_and_queued_advices_first() -> None:
    rig = Rig("intl")
    rig.run(OfflineSale(now=NOW, amount_minor=100, card=card_for("intl")))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    sale(rig)
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0400", "0220", "0500"]


def test_drain_toggle_off_sends_the_totals_with_advices_still_queued() -> None:
    rig = Rig("intl", settings=settings(drain_saf_before_settle=False, trickle_saf=False))
    rig.run(OfflineSale(now=NOW, amount_minor=100, card=card_for("intl")))
    rig.host.balanced = False
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0500", "0320", "0500"] and len(rig.books.advices) == 1


def test_a_settlement_that_cannot_connect_does_not_block_sales() -> None:
    rig = Rig("intl")
    sale(rig)
    rig.host.down = True
    run = rig.run(Settle(now=NOW))
    assert run.result.outcome is Outcome.CONNECT_FAILED and rig.books.settlement is None
    rig.host.down = False
    assert sale(rig).result.outcome is Outcome.APPROVED


def test_balance_inquiry_is_not_journalled_nor_reversed() -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", lambda r: {**rig.host.approve(r), "54": "1002156C000000012345"},
                               field=("3", "310000")))
    run = rig.run(Balance(now=NOW, card=card_for("cup")))
    assert run.sent[0]["60"][:2] == "01" and "4" not in run.sent[0] and "SaveReversal" not in run.kinds()
    assert run.result.details["balance"] == "1002156C000000012345" and rig.books.records == []


def test_settings_reject_unknown_crash_points() -> None:
    with pytest.raises(ValueError, match="Setting crash_at is 'z', expecting one of a, b, c, d, e, f, g"):
        dataclasses.replace(settings(), crash_at="z")


def test_the_core_decides_when_the_reversal_at_idle_follows() -> None:
    rig = Rig("intl")
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    run = sale(rig)
    op = Sale(now=NOW, amount_minor=1000, card=card_for("intl"))
    assert run.result.details["reversal_pending"] and rig.terminal.reverse_at_idle_after(op, run.result)
    assert not rig.terminal.reverse_at_idle_after(Reverse(now=NOW), run.result)  # it just tried
    connect_failed = dataclasses.replace(run.result, outcome=Outcome.CONNECT_FAILED)
    assert not rig.terminal.reverse_at_idle_after(op, connect_failed)  # the host is not there now
    rig.restart(settings(reverse_at_idle=False))
    assert not rig.terminal.reverse_at_idle_after(op, run.result)
    rig.restart()
    idle = rig.run(Reverse(now=NOW)).result
    folded = rig.terminal.with_idle(run.result, idle)
    assert (folded.details["reversal_sent"], folded.details["reversal_cleared"], folded.details["reversal_pending"]) == (
        True, True, False)
    assert folded.details["idle"]["outcome"] == idle.outcome.value and not rig.books.reversals


def test_cup_foreign_imbalance_is_an_imbalance_even_when_the_domestic_part_agrees() -> None:
    rig = Rig("cup")
    sale(rig)
    totals = rig.books.open_batch_totals()
    rig.host.rules.append(when("0500", lambda r: {**rig.host.approve(r),
                                                  "48": cup_field_48(totals, flag="1", foreign_flag="2")}))
    run = rig.run(Settle(now=NOW))
    assert run.mtis() == ["0500", "0320", "0320"] and run.sent[-1]["60"][8:] == "202"


def test_cup_refunds_and_offline_sales_are_uploaded_one_per_full_0320() -> None:
    rig = Rig("cup")
    sale(rig, 1000)
    rig.run(Refund(now=NOW, amount_minor=200))
    rig.run(OfflineSale(now=NOW, amount_minor=300, card=card_for("cup")))
    rig.host.balanced = False
    run = rig.run(Settle(now=NOW))
    uploads = [m for m in run.sent if m["t"] == "0320"]
    assert [(m["60"][:2], "48" in m, m.get("4")) for m in uploads] == [
        ("00", True, None), ("25", False, "000000000200"), ("30", False, "000000000300"), ("00", True, None)]
    assert len(parse_cup_upload_field_48(uploads[0]["48"])) == 1 and uploads[-1]["48"] == "0003"
