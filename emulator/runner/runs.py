"""One run of one scenario in one dialect: prepare the host, perform each step (a dispatch table of
step handlers), record the wire trace, gather the evidence and judge it."""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from emulator.channel import CRASH_EXIT_CODE, Endpoint, run_invocation
from emulator.invariants import INVARIANTS, Evidence, InvariantResult, check_all
from emulator.journal import Journal
from emulator.messages import DEFAULT_MID, DEFAULT_TID, Profile
from emulator.pcap import PcapWriter
from emulator.runner.checks import RunView, evaluate_check
from emulator.runner.hosts import HostHandle, api
from emulator.runner.results import (
    _COMMAND_MTIS,
    _COMMAND_OPS,
    CHILD_TIMEOUT_SECONDS,
    FAST_BACKOFF,
    CheckResult,
    MatrixOptions,
    RunAborted,
    RunResult,
    StepRecord,
    TraceItem,
    _money_text,
    outcome_of,
)
from emulator.settings import SETTING_NAMES, TerminalSettings
from emulator.terminal import (
    Books,
    Idle,
    Operation,
    Reference,
    Result,
    Settle,
    Terminal,
)
from specs.cards import Card, seeded_card
from specs.cliopts import link_of
from specs.masking import mask_message, mask_pan, mask_value
from specs.scenario import (
    TERMINAL_FAULTS,
    TERMINAL_SETTINGS,
    TOGGLES,
    ClockStep,
    CrashAt,
    ExpectStep,
    HostFaultStep,
    HostRegistryStep,
    HostSettingsStep,
    OperatorNote,
    Registry,
    Restart,
    RunExpectation,
    Scenario,
    Step,
    TerminalSettingsStep,
    TerminalStep,
    host_settings_body,
)
from specs.transactions import layout

# ============================================================================ the run's trace


class _Recorder:
    """Collects the trace of one run: messages, link events, status snapshots, notes."""

    def __init__(self, pans: Iterable[str], clock: Callable[[], datetime] = datetime.now) -> None:
        self.items: list[TraceItem] = []
        self.start = time.monotonic()
        self.wall_start = time.time()  # the terminal's own trace is stamped with wall-clock time
        self.clock = clock
        self.step: str | None = None
        self.step_index: int | None = None
        #: Every PAN the run may put on the wire, longest first: masked wherever it appears (CUP
        #: upload field 48 carries PANs inside a longer digit string that field masking cannot see).
        self._pans = sorted({p for p in pans if p}, key=len, reverse=True)

    def now_ms(self) -> float:
        return (time.monotonic() - self.start) * 1000.0

    def scrub(self, message: Mapping[str, Any]) -> dict[str, str]:
        masked = mask_message(message)
        for key, value in masked.items():
            if isinstance(value, str):
                for pan in self._pans:
                    if pan in value:
                        value = value.replace(pan, mask_pan(pan))
                masked[key] = value
        return masked

    def scrub_value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            if "t" in value and all(isinstance(k, str) and (k == "t" or k.isdigit()) for k in value):
                return self.scrub(value)
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, str):
            for pan in self._pans:
                if pan in value:
                    value = value.replace(pan, mask_pan(pan))
            return mask_value(value)
        return value

    def add(self, kind: str, *, at_ms: float | None = None, **values: Any) -> TraceItem:
        now_ms = self.now_ms()
        at = now_ms if at_ms is None else at_ms
        business_at = self.clock() - timedelta(milliseconds=now_ms - at)
        item = TraceItem(seq=len(self.items) + 1, at_ms=at, kind=kind, step=self.step, step_index=self.step_index,
                         business_at=business_at, **values)
        self.items.append(item)
        return item


# ============================================================================ one run


def _terminal_setting_name(name: str) -> str:
    kind = TOGGLES.get(name) or TERMINAL_SETTINGS.get(name)
    return f"{name}_minor" if kind in ("money", "money0") else name


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def uninterrupted_steps(steps: Sequence[Step]) -> tuple[Step, ...]:
    """The steps without crashes: each ``crash_at`` replaced by its ``then`` step, ``restart`` left out."""
    out: list[Step] = []
    for step in steps:
        if isinstance(step, CrashAt):
            out.append(step.then)
        elif not isinstance(step, Restart):
            out.append(step)
    return tuple(out)


def has_crash(steps: Sequence[Step]) -> bool:
    return any(isinstance(s, CrashAt) for s in steps)


class _Run:
    """One run of one scenario in one dialect against one host."""

    def __init__(self, scenario: Scenario, dialect: str, name: str, host: HostHandle, options: MatrixOptions,
                 work_dir: Path) -> None:
        self.scenario = scenario
        self.dialect_name = dialect
        # a scenario's host profile (checked when the file was loaded) shapes both sides' wire
        self.dialect, self.framing = link_of(dialect, scenario.profile)
        self.family = self.dialect.family
        self.name = name
        self.variant = "broken" if name.startswith("broken") else "fixed"
        self.uninterrupted = name.endswith("_uninterrupted")
        self.host = host
        self.options = options
        self.work_dir = work_dir
        self.timeout = options.response_timeout_seconds
        steps = scenario.steps_for(self.variant)
        self.steps = uninterrupted_steps(steps) if self.uninterrupted else tuple(steps)
        self.result = RunResult(name=name, variant=self.variant, dialect=dialect)
        self.pans = scenario.card_pans()
        self.expiries = self._card_expiries()
        # terminal configuration: scenario + variant settings and toggles, then terminal_settings steps
        self.config: dict[str, Any] = dict(scenario.terminal_config(self.variant))
        self.tid = str(self.config.pop("tid", DEFAULT_TID))
        self.mid = str(self.config.pop("mid", DEFAULT_MID))
        default = self._default_card()
        self.clock_base: tuple[datetime, float] | None = None
        self.recorder = _Recorder([*self.pans.values(), default.pan], clock=self.now)
        self.journal_path = ":memory:"
        if has_crash(self.steps):
            self.journal_path = str(work_dir / f"{scenario.id}-{dialect}-{name}.sqlite")
        self.journal = Journal(self.journal_path)
        self.pcap: PcapWriter | None = None
        if options.pcap_dir is not None:
            options.pcap_dir.mkdir(parents=True, exist_ok=True)
            path = options.pcap_dir / f"{scenario.id}-{dialect}-{name}.pcap"
            path.unlink(missing_ok=True)  # one file per run, not appended to an earlier matrix's
            self.pcap = PcapWriter(path, dialect=self.dialect, framing=self.framing)
        self.records: dict[str, StepRecord] = {}
        self.trace_seq = 0
        self.expect_checks: list[CheckResult] = []

    # ---------------------------------------------------------------- terminal settings and identity

    def _card_expiries(self) -> dict[str, str]:
        """Card alias -> the expiry the registry gives it (the card the customer holds has it too)."""
        out: dict[str, str] = {}
        for registry in self._registries():
            for alias, entry in registry.cards.items():
                if "expiry" in entry.values:
                    out[alias] = str(entry.values["expiry"])
        return out

    def _default_card(self) -> Card:
        return seeded_card(seed=int(self.tid) if self.tid.isdigit() else 8583,
                           scheme="unionpay" if self.family == "cup" else "visa")

    def _card(self, alias: str | None) -> Card:
        if alias is None:
            return self._default_card()
        pan = self.pans[alias]
        seeded = next((seeded_card(seed=e.values["seed"], scheme=e.values.get("scheme", "visa"))
                       for r in self._registries() for a, e in r.cards.items() if a == alias and "seed" in e.values),
                      None)
        expiry = self.expiries.get(alias) or (seeded.expiry if seeded else "3012")
        return Card(pan=pan, expiry=expiry)

    def _registries(self) -> Iterable[Registry]:
        yield self.scenario.host.registry
        yield self.scenario.fix.host_registry
        for s in (*self.scenario.steps, *(self.scenario.fix.steps or ())):
            if isinstance(s, HostRegistryStep):
                yield s.registry

    def settings(self, extra: Mapping[str, Any] | None = None) -> TerminalSettings:
        """The terminal settings now; a name the terminal does not offer aborts the run."""
        values: dict[str, Any] = dict(FAST_BACKOFF)
        missing = []
        for name, value in {**self.config, **(extra or {})}.items():
            if name not in SETTING_NAMES:
                missing.append(name)
                continue
            values[name] = tuple(value) if isinstance(value, list) else value
        if missing:
            raise RunAborted("terminal setting" + ("s " if len(missing) > 1 else " ") + ", ".join(sorted(missing))
                             + " not offered by the terminal (emulator/settings.py) yet")
        return dataclasses.replace(TerminalSettings(), **values)

    def settings_file_values(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        settings = self.settings(extra)
        default = TerminalSettings()
        return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)
                if getattr(settings, f.name) != getattr(default, f.name)}

    def profile(self) -> Profile:
        return Profile(tid=self.tid, mid=self.mid, family=self.family, wire=self.dialect.profile)

    def now(self) -> datetime:
        """The host's business clock as the terminal follows it (synced from 12/13 at sign-on)."""
        if self.clock_base is None:
            return datetime.now()
        base, at = self.clock_base
        return base + timedelta(seconds=time.monotonic() - at)

    # ---------------------------------------------------------------- the run

    async def execute(self) -> RunResult:
        started = time.monotonic()
        try:
            await self._prepare_host()
            self.settings()  # fail fast on a setting the terminal does not offer
            for index, step in enumerate(self.steps):
                await self._step(index, step)
            await self._collect()
        except RunAborted as exc:
            self.result.failures.append(f"cannot run faithfully: {exc}")
        except (OSError, ValueError, KeyError, TimeoutError) as exc:
            # One run going wrong must not take the matrix down: the row fails and says why.
            where = self.result.steps[-1].name if self.result.steps else "preparing the host"
            self.result.failures.append(f"runner error at {where}: {type(exc).__name__}: {exc}")
        finally:
            self.journal.close()
            self.result.seconds = time.monotonic() - started
            self.result.trace = self.recorder.items
        return self.result

    async def _prepare_host(self) -> None:
        control = self.host.control
        await api(control.reset)
        s = self.scenario
        variant = s.variant(self.variant)
        settings = {**s.host.settings, **variant.host_settings}
        if settings:
            await self._put_settings(settings)
        for registry in (s.host.registry, variant.host_registry):
            await self._put_registry(registry)
        for fault in s.host.faults:
            await api(control.add_fault, **fault.control_body(pans=self.pans, response_timeout_seconds=self.timeout))

    async def _put_settings(self, settings: Mapping[str, Any]) -> None:
        try:
            await api(self.host.control.put_settings, **host_settings_body(settings))
        except RunAborted as exc:
            raise RunAborted(f"host settings {', '.join(sorted(settings))} not accepted by the host ({exc})") from None

    async def _put_registry(self, registry: Registry) -> None:
        control = self.host.control
        for mid, entry in registry.merchants.items():
            await api(control.put_registry, "merchants", mid, **entry.control_body())
        for tid, entry in registry.terminals.items():
            await api(control.put_registry, "terminals", tid, **entry.control_body())
        for alias, entry in registry.cards.items():
            await api(control.put_registry, "cards", self.pans[alias], **entry.control_body())

    def _record(self, index: int, step: Step, kind: str, label: str | None, name: str) -> StepRecord:
        record = StepRecord(index=index, kind=kind, label=label, name=name, started_ms=self.recorder.now_ms(),
                            tid=self.tid)
        self.result.steps.append(record)
        self.recorder.step, self.recorder.step_index = label or name, index
        # by label, or by name (``refund#2``: never a label) so an unlabelled step's intent counts too
        self.records[label or name] = record
        return record

    async def _step(self, index: int, step: Step) -> None:
        handler = _STEP_HANDLERS[type(step)]
        record = await handler(self, index, step)
        record.ended_ms = self.recorder.now_ms()

    async def _on_terminal(self, index: int, step: TerminalStep) -> StepRecord:
        record = self._record(index, step, "terminal", step.label, step.label or f"{step.command}#{index}")
        await self._terminal_step(step, record)
        return record

    async def _on_crash_at(self, index: int, step: CrashAt) -> StepRecord:
        then = step.then
        record = self._record(index, step, "crash_at", then.label, then.label or f"{then.command}#{index}")
        record.text = f"crash point {step.point} armed"
        await self._crash_step(step, record)
        return record

    async def _on_restart(self, index: int, step: Restart) -> StepRecord:
        record = self._record(index, step, "restart", step.label, step.label or f"restart#{index}")
        await self._restart(record)
        return record

    async def _on_clock(self, index: int, step: ClockStep) -> StepRecord:
        record = self._record(index, step, "clock", None, f"clock#{index}")
        control = self.host.control
        answer = await (api(control.set_clock, step.set) if step.set is not None
                        else api(control.advance_clock, step.advance_seconds))
        self.clock_base = (datetime.fromisoformat(answer["now"]), time.monotonic())
        record.text = f"host clock {answer['now']} (business date {answer.get('business_date')})"
        self.recorder.add("note", text=f"clock: {record.text}")
        return record

    async def _on_host_fault(self, index: int, step: HostFaultStep) -> StepRecord:
        record = self._record(index, step, "host_fault", None, f"host_fault#{index}")
        control = self.host.control
        if step.add is not None:
            await api(control.add_fault, **step.add.control_body(pans=self.pans, response_timeout_seconds=self.timeout))
            record.text = f"fault {step.add.id or ''} added: {step.add.action.type}".replace("  ", " ")
        elif step.clear == "all":
            await api(control.clear_faults)
            record.text = "all faults cleared"
        else:
            assert step.clear is not None
            await api(control.remove_fault, step.clear)
            record.text = f"fault {step.clear} cleared"
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_host_registry(self, index: int, step: HostRegistryStep) -> StepRecord:
        record = self._record(index, step, "host_registry", None, f"host_registry#{index}")
        await self._put_registry(step.registry)
        record.text = "registry changed: " + ", ".join(
            [*(f"merchant {k} {dict(v.control_body())}" for k, v in step.registry.merchants.items()),
             *(f"terminal {k} {dict(v.control_body())}" for k, v in step.registry.terminals.items()),
             *(f"card {k}" for k in step.registry.cards)])
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_host_settings(self, index: int, step: HostSettingsStep) -> StepRecord:
        record = self._record(index, step, "host_settings", None, f"host_settings#{index}")
        await self._put_settings(step.settings)
        record.text = "settings changed: " + ", ".join(step.settings)
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_terminal_settings(self, index: int, step: TerminalSettingsStep) -> StepRecord:
        record = self._record(index, step, "terminal_settings", None, f"terminal_settings#{index}")
        for name, value in step.settings.items():
            if name == "tid":
                self.tid = str(value)
            elif name == "mid":
                self.mid = str(value)
            else:
                self.config[_terminal_setting_name(name)] = _plain(value)
        self.settings()
        record.text = "terminal settings: " + ", ".join(f"{k}={_plain(v)}" for k, v in step.settings.items())
        self.recorder.add("note", text=record.text)
        return record

    async def _on_operator(self, index: int, step: OperatorNote) -> StepRecord:
        record = self._record(index, step, "operator", None, f"operator#{index}")
        record.text = step.note
        self.recorder.add("note", text=f"operator: {step.note}")
        return record

    async def _on_expect(self, index: int, step: ExpectStep) -> StepRecord:
        record = self._record(index, step, "expect", None, f"expect#{index}")
        if step.runs in ("both", self.variant) and not self.uninterrupted:
            view = await self._view()
            results = evaluate_check(step.check, view, self.family)
            for c in results:
                c.what = f"at step {index}: {c.what}"
            self.expect_checks.extend(results)
            failed = [c for c in results if not c.passed]
            record.outcome = "passed" if not failed else "failed"
            record.text = "; ".join(f"{c.what}: {c.detail}" for c in failed) or "checks passed"
        return record

    # ---------------------------------------------------------------- terminal commands in-process

    def _skip_reason(self, step: TerminalStep) -> str | None:
        if step.retry_of is None:
            return None
        original = self.records.get(step.retry_of)
        if original is None or original.outcome is None:
            return f"{step.retry_of} did not run"
        if original.outcome == "skipped":
            return f"{step.retry_of} was skipped"
        if original.outcome == "approved":
            return f"{step.retry_of} was approved"
        return None

    def _reference(self, label: str | None, books: Books) -> Reference:
        if label is None:
            return Reference()
        original = self.records.get(label)
        invoice = original.details.get("invoice") if original else None
        if invoice is None and original is not None and original.stan:
            record = next((r for r in (*books.records, *books.history) if r.stan == original.stan), None)
            invoice = record.invoice if record else None
        return Reference(invoice=invoice or "999999")  # an original that never made it: nothing eligible

    def operation(self, step: TerminalStep, books: Books) -> Operation:
        now = self.now()
        kwargs: dict[str, Any] = {"now": now}
        op_type = _COMMAND_OPS[step.command]
        names = {f.name for f in dataclasses.fields(op_type)}
        if "amount_minor" in names:
            kwargs["amount_minor"] = step.amount_minor
        if "card" in names:
            kwargs["card"] = self._card(step.card)
        if "original" in names:
            kwargs["original"] = self._reference(step.original, books)
        if step.command == "adjust":
            kwargs["tip_minor"] = step.tip_minor
        if step.operator is not None and "operator" in names:
            kwargs["operator"] = step.operator
        if step.entry is not None and "entry" in names:
            kwargs["entry"] = step.entry
        return op_type(**kwargs)  # type: ignore[no-any-return]

    async def _operate(self, operation: Operation, settings: TerminalSettings) -> Result:
        terminal = Terminal(self.profile(), self.journal.load(), response_timeout_seconds=self.timeout,
                            settings=settings)
        endpoint = Endpoint.for_timeout(self.host.address, self.host.port, self.timeout)
        framing = self.framing
        try:
            # As ``pos-terminal`` runs one command: a reversal this one left behind goes at once.
            return await run_invocation(operation, terminal=terminal, journal=self.journal, endpoint=endpoint,
                                        framing=framing, dialect=self.dialect, idle_now=self.now, tap=self.pcap)
        finally:
            self._pull_trace()

    def _pull_trace(self) -> int:
        """Move what the terminal wrote to its journal's wire trace since last time onto the ladder:
        requests sent, answers received with the core's own verdict (``matched``, ``mac_verified``),
        timeouts, lost links, unreadable answers, failed connects, the crash point it died at.
        Returns how many crash events came with it."""
        crashes = 0
        for row in self.journal.trace(since=self.trace_seq):
            self.trace_seq = max(self.trace_seq, int(row["seq"]))
            try:
                epoch = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00")).timestamp()
                at_ms = max(0.0, (epoch - self.recorder.wall_start) * 1000.0)
            except ValueError:
                at_ms = None
            kind, message = str(row["kind"]), row.get("message")
            values: dict[str, Any] = {"text": str(row.get("detail") or "")}
            if isinstance(message, Mapping):
                values["message"] = self.recorder.scrub(message)
                if kind == "sent":
                    values["mac"] = "64" in message
            if kind == "received":
                values["matched"] = row.get("matched")
                values["mac_verified"] = row.get("mac_verified")
            if kind == "crash":
                crashes += 1
            self.recorder.add(kind, at_ms=at_ms, **values)
        return crashes

    def _own_mti(self, command: str | None) -> str | None:
        if command is None or command == "restart":
            return None
        return _COMMAND_MTIS.get(command) or layout(command, self.family).mti

    def _apply_result(self, record: StepRecord, result: Mapping[str, Any]) -> None:
        record.outcome = outcome_of(result)
        record.rc = result.get("rc")
        # The step's own request: a sale blocked by a reversal it could not clear reports the
        # reversal (0400, the original's STAN); that STAN is not the sale's.
        own = self._own_mti(record.command)
        record.stan = result.get("stan") if own is None or result.get("mti") == own else None
        record.text = str(result.get("text", ""))
        record.details = {k: v for k, v in result.items()
                          if k not in ("command", "outcome", "rc", "stan", "text", "trace")}

    def _status(self) -> None:
        books = self.journal.load()
        self.recorder.add("status", pending_reversals=tuple(r.stan for r in books.reversals),
                          saf_queue=tuple(a.stan for a in books.advices),
                          settlement_state="idle" if books.settlement is None else books.settlement.stage.value)

    async def _terminal_step(self, step: TerminalStep, record: StepRecord) -> None:
        record.command, record.intent = step.command, step.intent
        why = self._skip_reason(step)
        if why is not None:
            record.outcome, record.text = "skipped", why
            return
        extra = {TERMINAL_FAULTS[step.terminal_fault]: True} if step.terminal_fault else {}
        settings = self.settings(extra)
        books = self.journal.load()
        result = await self._operate(self.operation(step, books), settings)
        self._apply_result(record, result.as_dict())
        self._status()

    async def _restart(self, record: StepRecord) -> None:
        """Boot from the journal: pending reversals first, then an interrupted settlement resumed."""
        self.recorder.add("restart", text="terminal restarted from its journal")
        settings = self.settings()
        books = self.journal.load()
        results = []
        if books.reversals:
            results.append(await self._operate(Idle(now=self.now()), settings))
        if self.journal.load().settlement is not None:
            results.append(await self._operate(Settle(now=self.now()), settings))
        record.command = "restart"
        if results:
            self._apply_result(record, results[-1].as_dict())
            record.text = "; ".join(f"{r.command}: {r.text}" for r in results)
        else:
            record.outcome, record.text = "approved", "nothing owed"
        self._status()

    # ---------------------------------------------------------------- crash points in a child process

    def cli_arguments(self, step: TerminalStep, books: Books) -> list[str]:
        """``pos-terminal`` arguments for one terminal step (after the common options)."""
        command = step.command.replace("_", "-")
        args = [command]
        if step.amount_minor is not None:
            args.append(_money_text(step.amount_minor))
        if step.command in ("sale", "balance", "preauth", "offline_sale"):
            card = self._card(step.card)
            args += ["--pan", card.pan, "--expiry", card.expiry]
        if step.original is not None:
            reference = self._reference(step.original, books)
            if reference.invoice:
                args += ["--invoice", reference.invoice]
        if step.command == "adjust" and step.tip_minor is not None:
            args += ["--tip", _money_text(step.tip_minor)]
        return args

    async def _crash_step(self, step: CrashAt, record: StepRecord) -> None:
        then = step.then
        record.command, record.intent = then.command, then.intent
        why = self._skip_reason(then)
        if why is not None:
            record.outcome, record.text = "skipped", why
            return
        extra = {TERMINAL_FAULTS[then.terminal_fault]: True} if then.terminal_fault else {}
        config_path = self.work_dir / f"{self.scenario.id}-{self.dialect_name}-{self.name}-{record.index}.yaml"
        config_path.write_text(yaml.safe_dump(self.settings_file_values(extra)), encoding="utf-8")
        books_before = self.journal.load()
        command = [sys.executable, "-m", "emulator.cli", "--log-level", "error",
                   "--host", self.host.address, "--port", str(self.host.port), "--dialect", self.dialect_name,
                   *(("--profile", self.scenario.profile) if self.scenario.profile else ()),
                   "--journal", self.journal_path, "--tid", self.tid, "--mid", self.mid,
                   "--timeout", str(self.timeout), "--config", str(config_path), "--crash-at", step.point,
                   "--now", self.now().isoformat(timespec="seconds"), "--json",
                   *(("--pcap", str(self.pcap.path)) if self.pcap is not None else ()),
                   *(("--operator", then.operator) if then.operator else ()), *self.cli_arguments(then, books_before)]
        self.recorder.add("child", text=f"pos-terminal --crash-at {step.point} "
                                        f"{' '.join(self.cli_arguments_shown(then))}")
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(CHILD_TIMEOUT_SECONDS):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RunAborted(
                f"pos-terminal child for step {record.name} did not finish in {CHILD_TIMEOUT_SECONDS:g} s") from None
        crashes = self._pull_trace()  # the child wrote its wire trace into the same journal
        if process.returncode == CRASH_EXIT_CODE:
            record.outcome = "crashed"
            sent = [t for t in self.recorder.items if t.kind == "sent" and t.step_index == record.index]
            record.stan = self._own_stan(then, sent, books_before)
            record.text = f"died at crash point {step.point} (exit {CRASH_EXIT_CODE})"
            if not crashes:
                self.recorder.add("crash", text=f"terminal died at crash point {step.point}")
        else:
            try:
                result = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise RunAborted(f"pos-terminal child for step {record.name} exited {process.returncode} without a "
                                 f"result: {err.decode()[-300:]}") from None
            self._apply_result(record, result)
        self._status()

    def cli_arguments_shown(self, step: TerminalStep) -> list[str]:
        args = self.cli_arguments(step, Books())
        return [mask_pan(a) if a in self.pans.values() or a == self._default_card().pan else a for a in args]

    def _own_stan(self, step: TerminalStep, sent: list[TraceItem], books_before: Books) -> str | None:
        """The STAN of the step's own request (not the reversals or sign-on around it)."""
        mti = self._own_mti(step.command)
        for item in sent:
            if item.message and item.message.get("t") == mti:
                return item.message.get("11")
        books = self.journal.load()
        if books.stan != books_before.stan:  # counters saved, nothing sent (crash point a)
            return f"{books.stan:06d}"
        return None

    # ---------------------------------------------------------------- evidence and verdict

    async def _view(self) -> RunView:
        control = self.host.control
        authorizations, settlements, payouts, journal, clock, host_settings = await asyncio.gather(
            api(control.ledger, "authorizations"), api(control.ledger, "settlements"), api(control.ledger, "payouts"),
            api(control.journal), api(control.clock), api(control.settings))
        books = self.journal.load()
        return RunView(
            family=self.family, tid=self.tid, trace=list(self.recorder.items), steps=dict(self.records),
            authorizations=[self.recorder.scrub_value(r) for r in authorizations],
            settlements=[normalise_settlement(self.recorder.scrub_value(r)) for r in settlements],
            payouts=[normalise_payout(r) for r in payouts],
            host_journal=[self.recorder.scrub_value(e) for e in journal],
            books=books, closed_batches=[c.as_dict() for c in books.closed_batches],
            business_date=date.fromisoformat(clock["business_date"]) if clock.get("business_date") else None,
            holidays=frozenset(date.fromisoformat(d) for d in host_settings.get("holidays") or ()),
            final_reversal_codes=tuple(self.settings().final_reversal_codes))

    async def _collect(self) -> None:
        view = await self._view()
        self.result.unfired_faults = [f"{f['id']}: {f['action']['type']}" for f in await api(self.host.control.faults)
                                      if not f.get("fired") and f["action"]["type"] != "refuse_connect"]
        self._annotate_faults(view.host_journal)
        view.trace = list(self.recorder.items)
        self.result.evidence = view.evidence()
        self.result.host = {"authorizations": view.authorizations, "settlements": view.settlements,
                            "payouts": view.payouts, "journal": view.host_journal}
        self.result.terminal = view.terminal_state()
        self.view = view

    def _annotate_faults(self, host_journal: list[dict[str, Any]]) -> None:
        """Mark each request on the ladder with the faults the host applied to it.

        The host journal lists what reached the host, in order, stamped with the business clock;
        a request is paired with the next entry of the same MTI, STAN and TID (or a connection the
        host refused before reading anything) stamped within two seconds of it.
        """
        entries = []
        for entry in host_journal:
            try:
                at = datetime.fromisoformat(str(entry.get("at")))
            except ValueError:
                continue
            entries.append((at, entry))
        used: set[int] = set()
        start = 0
        for item in self.recorder.items:
            if item.kind != "sent" or item.message is None or item.business_at is None:
                continue
            key = (item.message.get("t"), item.message.get("11"), item.message.get("41"))
            for position in range(start, len(entries)):
                at, entry = entries[position]
                if position in used or abs((at - item.business_at).total_seconds()) > 2.0:
                    continue
                same = (entry.get("mti"), entry.get("stan"), entry.get("tid")) == key
                if same or entry.get("mti") is None:
                    used.add(position)
                    while start in used:
                        start += 1
                    item.faults = tuple(str(f) for f in entry.get("faults") or ())
                    if entry.get("outcome") not in (None, "answered"):
                        item.text = f"host: {entry.get('outcome')}"
                    break

    def judge(self, expectation: RunExpectation | None, uninterrupted: Evidence | None) -> None:
        """Evaluate the invariants and the expectations of this run (None: a reference run)."""
        run = self.result
        if run.evidence is None:
            run.passed = False
            return
        evidence = dataclasses.replace(run.evidence, uninterrupted=uninterrupted)
        run.evidence = evidence
        run.invariants = check_all(evidence)
        if expectation is None:
            run.passed = not run.failures
            return
        run.checks.extend(expectation_checks(expectation, run.invariants, self.view, self.family))
        if self.variant == "fixed":
            run.checks.extend(claim_checks(expectation, run.invariants))
        run.checks.extend(self.expect_checks)
        run.failures.extend(f"{c.what}: {c.detail}" if c.detail else c.what for c in run.checks if not c.passed)
        run.passed = not run.failures



#: Step type -> the :class:`_Run` method that performs it (each returns the step's record).
_STEP_HANDLERS: Mapping[type, Callable[[_Run, int, Any], Awaitable[StepRecord]]] = MappingProxyType({
    TerminalStep: _Run._on_terminal, CrashAt: _Run._on_crash_at, Restart: _Run._on_restart, ClockStep: _Run._on_clock,
    HostFaultStep: _Run._on_host_fault, HostRegistryStep: _Run._on_host_registry,
    HostSettingsStep: _Run._on_host_settings, TerminalSettingsStep: _Run._on_terminal_settings,
    OperatorNote: _Run._on_operator, ExpectStep: _Run._on_expect,
})


def expectation_checks(expectation: RunExpectation, invariants: Sequence[InvariantResult], view: RunView,
                       family: str) -> list[CheckResult]:
    """One run's expectation against what it showed: each invariant that must break or hold, then
    each check (outcomes, messages, codes, ledgers, terminal state, host net)."""
    out = []
    by_id = {r.id: r for r in invariants}
    for g in expectation.invariants_broken:
        result = by_id[g]
        ok = not result.holds and result.applicable
        what, detail = f"{g} ({INVARIANTS[g][0]}) breaks", "; ".join(result.findings[:3]) if ok else "it holds"
        pattern = expectation.findings_expected.get(g)
        if pattern is not None:
            what += f" with a finding like {pattern!r}"
            if ok and not any(pattern in f or fnmatch.fnmatchcase(f, pattern) for f in result.findings):
                ok, detail = False, "it breaks otherwise: " + detail
        out.append(CheckResult(what=what, passed=ok, detail=detail))
    for g in expectation.invariants_hold:
        result = by_id[g]
        ok = result.holds and result.applicable
        out.append(CheckResult(what=f"{g} ({INVARIANTS[g][0]}) holds", passed=ok,
                               detail="; ".join(result.findings[:3]) if not result.holds
                               else "" if result.applicable else "not applicable"))
    out.extend(evaluate_check(expectation.check, view, family))
    return out


def claim_checks(expectation: RunExpectation, invariants: Sequence[InvariantResult]) -> list[CheckResult]:
    """A fixed (or regression) run claims every invariant that applies to it, or its file says why not:
    an unclaimed invariant is a check nobody asked for, and a regression it would have caught goes by."""
    named = {*expectation.invariants_hold, *expectation.invariants_broken, *expectation.unclaimed}
    return [CheckResult(what=f"{r.id} ({INVARIANTS[r.id][0]}) claimed", passed=False,
                        detail=f"it applies to this run and {'holds' if r.holds else 'breaks'}, but the file neither "
                               "claims it (invariants_hold) nor says why not (unclaimed)")
            for r in invariants if r.applicable and r.id not in named]


def normalise_settlement(row: Mapping[str, Any]) -> dict[str, Any]:
    """A settlement row with ``host_totals`` the totals the host closed the batch with: after a
    batch upload (result ``uploaded``) those rebuilt from the upload; the totals of its first
    answer are kept as ``host_totals_first_answer`` (G4: "after batch upload if needed")."""
    out = dict(row)
    if out.get("result") == "uploaded" and isinstance(out.get("uploaded_totals"), Mapping):
        out["host_totals_first_answer"] = out.get("host_totals")
        out["host_totals"] = out["uploaded_totals"]
    return out


def normalise_payout(row: Mapping[str, Any]) -> dict[str, Any]:
    """A payout row in the names the scenarios and G6 use: ``amount_minor`` is the net paid to the
    merchant, ``pending`` the status of a payout scheduled for its value date."""
    out = dict(row)
    if "amount_minor" not in out and "net_minor" in out:
        out["amount_minor"] = out["net_minor"]
    if out.get("status") == "scheduled":
        out["status"] = "pending"
    return out
