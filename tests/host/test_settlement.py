"""Settlement in both families: compare, upload, close, repeat; and the payout each close creates."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from host_stub.host import Directives, Host
from host_stub.registry import Merchant
from specs.totals import Totals, parse_cup_field_48
from tests.host.helpers import MID, NOW, TID, FakeTerminal, ask, signed_on, totals


def sales(host: Host, terminal: FakeTerminal, amounts: list[int]) -> list[tuple[dict[str, str], dict[str, str]]]:
    out = []
    for amount in amounts:
        request = terminal.financial("sale", amount)
        answer = ask(host, request)
        assert answer["39"] == "00"
        out.append((request, answer))
    return out


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "intl-bcd", "cup"])
def test_balanced_settlement_closes_the_batch_and_creates_a_payout(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    sales(host, terminal, [1000, 2050, 399])
    answer = ask(host, terminal.settlement(totals([1000, 2050, 399])))
    assert answer["39"] == "00"
    if dialect_name == "cup":
        host_totals, flag = parse_cup_field_48(answer["48"])
        assert (host_totals, flag) == (totals([1000, 2050, 399]), "1")
    [settlement] = host.ledger.settlements()
    assert (settlement["status"], settlement["result"], settlement["batch"]) == ("closed", "balanced", "000001")
    assert all(r["settled"] == 1 and r["batch"] == "000001" for r in host.ledger.authorizations(kind="sale"))
    assert host.registry.terminal(TID).batch == 2  # type: ignore[union-attr]
    [payout] = host.ledger.payouts()
    assert (payout["gross_minor"], payout["fee_minor"], payout["net_minor"]) == (3449, 0, 3449)
    assert (payout["status"], payout["value_date"]) == ("pending", "2026-11-24")  # T+1


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "cup"])
def test_repeated_identical_0500_for_a_closed_batch_is_answered_as_before(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    sales(host, terminal, [100])
    settle = terminal.settlement(totals([100]))
    first = ask(host, settle)
    again = ask(host, {**settle, "11": terminal.next_stan()})
    assert (again["39"], again.get("48")) == (first["39"], first.get("48"))
    [settlement] = host.ledger.settlements()
    assert settlement["attempts"] == 2
    assert len(host.ledger.payouts()) == 1
    assert host.registry.terminal(TID).batch == 2  # type: ignore[union-attr]


def test_intl_unbalanced_95_then_upload_then_960000_closes_as_uploaded() -> None:
    host, terminal = signed_on("intl-bcd")
    done = sales(host, terminal, [1000, 2000, 3000])
    # the terminal's journal: the host's third sale never made it to the terminal; it has an extra 500 sale
    host.ledger.set_status(host.ledger.authorizations(kind="sale")[0]["id"], "declined")  # host lost the first
    theirs = totals([1000, 2000, 3000])
    assert ask(host, terminal.settlement(theirs))["39"] == "95"
    [pending] = host.ledger.settlements()
    assert (pending["status"], pending["result"]) == ("awaiting_upload", "unbalanced")
    assert pending["host_totals"] == {"debit_count": 2, "debit_minor": 5000, "credit_count": 0, "credit_minor": 0}
    for request, answer in done:
        upload = terminal.intl_upload(request, answer)
        reply = ask(host, upload)
        assert (reply["t"], reply["39"]) == ("0330", "00")
    ask(host, terminal.intl_upload(*done[2]))  # a resumed upload resends its last record: counted once
    closing = ask(host, terminal.settlement(theirs, processing_code="960000"))
    assert closing["39"] == "00"
    [settlement] = host.ledger.settlements()
    assert (settlement["status"], settlement["result"]) == ("closed", "uploaded")
    assert settlement["uploaded_totals"] == {"debit_count": 3, "debit_minor": 6000, "credit_count": 0, "credit_minor": 0}
    assert settlement["exceptions"] == {"terminal_only": 1}
    verdicts = {u["original_stan"]: (u["match"], u["repeats"]) for u in settlement["uploads"]}
    assert verdicts == {done[0][0]["11"]: ("terminal_only", 0), done[1][0]["11"]: ("matched", 0),
                        done[2][0]["11"]: ("matched", 1)}
    [payout] = host.ledger.payouts()
    assert payout["gross_minor"] == 6000  # paid as uploaded
    assert host.registry.terminal(TID).batch == 2  # type: ignore[union-attr]


def test_intl_upload_shows_host_only_and_amount_differences_and_mismatch_is_95() -> None:
    host, terminal = signed_on("intl-ascii")
    done = sales(host, terminal, [1000, 2000])
    extra_request, extra_answer = sales(host, terminal, [777])[0]  # an approval the terminal never committed (C42)
    theirs = totals([1000, 2500])
    assert ask(host, terminal.settlement(theirs))["39"] == "95"
    ask(host, terminal.intl_upload(*done[0]))
    ask(host, terminal.intl_upload({**done[1][0], "4": "000000002500"}, done[1][1]))
    assert ask(host, terminal.settlement(totals([1000, 2500, 1]), processing_code="960000"))["39"] == "95"
    [settlement] = host.ledger.settlements()
    assert (settlement["status"], settlement["result"]) == ("closed", "upload_mismatch")
    verdicts = {u["original_stan"]: u["match"] for u in settlement["uploads"]}
    assert verdicts == {done[0][0]["11"]: "matched", done[1][0]["11"]: "amount_differs",
                        extra_request["11"]: "host_only"}
    assert settlement["exceptions"] == {"amount_differs": 1, "host_only": 1}
    assert extra_answer["37"] in [u["rrn"] for u in settlement["uploads"] if u["match"] == "host_only"]


def test_intl_960000_without_a_prior_95_closes_from_the_uploads() -> None:
    host, terminal = signed_on("intl-ascii")
    [(request, answer)] = sales(host, terminal, [100])
    ask(host, terminal.intl_upload(request, answer))
    assert ask(host, terminal.settlement(totals([100]), processing_code="960000"))["39"] == "00"
    assert host.ledger.settlements()[0]["result"] == "uploaded"


@pytest.mark.parametrize("mode", ["flag", "rc95", "error"])
def test_cup_unbalanced_then_201_uploads_then_202_closes(mode: str) -> None:
    host, terminal = signed_on("cup", cup_unbalanced_mode=mode)
    done = sales(host, terminal, [100 * (i + 1) for i in range(10)])
    host.ledger.set_status(host.ledger.authorizations(kind="sale")[-1]["id"], "declined")
    answer = ask(host, terminal.settlement(totals([100 * (i + 1) for i in range(10)])))
    host_totals, flag = parse_cup_field_48(answer["48"])
    assert (answer["39"], flag) == {"flag": ("00", "2"), "rc95": ("95", "2"), "error": ("00", "3")}[mode]
    assert host_totals.debit_count == 9
    records = [(request, int(request["4"])) for request, _ in done]
    for chunk in (records[:8], records[8:]):
        reply = ask(host, terminal.cup_upload(chunk))
        assert (reply["t"], reply["39"]) == ("0330", "00")
    end = ask(host, terminal.cup_upload_end(10))
    assert end["39"] == "00"
    [settlement] = host.ledger.settlements()
    assert (settlement["status"], settlement["result"], settlement["end_count"]) == ("closed", "uploaded", 10)
    assert settlement["uploaded_totals"]["debit_count"] == 10
    assert settlement["exceptions"] == {"terminal_only": 1}
    assert host.registry.terminal(TID).batch == 2  # type: ignore[union-attr]


def test_cup_207_confirms_a_balanced_close_and_a_wrong_end_code_is_an_exception() -> None:
    host, terminal = signed_on("cup")
    sales(host, terminal, [100])
    ask(host, terminal.settlement(totals([100])))
    assert ask(host, terminal.cup_upload_end(0, balanced=True))["39"] == "00"
    assert host.ledger.settlements()[0]["end_count"] == 0
    terminal.batch = 2
    (request, _), = sales(host, terminal, [50])
    ask(host, terminal.settlement(totals([60])))
    ask(host, terminal.cup_upload([(request, 50)]))
    ask(host, terminal.cup_upload_end(3, balanced=True))  # Centerm's bug: 207 after 对账不平
    second = host.ledger.settlements()[1]
    assert second["exceptions"]["end_code"].startswith("207 after an unbalanced")
    assert second["exceptions"]["end_count"] == {"announced": 3, "received": 1}


def test_cup_refunds_stay_in_the_batch_as_the_host_has_them() -> None:
    host, terminal = signed_on("cup")
    ((sale, sale_answer),) = sales(host, terminal, [1000])
    assert ask(host, terminal.financial("refund", 300, original=sale, answer=sale_answer))["39"] == "00"
    ask(host, terminal.settlement(totals([999])))  # unbalanced on purpose
    ask(host, terminal.cup_upload([(sale, 1000)]))
    ask(host, terminal.cup_upload_end(1))
    [settlement] = host.ledger.settlements()
    assert settlement["uploaded_totals"] == {"debit_count": 1, "debit_minor": 1000, "credit_count": 1, "credit_minor": 300}
    assert host.ledger.payouts()[0]["gross_minor"] == 700


def test_totals_delta_makes_a_balanced_batch_unbalanced() -> None:
    host, terminal = signed_on("intl-ascii")
    sales(host, terminal, [100])
    answer = ask(host, terminal.settlement(totals([100])), directives=Directives(totals_delta=Totals(debit_count=-1,
                                                                                                     debit_minor=-100)))
    assert answer["39"] == "95"
    assert host.ledger.settlements()[0]["host_totals"]["debit_count"] == 0


def test_bad_totals_are_a_format_error() -> None:
    host, terminal = signed_on("intl-ascii")
    settle = {**terminal.settlement(totals()), "63": "ABC"}
    assert ask(host, settle)["39"] == "30"


def test_upload_end_without_settlement_and_other_upload_codes_are_acknowledged() -> None:
    host, terminal = signed_on("cup")
    assert ask(host, terminal.cup_upload_end(0))["39"] == "00"
    other = {**terminal.cup_upload_end(0), "60": "00000001205"}
    assert ask(host, other)["39"] == "00"
    assert [r["reason"] for r in host.ledger.authorizations(kind="upload")] == [
        "upload_end_without_settlement", "upload_205_not_interpreted"]


def test_malformed_upload_is_30() -> None:
    host, terminal = signed_on("cup")
    upload = {**terminal.cup_upload_end(0), "48": "05" + "0" * 10, "60": "00000001201"}
    assert ask(host, upload)["39"] == "30"


# ------------------------------------------------------------------ payouts


def close_one_batch(dialect_name: str = "intl-ascii", amounts: tuple[int, ...] = (10_000,), *,
                    merchant: dict[str, Any] | None = None, directives: Directives | None = None,
                    now_offset_days: int = 0, **settings: Any) -> Host:
    host, terminal = signed_on(dialect_name, **settings)
    if merchant:
        host.registry.put(host.registry.merchant(MID).updated(merchant))  # type: ignore[union-attr]
    now = NOW + timedelta(days=now_offset_days)
    for amount in amounts:
        assert ask(host, terminal.financial("sale", amount), now=now)["39"] == "00"
    assert ask(host, terminal.settlement(totals(list(amounts))), now=now, directives=directives)["39"] == "00"
    return host


def test_fees_follow_the_schedule_in_force_on_the_transaction_date() -> None:
    schedule = [{"effective_from": "2026-01-01", "rate_bps": 60},
                {"effective_from": "2026-11-23", "rate_bps": 100, "fixed_minor": 5}]
    host = close_one_batch(amounts=(10_000, 20_000), fee_schedule=schedule)
    [payout] = host.ledger.payouts()
    assert (payout["gross_minor"], payout["fee_minor"], payout["net_minor"]) == (30_000, 310, 29_690)
    before = close_one_batch(amounts=(10_000,), fee_schedule=schedule, now_offset_days=-1)
    assert before.ledger.payouts()[0]["fee_minor"] == 60


def test_merchant_fee_schedule_overrides_the_host_schedule() -> None:
    host = close_one_batch(fee_schedule=[{"effective_from": "2026-01-01", "rate_bps": 60}],
                           merchant={"fee_schedule": [{"effective_from": "2026-01-01", "fixed_minor": 7}]})
    assert host.ledger.payouts()[0]["fee_minor"] == 7


def test_value_date_skips_weekends_and_holidays_and_is_paid_when_due() -> None:
    friday = 4
    host = close_one_batch(now_offset_days=friday, holidays=["2026-11-30"], payout_days=1)
    [payout] = host.ledger.payouts()
    assert payout["business_date"] == "2026-11-27" and payout["value_date"] == "2026-12-01"
    host.refresh_payouts(NOW + timedelta(days=7))  # Monday 30 Nov is a holiday
    assert host.ledger.payouts()[0]["status"] == "pending"
    host.refresh_payouts(NOW + timedelta(days=8))
    assert host.ledger.payouts(status="paid")[0]["paid_at"].startswith("2026-12-01")


def test_merchant_payout_days_and_fault_delay() -> None:
    host = close_one_batch(merchant={"payout_days": 0}, directives=Directives(payout_delay_days=2))
    [payout] = host.ledger.payouts()
    assert (payout["value_date"], payout["delay_days"]) == ("2026-11-25", 2)


@pytest.mark.parametrize(("merchant", "directives", "status", "reason"), [
    ({"payout_hold": "legal_hold"}, None, "held", "legal_hold"),
    ({"status": "frozen_payout"}, None, "held", "merchant frozen_payout"),
    ({}, Directives(payout_hold="risk"), "held", "risk"),
    ({"bank_account_valid": False}, None, "failed", "bank account invalid"),
    ({}, Directives(payout_failure="account closed"), "failed", "account closed"),
])
def test_payout_holds_and_failures(merchant: dict[str, Any], directives: Directives | None, status: str,
                                   reason: str) -> None:
    host = close_one_batch(merchant=merchant, directives=directives)
    [payout] = host.ledger.payouts()
    assert payout["status"] == status
    assert (payout["hold_reason"] if status == "held" else payout["failure_reason"]) == reason
    host.refresh_payouts(NOW + timedelta(days=30))
    assert host.ledger.payouts()[0]["status"] == status  # never paid while held or failed


def test_released_hold_is_paid_on_its_value_date() -> None:
    host = close_one_batch(merchant={"payout_hold": "risk"})
    payout_id = host.ledger.payouts()[0]["id"]
    released = host.release_payout(payout_id, NOW + timedelta(days=3))
    assert (released["status"], released["released_at"][:10]) == ("paid", "2026-11-26")
    with pytest.raises(ValueError, match="is paid, expecting held"):
        host.release_payout(payout_id, NOW)
    with pytest.raises(KeyError):
        host.release_payout(999, NOW)


def test_frozen_merchant_can_still_settle_its_open_batch() -> None:
    host, terminal = signed_on("cup")
    sales(host, terminal, [500])
    host.registry.put(Merchant(mid=MID, status="frozen"))
    assert ask(host, terminal.financial("sale", 1))["39"] == "03"
    assert ask(host, terminal.settlement(totals([500])))["39"] == "00"
    [payout] = host.ledger.payouts()
    assert (payout["status"], payout["hold_reason"]) == ("held", "merchant frozen")


def test_funding_invariant_per_merchant() -> None:
    """G6: payouts + holds + pending == settled net - fees."""
    host = close_one_batch(amounts=(1000, 2000), fee_schedule=[{"effective_from": "2026-01-01", "rate_bps": 100}])
    settled = sum(r["amount_minor"] for r in host.ledger.authorizations(kind="sale", settled=1, status="approved"))
    payouts = host.ledger.payouts(mid=MID)
    assert sum(p["net_minor"] + p["fee_minor"] for p in payouts) == settled
    assert date.fromisoformat(payouts[0]["value_date"]) > date.fromisoformat(payouts[0]["business_date"])


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "cup"])
def test_settlement_restarted_after_a_lost_closing_answer_is_never_closed_twice(dialect_name: str) -> None:
    """C23: the 960000 (INTL) or 202 (CUP) answer is lost; the terminal runs the whole settlement again."""
    host, terminal = signed_on(dialect_name)
    done = sales(host, terminal, [100, 200])
    theirs = totals([100, 250])  # unbalanced: the terminal has 250 for the second sale
    cup = dialect_name == "cup"

    def upload_all() -> None:
        for request, response in done:
            amount = 250 if request is done[1][0] else int(request["4"])
            upload = (terminal.cup_upload([(request, amount)]) if cup
                      else terminal.intl_upload({**request, "4": f"{amount:012d}"}, response))
            assert ask(host, upload)["39"] == "00"

    first = ask(host, terminal.settlement(theirs))
    assert first["39"] == ("00" if cup else "95")
    upload_all()
    end = terminal.cup_upload_end(2) if cup else terminal.settlement(theirs, processing_code="960000")
    assert ask(host, end)["39"] == "00"
    again = ask(host, {**terminal.settlement(theirs), "11": terminal.next_stan()})  # the restart
    if cup:  # the identical 0500 is answered as before (对账不平): the terminal uploads again, harmlessly
        assert (again["39"], again["48"]) == (first["39"], first["48"])
        upload_all()
        assert ask(host, terminal.cup_upload_end(2))["39"] == "00"
    else:  # INTL: the batch was closed by the 960000, so the host says it is settled
        assert again["39"] == "00"
    [settlement] = host.ledger.settlements()
    assert (settlement["status"], settlement["attempts"]) == ("closed", 2)
    assert all(u["repeats"] == (1 if cup else 0) for u in settlement["uploads"])
    assert [p["gross_minor"] for p in host.ledger.payouts()] == [350]
    assert host.registry.terminal(TID).batch == 2  # type: ignore[union-attr]


def test_intl_upload_resent_after_close_stays_with_the_closed_batch() -> None:
    host, terminal = signed_on("intl-ascii")
    ((request, answer),) = sales(host, terminal, [100])
    ask(host, terminal.settlement(totals([999])))
    ask(host, terminal.intl_upload(request, answer))
    ask(host, terminal.settlement(totals([100]), processing_code="960000"))
    assert ask(host, terminal.intl_upload(request, answer))["39"] == "00"  # resent after the close
    assert [(u["batch"], u["repeats"]) for u in host.ledger.uploads()] == [("000001", 1)]
    terminal.batch = 2
    ((later, later_answer),) = sales(host, terminal, [50])
    ask(host, terminal.intl_upload(later, later_answer))  # an upload before any 0500 of batch 2
    assert [u["batch"] for u in host.ledger.uploads()] == ["000001", "000002"]
