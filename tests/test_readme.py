"""The README's quick start is exactly two commands, and CI runs exactly those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert ".venv/bin/pos-terminal matrix" in commands[0]
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_commands_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in _quick_start_commands():
        assert command in ci_lines, f"{command!r} is not a line of .ci/run"


def test_the_readme_profile_example_loads_and_its_error_is_the_one_shown() -> None:
    import pytest

    from specs.dialects import build_dialect
    from specs.profile import ProfileError, parse_profile

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Matching a real host", 1)[1].split("\n### ", 1)[0]
    found = re.search(r"```yaml\n(.+?)\n```", section, re.S)
    assert found, "the profile section has no YAML example"
    example = found.group(1)
    assert build_dialect(parse_profile(example, name="acme.yaml")).profile.intl_sign_on == "3=920000"
    shown = re.search(r"\(`(acme.yaml line \d+: key 'fields.22.align': [^`]+)`\)", re.sub(r"\s+", " ", section))
    assert shown, "the profile section shows no load error"
    with pytest.raises(ProfileError) as exc_info:
        parse_profile(example.replace("{align: left}", "{align: middle}"), name="acme.yaml")
    assert str(exc_info.value) == shown.group(1)
