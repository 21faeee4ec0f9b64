"""The cause-and-fix matrix files: every file loads, every cause is accounted for once, and malformed
files are rejected with an error naming file, line and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from specs.scenario import (
    CAUSE_IDS,
    PROPOSED_HOST_SETTINGS,
    PROPOSED_TERMINAL_SETTINGS,
    SCENARIO_DIR,
    TERMINAL_IDENTITY_SETTINGS,
    HostFaultStep,
    HostRegistryStep,
    HostSettingsStep,
    Registry,
    Scenario,
    ScenarioError,
    TerminalSettingsStep,
    host_settings_body,
    load_all,
    load_scenario,
    parse_scenario,
)

FILES = sorted(SCENARIO_DIR.glob("*.yaml"))
#: Causes that show only in money movement (issue 5): asserted on the payout ledger.
MONEY_ONLY = ("C21", "C25", "C26", "C27", "C34", "C36")


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return load_all(SCENARIO_DIR)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_file_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.id == path.stem
    assert scenario.file == path.name


def test_every_cause_is_accounted_for_exactly_once(scenarios: list[Scenario]) -> None:
    assert [s.id for s in scenarios] == list(CAUSE_IDS)  # one file per cause, no strays
    covered = [cause for s in scenarios for cause in s.covers]
    assert sorted(covered) == list(CAUSE_IDS)
    assert len(covered) == len(set(covered))


def test_merges_are_stubs_that_point_back(scenarios: list[Scenario]) -> None:
    by_id = {s.id: s for s in scenarios}
    merged = {s.id: s.merged_into for s in scenarios if s.status == "merged"}
    assert merged == {"C37": "C31"}
    (merge,) = by_id["C31"].merges
    assert merge.id == "C37"
    assert "C31 + C01/C03" in merge.citation and "domain.md" in merge.citation


def test_outside_causes_say_why_and_fake_nothing(scenarios: list[Scenario]) -> None:
    outside = {s.id: s for s in scenarios if s.status == "outside"}
    assert sorted(outside) == ["C35", "C38", "C39"]
    for s in outside.values():
        assert s.reason and s.runbook
        assert (s.steps, s.expect, s.dialects) == ((), None, ())


@pytest.mark.parametrize("cause", MONEY_ONLY)
def test_money_only_causes_assert_on_the_payout_ledger(scenarios: list[Scenario], cause: str) -> None:
    scenario = next(s for s in scenarios if s.id == cause)
    assert scenario.expect is not None
    for run in (scenario.expect.broken, scenario.expect.fixed):
        on_payouts = [c for c in run.check.ledger if c.table == "payouts"]
        assert on_payouts, f"{cause}: the {'fixed' if run is scenario.expect.fixed else 'flawed'} run asserts nothing on payouts"
    assert "G6" in scenario.expect.fixed.invariants_hold


def test_every_runnable_scenario_shows_a_symptom_and_a_resolution(scenarios: list[Scenario]) -> None:
    for s in (s for s in scenarios if s.status == "runnable"):
        assert s.expect is not None and s.runbook and s.fix.description, s.id
        assert s.expect.broken.symptom, s.id
        assert s.expect.broken.invariants_broken or s.expect.broken.check, s.id
        assert s.expect.fixed.invariants_hold, s.id
        assert set(s.expect.broken.invariants_broken) <= set(s.expect.fixed.invariants_hold) | {"G6", "G7"}, s.id


# ------------------------------------------------------------------------------------ the host and the terminal


def _bodies(s: Scenario) -> tuple[list[Any], list[Registry], list[Any], list[dict[str, Any]]]:
    """Every fault, registry change, host-settings change and terminal config a scenario produces."""
    faults, registries = list(s.host.faults), [s.host.registry, s.fix.host_registry]
    host_settings = [s.host.settings, s.broken.host_settings, s.fix.host_settings]
    terminal = [s.terminal_config("broken"), s.terminal_config("fixed")]
    for run in ("broken", "fixed"):
        for step in s.steps_for(run):
            if isinstance(step, HostFaultStep) and step.add is not None:
                faults.append(step.add)
            elif isinstance(step, HostRegistryStep):
                registries.append(step.registry)
            elif isinstance(step, HostSettingsStep):
                host_settings.append(step.settings)
            elif isinstance(step, TerminalSettingsStep):
                terminal.append(dict(step.settings))
    return faults, registries, host_settings, terminal


def _import_or_skip(module: str) -> Any:
    """The host and terminal packages are being built alongside; a module that does not import yet
    skips the cross-check instead of failing the schema tests."""
    try:
        return __import__(module, fromlist=["_"])
    except Exception as exc:
        pytest.skip(f"{module} does not import: {exc}")


def test_host_accepts_every_fault_registry_entry_and_setting(scenarios: list[Scenario]) -> None:
    faults_mod = _import_or_skip("host_stub.faults")
    settings_mod = _import_or_skip("host_stub.settings")
    registry_mod = _import_or_skip("host_stub.registry")
    for s in (s for s in scenarios if s.status == "runnable"):
        pans = s.card_pans()
        faults, registries, host_settings, _ = _bodies(s)
        for fault in faults:
            faults_mod.Fault.from_dict(fault.control_body(pans=pans, response_timeout_seconds=0.5))
        for registry in registries:
            for mid, entry in registry.merchants.items():
                registry_mod.Merchant.from_dict({"mid": mid, **entry.control_body()})
            for tid, entry in registry.terminals.items():
                registry_mod.Terminal.from_dict({"tid": tid, **entry.control_body()})
            for alias, entry in registry.cards.items():
                registry_mod.Card.from_dict({"pan": pans[alias], **entry.control_body()})
        for settings in host_settings:
            offered = {k: v for k, v in settings.items() if k not in PROPOSED_HOST_SETTINGS}
            settings_mod.HostSettings.from_dict(host_settings_body(offered))


def test_terminal_accepts_every_toggle_and_setting(scenarios: list[Scenario]) -> None:
    settings_mod = _import_or_skip("emulator.settings")
    for s in (s for s in scenarios if s.status == "runnable"):
        for config in _bodies(s)[3]:
            offered = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                       if k not in PROPOSED_TERMINAL_SETTINGS | TERMINAL_IDENTITY_SETTINGS}
            dataclasses.replace(settings_mod.TerminalSettings(), **offered)


# ------------------------------------------------------------------------------------ malformed files

BASE = """\
id: C07
title: Outdated software
reported_as: {zh: 软件过时, en: outdated software}
reports: ["001"]
scope: P
status: runnable
dialects: [cup]
steps:
  - signon
  - sale: {amount: "12.34", intent: purchase, label: first}
  - settle: {label: close}
broken:
  toggles: {reversal_first: false}
fix:
  description: Send the reversal first.
  toggles: {reversal_first: true}
expect:
  broken:
    symptom: Charged twice.
    invariants_broken: [G5]
  fixed:
    invariants_hold: [G1, G5]
    outcomes:
      - {step: first, outcome: approved}
runbook: Sign on first.
"""


def error_of(text: str, name: str = "C07.yaml") -> str:
    with pytest.raises(ScenarioError) as exc_info:
        parse_scenario(text, name=name)
    return str(exc_info.value)


def test_base_snippet_is_valid() -> None:
    scenario = parse_scenario(BASE, name="C07.yaml")
    assert scenario.steps_for("fixed")[1].amount_minor == 1234  # type: ignore[union-attr]


def test_amount_with_three_decimals() -> None:
    assert error_of(BASE.replace('amount: "12.34"', "amount: 12.345")) == (
        "C07.yaml line 10: key 'steps[1].amount': expected a decimal string like '12.34', found 12.345")


def test_unknown_key_in_a_step() -> None:
    assert error_of(BASE.replace('{amount: "12.34"', '{amont: "12.34"')) == (
        "C07.yaml line 10: key 'steps[1].amont': unknown key for a sale step, expected one of amount, card, entry, "
        "intent, label, operator, retry_of, terminal_fault")


def test_missing_required_key() -> None:
    assert error_of(BASE.replace('amount: "12.34", ', "")) == (
        "C07.yaml line 10: key 'steps[1].amount': missing, a sale step needs it")


def test_unknown_step_type() -> None:
    assert error_of(BASE.replace("  - settle: {label: close}", "  - settel: {label: close}")) == (
        "C07.yaml line 11: key 'steps[2]': expected a step type (signon, signoff, echo, sale, balance, preauth, "
        "preauth_void, completion, completion_void, void, refund, offline_sale, adjust, settle, reverse, clock, "
        "crash_at, restart, host_fault, host_registry, host_settings, terminal_settings, operator, expect), "
        "found settel")


def test_id_must_match_the_file_name() -> None:
    assert error_of(BASE, name="C08.yaml") == (
        "C08.yaml line 1: key 'id': expected C08 (the file name of a cause's file; a scenario of your own takes an "
        "id that is not C01 to C42), found C07")


def test_unknown_toggle() -> None:
    assert error_of(BASE.replace("{reversal_first: false}", "{reversal_frist: false}")) == (
        "C07.yaml line 13: key 'broken.toggles.reversal_frist': unknown key for fix toggles, expected one of "
        "auto_signon_on_77, batch_upload_on_unbalanced, block_sales_while_receipt_pending, block_sales_while_settling, commit_before_print, "
        "drain_saf_before_settle, enforce_operator_roles, final_reversal_codes, never_resend_financial, "
        "park_stuck_reversal, reversal_first, reverse_at_idle, save_reversal_before_send, "
        "settlement_timeout_factor, trickle_saf, verify_response_mac")


def test_fix_must_set_back_what_the_flawed_run_changes() -> None:
    assert error_of(BASE.replace("  toggles: {reversal_first: true}\n", "")) == (
        "C07.yaml line 15: key 'fix.toggles.reversal_first': missing, the flawed run sets reversal_first: "
        "the fix must set it back")


def test_outcome_must_name_a_step_of_the_run() -> None:
    assert error_of(BASE.replace("{step: first, outcome", "{step: frist, outcome")) == (
        "C07.yaml line 24: key 'expect.fixed.outcomes[0].step': expected the label of a terminal step of this run "
        "(first, close), found frist")


def test_g7_needs_a_crash() -> None:
    assert error_of(BASE.replace("invariants_hold: [G1, G5]", "invariants_hold: [G1, G7]")) == (
        "C07.yaml line 22: key 'expect.fixed.invariants_hold[1]': expected G7 only in a run with a crash_at step "
        "(it compares with the uninterrupted run), found G7")


def test_fault_action_without_its_parameter() -> None:
    text = BASE.replace("  - signon\n", "  - signon\n  - host_fault:\n      add: {action: {type: respond_rc}}\n")
    assert error_of(text) == "C07.yaml line 11: key 'steps[1].add.action.rc': missing, a respond_rc action needs it"


def test_refuse_connect_selects_by_its_window_only() -> None:
    def with_fault(fault: str) -> str:
        return BASE.replace("  - signon\n", f"  - signon\n  - host_fault:\n      add: {fault}\n")

    assert error_of(with_fault("{when: {mti: '0200'}, action: {type: refuse_connect}}")) == (
        "C07.yaml line 11: key 'steps[1].add.when': expected only between for refuse_connect (a refused connect "
        "carries no message to select and is never counted), found mti")
    assert error_of(with_fault("{times: 1, action: {type: refuse_connect}}")) == (
        "C07.yaml line 11: key 'steps[1].add.times': not allowed for refuse_connect, which is active while its "
        "window holds")
    ok = parse_scenario(with_fault("{when: {between: ['02:00', '04:00']}, action: {type: refuse_connect}}"),
                        name="C07.yaml")
    assert ok.status == "runnable"


def test_codes_keep_their_leading_zeros_unquoted() -> None:
    text = BASE.replace("  toggles: {reversal_first: false}", "  toggles: {reversal_first: false, final_reversal_codes: [00]}")
    text = text.replace("  toggles: {reversal_first: true}", "  toggles: {reversal_first: true, final_reversal_codes: [00, 12, 25]}")
    scenario = parse_scenario(text, name="C07.yaml")
    assert scenario.broken.toggles["final_reversal_codes"] == ("00",)
    assert scenario.fix.toggles["final_reversal_codes"] == ("00", "12", "25")


def test_duplicate_key() -> None:
    assert error_of(BASE.replace("scope: P\n", "scope: P\nscope: PA\n")) == (
        "C07.yaml line 6: key 'scope': duplicate key, first given on line 5")


def test_yaml_syntax_error() -> None:
    assert error_of(BASE.replace("dialects: [cup]", "dialects: [cup")) == (
        "C07.yaml line 8: YAML syntax error: expected ',' or ']', but got ':'")


def test_a_control_character_is_a_yaml_error_too() -> None:
    assert error_of(BASE.replace("title: Outdated software", "title: Outdated\x07software")) == (
        "C07.yaml line 2: YAML syntax error: unacceptable character #x0007: special characters are not allowed\n"
        '  in "<unicode string>", position 23')


def test_report_id() -> None:
    assert error_of(BASE.replace('reports: ["001"]', 'reports: ["001", "007"]')) == (
        "C07.yaml line 4: key 'reports[1]': expected a report id (000, 001, 002, 003, 004), found 007")


def test_outside_scenario_may_not_carry_steps() -> None:
    text = ("id: C35\ntitle: Competition\nreported_as: {zh: 市场竞争, en: competition}\nreports: ['000']\n"
            "scope: OUT\nstatus: outside\nreason: No wire effect.\nrunbook: Nothing.\nsteps: [signon]\n")
    assert error_of(text, name="C35.yaml") == (
        "C35.yaml line 9: key 'steps': unknown key for a outside scenario, expected one of id, reason, related, "
        "reported_as, reports, runbook, scope, status, title")


def test_load_all_names_an_uncovered_cause(tmp_path: Path) -> None:
    for path in FILES:
        if path.stem != "C17":
            (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ScenarioError) as exc_info:
        load_all(tmp_path)
    assert str(exc_info.value) == (f"{tmp_path.name} line 1: expected a file (or a merge) for every cause, "
                                   "found none for C17")


def test_load_all_rejects_a_stub_its_target_does_not_merge(tmp_path: Path) -> None:
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        if path.stem == "C37":
            text = text.replace("merged_into: C31", "merged_into: C01")
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as exc_info:
        load_all(tmp_path)
    assert str(exc_info.value) == ("C31.yaml line 1: key 'merges': expected C37.yaml to be a merged_into: C31 stub, "
                                   "found status merged")


# ------------------------------------------------------------------------------------ the documentation

README = SCENARIO_DIR / "README.md"


def test_readme_example_is_a_valid_scenario() -> None:
    text = README.read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    scenario = parse_scenario(example, name="C40.yaml")
    assert scenario.status == "runnable" and scenario.expect is not None


def test_readme_matrix_lists_every_file_with_its_status(scenarios: list[Scenario]) -> None:
    rows = {line.split("|")[1].strip(): line for line in README.read_text(encoding="utf-8").splitlines()
            if line.startswith("| C")}
    for s in scenarios:
        assert s.id in rows, f"{s.id} missing from the README matrix"
        expected = {"runnable": "runnable", "outside": "outside", "merged": f"merged into {s.merged_into}"}[s.status]
        assert f"| {expected}" in rows[s.id], f"README row for {s.id} does not say {expected}"
