"""CI runs the whole matrix: one test per cause and dialect, so that a failure names the cause.

A row passes when the flawed run shows the symptom its file describes and the fixed run holds the
invariants its file lists.  Causes whose fix needs terminal or host behaviour still being built are
listed in :data:`KNOWN_GAPS` with what is missing; they are expected to fail until it lands (and
pass unremarked once it has).
"""

from __future__ import annotations

from typing import Any

import pytest

from emulator.runner import MatrixResult
from specs.scenario import SCENARIO_DIR, Scenario, load_all

pytestmark = pytest.mark.timeout(300)  # the session fixture runs the whole matrix inside the first test

SCENARIOS: list[Scenario] = load_all(SCENARIO_DIR)

#: Cause -> what the terminal or host does not do yet (reported to their owners).
KNOWN_GAPS: dict[str, str] = {}


def _params() -> list[Any]:
    out = []
    for s in SCENARIOS:
        if s.status == "runnable":
            out += [pytest.param(s.id, d, id=f"{s.id}-{d}") for d in s.dialects]
        else:
            out.append(pytest.param(s.id, None, id=f"{s.id}-{s.status}"))
    return out


def _row(data: dict[str, Any], cause: str) -> dict[str, Any]:
    return next(r for r in data["rows"] if r["id"] == cause)


@pytest.mark.parametrize(("cause", "dialect"), _params())
def test_cause_behaves_as_its_file_expects(matrix_data: dict[str, Any], cause: str, dialect: str | None) -> None:
    row = _row(matrix_data, cause)
    scenario = next(s for s in SCENARIOS if s.id == cause)
    if scenario.status == "outside":
        assert row["status"] == "outside" and row["reason"] == scenario.reason
        assert not row["symptom_reproduced"] and not row["resolved"]
        return
    if scenario.status == "merged":
        target = _row(matrix_data, str(scenario.merged_into))
        assert row["merged_into"] == scenario.merged_into
        assert (row["status"], row["symptom_reproduced"], row["resolved"]) == (
            target["status"], target["symptom_reproduced"], target["resolved"])
        return
    result = row["runs"][dialect]
    ok = result["symptom_reproduced"] and result["resolved"]
    if not ok and cause in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[cause])
    assert ok, f"{cause} [{dialect}] {row['title']}:\n  " + "\n  ".join(result["failures"])


def test_the_matrix_lists_every_cause_once(matrix_result: MatrixResult) -> None:
    assert [r.scenario.id for r in matrix_result.rows] == [s.id for s in SCENARIOS]


def test_crash_scenarios_are_compared_with_an_uninterrupted_run(matrix_data: dict[str, Any]) -> None:
    for cause in ("C31", "C42"):
        for dialect, result in _row(matrix_data, cause)["runs"].items():
            assert {"broken", "fixed", "broken_uninterrupted", "fixed_uninterrupted"} <= set(result), (cause, dialect)
            g7 = next(i for i in result["fixed"]["invariants"] if i["id"] == "G7")
            assert g7["applicable"], (cause, dialect)
            crashes = [m for m in result["fixed"]["messages"] if m["kind"] == "crash"]
            assert crashes, f"{cause} [{dialect}]: no crash in the fixed run"


def test_every_run_records_its_messages_and_invariants(matrix_data: dict[str, Any]) -> None:
    for row in matrix_data["rows"]:
        for dialect, result in (row.get("runs") or {}).items():
            for name in ("broken", "fixed"):
                run = result[name]
                if any("cannot run faithfully" in f for f in run["failures"]):
                    continue
                assert [i["id"] for i in run["invariants"]] == [f"G{n}" for n in range(1, 9)], (row["id"], name)
                assert any(m["kind"] == "sent" for m in run["messages"]), (row["id"], dialect, name)
