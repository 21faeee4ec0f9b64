"""The user documentation stays in step with the code, and the repository stands alone.

``docs/domain.md`` must have a section for every cause file, every crash point, every invariant and
every fault action type the code knows; its internal links and those of ``docs/architecture.md`` must
resolve; and no shipped text (README, docs, package sources and data, benchmarks, pyproject) may point
readers at reference material outside the repository, which users never receive.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emulator.invariants import INVARIANTS
from host_stub.faults import ACTIONS
from specs.vocabulary import CRASH_POINTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOMAIN = DOCS / "domain.md"
ARCHITECTURE = DOCS / "architecture.md"
SCENARIOS = ROOT / "specs" / "scenarios"

#: Headings other text links to (``docs/domain.md#crash-points`` ...): they must exist exactly.
CITED_HEADINGS = ("## Dialects and framing", "## Message flows", "## Crash points", "## Response codes",
                  "## Invariants", "## Cause matrix", "## Fault primitives")

#: What users do get: everything shipped or shown outside tests.
SHIPPED = ("README.md", "pyproject.toml", "docs", "specs", "emulator", "host_stub", "benchmarks")
#: Pointers to material users do not have.
FORBIDDEN = ("../shared", "DESIGN.md", "domain.md §")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The body of a level-2 section: from its heading to the next level-2 heading."""
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        pytest.fail(f"docs/domain.md has no line {heading!r}")
    body = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def _cause_ids() -> list[str]:
    ids = sorted(p.stem for p in SCENARIOS.glob("C*.yaml"))
    assert ids, f"no scenario files C*.yaml found in {SCENARIOS}"
    return ids


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    """Every anchor a Markdown file defines: heading slugs (with GitHub's -1, -2 for repeats) and <a id>."""
    seen: dict[str, int] = {}
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        slug = _slug(line.lstrip("#"))
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def test_cited_headings_exist() -> None:
    lines = _text(DOMAIN).splitlines()
    missing = [h for h in CITED_HEADINGS if h not in lines]
    assert not missing, f"docs/domain.md lacks the headings {missing}"
    assert "crash-points" in _anchors(_text(DOMAIN))


@pytest.mark.parametrize("cause", _cause_ids())
def test_every_cause_file_has_a_section(cause: str) -> None:
    matrix = _section(_text(DOMAIN), "## Cause matrix")
    assert re.search(rf"^### {cause}\b", matrix, re.MULTILINE), (
        f"specs/scenarios/{cause}.yaml has no '### {cause} ...' heading under '## Cause matrix' in docs/domain.md")


def test_no_section_for_a_cause_without_a_file() -> None:
    documented = re.findall(r"^### (C\d\d)\b", _section(_text(DOMAIN), "## Cause matrix"), re.MULTILINE)
    assert sorted(documented) == _cause_ids(), "the cause sections of docs/domain.md and the scenario files differ"


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_every_crash_point_is_described(point: str) -> None:
    assert f"({point})" in _section(_text(DOMAIN), "## Crash points"), (
        f"crash point ({point}) is not described under '## Crash points' in docs/domain.md")


@pytest.mark.parametrize("invariant", sorted(INVARIANTS))
def test_every_invariant_is_described(invariant: str) -> None:
    assert re.search(rf"\b{invariant}\b", _section(_text(DOMAIN), "## Invariants")), (
        f"{invariant} is not described under '## Invariants' in docs/domain.md")


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_fault_action_is_described(action: str) -> None:
    assert f"`{action}`" in _section(_text(DOMAIN), "## Fault primitives"), (
        f"fault action {action!r} of host_stub.faults is not described under '## Fault primitives' in docs/domain.md")


@pytest.mark.parametrize("doc", [DOMAIN, ARCHITECTURE], ids=lambda p: p.name)
def test_links_to_anchors_resolve(doc: Path) -> None:
    text = _text(doc)
    targets = {doc.name: _anchors(text), "domain.md": _anchors(_text(DOMAIN)),
               "architecture.md": _anchors(_text(ARCHITECTURE))}
    broken = []
    for file, anchor in re.findall(r"\]\(((?:[\w./-]*?\.md)?)#([^)\s]+)\)", text):
        name = Path(file).name if file else doc.name
        if name in targets and anchor not in targets[name]:
            broken.append(f"{file}#{anchor}")
    assert not broken, f"{doc.name} links to anchors that do not exist: {broken}"


def _shipped_files() -> list[Path]:
    files: list[Path] = []
    for name in SHIPPED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                         and p.suffix not in (".pyc", ".sqlite", ".db"))
    return files


def test_nothing_shipped_points_outside_the_repo() -> None:
    offending = []
    for path in _shipped_files():
        try:
            text = _text(path)
        except UnicodeDecodeError:
            continue  # not text
        for number, line in enumerate(text.splitlines(), start=1):
            for needle in FORBIDDEN:
                if needle in line:
                    offending.append(f"{path.relative_to(ROOT)}:{number}: {needle!r}")
    assert not offending, (
        f"{len(offending)} line(s) point users at material they do not have (cite docs/domain.md or "
        "docs/architecture.md instead):\n" + "\n".join(offending))
