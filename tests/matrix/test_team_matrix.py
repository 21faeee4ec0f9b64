"""``pos-terminal matrix --scenarios DIR`` and ``pos-terminal scenario validate`` on a team's own
directory: a regression file with its own id, a flawed/fixed pair of its own and a copy of a cause file
run side by side; a broken file is named with its line and key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from specs.scenario import SCENARIO_DIR
from tests.specs.test_team_scenarios import REGRESSION, TEAM_PAIR


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _team(tmp_path: Path) -> Path:
    team = tmp_path / "team"
    team.mkdir()
    (team / "ACME-7.yaml").write_text(REGRESSION, encoding="utf-8")
    (team / "lost-answer.yaml").write_text(TEAM_PAIR, encoding="utf-8")
    (team / "C40.yaml").write_text((SCENARIO_DIR / "C40.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    return team


def test_a_teams_directory_runs_from_the_command_line(tmp_path: Path) -> None:
    team = _team(tmp_path)
    done = _cli("matrix", "--scenarios", str(team), "--dialect", "intl-bcd", "--report", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.split()}
    assert "— (regression)" in lines["ACME-7"] and lines["ACME-7"].rstrip().split()[-3] == "passed"
    assert "toggles reversal_first" in lines["acme.lost-answer"]
    assert "3 scenarios: 2 resolved, 1 passed, 0 failed, 0 outside" in done.stdout
    data = json.loads((tmp_path / "r" / "matrix.json").read_text(encoding="utf-8"))
    rows = {r["id"]: r for r in data["rows"]}
    assert rows["ACME-7"]["kind"] == "regression" and rows["ACME-7"]["status"] == "passed"
    assert set(rows["ACME-7"]["runs"]["intl-bcd"]) >= {"fixed"} and "broken" not in rows["ACME-7"]["runs"]["intl-bcd"]
    assert data["summary"] == {"resolved": 2, "passed": 1, "failed": 0, "outside": 0}
    html = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert 'id="ACME-7"' in html and "Regression:</b> one run" in html

    only = _cli("matrix", "--scenarios", str(team), "--only", "acme-7", "--dialect", "cup")
    assert only.returncode == 0 and "1 scenarios: 0 resolved, 1 passed" in only.stdout, only.stdout + only.stderr


def test_a_regression_that_fails_names_its_check(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "ACME-7.yaml").write_text(REGRESSION.replace('purchase: "25.00"', 'purchase: "26.00"'), encoding="utf-8")
    done = _cli("matrix", "--scenarios", str(team), "--dialect", "intl-bcd")
    assert done.returncode == 1
    assert "intl-bcd fixed: host net for purchase is 26.00: found 25.00" in done.stdout


def test_scenario_validate_names_each_files_problem(tmp_path: Path) -> None:
    team = _team(tmp_path)
    ok = _cli("scenario", "validate", str(team))
    assert ok.returncode == 0 and ok.stdout.count(": ok (") == 3, ok.stdout
    (team / "typo.yaml").write_text(TEAM_PAIR.replace("nth: 1", "nht: 1"), encoding="utf-8")
    bad = _cli("scenario", "validate", str(team / "typo.yaml"), str(team / "ACME-7.yaml"))
    assert bad.returncode == 1
    assert f"{team / 'typo.yaml'}: typo.yaml line 7: key 'host.faults[0].when.nht': unknown key" in bad.stdout
    assert f"{team / 'ACME-7.yaml'}: ok (ACME-7, regression, intl-bcd, cup)" in bad.stdout
    twice = _cli("scenario", "validate", str(team / "lost-answer.yaml"), str(team / "lost-answer.yaml"))
    assert twice.returncode == 1 and "together: lost-answer.yaml line 1: key 'id': expected each scenario id once" \
        in twice.stdout


def test_scenario_schema_is_printed_and_written(tmp_path: Path) -> None:
    printed = _cli("scenario", "schema")
    assert printed.returncode == 0 and json.loads(printed.stdout)["title"] == "pos-harness scenario file"
    out = tmp_path / "scenario.schema.json"
    assert _cli("scenario", "schema", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text(encoding="utf-8")) == json.loads(printed.stdout)


def test_a_fault_that_never_fired_is_flagged(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    with_fault = REGRESSION.replace("steps:\n", "host:\n  faults:\n    - {id: never, when: {kind: balance}, "
                                                "action: {type: drop_response}}\nsteps:\n", 1)
    (team / "ACME-7.yaml").write_text(with_fault, encoding="utf-8")
    done = _cli("matrix", "--scenarios", str(team), "--dialect", "cup", "--report", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout + done.stderr  # a note, not a failure
    data = json.loads((tmp_path / "r" / "matrix.json").read_text(encoding="utf-8"))
    assert data["rows"][0]["runs"]["cup"]["fixed"]["unfired_faults"] == ["never: drop_response"]
    assert "Faults that never fired in this run" in (tmp_path / "r" / "index.html").read_text(encoding="utf-8")


def test_a_run_claims_every_invariant_that_applies_or_says_why_not(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "ACME-7.yaml").write_text(REGRESSION.replace("G5, G6, G8]", "G5, G8]"), encoding="utf-8")
    (team / "pair.yaml").write_text(TEAM_PAIR.replace(
        "invariants_broken: [G1]", 'invariants_broken: [{id: G1, finding: "*counted twice*"}]'), encoding="utf-8")
    done = _cli("matrix", "--scenarios", str(team), "--dialect", "intl-bcd")
    assert done.returncode == 1
    assert ("intl-bcd fixed: G6 (Funding) claimed: it applies to this run and holds, but the file neither claims it "
            "(invariants_hold) nor says why not (unclaimed)") in done.stdout, done.stdout
    assert "broken: G1 (No orphan approvals) breaks with a finding like '*counted twice*': it breaks otherwise" \
        in done.stdout, done.stdout
