"""The published JSON Schema of scenario files and the loader agree: every file the loader takes
validates, and the mistakes it refuses (unknown keys, step types, actions, settings) the schema refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from specs import scenario as s
from specs import vocabulary
from specs.scenario_schema import json_schema, schema_text

from .test_scenarios import BASE
from .test_team_scenarios import REGRESSION, TEAM_PAIR

SCHEMA_FILE = Path(s.__file__).parent.parent / "scenario.schema.json"


class _Loader(yaml.SafeLoader):
    """YAML as an editor's schema check sees it, but with dates kept as text (JSON has no dates)."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(yaml.load(text, Loader=_Loader))]


def test_the_shipped_schema_file_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "specs/scenario.schema.json is stale: run pos-terminal scenario schema -o specs/scenario.schema.json")


@pytest.mark.parametrize("path", sorted(s.SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_file_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert _errors(validator, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("text", [BASE, REGRESSION, TEAM_PAIR], ids=["cause", "regression", "team-pair"])
def test_the_loaders_examples_validate(validator: jsonschema.Draft202012Validator, text: str) -> None:
    s.parse_scenario(text, name="C07.yaml" if text is BASE else "team.yaml")
    assert _errors(validator, text) == []


MISTAKES = {
    "unknown top-level key": ("runbook: Sign on first.", "runbook: Sign on first.\nrunbok: x"),
    "unknown step type": ("  - settle: {label: close}", "  - settel: {label: close}"),
    "unknown step key": ('{amount: "12.34"', '{amont: "12.34"'),
    "unknown toggle": ("{reversal_first: false}", "{reversal_frist: false}"),
    "money with three places": ('amount: "12.34"', 'amount: "12.345"'),
    "unknown invariant": ("invariants_broken: [G5]", "invariants_broken: [G9]"),
    "unknown status": ("status: runnable", "status: runable"),
    "a cause file without its report fields": ("reports: [\"001\"]\n", ""),
}


@pytest.mark.parametrize("name", MISTAKES)
def test_what_the_loader_refuses_the_schema_refuses(validator: jsonschema.Draft202012Validator, name: str) -> None:
    old, new = MISTAKES[name]
    assert old in BASE
    text = BASE.replace(old, new)
    with pytest.raises(s.ScenarioError):
        s.parse_scenario(text, name="C07.yaml")
    assert _errors(validator, text), f"the schema accepts a file with {name}"


def test_a_fault_action_and_its_parameters(validator: jsonschema.Draft202012Validator) -> None:
    good = TEAM_PAIR.replace("{type: drop_response}", "{type: delay_response, timeout_multiple: 2}")
    bad = TEAM_PAIR.replace("{type: drop_response}", "{type: delay_response, timeout_multiply: 2}")
    s.parse_scenario(good, name="t.yaml")
    assert _errors(validator, good) == []
    with pytest.raises(s.ScenarioError):
        s.parse_scenario(bad, name="t.yaml")
    assert _errors(validator, bad)


def _consts(node: Any) -> set[str]:
    return {o["properties"]["type"]["const"] for o in node["oneOf"]}


def test_one_vocabulary_each() -> None:
    defs = json_schema()["$defs"]
    assert _consts(defs["action"]) == set(s.FAULT_ACTIONS)
    assert {next(iter(o["properties"])) for o in defs["step"]["oneOf"] if o.get("type") == "object"} == set(s.STEP_TYPES)
    assert set(defs["toggles"]["properties"]) == set(s.TOGGLES)
    assert set(defs["terminal_settings"]["properties"]) == set(s.TERMINAL_SETTINGS)
    assert set(defs["host_settings"]["properties"]) == set(s.HOST_SETTINGS)
    crash = next(o for o in defs["step"]["oneOf"] if o.get("properties", {}).get("crash_at"))
    assert crash["properties"]["crash_at"]["properties"]["point"]["enum"] == list(vocabulary.CRASH_POINTS)
    for kind, (params, _) in s.ACTION_PARAMS.items():
        action = next(o for o in defs["action"]["oneOf"] if o["properties"]["type"]["const"] == kind)
        assert set(action["properties"]) == {"type", *params}, kind


def test_file_and_control_api_fault_vocabularies_agree() -> None:
    """Each fault action has the same parameters in a scenario file and on the control API, but for the
    file's own terms (delays as timeout multiples, money as decimal strings) in FILE_PARAM_API_NAMES."""
    import dataclasses

    from host_stub.faults import ACTIONS

    assert sorted(s.FAULT_ACTIONS) == sorted(ACTIONS)
    for kind, (params, _) in s.ACTION_PARAMS.items():
        api = {f.name for f in dataclasses.fields(ACTIONS[kind])}
        assert {s.FILE_PARAM_API_NAMES.get(p, p) for p in params} == api, kind


def test_the_runner_performs_every_step_type() -> None:
    import typing

    from emulator.runner import _STEP_HANDLERS

    assert set(_STEP_HANDLERS) == set(typing.get_args(s.Step))
