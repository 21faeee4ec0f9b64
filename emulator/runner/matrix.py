"""The matrix: select the scenarios, schedule their runs ``jobs`` at a time on host children, and
assemble one row per scenario."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from emulator.control_client import ControlApiUnreachable
from emulator.hostproc import host_address
from emulator.invariants import Evidence
from emulator.runner.hosts import HostHandle, HostPool
from emulator.runner.results import (
    RUN_NAMES,
    CauseRow,
    DialectResult,
    MatrixError,
    MatrixOptions,
    MatrixResult,
    RunResult,
)
from emulator.runner.runs import _Run, expectation_checks, has_crash
from specs.logs import configure_logging
from specs.scenario import (
    Scenario,
    load_all,
)

# ============================================================================ the matrix


@dataclass
class _Unit:
    scenario: Scenario
    dialect: str
    result: DialectResult

    @property
    def cost(self) -> float:
        """Rough relative duration, to start the long units first."""
        steps = self.scenario.steps
        crash = has_crash(steps) or has_crash(self.scenario.fix.steps or ())
        return len(steps) + (40 if crash else 0)


def select_scenarios(scenarios: Sequence[Scenario], only: Sequence[str]) -> list[Scenario]:
    """The scenarios to run: all, or those named, in any letter case (a merged stub brings its
    covering file)."""
    if not only:
        return list(scenarios)
    by_id = {s.id.casefold(): s for s in scenarios}
    unknown = [c for c in only if c.casefold() not in by_id]
    if unknown:
        ids = [s.id for s in scenarios]
        shown = f"{ids[0]} ... {ids[-1]}" if len(ids) > 6 else ", ".join(ids)
        raise MatrixError(f"unknown scenario id {', '.join(unknown)}, expecting one of {shown}")
    wanted = {by_id[c.casefold()].id for c in only}
    for name in list(wanted):
        target = by_id[name.casefold()].merged_into
        if target:
            wanted.add(target)
    return [s for s in scenarios if s.id in wanted]


def run_names(s: Scenario) -> list[str]:
    """The runs one scenario makes in one dialect, in order: the flawed run unless it is a regression
    file, the fixed run, each preceded by its uninterrupted reference when it has a crash step."""
    names = []
    for name in RUN_NAMES:
        variant = "broken" if name.startswith("broken") else "fixed"
        if variant == "broken" and (s.expect is None or s.expect.broken is None):
            continue
        if name.endswith("_uninterrupted") and not has_crash(s.steps_for(variant)):
            continue
        names.append(name)
    return names


async def run_unit(unit: _Unit, host: HostHandle, options: MatrixOptions, work_dir: Path,
                   on_run: Callable[[_Unit, RunResult], None] | None = None) -> None:
    """The runs of one scenario in one dialect, one after the other on one host."""
    s = unit.scenario
    assert s.expect is not None
    started = time.monotonic()
    references: dict[str, Evidence | None] = {}
    for name in run_names(s):
        variant = "broken" if name.startswith("broken") else "fixed"
        run = _Run(s, unit.dialect, name, host, options, work_dir)
        result = await run.execute()
        if name.endswith("_uninterrupted"):
            if result.evidence is not None:
                run.judge(None, None)
            references[variant] = result.evidence
        else:
            expectation = s.expect.fixed if variant == "fixed" else s.expect.broken
            assert expectation is not None
            if result.evidence is not None:
                run.judge(expectation, references.get(variant))
            else:
                result.passed = False
        if name == "fixed" and result.evidence is not None and s.expect.broken is not None:
            # The symptom must be the flaw's: the flawed run's expectation must not also be met
            # by the fixed run (else the "fix" changed nothing the file can see).
            still = expectation_checks(s.expect.broken, result.invariants, run.view, run.family)
            if all(c.passed for c in still):
                result.failures.append("the symptom's checks also pass with the fix on: "
                                       + "; ".join(c.what for c in still[:4]))
                result.passed = False
        result.evidence = None  # not kept: the report has what it needs
        unit.result.runs[name] = result
        if on_run is not None:
            on_run(unit, result)
    unit.result.seconds = time.monotonic() - started


async def run_matrix(options: MatrixOptions, *, progress: Callable[[str], None] | None = None) -> MatrixResult:
    """Run the selected scenarios, ``options.jobs`` units at a time.

    Args:
        options: what to run and how.
        progress: called with one line per finished run (for stderr).

    Returns:
        One row per selected cause, with every run's evidence, checks and messages.

    Raises:
        MatrixError: nothing to run, an unknown cause id or dialect, a host that does not answer.
    """
    started_at = datetime.now()
    wall_start = time.monotonic()
    if options.host is not None and options.control_url is None:
        raise MatrixError("--host needs --control (the host's control API URL)")
    if options.host is not None and len(options.dialects) != 1:
        raise MatrixError("--host needs exactly one --dialect (the dialect that host speaks)")
    if options.host is not None:
        try:
            host_address(options.host)
        except ValueError as exc:
            raise MatrixError(str(exc)) from None
    if options.scenarios is None:
        loaded = load_all(options.scenario_dir)
    else:
        loaded = sorted(options.scenarios, key=lambda s: s.id)
        twice = sorted({s.id for s in loaded if sum(1 for o in loaded if o.id == s.id) > 1})
        if twice:
            raise MatrixError(f"scenario {', '.join(twice)} given more than once, expecting each id once per run")
    scenarios = select_scenarios(loaded, options.only)
    rows = {s.id: CauseRow(scenario=s) for s in scenarios}
    units: list[_Unit] = []
    for s in scenarios:
        if not s.runs:
            continue
        dialects = [d for d in s.dialects if not options.dialects or d in options.dialects]
        for d in dialects:
            unit = _Unit(scenario=s, dialect=d,
                         result=DialectResult(dialect=d, expects_symptom=s.status == "runnable"))
            rows[s.id].dialects.append(unit.result)
            units.append(unit)
    for row in rows.values():
        if row.scenario.status == "merged" and row.scenario.merged_into in rows:
            row.merged_target = rows[row.scenario.merged_into]
    # runnable files none of whose dialects was selected are left out
    shown = [r for r in rows.values() if not r.scenario.runs or r.dialects]
    if not units and not any(r.scenario.status == "outside" for r in shown):
        raise MatrixError("no scenario to run with the given --only / --dialect")
    units.sort(key=lambda u: u.cost, reverse=True)
    total_runs = sum(sum(1 for name in run_names(u.scenario) if not name.endswith("_uninterrupted")) for u in units)
    done = 0

    def on_run(unit: _Unit, run: RunResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            verdict = "ok" if run.passed else "FAILED"
            first = f" — {run.failures[0]}" if run.failures and not run.passed else ""
            progress(f"[{done:3d}/{total_runs}] {unit.scenario.id} {unit.dialect:<8} {run.name:<21} {verdict:<6} "
                     f"{run.seconds:5.1f} s{first}")

    jobs = 1 if options.host is not None else max(1, options.jobs)
    work_dir = Path(tempfile.mkdtemp(prefix="pos-harness-matrix-"))
    queue: asyncio.Queue[_Unit] = asyncio.Queue()
    for unit in units:
        queue.put_nowait(unit)
    try:
        pool = HostPool(options)

        async def worker(number: int) -> None:
            while True:
                try:
                    unit = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                host = await pool.get(number, unit.dialect, unit.scenario.profile)
                await run_unit(unit, host, options, work_dir, on_run)

        try:
            await asyncio.gather(*(worker(n) for n in range(jobs)))
        finally:
            await pool.close()
    except ControlApiUnreachable as exc:
        raise MatrixError(f"host control API unreachable: {exc}") from None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return MatrixResult(rows=[rows[s.id] for s in scenarios if rows[s.id] in shown],
                        wall_seconds=time.monotonic() - wall_start, started_at=started_at, options=options)


def run(options: MatrixOptions, *, progress: Callable[[str], None] | None = None) -> MatrixResult:
    """:func:`run_matrix` on a fresh event loop.

    When the caller has not configured logging, it is configured here (errors only, masked): the
    terminal core logs every message it sends, and structlog's defaults would print card data.
    """
    if not structlog.is_configured():
        configure_logging(level="error")
    return asyncio.run(run_matrix(options, progress=progress))
