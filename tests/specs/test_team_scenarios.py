"""A team's own scenario files: ids of their own in any file name, regression files (one run, no fix),
the cause-report fields optional, and a directory of them loaded together."""

from __future__ import annotations

from pathlib import Path

import pytest

from specs.scenario import ScenarioError, load_files, parse_scenario

REGRESSION = """\
id: ACME-7
title: A refund after a sale settles balanced
status: regression
dialects: [intl-bcd, cup]
steps:
  - signon
  - sale: {amount: "40.00", intent: purchase, label: paid}
  - refund: {amount: "15.00", original: paid, intent: purchase}
  - settle: {label: close}
expect:
  invariants_hold: [G1, G2, G3, G4, G5, G6, G8]
  outcomes:
    - {step: close, outcome: balanced}
  host_net:
    purchase: "25.00"
"""

TEAM_PAIR = """\
id: acme.lost-answer
title: Our terminal fleet loses an answer at the first sale of the day
status: runnable
dialects: [intl-bcd]
host:
  faults:
    - {when: {kind: sale, nth: 1}, action: {type: drop_response}}
steps:
  - signon
  - sale: {amount: "9.99", intent: coffee, label: first}
  - settle
broken:
  toggles: {reversal_first: false, reverse_at_idle: false}
fix:
  description: Reverse at idle and before the next message.
  toggles: {reversal_first: true, reverse_at_idle: true}
expect:
  broken:
    symptom: The host keeps an approval the terminal never saw.
    invariants_broken: [G1]
  fixed:
    invariants_hold: [G1, G2, G3, G5, G8]
    unclaimed:
      G4: the batch is settled by the terminal's own day end, not this scenario
      G6: funding is another team's scenario
"""


def test_a_regression_file_has_one_run_and_no_report_fields() -> None:
    s = parse_scenario(REGRESSION, name="anything.yaml")
    assert (s.id, s.status, s.is_cause, s.runs) == ("ACME-7", "regression", False, True)
    assert s.expect is not None and s.expect.broken is None
    assert s.expect.fixed.invariants_hold == ("G1", "G2", "G3", "G4", "G5", "G6", "G8")
    assert s.reported_as is None and s.reports == () and s.runbook is None
    assert s.steps_for("fixed") == s.steps


def test_a_team_pair_may_leave_the_cause_report_fields_out() -> None:
    s = parse_scenario(TEAM_PAIR, name="lost-answer.yaml")
    assert s.id == "acme.lost-answer" and s.status == "runnable" and not s.is_cause
    assert s.expect is not None and s.expect.broken is not None and s.expect.broken.invariants_broken == ("G1",)


def test_a_cause_file_still_needs_its_report_fields() -> None:
    text = REGRESSION.replace("id: ACME-7", "id: C07")
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, name="C07.yaml")
    assert str(exc.value) == ("C07.yaml line 1: key 'reported_as': missing, a regression file of cause C07 needs it "
                              "(a team's own scenario, with an id of its own, may leave it out)")


@pytest.mark.parametrize(("bad", "found"), [("C77", "C77"), ("7-ACME", "7-ACME"), ("'a b'", "a b")])
def test_a_bad_id_is_named(bad: str, found: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(REGRESSION.replace("id: ACME-7", f"id: {bad}"), name="x.yaml")
    assert str(exc.value).startswith("x.yaml line 1: key 'id': expected ") and str(exc.value).endswith(
        f"found {found}")


def test_a_regression_file_takes_no_fix() -> None:
    text = REGRESSION + "fix:\n  description: nothing\n  toggles: {reversal_first: true}\n"
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, name="acme.yaml")
    assert "key 'fix': unknown key for a regression scenario" in str(exc.value)


def test_a_regression_expectation_is_one_run() -> None:
    text = REGRESSION.replace("expect:\n  invariants_hold", "expect:\n  fixed:\n    x: 1\n  invariants_hold")
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, name="acme.yaml")
    assert "key 'expect.fixed': unknown key" in str(exc.value)


def test_a_directory_is_loaded_together_each_id_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(REGRESSION, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(TEAM_PAIR, encoding="utf-8")
    assert [s.id for s in load_files(sorted(tmp_path.glob("*.yaml")))] == ["ACME-7", "acme.lost-answer"]
    (tmp_path / "c.yaml").write_text(REGRESSION, encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_files(sorted(tmp_path.glob("*.yaml")))
    assert str(exc.value) == "c.yaml line 1: key 'id': expected each scenario id once, found ACME-7 also in a.yaml"


def test_a_flawed_run_may_name_the_finding_it_means() -> None:
    text = TEAM_PAIR.replace("invariants_broken: [G1]",
                             'invariants_broken: [{id: G1, finding: "*approved*no journal record*"}]')
    s = parse_scenario(text, name="t.yaml")
    assert s.expect is not None and s.expect.broken is not None
    assert s.expect.broken.invariants_broken == ("G1",)
    assert dict(s.expect.broken.findings_expected) == {"G1": "*approved*no journal record*"}
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(TEAM_PAIR.replace("invariants_broken: [G1]", "invariants_broken: [{id: G1}]"), name="t.yaml")
    assert "key 'expect.broken.invariants_broken[0].finding': missing" in str(exc.value)


def test_unclaimed_gives_a_reason_and_cannot_also_be_claimed() -> None:
    s = parse_scenario(TEAM_PAIR, name="t.yaml")
    assert s.expect is not None and set(s.expect.fixed.unclaimed) == {"G4", "G6"}
    both = TEAM_PAIR.replace("invariants_hold: [G1, G2, G3, G5, G8]", "invariants_hold: [G1, G2, G3, G4, G5, G8]")
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(both, name="t.yaml")
    assert "key 'expect.fixed.unclaimed.G4': expected an invariant not claimed in invariants_hold, found G4" \
        in str(exc.value)
    flawed = TEAM_PAIR.replace("    invariants_broken: [G1]", "    invariants_broken: [G1]\n    unclaimed: {G2: x}")
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(flawed, name="t.yaml")
    assert "key 'expect.broken.unclaimed': unknown key" in str(exc.value)
