"""The probe's verdicts from hand-made exchanges: no host needed."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.probe import (
    CheckRecord,
    Exchange,
    ExpectationError,
    Settlement,
    format_table,
    judge,
    junit_xml,
    latency_record,
    load_expectations,
    result_data,
)

SALE = {"t": "0200", "11": "000002", "41": "10000001", "4": "000000000101"}


def answered(step: str, request: dict[str, str], rc: str, seconds: float = 0.01, **fields: str) -> Exchange:
    response = {"t": request["t"][:2] + "10", "11": request["11"], "41": request["41"], "39": rc, **fields}
    return Exchange(step=step, request=request, response=response, seconds=seconds, mac="good")


def duplicate(second: Exchange, *, balanced: bool = True) -> CheckRecord:
    return CheckRecord(name="duplicate", exchanges=[answered("sale", SALE, "00", **{"37": "R1", "38": "A1"}), second],
                       settlement=Settlement(batch="000001", first="balanced" if balanced else "unbalanced",
                                             closed=True))


E = load_expectations(None, source="defaults")


@pytest.mark.parametrize(("second", "status"), [
    (answered("duplicate", SALE, "94"), "pass"),
    (answered("duplicate", SALE, "00", **{"37": "R1", "38": "A1"}), "pass"),  # the same answer again
    (answered("duplicate", SALE, "00", **{"37": "R2", "38": "A2"}), "fail"),  # a new approval
    (Exchange(step="duplicate", request=SALE, outcome="timeout", detail="no answer within 0.5 s"), "fail")])
def test_a_duplicate_passes_with_94_or_the_same_answer(second: Exchange, status: str) -> None:
    assert judge(duplicate(second), E["duplicate"]).status == status


def test_a_second_debit_fails_the_duplicate_check_even_when_the_answer_was_94() -> None:
    verdict = judge(duplicate(answered("duplicate", SALE, "94"), balanced=False), E["duplicate"])
    assert verdict.status == "fail" and "second debit" in verdict.findings[0]
    only_answer = load_expectations({"duplicate": {"second_debit": True}}, source="x")["duplicate"]
    assert judge(duplicate(answered("duplicate", SALE, "94"), balanced=False), only_answer).status == "pass"


def test_a_check_that_could_not_run_is_an_error_and_a_refused_connection_too() -> None:
    assert judge(CheckRecord(name="stale_stan", error="no earlier sale"), E["stale_stan"]).status == "error"
    refused = CheckRecord(name="unknown_reversal", exchanges=[
        Exchange(step="reversal", request={"t": "0400"}, outcome="connect_failed", detail="refused")])
    assert judge(refused, E["unknown_reversal"]).status == "error"


def test_latency_per_mti_and_timeouts_against_the_expectation() -> None:
    reversal = {"t": "0400", "11": "000003", "41": "10000001"}
    record = latency_record([answered("sale", SALE, "00", seconds=s) for s in (0.1, 0.2, 0.3)]
                            + [Exchange(step="reversal", request=reversal, outcome="timeout")])
    rows = {r["mti"]: r for r in record.facts["per_mti"]}
    assert (rows["0200"]["p50"], rows["0200"]["p99"], rows["0400"]["timeouts"]) == (0.2, 0.3, 1)
    strict = load_expectations({"latency": {"p99_seconds": 0.25, "timeouts": 1}}, source="x")["latency"]
    verdict = judge(record, strict)
    assert verdict.findings == ("0200: p99 0.300 s, expecting at most 0.25 s",)


@pytest.mark.parametrize(("given", "message"), [
    ({"duplicat": {}}, "'duplicat' is not a check"),
    ({"duplicate": {"rc": ["9"]}}, "duplicate.rc holds '9', expecting 2-character response codes"),
    ({"late_reversal": {"delay_seconds": "soon"}}, "late_reversal.delay_seconds holds 'soon', expecting a number"),
    ({"settlement": {"first": "even"}}, "settlement.first holds 'even', expecting one of unbalanced, balanced"),
    (["duplicate"], "holds a list, expecting a mapping of check names")])
def test_a_bad_expectations_file_names_the_file_the_key_and_what_was_expected(given: Any, message: str) -> None:
    with pytest.raises(ExpectationError, match=message):
        load_expectations(given, source="probe.yaml")


def test_the_table_and_junit_say_what_was_left_behind() -> None:
    record = CheckRecord(name="reversal", exchanges=[answered("sale", SALE, "00"),
                                                     answered("reversal", {**SALE, "t": "0400"}, "96")],
                         left_behind=["sale STAN 000002 1.01 could not be reversed"])
    data = result_data([record], E, {})
    table = format_table(data)
    assert "LEFT BEHIND: sale STAN 000002 1.01" in table and "LEFT ON THE HOST" in table
    assert "reversal: the reversal was answered rc 96, expecting rc 00" in table
    assert 'failures="1"' in junit_xml(data) and "left behind: sale STAN" in junit_xml(data)
