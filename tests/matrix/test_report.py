"""The report writers (matrix.json, junit.xml, index.html, the console table), the runner's pure
helpers, and ``pos-terminal matrix`` from the command line."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import emulator.report
import emulator.runner
from emulator.hostproc import start_host
from emulator.invariants import TraceEvent
from emulator.report import format_table, html_report, junit_xml, write_reports
from emulator.runner import (
    RunView,
    StepRecord,
    TraceItem,
    evaluate_check,
    normalise_payout,
    normalise_settlement,
    outcome_of,
    uninterrupted_steps,
)
from emulator.terminal import Books
from specs.cards import seeded_card
from specs.masking import mask_pan
from specs.scenario import SCENARIO_DIR, CrashAt, Restart, TerminalStep, load_all, parse_scenario

PAN = "4761739001010010"  # Luhn-valid, as a leaked card number would be


def _message(kind: str, mti: str, stan: str, **fields: str) -> dict[str, Any]:
    return {"seq": 1, "at_ms": 1.0, "kind": kind, "step": "first", "mti": mti, "stan": stan, "rc": fields.get("39"),
            "message": {"t": mti, "11": stan, **fields}}


def _run(passed: bool, failures: list[str] | None = None) -> dict[str, Any]:
    return {"name": "fixed", "passed": passed, "failures": failures or [], "seconds": 0.2, "steps": [],
            "checks": [{"what": "G1 holds", "passed": passed, "detail": ""}],
            "invariants": [{"id": "G1", "title": "No orphan approvals", "holds": passed, "applicable": True,
                            "findings": [] if passed else ["orphan approval: TID 10000001 STAN 000002"],
                            "expected": "hold"}],
            "messages": [_message("sent", "0200", "000002", **{"2": mask_pan(PAN), "4": "000000001234"}),
                         _message("received", "0210", "000002", **{"39": "00"}),
                         {"seq": 3, "at_ms": 3.0, "kind": "note", "step": None, "text": f"card {PAN} swiped"}],
            "host": {}, "terminal": {}}


def sample() -> dict[str, Any]:
    """Four rows: resolved, failed, outside, merged."""
    def runnable(cause: str, ok: bool) -> dict[str, Any]:
        return {"id": cause, "title": f"Cause {cause}", "cause": "a cause", "cause_zh": "原因", "status":
                "resolved" if ok else "failed", "symptom_reproduced": True, "resolved": ok, "seconds": 0.4,
                "fix": "toggles reversal_first", "fix_description": "Reverse first.", "symptom": "Charged twice.",
                "failures": [] if ok else ["intl-bcd fixed: G1 holds: orphan approval"],
                "runs": {"intl-bcd": {"symptom_reproduced": True, "resolved": ok, "seconds": 0.4,
                                      "failures": [] if ok else ["fixed: G1 holds: orphan approval"],
                                      "broken": _run(True), "fixed": _run(ok, None if ok else ["G1 holds"])}}}
    return {"generated_at": "2026-01-01T00:00:00", "wall_seconds": 12.5, "ok": False,
            "options": {"jobs": 2, "response_timeout_seconds": 0.5},
            "rows": [runnable("C01", True), runnable("C02", False),
                     {"id": "C35", "title": "Competition", "cause": "c", "cause_zh": "市场竞争", "status": "outside",
                      "symptom_reproduced": False, "resolved": False, "reason": "No wire effect.", "seconds": 0},
                     {"id": "C37", "title": "Disasters", "cause": "d", "cause_zh": "自然灾害", "status": "resolved",
                      "symptom_reproduced": True, "resolved": True, "merged_into": "C31",
                      "reason": "covered by C31.yaml (same mechanism)", "seconds": 0}]}


# ------------------------------------------------------------------------------------ writers


def test_matrix_json_has_every_row_with_its_verdict(tmp_path: Path) -> None:
    paths = write_reports(sample(), tmp_path)
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["schema"] == "pos-harness/matrix/1"
    for row in data["rows"]:
        assert {"id", "title", "status", "symptom_reproduced", "resolved"} <= set(row)
        assert row["status"] in ("resolved", "failed", "outside")
        assert isinstance(row["symptom_reproduced"], bool) and isinstance(row["resolved"], bool)
    outside = next(r for r in data["rows"] if r["id"] == "C35")
    assert outside["reason"] == "No wire effect."


def test_junit_xml_parses_with_one_case_per_cause_and_dialect() -> None:
    suite = ET.fromstring(junit_xml(sample()))
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["matrix.C01", "matrix.C02", "matrix.C35", "matrix.C37"]
    assert cases[0].get("name", "").startswith("C01[intl-bcd]")
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "not resolved with the fix on" in failure.get("message", "")
    assert "G1 holds" in (failure.text or "")
    assert "No wire effect." in (cases[2].find("skipped").get("message") or "")  # type: ignore[union-attr]
    assert "C31" in (cases[3].find("skipped").get("message") or "")  # type: ignore[union-attr]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")


def test_html_has_the_table_and_a_ladder_and_masks_card_numbers() -> None:
    page = html_report(sample())
    assert '<table class="matrix">' in page and page.count('<a href="#C0') >= 2
    assert '<table class="ladder">' in page and "0210" in page and "rc 00" in page
    assert "原因" in page and "No wire effect." in page
    assert PAN not in page  # even a PAN that slipped into a note is masked on the page
    assert mask_pan(PAN) in page
    # self-contained: nothing loaded from elsewhere; the one inline script opens index.html#ID expanded
    assert "<script src" not in page and "http" not in page.split("<body>")[1] and page.count("<script>") == 1
    assert 'document.getElementById(decodeURIComponent(location.hash.slice(1)))' in page
    assert "<b>R</b> the pending reversal" in page  # the legend of the state rows


def test_table_prints_one_line_per_cause_and_the_wall_time() -> None:
    lines = format_table(sample()).splitlines()
    assert lines[0].split()[:2] == ["id", "cause"]
    body = [line for line in lines if line[:3] in ("C01", "C02", "C35", "C37")]
    assert len(body) == 4
    assert "outside" in body[2] and "C31" in body[3]
    assert lines[-1] == ("4 causes: 2 resolved, 1 failed, 1 outside; wall time 12.5 s (2 jobs, response "
                         "timeout 0.5 s)")


@pytest.mark.parametrize("module", [emulator.runner, emulator.report], ids=["runner", "report"])
def test_docstring_examples(module: Any) -> None:
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


# ------------------------------------------------------------------------------------ runner helpers


def test_outcomes_as_the_scenarios_name_them() -> None:
    assert outcome_of({"outcome": "mac_failed", "rc": "00"}) == "not_completed"
    assert outcome_of({"outcome": "declined", "rc": "00"}) == "not_completed"  # card pulled after approval
    assert outcome_of({"outcome": "declined", "rc": "51"}) == "declined"
    assert outcome_of({"outcome": "unbalanced", "batch_closed": True, "closed_without_upload": True}) == "unbalanced"
    assert outcome_of({"outcome": "unbalanced", "batch_closed": False, "failed_step": {}}) == "unbalanced"
    assert outcome_of({"outcome": "nothing_pending"}) == "approved"


def test_uninterrupted_steps_replace_crashes_and_drop_restarts() -> None:
    sale = TerminalStep(command="sale", line=3, amount_minor=100, label="crashed")
    steps = (TerminalStep(command="signon", line=1), CrashAt(point="b", then=sale, line=2), Restart(line=4))
    assert uninterrupted_steps(steps) == (steps[0], sale)


def test_host_rows_in_the_names_the_invariants_use() -> None:
    assert normalise_payout({"status": "scheduled", "net_minor": 990, "fee_minor": 10}) == {
        "status": "pending", "net_minor": 990, "fee_minor": 10, "amount_minor": 990}
    row = normalise_settlement({"result": "uploaded", "host_totals": {"debit_count": 2},
                                "uploaded_totals": {"debit_count": 3}})
    assert row["host_totals"] == {"debit_count": 3} and row["host_totals_first_answer"] == {"debit_count": 2}


SCENARIO = """\
id: C01
title: Network drop
reported_as: {zh: 断线, en: drop}
reports: ["000"]
scope: P
status: runnable
dialects: [intl-bcd]
steps:
  - signon
  - sale: {amount: "25.00", intent: coffee, label: first}
  - sale: {amount: "25.00", intent: coffee, label: again, retry_of: first}
broken:
  toggles: {reversal_first: false}
fix:
  description: Reverse first.
  toggles: {reversal_first: true}
expect:
  broken:
    symptom: Charged twice.
    invariants_broken: [G3]
  fixed:
    invariants_hold: [G3]
    outcomes:
      - {step: first, outcome: no_answer}
      - {step: again, outcome: approved}
    messages_in_order:
      - {mti: "0200", stan_of: first}
      - {mti: "0400", stan_of: first}
      - {mti: "0200", stan_of: again}
    messages_present:
      - {mti: "0200", stan_of: first, count: 1}
      - {mti: "0410", during: again}
    messages_missing:
      - {mti: "0220"}
    codes_seen: ["25"]
    host_net: {coffee: "25.00"}
runbook: Let the terminal reverse first.
"""


def _item(seq: int, kind: str, step: str, mti: str, stan: str, rc: str | None = None) -> TraceItem:
    message = {"t": mti, "11": stan, "41": "10000001", **({"39": rc} if rc else {})}
    return TraceItem(seq=seq, at_ms=float(seq), kind=kind, step=step, step_index=0, message=message,
                     matched=True if kind == "received" else None)


def test_checks_read_the_trace_steps_and_ledger() -> None:
    scenario = parse_scenario(SCENARIO, name="C01.yaml")
    assert scenario.expect is not None
    trace = [_item(1, "sent", "first", "0200", "000002"), _item(2, "sent", "again", "0400", "000002"),
             _item(3, "received", "again", "0410", "000002", "25"), _item(4, "sent", "again", "0200", "000003"),
             _item(5, "received", "again", "0210", "000003", "00")]
    steps = {"first": StepRecord(index=1, kind="terminal", label="first", name="first", intent="coffee",
                                 outcome="no_answer", stan="000002"),
             "again": StepRecord(index=2, kind="terminal", label="again", name="again", intent="coffee",
                                 outcome="approved", rc="00", stan="000003")}
    authorizations = [{"tid": "10000001", "mti": "0200", "kind": "sale", "stan": "000002", "amount_minor": 2500,
                       "status": "reversed"},
                      {"tid": "10000001", "mti": "0200", "kind": "sale", "stan": "000003", "amount_minor": 2500,
                       "status": "approved"}]
    view = RunView(family="intl", tid="10000001", trace=trace, steps=steps, authorizations=authorizations,
                   settlements=[], payouts=[], host_journal=[], books=Books(), closed_batches=[], business_date=None,
                   holidays=frozenset(), final_reversal_codes=("00", "12", "25"))
    results = evaluate_check(scenario.expect.fixed.check, view, "intl")
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert len(results) == 2 + 1 + 2 + 1 + 1 + 1
    # the same check against a run that resent the first sale and never reversed it
    view.trace = [_item(1, "sent", "first", "0200", "000002"), _item(2, "sent", "first", "0200", "000002")]
    failed = {r.what for r in evaluate_check(scenario.expect.fixed.check, view, "intl") if not r.passed}
    assert "exactly 1 0200 STAN of first on the wire" in failed
    assert any(w.startswith("in order:") for w in failed) and "response code 25 seen" in failed
    assert isinstance(view.trace[0].as_event(), TraceEvent)


# ------------------------------------------------------------------------------------ real reports


def _pans() -> set[str]:
    pans = {p for s in load_all(SCENARIO_DIR) if s.status == "runnable" for p in s.card_pans().values()}
    for tid in ("10000001", "10000009"):
        pans |= {seeded_card(seed=int(tid), scheme=scheme).pan for scheme in ("visa", "unionpay")}
    return pans


def test_reports_of_the_whole_matrix_never_show_a_card_number(matrix_data: dict[str, Any], tmp_path: Path) -> None:
    paths = write_reports(matrix_data, tmp_path)
    pans = _pans()
    for path in paths.values():
        text = path.read_text(encoding="utf-8")
        leaked = [mask_pan(p) for p in pans if p in text]
        assert not leaked, f"{path.name} shows card numbers {leaked}"
    cup_uploads = [m for row in matrix_data["rows"] for d, r in (row.get("runs") or {}).items() if d == "cup"
                   for m in r["fixed"]["messages"] if m.get("mti") == "0320" and m["message"].get("60", "")[8:11] == "201"]
    # the record list (48) and the full-record uploads of refunds and offline sales (2) are masked alike
    assert cup_uploads and all("*" in m["message"].get("48", m["message"].get("2", "")) for m in cup_uploads)
    assert any("48" in m["message"] for m in cup_uploads)


# ------------------------------------------------------------------------------------ the command line


def _matrix_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator.cli", "matrix", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_runs_one_cause_and_writes_the_reports(tmp_path: Path) -> None:
    done = _matrix_cli("--only", "C01", "--report", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "C01" in done.stdout and "wall time" in done.stdout
    assert "C01 intl-bcd" in done.stderr and "C01 cup" in done.stderr  # progress
    for name in ("matrix.json", "junit.xml", "index.html"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    data = json.loads((tmp_path / "out" / "matrix.json").read_text(encoding="utf-8"))
    assert [(r["id"], r["status"]) for r in data["rows"]] == [("C01", "resolved")]
    assert set(data["rows"][0]["runs"]) == {"intl-bcd", "cup"}


def test_cli_lists_an_outside_cause_without_running_a_host(tmp_path: Path) -> None:
    done = _matrix_cli("--only", "C35", "--dialect", "cup", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "outside" in done.stdout


def test_cli_rejects_an_unknown_cause_and_a_lone_host() -> None:
    done = _matrix_cli("--only", "C99", timeout=30)
    assert done.returncode == 2 and "unknown scenario id C99, expecting one of C01 ... C42" in done.stderr
    done = _matrix_cli("--host", "127.0.0.1:1", timeout=30)
    assert done.returncode == 2 and "--host and --control go together" in done.stderr


def test_cli_runs_against_a_host_given_by_address(tmp_path: Path) -> None:
    """An already running host (here a stub child on port 0): the runner resets it between runs and
    talks to it only over TCP and its control API."""
    with start_host("serve", "--dialect", "cup", "--port", "0", "--control-port", "0") as host:
        done = _matrix_cli("--host", f"127.0.0.1:{host.port}", "--control",
                           f"http://127.0.0.1:{host.ready['control_port']}", "--dialect", "cup", "--only", "C22,C40",
                           "--report", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "matrix.json").read_text(encoding="utf-8"))
    assert [(r["id"], r["status"], list(r["runs"])) for r in data["rows"]] == [
        ("C22", "resolved", ["cup"]), ("C40", "resolved", ["cup"])]
    assert data["options"]["host"] == f"127.0.0.1:{host.port}" and data["options"]["jobs"] == 1
