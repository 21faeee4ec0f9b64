"""The fault engine, pure: one test per action (its effect on the plan and on the steps), selection,
determinism, and configuration errors."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest

from host_stub.faults import (
    ACTIONS,
    Close,
    Fault,
    FaultEngine,
    Plan,
    Sleep,
    When,
    Window,
    Write,
    action_from_dict,
    action_schemas,
    load_faults,
    refuses_connects,
    steps,
)
from host_stub.host import Directives
from host_stub.validation import ConfigError
from specs.framing import FrameReader, Framing, FramingError
from specs.totals import Totals

NOON = datetime(2026, 11, 23, 12, 0)
SALE = {"t": "0200", "2": "6229141777631700", "3": "000000", "4": "000000001000", "11": "000001",
        "41": "10000001", "42": "123456789012345", "60": "22000001000"}
ANSWER = b"\x00\x0aABCDEFGHIJ"
FRAMING = Framing()


def plan_of(action: dict[str, Any]) -> Plan:
    engine = FaultEngine()
    engine.add(Fault.from_dict({"action": action}))
    return engine.plan_for(SALE, kind="sale", now=NOON)


def steps_of(action: dict[str, Any], **kwargs: Any) -> list[Any]:
    return steps(plan_of(action), ANSWER, FRAMING, **kwargs)


def test_every_primitive_of_domain_section_9_has_an_action() -> None:
    assert set(ACTIONS) == {
        "drop_response", "close_before_processing", "close_after_processing", "delay_response", "interim_09",
        "partial_write", "garbled_frame", "bad_length_prefix", "duplicate_response", "respond_rc", "omit_fields",
        "stan_offset", "corrupt_mac", "rotate_keys", "header_processing_requirement", "totals_delta",
        "drop_advice_posting", "upload_interrupt", "maintenance_window", "reversal_rc_for_unknown_original",
        "payout_delay", "payout_hold", "payout_failure", "refuse_connect"}


def test_no_fault_means_answer_once() -> None:
    assert FaultEngine().plan_for(SALE, kind="sale", now=NOON) == Plan()
    assert steps(Plan(), ANSWER, FRAMING) == [Write(data=ANSWER)]


# ------------------------------------------------------------------ one test per action


def test_drop_response_posts_and_sends_nothing() -> None:
    plan = plan_of({"type": "drop_response"})
    assert (plan.process, plan.send) == (True, False)
    assert steps(plan, ANSWER, FRAMING) == []


def test_close_before_processing_posts_nothing() -> None:
    plan = plan_of({"type": "close_before_processing"})
    assert plan.process is False
    assert steps(plan, ANSWER, FRAMING) == [Close()]


def test_close_after_processing_posts_then_closes() -> None:
    assert steps_of({"type": "close_after_processing"}) == [Close()]
    assert plan_of({"type": "close_after_processing"}).process is True


def test_delay_response_sleeps_then_writes() -> None:
    assert steps_of({"type": "delay_response", "seconds": 1.5}) == [Sleep(seconds=1.5), Write(data=ANSWER)]


def test_delays_add_up() -> None:
    engine = FaultEngine()
    for seconds in (0.25, 0.5):
        engine.add(Fault.from_dict({"action": {"type": "delay_response", "seconds": seconds}}))
    assert engine.plan_for(SALE, kind="sale", now=NOON).delay_seconds == 0.75


def test_interim_09_writes_interim_answers_first() -> None:
    assert steps_of({"type": "interim_09", "count": 2, "interval_seconds": 0.1}, interim=b"I") == [
        Sleep(seconds=0.1), Write(data=b"I"), Sleep(seconds=0.1), Write(data=b"I"), Write(data=ANSWER)]


def test_partial_write_cuts_the_frame_and_closes() -> None:
    assert steps_of({"type": "partial_write", "bytes": 3}) == [Write(data=ANSWER[:3]), Close()]
    assert steps_of({"type": "partial_write"}) == [Write(data=ANSWER[:6]), Close()]
    assert steps_of({"type": "partial_write", "bytes": 100}) == [Write(data=ANSWER[:-1]), Close()]  # never whole


def test_garbled_frame_keeps_framing_and_inverts_the_message() -> None:
    [write] = steps_of({"type": "garbled_frame"})
    assert write.data[:2] == ANSWER[:2] and write.data[2:] == bytes(b ^ 0xFF for b in ANSWER[2:])
    tpdu = Framing(tpdu=True, cup_header=True)
    frame = b"\x00\x0d" + b"\x60\x00\x00\x01\x12" + bytes(6) + b"\x02\x10"
    [write] = steps(plan_of({"type": "garbled_frame"}), frame, tpdu)
    assert write.data[:13] == frame[:13] and write.data[13:] == b"\xfd\xef"


def test_bad_length_prefix_is_rejected_by_the_reader() -> None:
    [write] = steps_of({"type": "bad_length_prefix"})
    assert write.data[:2] == b"\xff\xff"
    with pytest.raises(FramingError, match="exceeds the maximum"):
        FrameReader(FRAMING).feed(write.data)
    [write] = steps_of({"type": "bad_length_prefix", "declared": 3})
    assert write.data[:2] == b"\x00\x03"
    [write] = steps(plan_of({"type": "bad_length_prefix"}), b"0004ABCD", Framing(length_prefix="ascii4"))
    assert write.data == b"9999ABCD"


def test_duplicate_response_writes_copies() -> None:
    assert steps_of({"type": "duplicate_response", "copies": 2}) == [Write(data=ANSWER)] * 3


def test_respond_rc_is_a_core_directive() -> None:
    assert plan_of({"type": "respond_rc", "rc": "51"}).directives.respond_rc == "51"
    assert plan_of({"type": "respond_rc"}).directives.respond_rc == "05"


def test_omit_fields_and_stan_offset() -> None:
    assert plan_of({"type": "omit_fields", "fields": ["41", "11"]}).directives.omit_fields == ("41", "11")
    assert plan_of({"type": "omit_fields", "fields": 41}).directives.omit_fields == ("41",)
    assert plan_of({"type": "stan_offset", "offset": -2}).directives.stan_offset == -2


def test_corrupt_mac_and_rotate_keys() -> None:
    assert plan_of({"type": "corrupt_mac"}).directives.corrupt_mac is True
    assert plan_of({"type": "rotate_keys"}).directives.rotate_keys is True


def test_header_processing_requirement() -> None:
    assert plan_of({"type": "header_processing_requirement", "value": "6"}).processing_requirement == "6"
    with pytest.raises(ConfigError, match="value"):
        action_from_dict({"type": "header_processing_requirement", "value": "9"})


def test_totals_delta_adds_up() -> None:
    engine = FaultEngine()
    engine.add(Fault.from_dict({"action": {"type": "totals_delta", "debit_count": 1, "debit_minor": 100}}))
    engine.add(Fault.from_dict({"action": {"type": "totals_delta", "credit_minor": -5}}))
    assert engine.plan_for(SALE, kind="sale", now=NOON).directives.totals_delta == Totals(
        debit_count=1, debit_minor=100, credit_minor=-5)


def test_drop_advice_posting() -> None:
    assert plan_of({"type": "drop_advice_posting"}).directives.drop_advice_posting is True


def test_upload_interrupt_fires_once_at_the_record_after_k() -> None:
    engine = FaultEngine()
    fault = engine.add(Fault.from_dict({"action": {"type": "upload_interrupt", "after": 2}}))
    assert (fault.when.mti, fault.times) == (("0320",), 1)
    upload = {**SALE, "t": "0320"}
    assert [engine.plan_for(upload, kind="upload", now=NOON).process for _ in range(5)] == [
        True, True, False, True, True]
    assert engine.plan_for(SALE, kind="sale", now=NOON).process is True


def test_maintenance_window_refuses_or_answers_91_96() -> None:
    assert plan_of({"type": "maintenance_window", "mode": "refuse"}).process is False
    assert plan_of({"type": "maintenance_window"}).directives.respond_rc == "91"
    assert plan_of({"type": "maintenance_window", "rc": "96"}).directives.respond_rc == "96"
    engine = FaultEngine()
    engine.add(Fault.from_dict({"when": {"between": ["02:00", "03:00"]},
                                "action": {"type": "maintenance_window", "mode": "refuse"}}))
    assert engine.refuses_connection(NOON.replace(hour=2, minute=30)) == "f1"
    assert engine.refuses_connection(NOON) is None


def test_message_level_maintenance_does_not_refuse_connections() -> None:
    engine = FaultEngine()
    engine.add(Fault.from_dict({"when": {"tid": "10000001"}, "action": {"type": "maintenance_window", "mode": "refuse"}}))
    engine.add(Fault.from_dict({"action": {"type": "maintenance_window", "mode": "rc"}}))
    assert engine.refuses_connection(NOON) is None


def refuse_connect(when: dict[str, Any] | None = None, **extra: Any) -> Fault:
    return Fault.from_dict({"when": when or {}, "action": {"type": "refuse_connect"}, **extra})


@pytest.mark.parametrize(("fault", "now", "active"), [
    (refuse_connect(), NOON, True),  # no window: active until deleted
    (refuse_connect({"between": ["11:00", "13:00"]}), NOON, True),
    (refuse_connect({"between": ["11:00", "12:00"]}), NOON, False),  # end exclusive
    (refuse_connect({"between": ["12:00", "13:00"]}), NOON, True),  # start inclusive
    (refuse_connect({"between": ["23:00", "01:00"]}), NOON.replace(hour=0, minute=30), True),  # wraps midnight
    (refuse_connect({"between": ["23:00", "01:00"]}), NOON, False),
    (refuse_connect({"between": ["2026-11-23T11:00:00", "2026-11-23T12:30:00"]}), NOON, True),
    (refuse_connect({"between": ["2026-11-23T11:00:00", "2026-11-23T12:30:00"]}), NOON + timedelta(days=1), False),
    (Fault.from_dict({"action": {"type": "maintenance_window", "mode": "refuse"}}), NOON, False),  # accept-then-close
    (Fault.from_dict({"action": {"type": "close_before_processing"}}), NOON, False),
])
def test_refuse_connect_is_active_while_its_window_covers_now(fault: Fault, now: datetime, active: bool) -> None:
    assert refuses_connects(fault, now) is active


def test_refuse_connect_engine_ids_boundaries_and_plans() -> None:
    engine = FaultEngine()
    engine.add(refuse_connect({"between": ["02:00", "03:00"]}))
    engine.add(Fault.from_dict({"action": {"type": "drop_response"}}))
    engine.add(refuse_connect({"between": ["2026-11-23T12:30:00", "2026-11-23T12:45:00"]}, id="later"))
    assert engine.refusing_connects(NOON) == ()
    assert engine.refusing_connects(NOON.replace(hour=2)) == ("f1",)
    assert engine.refusing_connects(NOON.replace(minute=40)) == ("later",)
    assert engine.next_connect_boundary(NOON) == NOON.replace(minute=30)
    assert engine.next_connect_boundary(NOON.replace(minute=30)) == NOON.replace(minute=45)
    assert engine.next_connect_boundary(NOON.replace(minute=45)) == datetime(2026, 11, 24, 2, 0)  # daily window
    assert engine.next_connect_boundary(NOON.replace(hour=2, minute=10)) == NOON.replace(hour=3)
    plan = engine.plan_for(SALE, kind="sale", now=NOON.replace(hour=2))
    assert plan.directives.fault_ids == ("f2",)  # a refused connect is never a request: never in a plan
    assert [f["occurrences"] for f in engine.describe()] == [0, 1, 0]
    assert engine.refuses_connection(NOON.replace(hour=2)) is None  # not accept-then-close either
    assert FaultEngine().next_connect_boundary(NOON) is None
    only_open_ended = FaultEngine()
    only_open_ended.add(refuse_connect())
    assert only_open_ended.refusing_connects(NOON) == ("f1",) and only_open_ended.next_connect_boundary(NOON) is None


@pytest.mark.parametrize(("data", "key", "path"), [
    ({"when": {"nth": 1}}, "nth", "fault.when.nth"),
    ({"when": {"probability": 0.5, "seed": 3}}, "probability", "fault.when.probability"),
    ({"when": {"between": ["02:00", "03:00"], "mti": "0200"}}, "mti", "fault.when.mti"),
    ({"when": {"kind": "sale"}}, "kind", "fault.when.kind"),
    ({"when": {"seed": 1}}, "seed", "fault.when.seed"),
    ({"times": 1}, "times", "fault.times"),
    ({"action": {"type": "refuse_connect", "seconds": 1}}, "seconds", "fault.action(refuse_connect).seconds"),
])
def test_refuse_connect_takes_only_a_window(data: dict[str, Any], key: str, path: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Fault.from_dict({"action": {"type": "refuse_connect"}, **data})
    assert (excinfo.value.key, excinfo.value.path) == (key, path)
    if key != "seconds":
        assert "cannot apply to refuse_connect" in str(excinfo.value)


def test_refuse_connect_round_trips_and_has_a_schema() -> None:
    fault = refuse_connect({"between": ["02:00", "03:00"]}, times=None)
    assert Fault.from_dict(fault.as_dict()) == fault
    assert fault.as_dict()["action"] == {"type": "refuse_connect"}
    schema = action_schemas()["refuse_connect"]
    assert schema["properties"] == {"type": {"type": "string", "enum": ["refuse_connect"]}}
    assert "between only" in schema["description"]


def test_reversal_rc_for_unknown_original() -> None:
    assert plan_of({"type": "reversal_rc_for_unknown_original", "rc": "00"}).directives.reversal_unknown_rc == "00"


def test_payout_delay_hold_failure() -> None:
    assert plan_of({"type": "payout_delay", "days": 3}).directives.payout_delay_days == 3
    assert plan_of({"type": "payout_hold", "reason": "legal_hold"}).directives.payout_hold == "legal_hold"
    assert plan_of({"type": "payout_failure"}).directives.payout_failure == "bank account invalid"


# ------------------------------------------------------------------ selection


@pytest.mark.parametrize(("when", "matches"), [
    ({}, True),
    ({"mti": "0200"}, True), ({"mti": ["0100", "0400"]}, False), ({"mti": 200}, True),
    ({"processing_code": "000000"}, True), ({"processing_code": "200000"}, False),
    ({"kind": "sale"}, True), ({"kind": ["refund", "void"]}, False),
    ({"tid": "10000001"}, True), ({"tid": "10000002"}, False),
    ({"mid": "123456789012345"}, True), ({"mid": "999999999999999"}, False),
    ({"pan": "6229141777631700"}, True), ({"bin": ["62", "4"]}, True), ({"bin": "4"}, False),
    ({"fields": {"60.1": "22"}}, True), ({"fields": {"60.3": ["000", "201"]}}, True),
    ({"fields": {"60.1": "23"}}, False), ({"fields": {"25": "00"}}, False), ({"fields": {"61.2": "000001"}}, False),
    ({"amount_min": 1000, "amount_max": 1000}, True), ({"amount_min": 1001}, False), ({"amount_max": 999}, False),
    ({"between": ["11:00", "13:00"]}, True), ({"between": ["13:00", "11:00"]}, False),
    ({"between": ["2026-11-23T11:00:00", "2026-11-23T12:00:00"]}, False),
    ({"between": ["2026-11-23T11:00:00", "2026-11-23T12:00:01"]}, True),
])
def test_when_criteria(when: dict[str, Any], matches: bool) -> None:
    assert When.from_dict(when).matches(SALE, kind="sale", now=NOON) is matches


def test_amount_criteria_do_not_match_requests_without_amount() -> None:
    echo = {"t": "0800", "11": "000001", "41": "10000001", "70": "301"}
    assert When.from_dict({"amount_min": 0}).matches(echo, kind="echo", now=NOON) is False
    assert When.from_dict({"amount_max": 5}).matches(echo, kind="echo", now=NOON) is False


def test_track2_pan_is_matched() -> None:
    swiped = {k: v for k, v in SALE.items() if k != "2"} | {"35": "6229141777631700=3012"}
    assert When.from_dict({"bin": "622914"}).matches(swiped, kind="sale", now=NOON)


def test_window_wraps_midnight() -> None:
    window = Window(start=time(23, 55), end=time(0, 5))
    assert window.contains(datetime(2026, 1, 1, 23, 59)) and not window.contains(datetime(2026, 1, 1, 0, 5))


def test_nth_counts_only_matching_requests_and_times_limits_firing() -> None:
    engine = FaultEngine()
    engine.add(Fault.from_dict({"when": {"kind": "sale", "nth": 2}, "action": {"type": "drop_response"}}))
    engine.add(Fault.from_dict({"when": {"kind": "sale"}, "action": {"type": "respond_rc", "rc": "96"}, "times": 2}))
    echo = {"t": "0800", "11": "000001", "41": "10000001", "70": "301"}
    results = []
    for _ in range(4):
        engine.plan_for(echo, kind="echo", now=NOON)
        plan = engine.plan_for(SALE, kind="sale", now=NOON)
        results.append((plan.send, plan.directives.respond_rc, plan.directives.fault_ids))
    assert results == [(True, "96", ("f2",)), (False, "96", ("f1", "f2")), (True, None, ()), (True, None, ())]
    assert [(f["occurrences"], f["fired"]) for f in engine.describe()] == [(4, 1), (2, 2)]


def test_seeded_probability_is_reproducible() -> None:
    def run(seed: int) -> list[bool]:
        engine = FaultEngine()
        engine.add(Fault.from_dict({"when": {"probability": 0.3, "seed": seed}, "action": {"type": "drop_response"}}))
        return [not engine.plan_for(SALE, kind="sale", now=NOON).send for _ in range(200)]

    first = run(42)
    assert first == run(42) and first != run(43)
    assert 40 <= sum(first) <= 80
    assert When.from_dict({"probability": 0.0}).admits(1) is False
    assert When.from_dict({"probability": 1.0}).admits(1) is True


def test_faults_compose_in_order() -> None:
    engine = FaultEngine()
    load_faults([{"action": {"type": "respond_rc", "rc": "91"}}, {"action": {"type": "respond_rc", "rc": "96"}},
                 {"action": {"type": "delay_response", "seconds": 0.1}}], engine)
    plan = engine.plan_for(SALE, kind="sale", now=NOON)
    assert (plan.directives.respond_rc, plan.delay_seconds, plan.directives.fault_ids) == ("96", 0.1, ("f1", "f2", "f3"))


def test_fault_round_trips_through_its_dict() -> None:
    data = {"id": "late", "when": {"mti": ["0200"], "fields": {"60.1": ["22"]}, "between": ["10:00:00", "11:00:00"],
                                   "probability": 0.5, "seed": 7, "nth": 3, "amount_min": 1},
            "action": {"type": "delay_response", "seconds": 2.0}, "times": 4}
    fault = Fault.from_dict(data)
    assert Fault.from_dict(fault.as_dict()) == fault
    assert fault.as_dict() == data


def test_engine_ids_and_removal() -> None:
    engine = FaultEngine()
    first = engine.add(Fault.from_dict({"action": {"type": "corrupt_mac"}}))
    engine.add(Fault.from_dict({"id": "f2", "action": {"type": "corrupt_mac"}}))
    third = engine.add(Fault.from_dict({"action": {"type": "corrupt_mac"}}))
    assert (first.id, third.id, len(engine)) == ("f1", "f3", 3)
    engine.remove("f1")
    with pytest.raises(KeyError):
        engine.remove("f1")
    with pytest.raises(ConfigError, match="already in use"):
        engine.add(Fault.from_dict({"id": "f2", "action": {"type": "corrupt_mac"}}))
    engine.clear()
    assert engine.add(Fault.from_dict({"action": {"type": "corrupt_mac"}})).id == "f1"


def test_load_faults_checks_everything_before_adding() -> None:
    engine = FaultEngine()
    with pytest.raises(ConfigError) as excinfo:
        load_faults([{"action": {"type": "drop_response"}}, {"action": {"type": "delay_response", "seconds": -1}}],
                    engine)
    assert excinfo.value.path == "faults[1].action(delay_response).seconds"
    assert len(engine) == 0
    with pytest.raises(ConfigError, match="expecting a list of faults"):
        load_faults({"action": {}}, engine)


@pytest.mark.parametrize(("data", "path"), [
    ({"action": {"type": "interim_09", "count": -1}}, "fault.action(interim_09).count"),
    ({"action": {"type": "partial_write", "bytes": "x"}}, "fault.action(partial_write).bytes"),
    ({"action": {"type": "omit_fields", "fields": [{"a": 1}]}}, "fault.action(omit_fields).fields"),
    ({"action": {"type": "maintenance_window", "mode": "later"}}, "fault.action(maintenance_window).mode"),
    ({"action": {"type": "payout_hold", "reason": 3}}, "fault.action(payout_hold).reason"),
    ({"action": "drop_response"}, "fault.action"),
    ({"action": {"delay": 1}}, "fault.action.type"),
    ({"action": {"type": "drop_response"}, "extra": 1}, "fault.extra"),
    ({"when": {"between": ["25:00", "26:00"]}, "action": {"type": "drop_response"}}, "fault.when.between.start"),
    ({"when": {"between": ["2026-13-01T00:00", "2026-01-01T00:00"]}, "action": {"type": "drop_response"}},
     "fault.when.between.start"),
    ({"when": {"fields": "60.1"}, "action": {"type": "drop_response"}}, "fault.when.fields"),
    ({"id": 5, "action": {"type": "drop_response"}}, "fault.id"),
])
def test_config_errors_name_the_path(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Fault.from_dict(data)
    assert excinfo.value.path == path


def test_default_plan_has_no_directives() -> None:
    assert Plan().directives == Directives()
