"""G1–G8 each shown holding and broken on small literal evidence, with the exact finding text."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from emulator.invariants import (
    Evidence,
    InvariantResult,
    TraceEvent,
    check_all,
    check_g1,
    check_g2,
    check_g3,
    check_g4,
    check_g5,
    check_g6,
    check_g7,
    check_g8,
    host_net_minor,
)

TID = "10000001"
MID = "123456789012345"


def auth(stan: str, *, status: str = "approved", kind: str = "sale", amount: int = 1234, mti: str = "0200",
         batch: str | None = None, settled: int = 0, tid: str = TID, mid: str = MID) -> dict[str, Any]:
    """One authorization-ledger row as GET /ledger/authorizations returns it."""
    return {"tid": tid, "mid": mid, "stan": stan, "batch": batch, "amount_minor": amount, "kind": kind,
            "status": status, "rrn": f"26326000{stan[-4:]}", "auth_code": "654321", "mti": mti, "settled": settled}


def jrec(stan: str, *, kind: str = "sale", amount: int = 1234, status: str = "approved",
         batch: str = "000001") -> dict[str, Any]:
    """One terminal journal row."""
    return {"stan": stan, "batch": batch, "kind": kind, "amount_minor": amount, "status": status,
            "rrn": f"26326000{stan[-4:]}", "auth_code": "654321", "invoice": "000001"}


def msg(mti: str, stan: str, **fields: str) -> dict[str, str]:
    return {"t": mti, "11": stan, "41": TID, **fields}


def sale(stan: str, amount: str = "000000001234") -> dict[str, str]:
    return msg("0200", stan, **{"3": "000000", "4": amount, "25": "00"})


def sent(message: dict[str, str]) -> TraceEvent:
    return TraceEvent(kind="sent", message=message)


def got(message: dict[str, str], *, matched: bool | None = True, mac: bool | None = True) -> TraceEvent:
    return TraceEvent(kind="received", message=message, matched=matched, mac_verified=mac)


def status(*, reversals: tuple[str, ...] = (), saf: tuple[str, ...] = ()) -> TraceEvent:
    return TraceEvent(kind="status", pending_reversals=reversals, saf_queue=saf, settlement_state="idle")


def holds(result: InvariantResult) -> None:
    assert (result.holds, result.findings) == (True, [])


# ------------------------------------------------------------------------------------------- G1


def test_g1_holds_when_every_approval_is_journalled_or_reversed() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000001"),),
                  authorizations=(auth("000001"), auth("000002", status="reversed"), auth("000003", status="declined"),
                                  auth("000004", kind="balance", amount=0),  # inquiries are never journalled
                                  auth("000002", mti="0400"),  # the reversal's own row
                                  auth("000009", tid="10000002")))  # another terminal's books
    holds(check_g1(ev))


def test_g1_orphan_approval() -> None:
    ev = Evidence(tid=TID, authorizations=(auth("000123"),))
    result = check_g1(ev)
    assert result.id == "G1" and not result.holds
    assert result.findings == ["orphan approval: TID 10000001 STAN 000123 RRN 263260000123 approved on the host, "
                               "absent from the journal, never reversed"]


def test_g1_holds_once_the_host_accepted_a_reversal() -> None:
    reversal = {**auth("000123", mti="0400", kind="reversal"), "rc": "00"}
    holds(check_g1(Evidence(tid=TID, authorizations=(auth("000123"), reversal))))


@pytest.mark.parametrize("rc", ["A0", "96"])
def test_g1_a_refused_reversal_undoes_nothing(rc: str) -> None:
    reversal = {**auth("000123", mti="0400", kind="reversal"), "rc": rc}
    ev = Evidence(tid=TID, authorizations=(auth("000123"), reversal),
                  host_journal=({"message": msg("0400", "000123", **{"3": "000000"})},))
    assert check_g1(ev).findings == ["orphan approval: TID 10000001 STAN 000123 RRN 263260000123 approved on the "
                                     "host, absent from the journal, never reversed"]


def test_g1_void_that_never_reached_the_host() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000005", status="voided"),), authorizations=(auth("000005"),))
    assert check_g1(ev).findings == ["void missing on the host: TID 10000001 STAN 000005 RRN 263260000005 voided in "
                                     "the journal, still approved on the host"]


def test_g1_batch_must_agree_when_both_sides_know_it() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000001", batch="000001"),), authorizations=(auth("000001", batch="000002"),))
    assert not check_g1(ev).holds


# ------------------------------------------------------------------------------------------- G2


def test_g2_holds_for_matching_records_and_queued_advices() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000001"), jrec("000002", kind="offline_sale", amount=2000),
                                    jrec("000003", status="voided")),
                  authorizations=(auth("000001"), auth("000003", status="voided")),
                  saf_queue=({"stan": "000002", "kind": "offline_sale"},))
    holds(check_g2(ev))


def test_g2_journal_entry_the_host_reversed() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000007"),), authorizations=(auth("000007", status="reversed"),))
    assert check_g2(ev).findings == ["orphan journal entry: TID 10000001 STAN 000007 RRN 263260000007 (sale 12.34) "
                                     "in the journal, reversed on the host"]


def test_g2_journal_entry_the_host_never_saw() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000008", kind="offline_sale", amount=500),))
    assert check_g2(ev).findings == ["orphan journal entry: TID 10000001 STAN 000008 RRN 263260000008 "
                                     "(offline_sale 5.00) in the journal, absent from the host ledger"]


def test_g2_amounts_disagree() -> None:
    ev = Evidence(tid=TID, journal=(jrec("000009", amount=1234),), authorizations=(auth("000009", amount=12340),))
    assert check_g2(ev).findings == ["journal and host disagree: TID 10000001 STAN 000009 RRN 263260000009 journal "
                                     "sale 12.34, host 123.40"]


# ------------------------------------------------------------------------------------------- G3


def test_g3_one_net_debit_per_intent() -> None:
    ev = Evidence(tid=TID, intents={"coffee": ("000001", "000002"), "shoes": ("000003", "000004")},
                  authorizations=(auth("000001", status="reversed"), auth("000002"),
                                  auth("000003", amount=4500), auth("000004", kind="refund", amount=500)))
    holds(check_g3(ev))
    assert host_net_minor(ev, "coffee") == 1234
    assert host_net_minor(ev, "shoes") == 4000


def test_g3_double_charge() -> None:
    ev = Evidence(tid=TID, intents={"coffee": ("000001", "000002")},
                  authorizations=(auth("000001", amount=2500), auth("000002", amount=2500)))
    assert check_g3(ev).findings == ["double charge: intent coffee debited 2 times on the host (TID 10000001: "
                                     "STAN 000001 RRN 263260000001 25.00, STAN 000002 RRN 263260000002 25.00)"]


# ------------------------------------------------------------------------------------------- G4

CLOSED = {"batch": "000001", "debit_count": 2, "debit_minor": 3000, "credit_count": 0, "credit_minor": 0}
HOST_TOTALS = {"debit_count": 2, "debit_minor": 3000, "credit_count": 0, "credit_minor": 0}


def settlement(batch: str, result: str, totals: dict[str, int] = HOST_TOTALS, rc: str = "00") -> dict[str, Any]:
    return {"tid": TID, "mid": MID, "batch": batch, "result": result, "rc": rc, "host_totals": totals,
            "terminal_totals": HOST_TOTALS}


def test_g4_holds_after_upload_and_close() -> None:
    ev = Evidence(tid=TID, closed_batches=(CLOSED,), counters={"batch": "000002"},
                  settlements=(settlement("000001", "unbalanced", {**HOST_TOTALS, "debit_count": 3}, rc="95"),
                               settlement("000001", "balanced")))
    holds(check_g4(ev))


def test_g4_totals_differ() -> None:
    ev = Evidence(tid=TID, closed_batches=(CLOSED,),
                  settlements=(settlement("000001", "balanced", {**HOST_TOTALS, "debit_count": 3, "debit_minor": 4000}),))
    assert check_g4(ev).findings == ["settlement totals differ: TID 10000001 batch 000001 terminal debit 2/30.00 "
                                     "credit 0/0.00, host debit 3/40.00 credit 0/0.00"]


def test_g4_closed_on_the_terminal_while_the_host_disagrees() -> None:
    ev = Evidence(tid=TID, closed_batches=(CLOSED,),
                  settlements=(settlement("000001", "unbalanced", {**HOST_TOTALS, "debit_count": 3}, rc="95"),))
    assert check_g4(ev).findings == ["batch closed without agreement: TID 10000001 batch 000001 closed on the "
                                     "terminal (debit 2/30.00 credit 0/0.00), the host's last answer was unbalanced "
                                     "(rc 95, host debit 3/30.00 credit 0/0.00)"]


def test_g4_never_settled_and_batch_numbers() -> None:
    ev = Evidence(tid=TID, closed_batches=(CLOSED, {**CLOSED, "batch": "000003"}), counters={"batch": "000003"},
                  settlements=(settlement("000001", "balanced"), settlement("000001", "balanced")))
    assert check_g4(ev).findings == [
        "batch never settled on the host: TID 10000001 batch 000003 closed on the terminal (debit 2/30.00 credit "
        "0/0.00), no settlement on the host",
        "batch number skipped on the terminal: TID 10000001 batch 000003 closed after 000001, expecting 000002",
        "batch number not advanced: TID 10000001 terminal batch is 000003 after closing 000003, expecting 000004",
        "batch closed 2 times on the host: TID 10000001 batch 000001",
    ]


def test_g4_intl_record_uploaded_again_after_acknowledgement() -> None:
    upload = msg("0320", "000010", **{"3": "000001", "60": "0200000002            "})
    trace = (sent(msg("0500", "000009", **{"3": "920000", "60": "000001"})), got(msg("0510", "000009", **{"39": "95"})),
             sent(upload), got(msg("0330", "000010", **{"39": "00"})),
             sent({**upload, "11": "000011"}), got(msg("0330", "000011", **{"39": "00"})))
    assert check_g4(Evidence(tid=TID, trace=trace)).findings == [
        "record uploaded again after the host acknowledged it: TID 10000001 batch 000001 STAN 000002"]


def test_g4_cup_upload_resent_without_acknowledgement_is_fine() -> None:
    record = "00" + "000002" + "6229141777631700".zfill(20) + "000000001000"
    upload = msg("0320", "000010", **{"60": "00000001201", "48": "01" + record})
    trace = (sent(upload), sent({**upload, "11": "000011"}), got(msg("0330", "000011", **{"39": "00"})))
    holds(check_g4(Evidence(tid=TID, family="cup", trace=trace)))
    again = (*trace, sent({**upload, "11": "000012"}))
    assert check_g4(Evidence(tid=TID, family="cup", trace=again)).findings == [
        "record uploaded again after the host acknowledged it: TID 10000001 batch 000001 STAN 000002"]


def test_g4_host_upload_set_counts_each_record_once() -> None:
    ev = Evidence(tid=TID, uploads=({"tid": TID, "batch": "000001", "stan": "000002"},) * 2)
    assert check_g4(ev).findings == ["record uploaded 2 times: TID 10000001 batch 000001 STAN 000002 in the host's "
                                     "upload set"]


# ------------------------------------------------------------------------------------------- G5


def test_g5_reversal_before_the_next_sale() -> None:
    trace = (sent(sale("000001")),  # no answer
             sent(msg("0400", "000001", **{"3": "000000"})), got(msg("0410", "000001", **{"39": "25"})),
             sent(sale("000002")), got(msg("0210", "000002", **{"39": "00"})))
    holds(check_g5(Evidence(tid=TID, trace=trace)))


def test_g5_sale_while_a_reversal_is_owed() -> None:
    trace = (sent(sale("000001")), sent(sale("000002")))
    assert check_g5(Evidence(tid=TID, trace=trace)).findings == [
        "0200 STAN 000002 sent while a reversal was owed for STAN 000001, no answer to its 0200 (TID 10000001)"]


def test_g5_reversal_answer_that_is_not_final_keeps_it_owed() -> None:
    trace = (sent(sale("000001")), sent(msg("0400", "000001", **{"3": "000000"})),
             got(msg("0410", "000001", **{"39": "25"})), sent(sale("000002")))
    ev = Evidence(tid=TID, trace=trace, final_reversal_codes=("00",))
    assert check_g5(ev).findings == ["0200 STAN 000002 sent while a reversal was owed for STAN 000001, no answer to "
                                     "its 0200 (TID 10000001)"]


def test_g5_approval_with_a_bad_mac_is_owed_a_reversal() -> None:
    trace = (sent(sale("000001")), got(msg("0210", "000001", **{"39": "00", "64": "0011223344556677"}), mac=False),
             sent(sale("000002")))
    assert check_g5(Evidence(tid=TID, trace=trace)).findings == [
        "0200 STAN 000002 sent while a reversal was owed for STAN 000001, approval with a bad MAC (TID 10000001)"]


def test_g5_settlement_with_queued_advices_and_an_owed_reversal() -> None:
    trace = (status(reversals=("000003",), saf=("000004", "000005")),
             sent(msg("0500", "000006", **{"3": "920000", "60": "000001"})))
    assert check_g5(Evidence(tid=TID, trace=trace)).findings == [
        "0500 STAN 000006 sent while a reversal was owed for STAN 000003, pending in the terminal (TID 10000001)",
        "0500 STAN 000006 sent while advices were queued: STAN 000004, STAN 000005 (TID 10000001)"]


def test_g5_advices_delivered_before_settlement() -> None:
    trace = (status(saf=("000004",)), sent(msg("0220", "000004", **{"3": "000000"})),
             got(msg("0230", "000004", **{"39": "00"})), sent(msg("0500", "000006", **{"3": "920000"})))
    holds(check_g5(Evidence(tid=TID, trace=trace)))


def test_g5_first_message_after_a_crash_must_be_the_reversal() -> None:
    trace = (sent(sale("000001")), TraceEvent(kind="crash"), TraceEvent(kind="restart"), status(),
             sent(msg("0800", "000002", **{"70": "001"})))
    assert check_g5(Evidence(tid=TID, trace=trace)).findings == [
        "first message after the restart was 0800 STAN 000002, expecting the reversal owed for STAN 000001, no "
        "answer to its 0200 (TID 10000001)"]


def test_g5_parked_reversal_no_longer_blocks() -> None:
    trace = (sent(sale("000001")), status(reversals=("000001",)),
             sent(msg("0400", "000001", **{"3": "000000"})), got(msg("0410", "000001", **{"39": "96"})),
             status(reversals=()),  # parked for manual follow-up after the allowed attempts
             sent(sale("000002")))
    holds(check_g5(Evidence(tid=TID, trace=trace)))


# ------------------------------------------------------------------------------------------- G6

SETTLED = (auth("000001", amount=6000, settled=1, batch="000001"), auth("000002", amount=4000, settled=1, batch="000001"),
           auth("000003", kind="refund", amount=1000, settled=1, batch="000001"),
           auth("000004", amount=9999, status="reversed", settled=1, batch="000001"),
           auth("000005", amount=7000))  # approved but not settled: not owed to the merchant yet


def payout(status: str, amount: int, fee: int = 0, value_date: str = "2024-06-04") -> dict[str, Any]:
    return {"mid": MID, "batch": "000001", "status": status, "amount_minor": amount, "fee_minor": fee,
            "value_date": value_date}


def test_g6_holds_paid_and_held_with_fees() -> None:
    ev = Evidence(tid=TID, authorizations=SETTLED, business_date=date(2024, 6, 5),
                  payouts=(payout("paid", 5964, fee=36), payout("held", 3000, value_date="2024-06-05")))
    holds(check_g6(ev))


def test_g6_funding_gap() -> None:
    ev = Evidence(tid=TID, authorizations=SETTLED, payouts=(payout("failed", 9000),))
    assert check_g6(ev).findings == ["funding gap: MID 123456789012345 settled net 90.00, fees 0.00, expecting 90.00 "
                                     "in payouts, found paid 0.00 + pending 0.00 + held 0.00 (failed 90.00)"]


def test_a_sale_refunded_in_full_still_stands_and_its_refunds_are_the_credits() -> None:
    """The host marks a sale whose refunds add up to its amount "refunded": it was still debited
    (the refunds credit it back), so the journal's sale is not an orphan and the merchant's net is
    sale minus refunds, not minus the refunds twice."""
    host = (auth("000002", amount=1000, status="refunded", settled=1, batch="000001"),
            auth("000003", kind="refund", amount=500, settled=1, batch="000001"),
            auth("000004", kind="refund", amount=500, settled=1, batch="000001"))
    journal = (jrec("000002", amount=1000), jrec("000003", kind="refund", amount=500),
               jrec("000004", kind="refund", amount=500))
    ev = Evidence(tid=TID, journal=journal, authorizations=host, intents={"purchase": ("000002", "000003", "000004")})
    for result in check_all(ev, ("G1", "G2", "G3")):
        holds(result)
    assert host_net_minor(ev, "purchase") == 0
    holds(check_g6(Evidence(tid=TID, authorizations=host, payouts=(payout("pending", 0),))))


def test_g6_value_dates() -> None:
    ev = Evidence(tid=TID, authorizations=SETTLED, business_date=date(2024, 10, 8), holidays=frozenset({date(2024, 10, 1)}),
                  payouts=(payout("pending", 4000, value_date="2024-10-01"), payout("paid", 5000, value_date="2024-10-09")))
    assert check_g6(ev).findings == [
        "payout on a non-business day: MID 123456789012345 batch 000001 40.00 value date 2024-10-01",
        "payout overdue: MID 123456789012345 batch 000001 40.00 pending, value date 2024-10-01 passed (business date "
        "2024-10-08)",
        "payout paid before its value date: MID 123456789012345 batch 000001 50.00 value date 2024-10-09 (business "
        "date 2024-10-08)"]


# ------------------------------------------------------------------------------------------- G7


def test_g7_not_applicable_without_an_uninterrupted_run() -> None:
    result = check_g7(Evidence(tid=TID))
    assert (result.holds, result.applicable, result.findings) == (True, False, [])


def test_g7_same_end_state_modulo_reversals() -> None:
    clean = Evidence(tid=TID, journal=(jrec("000002", amount=6600),), authorizations=(auth("000002", amount=6600),))
    crashed = Evidence(tid=TID, journal=(jrec("000003", amount=6600),), uninterrupted=clean,
                       authorizations=(auth("000002", amount=6600, status="reversed"), auth("000003", amount=6600)))
    holds(check_g7(crashed))


def test_g7_crash_left_an_extra_approval() -> None:
    clean = Evidence(tid=TID, journal=(jrec("000002", amount=6600),), authorizations=(auth("000002", amount=6600),))
    crashed = Evidence(tid=TID, journal=(jrec("000003", amount=6600),), uninterrupted=clean,
                       pending_reversals=({"stan": "000009"},),
                       authorizations=(auth("000002", amount=6600), auth("000003", amount=6600)))
    assert check_g7(crashed).findings == [
        "host approvals differ from the uninterrupted run: extra sale 66.00; missing none (TID 10000001)",
        "terminal queues differ from the uninterrupted run: extra pending reversals; missing none (TID 10000001)"]


# ------------------------------------------------------------------------------------------- G8


def test_g8_holds_for_matched_verified_answers_and_advice_repeats() -> None:
    trace = (sent(sale("000001")), got(msg("0210", "000001", **{"39": "00", "64": "0011223344556677"})),
             sent(msg("0220", "000002")), sent(msg("0221", "000002")), got(msg("0230", "000002", **{"39": "00"})),
             got(msg("0210", "000077", **{"39": "00"}), matched=False, mac=None))  # a stray, set aside
    holds(check_g8(Evidence(tid=TID, trace=trace)))


def test_g8_answer_accepted_without_matching() -> None:
    trace = (sent(sale("000123")), got({"t": "0210", "11": "000124", "39": "00"}))
    assert check_g8(Evidence(tid=TID, trace=trace)).findings == [
        "answer taken without matching: 0210 STAN 000124 TID - accepted for 0200 STAN 000123 TID 10000001"]


def test_g8_mac_not_checked() -> None:
    trace = (sent(sale("000001")), got(msg("0210", "000001", **{"39": "00", "64": "0011223344556677"}), mac=None))
    assert check_g8(Evidence(tid=TID, trace=trace)).findings == [
        "MAC not verified: 0210 STAN 000001 TID 10000001 carries field 64, the terminal did not check it"]


def test_g8_financial_request_resent_with_the_same_stan() -> None:
    trace = (sent(sale("000001")), sent(sale("000001")), got(msg("0210", "000001", **{"39": "94"})))
    assert check_g8(Evidence(tid=TID, trace=trace)).findings == [
        "financial request retransmitted: 0200 STAN 000001 sent 2 times (TID 10000001)"]


def test_g8_advice_repeat_without_the_repeat_mti() -> None:
    trace = (sent(msg("0220", "000002")), sent(msg("0220", "000002")))
    assert check_g8(Evidence(tid=TID, trace=trace)).findings == [
        "advice retransmitted without the repeat MTI: 0220 STAN 000002 sent again as 0220, expecting 0221 "
        "(TID 10000001)"]


# ------------------------------------------------------------------------------------------- all


def test_check_all_runs_every_invariant_in_order() -> None:
    results = check_all(Evidence(tid=TID))
    assert [r.id for r in results] == ["G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8"]
    assert all(r.holds for r in results)


def test_check_all_rejects_an_unknown_invariant() -> None:
    with pytest.raises(ValueError) as exc_info:
        check_all(Evidence(tid=TID), ["G9"])
    assert str(exc_info.value) == "Unknown invariant 'G9', expecting one of G1, G2, G3, G4, G5, G6, G7, G8"
