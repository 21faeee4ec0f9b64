"""The pytest plugin as a QA team uses it: fixtures in their own tests, the built-in matrix and their
own scenario files as test items, JUnit output.  Each test runs pytest on a small project in a
temporary directory (stub host children on port 0, a 0.5 s terminal timeout)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emulator.runner import MatrixError, MatrixOptions, run
from specs.scenario import SCENARIO_DIR, load_all, load_scenario

ROOT = Path(__file__).resolve().parents[2]

USER_TESTS = '''
import pytest


def test_a_dropped_answer_is_reversed_and_the_host_shows_it(pos_host, pos_terminal):
    assert pos_terminal.signon().outcome.value == "approved"
    sale = pos_terminal.sale("12.34")
    assert sale.as_dict()["outcome"] == "approved"

    fault = pos_host.add_fault(when={"kind": "sale", "nth": 1}, action="drop_response")
    lost = pos_terminal.sale("5.00")
    assert lost.outcome.value == "no_answer"
    assert lost.details["reversal_sent"] and lost.details["reversal_cleared"]
    assert [r["status"] for r in pos_host.ledger("authorizations", stan=lost.stan, mti="0200")] == ["reversed"]
    assert [r["status"] for r in pos_host.ledger("authorizations", stan=sale.stan, mti="0200")] == ["approved"]
    assert any(e["mti"] == "0400" for e in pos_host.journal())
    assert fault in {f["id"] for f in pos_host.faults()}
    assert pos_terminal.status()["pending_reversals"] == []
    assert pos_terminal.settle().outcome.value == "balanced"


def test_each_test_starts_from_a_reset_host(pos_host, pos_terminal):
    assert pos_host.ledger("authorizations") == [] and pos_host.faults() == []
    assert pos_host.dialect == "intl-bcd" and pos_terminal.options().dialect.name == "intl-bcd"


@pytest.mark.pos_dialect("cup")
def test_a_flawed_terminal_from_the_factory(pos_host, make_pos_terminal):
    terminal = make_pos_terminal(tid="10000002", reverse_at_idle=False)
    assert pos_host.dialect == "cup"
    assert terminal.signon().outcome.value == "approved"
    pos_host.add_fault(when={"kind": "sale"}, action="drop_response", times=1)
    assert terminal.sale("7.00").outcome.value == "no_answer"
    assert terminal.status()["pending_reversal_stans"]  # reverse_at_idle off: still owed
    terminal.configure(reverse_at_idle=True)
    assert terminal.reverse().details["reversal_cleared"]
    with pytest.raises(ValueError, match="no_such_toggle"):
        terminal.configure(no_such_toggle=True)
'''


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## In your own test suite (pytest plugin)", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.+?)\n```", section, re.S)
    assert found, "the README's plugin section has no python example"
    return found.group(1)


def test_a_users_tests_drive_the_terminal_against_a_reset_stub_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_pos=USER_TESTS, test_readme_example=_readme_example())
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)


def test_scenario_files_are_collected_only_when_asked(pytester: pytest.Pytester, cause_file: str) -> None:
    pytester.mkdir("scenarios").joinpath("C40.yaml").write_text(cause_file, encoding="utf-8")
    assert pytester.runpytest("--co", "-q").ret == pytest.ExitCode.NO_TESTS_COLLECTED

    expected = sum(len(s.dialects) if s.status == "runnable" else 1 for s in load_all(SCENARIO_DIR))
    matrix = pytester.runpytest("--pos-matrix", "--co", "-q")
    matrix.stdout.fnmatch_lines(["*C01.yaml::C01?intl-bcd?", "*C35.yaml::C35?outside?", "*C37.yaml::C37?merged?",
                                 f"{expected} tests collected*"])

    pytester.makeini("[pytest]\npos_scenarios = scenarios/C*.yaml\n")
    pytester.runpytest("--co", "-q", "--pos-dialect", "cup").stdout.fnmatch_lines(
        ["scenarios/C40.yaml::C40?cup?", "1 test collected*"])

    pytester.mkdir("broken").joinpath("C40.yaml").write_text(cause_file.replace("status: runnable", "status: runable"),
                                                              encoding="utf-8")
    broken = pytester.runpytest("-p", "no:cacheprovider", "-o", "pos_scenarios=", "--pos-scenarios", "broken")
    broken.assert_outcomes(failed=1)  # one failed item, not an interrupted session
    broken.stdout.fnmatch_lines(["scenario file */broken/C40.yaml: C40.yaml line *: key 'status': *found runable"])


def test_matrix_items_selected_with_k_pass_and_land_in_junit(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--pos-matrix", "--pos-dialect", "intl-bcd", "-k", "C40",
                                "--junitxml=report.xml")
    in_intl_bcd = sum("intl-bcd" in s.dialects if s.status == "runnable" else 1 for s in load_all(SCENARIO_DIR))
    result.assert_outcomes(passed=1, deselected=in_intl_bcd - 1)
    cases = ET.parse(pytester.path / "report.xml").getroot().iter("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [("C40.yaml", "C40[intl-bcd]")]


def test_a_teams_scenario_copies_pass_or_fail_naming_cause_and_check(pytester: pytest.Pytester,
                                                                     cause_file: str) -> None:
    pytester.mkdir("scenarios").joinpath("C40.yaml").write_text(cause_file, encoding="utf-8")
    wrong = cause_file.replace("      - {step: later, outcome: approved}", "      - {step: later, outcome: declined}")
    assert wrong != cause_file
    pytester.mkdir("wrong").joinpath("C40.yaml").write_text(wrong, encoding="utf-8")

    result = pytester.runpytest("-p", "no:cacheprovider", "--pos-scenarios", "scenarios", "--pos-scenarios", "wrong",
                                "--pos-dialect", "intl-bcd", "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["C40 [intl-bcd] Stuck reversal blocks all sales:",
                                 "  fixed: step later ends declined: found approved*",
                                 "FAILED wrong/C40.yaml::C40?intl-bcd?*"])
    cases = {c.get("classname"): c for c in ET.parse(pytester.path / "report.xml").getroot().iter("testcase")}
    assert set(cases) == {"scenarios.C40.yaml", "wrong.C40.yaml"}
    failure = cases["wrong.C40.yaml"].find("failure")
    assert failure is not None and "step later ends declined" in (failure.get("message") or "")
    properties = {p.get("name"): p.get("value") for p in cases["scenarios.C40.yaml"].iter("property")}
    assert properties["cause"] == "C40" and properties["dialect"] == "intl-bcd"


def test_a_teams_own_scenarios_run_beside_a_broken_file(pytester: pytest.Pytester, cause_file: str) -> None:
    from tests.specs.test_team_scenarios import REGRESSION, TEAM_PAIR

    team = pytester.mkdir("team")
    team.joinpath("ACME-7.yaml").write_text(REGRESSION, encoding="utf-8")
    team.joinpath("lost-answer.yaml").write_text(TEAM_PAIR, encoding="utf-8")
    team.joinpath("typo.yaml").write_text(REGRESSION.replace("id: ACME-7", "id: ACME-8").replace(
        "invariants_hold", "invariants_hld"), encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "--pos-scenarios", "team", "--pos-dialect", "intl-bcd",
                                "-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*team/ACME-7.yaml::ACME-7?intl-bcd? PASSED*",
                                 "*team/lost-answer.yaml::acme.lost-answer?intl-bcd? PASSED*",
                                 "*scenario file */team/typo.yaml: typo.yaml line *: key 'expect.invariants_hld': *"])


def test_options_and_marker_are_documented(pytester: pytest.Pytester) -> None:
    pytester.runpytest("--help").stdout.fnmatch_lines(
        ["pos-harness:*", "*--pos-dialect*", "*--pos-host=HOST:PORT*", "*--pos-control=URL*", "*--pos-timeout=SECONDS*",
         "*--pos-matrix*", "*--pos-scenarios=DIR*", "*--pos-jobs=N*", "*pos_scenarios (args):*"])
    pytester.runpytest("--markers").stdout.fnmatch_lines(["@pytest.mark.pos_dialect(name):*"])
    bad = pytester.runpytest("--pos-host", "127.0.0.1:8583")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--pos-host and --pos-control go together*"])


def test_the_runner_takes_loaded_scenarios_each_cause_once() -> None:
    c40 = load_scenario(SCENARIO_DIR / "C40.yaml")
    with pytest.raises(MatrixError, match="C40 given more than once, expecting each id once"):
        run(MatrixOptions(scenarios=(c40, c40)))


ASYNC_AND_VERIFY = '''
import asyncio

import pytest


def test_verification_helpers(pos_host, pos_terminal):
    pos_terminal.signon()
    lost = pos_host.add_fault(when={"kind": "sale", "nth": 1}, action="drop_response", id="lost")
    never = pos_host.add_fault(when={"kind": "refund"}, action="drop_response", id="never")
    dropped = pos_terminal.sale("5.00")
    pos_terminal.sale("6.00")
    assert len(pos_host.verify_received("0200", count=2, tid=pos_terminal.tid)) == 2
    pos_host.verify_received("0400", count=1, stan=dropped.stan, field_4="000000000500")
    assert pos_host.verify_fired(lost, times=1) == 1
    assert pos_host.unfired_faults() == [never]
    with pytest.raises(AssertionError, match="expected exactly 3 0200 request.* found 2 .MTIs received: 0200, 0400, 0800"):
        pos_host.verify_received("0200", count=3)
    with pytest.raises(AssertionError, match="expected fault never to fire at least once time.s., it fired 0"):
        pos_host.verify_fired(never)


def test_faults_in_the_scenario_files_vocabulary(pos_host, pos_terminal):
    slow = pos_host.add_fault(when={"kind": "sale", "nth": 1}, action={"type": "delay_response", "timeout_multiple": 3})
    delta = pos_host.add_fault(when={"kind": "settlement"}, action={"type": "totals_delta", "debit_amount": "1.00"})
    actions = {f["id"]: f["action"] for f in pos_host.faults()}
    assert actions[slow] == {"type": "delay_response", "seconds": 1.5}  # 3 x the 0.5 s --pos-timeout
    assert actions[delta]["debit_minor"] == 100
    with pytest.raises(ValueError, match="'debit_amount' holds '1,00', expecting a decimal string"):
        pos_host.add_fault(action={"type": "totals_delta", "debit_amount": "1,00"})


def test_helpers_work_from_an_async_test(pos_host, pos_terminal):
    async def body():
        await asyncio.sleep(0)
        assert pos_terminal.signon().outcome == "approved"
        assert pos_terminal.sale("3.00").outcome == "approved"
        return pos_host.ledger("authorizations", kind="sale")

    rows = asyncio.run(body())
    assert [r["amount_minor"] for r in rows] == [300]
'''


def test_verification_helpers_and_async_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_verify=ASYNC_AND_VERIFY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_under_xdist_each_item_runs_once_on_its_worker(pytester: pytest.Pytester, cause_file: str) -> None:
    from tests.specs.test_team_scenarios import REGRESSION

    team = pytester.mkdir("team")
    team.joinpath("C40.yaml").write_text(cause_file, encoding="utf-8")
    team.joinpath("ACME-7.yaml").write_text(REGRESSION, encoding="utf-8")
    pytester.makepyfile(test_fixture="def test_host(pos_host):\n    assert pos_host.faults() == []\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--pos-scenarios", "team",
                                           "--junitxml=report.xml", timeout=240)
    result.assert_outcomes(passed=5)  # C40 and ACME-7 in intl-bcd and cup, and the fixture test
    cases = [c.get("name") for c in ET.parse(pytester.path / "report.xml").getroot().iter("testcase")]
    assert sorted(cases) == ["ACME-7[cup]", "ACME-7[intl-bcd]", "C40[cup]", "C40[intl-bcd]", "test_host"]


def test_an_external_host_with_a_control_token(pytester: pytest.Pytester) -> None:
    """``--pos-control-token``: the fixtures of a team's tests drive a token-guarded host."""
    from emulator.hostproc import start_host

    pytester.makepyfile(test_guarded='''
def test_the_guarded_host_is_driven(pos_host, pos_terminal):
    assert pos_terminal.signon().outcome.value == "approved"
    assert [r["kind"] for r in pos_host.ledger("authorizations")] == ["sign_on"]
''')
    with start_host("serve", "--port", "0", "--control-port", "0", "--control-token", "t0ken") as host:
        args = ["-p", "no:cacheprovider", "--pos-host", f"127.0.0.1:{host.port}",
                "--pos-control", f"http://127.0.0.1:{host.ready['control_port']}"]
        pytester.runpytest(*args).assert_outcomes(errors=1)  # no token: the reset before the test is refused
        pytester.runpytest(*args, "--pos-control-token", "t0ken").assert_outcomes(passed=1)


PROFILE_TESTS = '''
import pytest


@pytest.mark.pos_profile("intl-pcode-signon")
def test_a_shipped_profile_shapes_both_sides(pos_host, pos_terminal):
    assert pos_host.profile == "intl-pcode-signon" and pos_host.dialect == "intl-bcd"
    sign_on = pos_terminal.signon()
    assert sign_on.outcome.value == "approved"
    sent = [e["message"] for e in sign_on.details["trace"] if e["kind"] == "sent"]
    assert sent[0]["3"] == "920000" and "70" not in sent[0]
    assert pos_terminal.sale("3.00").outcome.value == "approved"
    assert pos_terminal.settle().outcome.value == "balanced"


@pytest.mark.pos_profile("acme.yaml")
def test_a_profile_file_next_to_the_test(pos_host, make_pos_terminal):
    terminal = make_pos_terminal()
    assert pos_host.dialect == "cup" and terminal.options().dialect.describe().startswith("cup (profile acme")
    assert terminal.signon().outcome.value == "approved"
    mismatched = make_pos_terminal(tid="10000002", profile="intl-currency-ascii4")
    assert "check --dialect / --tpdu / --length-prefix" in mismatched.signon().text
'''


def test_profiles_in_a_teams_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_profiles=PROFILE_TESTS)
    pytester.path.joinpath("acme.yaml").write_text("dialect: cup\ndescription: ACME\n", encoding="utf-8")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    bad = pytester.runpytest("--pos-profile", "nosuch.yaml", "--co")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--pos-profile: nosuch.yaml line 1: no such file, and not a shipped profile*"])


def test_a_scenario_file_runs_with_its_host_profile(tmp_path: Path) -> None:
    text = (SCENARIO_DIR / "C40.yaml").read_text(encoding="utf-8")
    text = text.replace("dialects: [intl-bcd, cup]", "dialects: [intl-bcd]\nprofile: edc.yaml")
    (tmp_path / "edc.yaml").write_text('dialect: intl-bcd\nintl_sign_on: "3=920000"\n', encoding="utf-8")
    (tmp_path / "C40.yaml").write_text(text, encoding="utf-8")
    scenario = load_scenario(tmp_path / "C40.yaml")
    assert scenario.profile == str((tmp_path / "edc.yaml").resolve())
    result = run(MatrixOptions(scenarios=(scenario,), response_timeout_seconds=0.5))
    row, = result.rows
    assert row.symptom_reproduced and row.resolved, row.as_dict()
    sign_ons = [t.message for d in row.dialects for r in d.runs.values() for t in r.trace
                if t.kind == "sent" and t.message and t.message.get("t") == "0800"]
    assert sign_ons and all(m.get("3") == "920000" and "70" not in m for m in sign_ons)

    (tmp_path / "C40.yaml").write_text(text.replace("dialects: [intl-bcd]", "dialects: [cup]"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"C40.yaml line \d+: key 'profile': expected a profile of the scenario's "
                                         r"dialect \(profile edc.yaml starts from intl-bcd, dialects are cup\)"):
        load_scenario(tmp_path / "C40.yaml")
