"""The host core against the wire contract: sign-on keys, MAC, PIN, sales, duplicates, reversals,
voids, refunds, pre-auth/completion, advices, limits, cutover, registry checks.  Both families."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from host_stub.host import Directives, Host
from host_stub.registry import Card, Merchant, Terminal
from host_stub.settings import HostSettings
from tests.host.helpers import MID, NOW, TID, ask, make_host, make_terminal, signed_on

DIALECTS = ["intl-ascii", "intl-bcd", "cup"]


def rows(host: Host, **filters: Any) -> list[dict[str, Any]]:
    return host.ledger.authorizations(**filters)


# ------------------------------------------------------------------ sign-on, keys, MAC, PIN


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_sign_on_issues_fresh_working_keys_under_the_tmk(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    first = (terminal.pik, terminal.mak)
    answer = ask(host, terminal.sign_on())
    terminal.take_keys(answer)  # check values verified inside
    assert (terminal.pik, terminal.mak) != first
    [state] = host.registry.terminals()
    assert (state.signon_count, state.keys_valid, state.mak) == (2, True, terminal.mak.hex().upper())  # type: ignore[union-attr]


@pytest.mark.parametrize(("layout", "block_bytes"), [("001", 24), ("003", 40), ("004", 60)])
def test_cup_sign_on_key_block_follows_60_3(layout: str, block_bytes: int) -> None:
    host, terminal = make_host("cup"), make_terminal("cup")
    answer = ask(host, terminal.sign_on(layout))
    assert len(answer["62"]) == block_bytes * 2
    terminal.take_keys(answer, layout)
    assert answer["60"] == "00000001" + layout  # 60.2 = the host's batch for this terminal


def test_intl_sign_on_always_uses_the_double_length_layout() -> None:
    host, terminal = make_host("intl-bcd"), make_terminal("intl-bcd")
    answer = ask(host, terminal.sign_on())
    assert len(answer["62"]) == 80 and answer["62"] == answer["62"].upper()


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_maced_request_gets_a_maced_answer(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name, require_mac=False)
    answer = ask(host, terminal.mac(terminal.financial("sale", 1000)))
    assert answer["39"] == "00" and terminal.mac_ok(answer)
    unmaced = ask(host, terminal.financial("sale", 1000), mac=False)  # taken as it is: require_mac is off
    assert unmaced["39"] == "00" and "64" not in unmaced


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_bad_mac_gets_a0_and_three_in_a_row_lock_until_sign_on(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    for _ in range(3):
        bad = {**terminal.mac(terminal.financial("sale", 100)), "64": "0" * 16}
        answer = ask(host, bad)
        assert answer["39"] == "A0" and "64" not in answer
    good = terminal.mac(terminal.financial("sale", 100))
    assert ask(host, good)["39"] == "A0"  # locked: sign on again
    assert [r["reason"] for r in rows(host, kind="sale")] == ["mac_bad"] * 3 + ["mac_locked"]
    assert not rows(host, kind="sale", status="approved")
    terminal.take_keys(ask(host, terminal.sign_on()))
    assert ask(host, terminal.mac(terminal.financial("sale", 100)))["39"] == "00"


@pytest.mark.parametrize("dialect_name", ["intl-bcd", "cup"])
def test_with_require_mac_a_terminal_holding_keys_must_mac_its_requests(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name, require_mac=True)
    unmaced = ask(host, terminal.financial("sale", 100), mac=False)
    assert unmaced["39"] == "A0" and "64" not in unmaced
    assert [(r["status"], r["reason"]) for r in rows(host, kind="sale")] == [("declined", "mac_missing")]
    echo = ask(host, terminal.network("echo"))  # network management carries no MAC
    assert echo["39"] == "00"
    for _ in range(3):  # a missing MAC is refused, not counted towards the lock of three bad ones
        assert ask(host, terminal.financial("sale", 100), mac=False)["39"] == "A0"
    answer = ask(host, terminal.mac(terminal.financial("sale", 100)))
    assert answer["39"] == "00" and terminal.mac_ok(answer)
    fresh, stranger = signed_on(dialect_name, require_mac=True)[0], make_terminal(dialect_name, tid="10000009")
    assert ask(fresh, stranger.financial("sale", 100))["39"] == "00"  # no keys issued to it: nothing to MAC with


def test_one_good_mac_resets_the_failure_count() -> None:
    host, terminal = signed_on("intl-ascii")
    for _ in range(2):
        assert ask(host, {**terminal.mac(terminal.financial("sale", 100)), "64": "1" * 16})["39"] == "A0"
    assert ask(host, terminal.mac(terminal.financial("sale", 100)))["39"] == "00"
    for _ in range(2):
        assert ask(host, {**terminal.mac(terminal.financial("sale", 100)), "64": "1" * 16})["39"] == "A0"
    assert ask(host, terminal.mac(terminal.financial("sale", 100)))["39"] == "00"


def test_mac_without_keys_after_sign_off_is_a0() -> None:
    host, terminal = signed_on("cup")
    assert ask(host, terminal.mac(terminal.network("sign_off")))["39"] == "00"
    assert ask(host, terminal.mac(terminal.financial("sale", 100)))["39"] == "A0"


@pytest.mark.parametrize("dialect_name", ["intl-bcd", "cup"])
def test_pin_is_checked_against_the_card_registry(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    host.registry.put(Card.from_dict({"pan": terminal.card.pan, "pin": "1234"}))
    assert ask(host, terminal.financial("sale", 100, pin="1234"))["39"] == "00"
    assert ask(host, terminal.financial("sale", 100, pin="4321"))["39"] == "55"
    garbage = terminal.financial("sale", 100, pin="1234")
    garbage["52"] = "00" * 8
    assert ask(host, garbage)["39"] == "99"


def test_pin_block_from_a_terminal_without_keys_is_99() -> None:
    host, terminal = signed_on("cup")
    message = terminal.financial("sale", 100, pin="1234")
    ask(host, terminal.network("sign_off"))
    assert ask(host, message)["39"] == "99"


# ------------------------------------------------------------------ sales and duplicates


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_sale_is_approved_with_rrn_auth_code_and_settlement_date(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    request = terminal.financial("sale", 1234)
    answer = ask(host, request)
    assert (answer["t"], answer["39"], answer["11"], answer["41"], answer["15"]) == ("0210", "00", request["11"], TID, "1123")
    assert len(answer["37"]) == 12 and len(answer["38"]) == 6
    [row] = rows(host, kind="sale")
    assert (row["status"], row["amount_minor"], row["rrn"], row["settled"], row["batch"]) == (
        "approved", 1234, answer["37"], 0, "000001")
    assert "*" in row["pan_masked"] and terminal.card.pan not in str(row)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_duplicate_financial_request_is_94_and_not_posted(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    request = terminal.financial("sale", 500)
    assert ask(host, request)["39"] == "00"
    assert ask(host, request)["39"] == "94"
    assert [(r["status"], r["reason"]) for r in rows(host, kind="sale")] == [("approved", None), ("declined", "duplicate")]


# ------------------------------------------------------------------ reversals


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_reversal_undoes_the_original_once_and_repeats_answer_00(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    host.registry.put(Card.from_dict({"pan": terminal.card.pan, "balance_minor": 10_000}))
    sale = terminal.financial("sale", 2500)
    assert ask(host, sale)["39"] == "00"
    assert host.registry.card(terminal.card.pan).balance_minor == 7_500  # type: ignore[union-attr]
    reversal = terminal.mac(terminal.reversal(sale))
    answer = ask(host, reversal)
    assert (answer["t"], answer["39"], answer["11"]) == ("0410", "00", sale["11"])
    assert terminal.mac_ok(answer)
    repeat_mti = "0401" if dialect_name != "cup" else "0400"
    assert ask(host, terminal.mac(terminal.reversal(sale, mti=repeat_mti)))["39"] == "00"
    assert host.registry.card(terminal.card.pan).balance_minor == 10_000  # type: ignore[union-attr]
    assert [r["status"] for r in rows(host, kind="sale")] == ["reversed"]
    assert [r["reason"] for r in rows(host, kind="reversal")] == ["reversed", "repeat"]
    assert host.ledger.open_batch_totals(TID).debit_count == 0


def test_cup_reversal_keeps_its_reason_code() -> None:
    host, terminal = signed_on("cup")
    sale = terminal.financial("sale", 100)
    ask(host, sale)
    ask(host, terminal.reversal(sale, reason="A0"))
    [row] = rows(host, kind="reversal")
    assert row["reversal_reason"] == "A0"


@pytest.mark.parametrize(("setting", "expected"), [(None, "25"), ("12", "12"), ("00", "00")])
def test_reversal_of_unknown_original_answers_per_setting_and_blocks_the_late_original(setting: str | None,
                                                                                      expected: str) -> None:
    host, terminal = signed_on("intl-bcd", **({"reversal_unknown_rc": setting} if setting else {}))
    sale = terminal.financial("sale", 700)  # never reached the host
    assert ask(host, terminal.reversal(sale))["39"] == expected
    assert ask(host, terminal.reversal(sale, mti="0401"))["39"] == expected
    assert [(t["tid"], t["stan"], t["local_date"]) for t in host.ledger.tombstones()] == [(TID, sale["11"], sale["13"])]
    late = ask(host, sale)
    assert late["39"] == "94" and "37" not in late
    assert [(r["status"], r["reason"]) for r in rows(host, kind="sale")] == [("declined", "reversed_before_arrival")]


def test_reversal_fault_overrides_the_setting() -> None:
    host, terminal = signed_on("cup")
    sale = terminal.financial("sale", 100)
    answer = ask(host, terminal.reversal(sale), directives=Directives(reversal_unknown_rc="00"))
    assert answer["39"] == "00"


def test_reversal_prefers_the_posted_original_over_a_declined_duplicate() -> None:
    host, terminal = signed_on("intl-ascii")
    sale = terminal.financial("sale", 100)
    ask(host, sale)
    assert ask(host, sale)["39"] == "94"
    assert ask(host, terminal.reversal(sale))["39"] == "00"
    assert [r["status"] for r in rows(host, kind="sale")] == ["reversed", "declined"]


def test_reversal_of_a_void_restores_the_sale() -> None:
    host, terminal = signed_on("cup")
    sale = terminal.financial("sale", 900)
    sale_answer = ask(host, sale)
    void = terminal.financial("void", 900, original=sale, answer=sale_answer)
    assert ask(host, void)["39"] == "00"
    assert rows(host, kind="sale")[0]["status"] == "voided"
    assert ask(host, terminal.reversal(void))["39"] == "00"
    assert rows(host, kind="sale")[0]["status"] == "approved"
    assert host.ledger.open_batch_totals(TID).debit_minor == 900


# ------------------------------------------------------------------ voids, refunds, pre-auth


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_void_needs_an_open_original_in_the_same_batch(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    sale = terminal.financial("sale", 1500)
    sale_answer = ask(host, sale)
    void = terminal.financial("void", 1500, original=sale, answer=sale_answer)
    void_answer = ask(host, void)
    assert void_answer["39"] == "00" and void_answer["37"] != sale_answer["37"]
    assert ask(host, terminal.financial("void", 1500, original=sale, answer=sale_answer))["39"] == "12"  # already voided
    unknown = terminal.financial("void", 1500, original=sale, answer={**sale_answer, "37": "999999999999"})
    assert ask(host, unknown)["39"] == "25"
    assert host.ledger.open_batch_totals(TID).debit_count == 0


def test_void_of_a_settled_sale_is_12_and_wrong_amount_is_13() -> None:
    host, terminal = signed_on("intl-ascii")
    first = terminal.financial("sale", 100)
    first_answer = ask(host, first)
    second = terminal.financial("sale", 200)
    second_answer = ask(host, second)
    assert ask(host, terminal.financial("void", 999, original=second, answer=second_answer))["39"] == "13"
    assert ask(host, terminal.settlement(host.ledger.open_batch_totals(TID)))["39"] == "00"
    assert ask(host, terminal.financial("void", 100, original=first, answer=first_answer))["39"] == "12"


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_refunds_may_be_partial_and_repeated_up_to_the_original(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    sale = terminal.financial("sale", 1000)
    sale_answer = ask(host, sale)
    ask(host, terminal.settlement(host.ledger.open_batch_totals(TID)))  # refund is for another day's sale
    terminal.batch += 1
    assert ask(host, terminal.financial("refund", 400, original=sale, answer=sale_answer))["39"] == "00"
    assert ask(host, terminal.financial("refund", 700, original=sale, answer=sale_answer))["39"] == "13"
    assert ask(host, terminal.financial("refund", 600, original=sale, answer=sale_answer))["39"] == "00"
    assert ask(host, terminal.financial("refund", 1, original=sale, answer=sale_answer))["39"] == "13"
    [original] = rows(host, kind="sale")
    assert (original["refunded_minor"], original["status"]) == (1000, "refunded")
    unknown = {**sale_answer, "37": "000000000000"}
    assert ask(host, terminal.financial("refund", 1, original=sale, answer=unknown))["39"] == "25"
    assert host.ledger.open_batch_totals(TID).credit_minor == 1000


def test_refund_draws_on_merchant_funds_when_configured() -> None:
    host, terminal = signed_on("cup")
    host.registry.put(Merchant.from_dict({"mid": MID, "available_balance_minor": 300}))
    sale = terminal.financial("sale", 1000)
    sale_answer = ask(host, sale)
    assert ask(host, terminal.financial("refund", 400, original=sale, answer=sale_answer))["39"] == "51"
    assert ask(host, terminal.financial("refund", 300, original=sale, answer=sale_answer))["39"] == "00"
    assert host.registry.merchant(MID).available_balance_minor == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_preauth_completion_and_voids(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    preauth = terminal.financial("preauth", 5000)
    preauth_answer = ask(host, preauth)
    assert preauth_answer["39"] == "00"
    too_much = terminal.financial("completion", 5001, original=preauth, answer=preauth_answer)
    assert ask(host, too_much)["39"] == "13"
    completion = terminal.financial("completion", 4200, original=preauth, answer=preauth_answer)
    completion_answer = ask(host, completion)
    assert completion_answer["39"] == "00"
    assert [r["status"] for r in rows(host, kind="preauth")] == ["completed"]
    assert host.ledger.open_batch_totals(TID).debit_minor == 4200
    assert ask(host, terminal.financial("completion", 100, original=preauth, answer=preauth_answer))["39"] == "12"
    completion_void = terminal.financial("completion_void", 4200, original=completion, answer=completion_answer)
    assert ask(host, completion_void)["39"] == "00"
    assert [r["status"] for r in rows(host, kind="preauth")] == ["approved"]
    preauth_void = terminal.financial("preauth_void", 5000, original=preauth, answer=preauth_answer)
    assert ask(host, preauth_void)["39"] == "00"
    assert [r["status"] for r in rows(host, kind="preauth")] == ["voided"]
    assert host.ledger.open_batch_totals(TID).debit_minor == 0


def test_cup_completion_reversal_reopens_the_preauth() -> None:
    host, terminal = signed_on("cup")
    preauth = terminal.financial("preauth", 5000)
    preauth_answer = ask(host, preauth)
    completion = terminal.financial("completion", 5000, original=preauth, answer=preauth_answer)
    ask(host, completion)
    assert ask(host, terminal.reversal(completion))["39"] == "00"
    assert [r["status"] for r in rows(host, kind="preauth")] == ["approved"]


# ------------------------------------------------------------------ advices


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_advice_is_posted_once_and_repeats_answer_00(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    advice = terminal.financial("offline_sale", 800)
    first = ask(host, advice)
    assert first["39"] == "00" and first["t"] == "0230"
    assert ask(host, {**advice, "t": "0221"})["39"] == "00"
    again = ask(host, advice)
    assert again["39"] == "00" and again["37"] == first["37"]
    assert [r["status"] for r in rows(host, kind="offline_sale")] == ["approved", "repeat", "repeat"]
    assert host.ledger.open_batch_totals(TID).debit_minor == 800


def test_first_transmission_lost_then_0221_is_posted() -> None:
    host, terminal = signed_on("cup")
    advice = terminal.financial("offline_sale", 800)
    assert ask(host, {**advice, "t": "0221"})["39"] == "00"
    assert [r["status"] for r in rows(host, kind="offline_sale")] == ["approved"]


def test_dropped_advice_posting_is_answered_but_not_posted() -> None:
    host, terminal = signed_on("intl-ascii")
    advice = terminal.financial("offline_sale", 800)
    assert ask(host, advice, directives=Directives(drop_advice_posting=True))["39"] == "00"
    assert [r["status"] for r in rows(host, kind="offline_sale")] == ["dropped"]
    assert ask(host, {**advice, "t": "0221"})["39"] == "00"  # the repeat posts it
    assert [r["status"] for r in rows(host, kind="offline_sale")] == ["dropped", "approved"]


def test_tip_adjust_changes_the_original_amount() -> None:
    host, terminal = signed_on("intl-ascii")
    sale = terminal.financial("sale", 1000)
    answer = ask(host, sale)
    assert ask(host, terminal.financial("adjust", 1150, answer=answer))["39"] == "00"
    assert host.ledger.open_batch_totals(TID).debit_minor == 1150


# ------------------------------------------------------------------ limits, calendar, registry


def test_daily_limits_answer_65_then_61_and_reset_at_cutover() -> None:
    host, terminal = signed_on("cup", cutover="23:00")
    host.registry.put(Merchant.from_dict({"mid": MID, "limits": {"daily_count": 2, "daily_amount_minor": 10_000}}))
    assert [ask(host, terminal.financial("sale", 1000))["39"] for _ in range(2)] == ["00", "00"]
    assert ask(host, terminal.financial("sale", 1000))["39"] == "65"
    host.registry.put(host.registry.merchant(MID).updated({"limits": {"daily_count": None}}))  # type: ignore[union-attr]
    assert ask(host, terminal.financial("sale", 8001))["39"] == "61"
    after_cutover = NOW.replace(hour=23, minute=0, second=1)
    answer = ask(host, terminal.financial("sale", 8001), now=after_cutover)
    assert (answer["39"], answer["15"]) == ("00", "1124")  # the next business day


@pytest.mark.parametrize("scope", ["terminal", "card"])
def test_daily_count_limit_per_terminal_and_card(scope: str) -> None:
    host, terminal = signed_on("intl-ascii")
    if scope == "terminal":
        host.registry.put(host.registry.terminal(TID).updated({"limits": {"daily_count": 1}}))  # type: ignore[union-attr]
    else:
        host.registry.put(Card.from_dict({"pan": terminal.card.pan, "limits": {"daily_count": 1}}))
    assert ask(host, terminal.financial("sale", 10))["39"] == "00"
    assert ask(host, terminal.financial("sale", 10))["39"] == "65"


def test_cutover_window_answers_90_but_lets_reversals_through() -> None:
    host, terminal = signed_on("intl-bcd", cutover="23:00", cutover_window_seconds=300)
    sale = terminal.financial("sale", 100)
    ask(host, sale)
    inside = NOW.replace(hour=23, minute=2)
    assert ask(host, terminal.financial("sale", 100), now=inside)["39"] == "90"
    assert ask(host, terminal.reversal(sale), now=inside)["39"] == "00"
    assert ask(host, terminal.financial("sale", 100), now=inside + timedelta(minutes=4))["39"] == "00"


@pytest.mark.parametrize(("card", "expected"), [
    ({"status": "restricted"}, "62"), ({"status": "fraud"}, "59"), ({"status": "frozen"}, "57"),
    ({"expiry": "2610"}, "54"), ({"balance_minor": 99}, "51"), ({"limits": {"per_txn_max_minor": 50}}, "13"),
])
def test_card_registry_declines(card: dict[str, Any], expected: str) -> None:
    host, terminal = signed_on("cup")
    host.registry.put(Card.from_dict({"pan": terminal.card.pan, **card}))
    assert ask(host, terminal.financial("sale", 100, expiry=card.get("expiry")))["39"] == expected
    assert not rows(host, kind="sale", status="approved")


def test_unknown_or_invalid_cards() -> None:
    host, terminal = signed_on("intl-ascii", strict_registry=False)
    assert ask(host, terminal.financial("sale", 100, pan="4111111111111112"))["39"] == "14"  # Luhn
    host.settings = HostSettings(strict_registry=True)
    host.registry.put(Merchant(mid=MID))
    assert ask(host, terminal.financial("sale", 100))["39"] == "14"  # not in the registry


def test_strict_registry_knows_only_registered_terminals() -> None:
    host = make_host("cup", strict_registry=True)
    terminal = make_terminal("cup")
    assert ask(host, terminal.sign_on())["39"] == "97"
    host.registry.put(Terminal(tid=TID, mid=MID))
    assert ask(host, terminal.sign_on())["39"] == "03"  # merchant not registered
    host.registry.put(Merchant(mid=MID))
    assert ask(host, terminal.sign_on())["39"] == "00"


@pytest.mark.parametrize(("change", "expected"), [
    (("terminal", {"status": "disabled"}), "97"), (("terminal", {"status": "frozen"}), "58"),
    (("merchant", {"status": "frozen"}), "03"), (("merchant", {"status": "disabled"}), "03"),
    (("merchant", {"region": "9999"}), "58"),
])
def test_merchant_and_terminal_status(change: tuple[str, dict[str, Any]], expected: str) -> None:
    host, terminal = signed_on("cup", allowed_regions=["", "0100"])
    what, data = change
    if what == "terminal":
        host.registry.put(host.registry.terminal(TID).updated(data))  # type: ignore[union-attr]
    else:
        host.registry.put(host.registry.merchant(MID).updated(data))  # type: ignore[union-attr]
    sale = terminal.financial("sale", 100)
    assert ask(host, sale)["39"] == expected
    assert ask(host, terminal.reversal(sale))["39"] in ("25", "00")  # reversals still clear


def test_other_merchant_on_a_terminal_is_03() -> None:
    host, terminal = signed_on("intl-ascii")
    assert ask(host, terminal.financial("sale", 100, **{"42": "999999999999999"}))["39"] == "03"


def test_cup_strict_batch_answers_77_until_the_terminal_adopts_the_host_batch() -> None:
    host, terminal = signed_on("cup", strict_batch=True)
    terminal.batch = 5
    assert ask(host, terminal.financial("sale", 100))["39"] == "77"
    terminal.take_keys(ask(host, terminal.sign_on()))  # adopts 60.2
    assert terminal.batch == 1
    assert ask(host, terminal.financial("sale", 100))["39"] == "00"


def test_require_daily_sign_on_answers_22_on_a_new_business_day() -> None:
    host, terminal = signed_on("intl-bcd", require_daily_signon=True)
    assert ask(host, terminal.financial("sale", 100))["39"] == "00"
    tomorrow = NOW + timedelta(days=1)
    assert ask(host, terminal.financial("sale", 100), now=tomorrow)["39"] == "22"
    ask(host, terminal.sign_on(), now=tomorrow)
    assert ask(host, terminal.financial("sale", 100), now=tomorrow)["39"] == "00"


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_echo_sign_off_and_balance(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    host.registry.put(Card.from_dict({"pan": terminal.card.pan, "balance_minor": 12345}))
    balance = ask(host, terminal.financial("balance"))
    assert balance["39"] == "00" and balance["54"].endswith("C000000012345")
    assert ask(host, terminal.network("echo"))["39"] == "00"
    assert ask(host, terminal.network("sign_off"))["39"] == "00"
    assert host.ledger.open_batch_totals(TID).debit_count == 0


def test_fault_directives_decline_without_posting_and_damage_the_answer() -> None:
    host, terminal = signed_on("intl-ascii")
    declined = ask(host, terminal.financial("sale", 100), directives=Directives(respond_rc="91", fault_ids=("f1",)))
    assert declined["39"] == "91" and "37" not in declined
    [row] = rows(host, kind="sale")
    assert (row["status"], row["faults"], row["reason"]) == ("declined", "f1", "fault")
    request = terminal.mac(terminal.financial("sale", 100))
    damaged = ask(host, request, directives=Directives(omit_fields=("41",), stan_offset=1, corrupt_mac=True))
    assert "41" not in damaged and damaged["11"] == f"{int(request['11']) + 1:06d}"
    assert not terminal.mac_ok({**damaged, "41": TID, "11": request["11"]})


def test_rotated_keys_make_every_maced_request_a0_until_sign_on() -> None:
    host, terminal = signed_on("cup")
    assert ask(host, terminal.mac(terminal.financial("sale", 1)), directives=Directives(rotate_keys=True))["39"] == "A0"
    assert ask(host, terminal.mac(terminal.financial("sale", 1)))["39"] == "A0"
    terminal.take_keys(ask(host, terminal.sign_on()))
    assert ask(host, terminal.mac(terminal.financial("sale", 1)))["39"] == "00"


def test_unsupported_request_is_12_and_recorded() -> None:
    host, terminal = signed_on("intl-ascii")
    answer = ask(host, {**terminal.base("0800"), "70": "999"})
    assert answer["39"] == "12"
    assert rows(host, kind="unsupported")[0]["rc"] == "12"


def test_core_is_transactional_a_failing_effect_leaves_no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    host, terminal = signed_on("intl-ascii")
    host.registry.put(Card.from_dict({"pan": terminal.card.pan, "balance_minor": 1000}))
    before = len(rows(host))

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(host.registry, "put", boom)  # the card balance update, after the row is written
    with pytest.raises(RuntimeError):
        ask(host, terminal.financial("sale", 100))
    assert len(rows(host)) == before
    # the id (and so the RRN) drawn inside the failed request is handed out again: it was never answered
    assert host.ledger.reserve_authorization_id() == max(r["id"] for r in rows(host)) + 1


def test_business_time_reaches_fields_12_13() -> None:
    host, terminal = signed_on("intl-ascii")
    answer = ask(host, terminal.network("echo"), now=datetime(2026, 12, 31, 23, 59, 58))
    assert (answer["12"], answer["13"]) == ("235958", "1231")
