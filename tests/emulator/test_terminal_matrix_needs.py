"""What the cause-and-fix matrix needs from the core (specs/scenarios/README.md §8), against a scripted
host: no financial resend (C10), operator roles and ids (C14), the sign-on the host asks for (C09,
C33), device information (C33), the verdict on every answer (G8), and closed-batch totals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from emulator.settings import TerminalSettings
from emulator.terminal import Observed, Outcome, Reference, Refund, Sale, Settle, SignOn, Void
from specs import codes
from tests.emulator.helpers import NO_ANSWER, NOW, Reply, Rig, Run, card_for, declined, when

FAMILIES = ["intl", "cup"]
FAST = dict(backoff_initial_seconds=0.0, backoff_max_seconds=0.0)
ROLES = {"001": "cashier", "002": "cashier", "099": "supervisor"}


def settings(**changes: object) -> TerminalSettings:
    return TerminalSettings(**{**FAST, **changes})  # type: ignore[arg-type]


def sale(rig: Rig, amount: int = 1000, **kw: object) -> Run:
    return rig.run(Sale(now=kw.pop("now", NOW), amount_minor=amount, card=card_for(rig.family), **kw))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- C10: never resend


@pytest.mark.parametrize("family", FAMILIES)
def test_a_financial_request_without_answer_is_never_sent_again(family: str) -> None:
    rig = Rig(family)
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    run = sale(rig)
    assert run.mtis() == ["0200"] and run.result.outcome is Outcome.NO_ANSWER
    assert [r.stan for r in rig.books.reversals] == [run.result.stan]  # reversed, never resent


@pytest.mark.parametrize("family", FAMILIES)
def test_the_flawed_terminal_resends_the_same_0200_and_drops_its_reversal_on_94(family: str) -> None:
    rig = Rig(family, settings=settings(never_resend_financial=False))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    rig.host.rules.append(when("0200", declined(codes.DUPLICATE_TRANSMISSION), times=1))
    run = sale(rig)
    first, again = run.sent
    assert first == again and first["11"] == run.result.stan  # the same message, the same STAN
    assert (run.result.outcome, run.result.rc, run.result.details["resent"]) == (Outcome.DECLINED, "94", True)
    assert rig.books.reversals == [] and rig.books.records == []  # the host's approval is now an orphan


def test_the_flawed_resend_that_is_answered_00_is_committed_once() -> None:
    rig = Rig("intl", settings=settings(never_resend_financial=False))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    run = sale(rig)
    assert run.mtis() == ["0200", "0200"] and run.result.outcome is Outcome.APPROVED
    assert len(rig.books.records) == 1 and rig.books.reversals == []


# --------------------------------------------------------------------------- C14: operators


@pytest.mark.parametrize("family", FAMILIES)
def test_every_record_names_its_operator_and_cup_requests_carry_it_in_63(family: str) -> None:
    rig = Rig(family, settings=settings(operators=ROLES))
    rig.run(SignOn(now=NOW, operator="099"))
    run = sale(rig, operator="002")
    assert run.result.details["operator"] == "002"
    assert [r.operator for r in rig.books.records] == ["002"]
    if family == "cup":
        assert rig.host.received[0]["63"] == "099" and run.sent[0]["63"] == "002"
    else:
        assert "63" not in run.sent[0]  # INTL 63 is the settlement totals field
    sale(rig)  # no operator given: the table's supervisor, the merchant's own login
    assert [r.operator for r in rig.books.records] == ["002", "099"]


@pytest.mark.parametrize("family", FAMILIES)
def test_voids_refunds_and_settlement_need_a_supervisor(family: str) -> None:
    rig = Rig(family, settings=settings(operators=ROLES))
    first = sale(rig, operator="002")
    void = rig.run(Void(now=NOW, original=Reference(invoice=first.result.details["invoice"]), operator="002"))
    assert (void.result.outcome, void.sent) == (Outcome.REFUSED, [])
    assert void.result.text == "void needs a supervisor, operator 002 is a cashier (supervisors: 099)"
    assert rig.run(Settle(now=NOW, operator="001")).result.outcome is Outcome.REFUSED
    refund = rig.run(Refund(now=NOW, amount_minor=100, original=Reference(invoice=first.result.details["invoice"]),
                            operator="002"))
    assert refund.result.outcome is Outcome.REFUSED
    unknown = sale(rig, operator="005")
    assert (unknown.result.outcome, unknown.sent) == (Outcome.REFUSED, [])
    assert unknown.result.text.startswith("operator 005 is not in the operator table (001, 002, 099)")
    ok = rig.run(Void(now=NOW, original=Reference(invoice=first.result.details["invoice"]), operator="099"))
    assert ok.result.outcome is Outcome.APPROVED and rig.books.records[-1].operator == "099"
    assert rig.run(Settle(now=NOW, operator="099")).result.outcome is Outcome.BALANCED


def test_roles_not_enforced_let_a_cashier_void() -> None:
    rig = Rig("intl", settings=settings(operators=ROLES, enforce_operator_roles=False))
    first = sale(rig, operator="002")
    void = rig.run(Void(now=NOW, original=Reference(invoice=first.result.details["invoice"]), operator="002"))
    assert void.result.outcome is Outcome.APPROVED and void.mtis() == ["0200"]
    assert [(r.kind, r.operator, r.status) for r in rig.books.records] == [("sale", "002", "voided"),
                                                                            ("void", "002", "approved")]


def test_without_an_operator_table_everyone_may_do_everything_as_001() -> None:
    rig = Rig("cup")
    first = sale(rig)
    void = rig.run(Void(now=NOW, original=Reference(invoice=first.result.details["invoice"])))
    assert void.result.outcome is Outcome.APPROVED and void.sent[0]["63"] == "001"
    assert {r.operator for r in rig.books.records} == {"001"}


# --------------------------------------------------------------------------- C09 / C33: signing on again


def test_processing_requirement_3_is_ignored_without_auto_sign_on() -> None:
    rig = Rig("cup", settings=settings(auto_signon_on_77=False))
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), requirement="3"), times=1))
    sale(rig)
    assert not rig.books.signon_required and sale(rig).mtis() == ["0200"]


@pytest.mark.parametrize("auto", [True, False])
def test_22_signs_on_at_once_and_teaches_the_terminal_to_sign_on_every_business_day(auto: bool) -> None:
    rig = Rig("cup", settings=settings(auto_signon_on_77=auto))
    rig.run(SignOn(now=NOW))
    assert rig.books.signon_date == "2026-11-22" and not rig.books.daily_signon
    rig.host.rules.append(when("0200", declined(codes.SUSPECTED_MALFUNCTION), times=1))
    run = sale(rig)
    assert rig.books.daily_signon  # learnt either way
    assert run.mtis() == (["0200", "0800"] if auto else ["0200"])
    assert sale(rig).mtis() == ["0200"]  # same day: no sign-on
    tomorrow = NOW + timedelta(days=1)
    rig.host.rules.append(when("0800", lambda r: {**rig.host.approve(r), "13": "1123"}))
    next_day = sale(rig, now=tomorrow)
    if auto:
        assert next_day.mtis() == ["0800", "0200"] and next_day.result.outcome is Outcome.APPROVED
        assert next_day.result.details["signon_reason"].startswith("first transaction of business day 2026-11-23")
        assert rig.books.signon_date == "2026-11-23" and sale(rig, now=tomorrow).mtis() == ["0200"]
    else:
        assert next_day.mtis() == ["0200"]


def test_daily_sign_on_setting_signs_on_before_the_first_sale_of_a_new_day() -> None:
    rig = Rig("intl", settings=settings(daily_signon=True))
    assert sale(rig).mtis() == ["0200"]  # never signed on: nothing to renew
    rig.run(SignOn(now=NOW))
    assert sale(rig).mtis() == ["0200"]
    later = NOW + timedelta(days=2)
    assert sale(rig, now=later).mtis() == ["0800", "0200"]
    assert rig.run(Settle(now=later + timedelta(days=1))).mtis()[0] == "0800"


def test_a_declined_sign_on_is_tried_again_before_the_next_sale() -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0800", lambda r: Reply(declined(codes.FORMAT_ERROR)(r), requirement="1"), times=2))
    rig.host.rules.append(when("0800", lambda r: Reply(rig.host.approve(r), requirement="0")))  # downloaded
    signon = rig.run(SignOn(now=NOW))
    assert (signon.result.outcome, signon.result.rc) == (Outcome.DECLINED, "30")
    assert signon.result.text == "format error; the host asks for a parameter download (处理要求 1)"
    assert rig.books.signon_required and rig.books.param_download == "1"
    refused = sale(rig)
    assert refused.mtis() == ["0800"] and (refused.result.outcome, refused.result.rc) == (Outcome.DECLINED, "30")
    assert refused.result.text.startswith("sign-on required by the host failed: format error")
    recovered = sale(rig)
    assert recovered.mtis() == ["0800", "0200"] and recovered.result.outcome is Outcome.APPROVED
    assert not rig.books.signon_required and rig.books.param_download == ""


def test_without_auto_sign_on_a_declined_sign_on_leaves_the_sales_to_the_host() -> None:
    rig = Rig("cup", settings=settings(auto_signon_on_77=False))
    rig.host.rules.append(when("0800", declined(codes.FORMAT_ERROR), times=1))
    rig.run(SignOn(now=NOW))
    assert not rig.books.signon_required and sale(rig).mtis() == ["0200"]


@pytest.mark.parametrize("send", [True, False])
def test_cup_sign_on_carries_device_information_in_62(send: bool) -> None:
    rig = Rig("cup", settings=settings(send_device_info=send, software_version="310002"))
    [request] = rig.run(SignOn(now=NOW)).sent
    if send:
        assert bytes.fromhex(request["62"]).decode("ascii") == "010810000001020APOSHARNESS0306310002"
    else:
        assert "62" not in request
    intl = Rig("intl", settings=settings(send_device_info=True))
    assert "62" not in intl.run(SignOn(now=NOW)).sent[0]  # a CUP convention only


def test_a_30_asking_for_a_software_download_says_so() -> None:
    rig = Rig("cup")
    rig.host.rules.append(when("0200", lambda r: Reply(declined(codes.FORMAT_ERROR)(r), requirement="6")))
    run = sale(rig)
    assert (run.result.outcome, run.result.rc) == (Outcome.DECLINED, "30") and run.mtis() == ["0200"]
    assert run.result.text == "format error; the host asks for a software (TMS) download (处理要求 6)"
    assert rig.books.reversals == []


# --------------------------------------------------------------------------- G8: the verdict on every answer


@pytest.mark.parametrize(("mac_valid", "verify", "expected"), [(True, True, True), (False, True, False),
                                                                (False, False, None)])
def test_the_verdict_says_whether_the_answer_matched_and_its_mac_was_checked(mac_valid: bool, verify: bool,
                                                                             expected: bool | None) -> None:
    rig = Rig("intl", settings=settings(verify_response_mac=verify))
    signon = rig.run(SignOn(now=NOW))
    assert [(o.matched, o.mac_verified) for o in signon.observed()] == [(True, None)]  # the 0810 carries no MAC
    # A stray answer first (another STAN), then the answer.
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve({**r, "11": "999999"}), mac_valid=True),
                               times=1))
    rig.host.rules.append(when("0200", lambda r: Reply(rig.host.approve(r), mac_valid=mac_valid)))
    run = sale(rig)
    verdicts = [(o.message["11"], o.matched, o.mac_verified, o.why) for o in run.observed()]
    assert verdicts[0] == ("999999", False, None, f"STAN '999999', expecting {run.result.stan}")
    assert verdicts[1] == (run.result.stan, True, expected, "")
    assert all(isinstance(o, Observed) for o in run.observed())


# --------------------------------------------------------------------------- closed batches


@pytest.mark.parametrize("family", FAMILIES)
def test_a_closed_batch_keeps_its_totals_and_result(family: str) -> None:
    rig = Rig(family)
    sale(rig, 1000)
    sale(rig, 2500)
    rig.run(Settle(now=NOW))
    rig.host.balanced = False
    sale(rig, 700)
    rig.run(Settle(now=NOW))
    assert [b.as_dict() for b in rig.books.closed_batches] == [
        {"batch": "000001", "debit_count": 2, "debit_minor": 3500, "credit_count": 0, "credit_minor": 0,
         "result": "balanced", "uploaded": 0},
        {"batch": "000002", "debit_count": 1, "debit_minor": 700, "credit_count": 0, "credit_minor": 0,
         "result": "unbalanced", "uploaded": 1}]


# --------------------------------------------------------------------------- C03: a reversal refused for old keys


@pytest.mark.parametrize("rc", ["A0", "99"])
def test_a_reversal_refused_for_old_keys_signs_on_at_once_and_goes_again_under_the_new_keys(rc: str) -> None:
    rig = Rig("cup")
    rig.run(SignOn(now=NOW))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    sale(rig)  # a reversal is owed
    rig.host.rules.append(when("0400", declined(rc), times=1))
    run = sale(rig)
    assert run.mtis() == ["0400", "0800", "0400", "0200"]
    assert run.result.outcome is Outcome.APPROVED and rig.books.reversals == []
    assert not rig.books.signon_required


def test_without_auto_sign_on_a_reversal_refused_for_old_keys_is_repeated_under_them() -> None:
    rig = Rig("cup", settings=settings(auto_signon_on_77=False, reversal_max_attempts=2, park_stuck_reversal=False))
    rig.host.rules.append(when("0200", NO_ANSWER, times=1))
    sale(rig)
    rig.host.rules.append(when("0400", declined("A0")))
    run = sale(rig)
    assert run.mtis() == ["0400", "0400"] and run.result.outcome is Outcome.DECLINED
    assert run.result.text.endswith("host answered A0 (MAC verification failed (private)), not final")
    assert len(rig.books.reversals) == 1 and not rig.books.signon_required
