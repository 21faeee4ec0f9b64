"""``pos-terminal``: drive the emulated POS terminal from the command line.

    pos-terminal --port 8583 --dialect intl-bcd --journal t1.sqlite signon
    pos-terminal --port 8583 --journal t1.sqlite --json sale 12.34
    pos-terminal --port 8583 --journal t1.sqlite void --invoice 1
    pos-terminal --port 8583 --journal t1.sqlite --set final_reversal_codes=00 sale 5.00
    pos-terminal --port 8583 --journal t1.sqlite settle
    pos-terminal demo            # start a stub host child, sign on, three sales, settle

Each invocation is one operation; everything durable (counters, keys, journal, pending reversals,
queued advices, the settlement state) lives in the ``--journal`` file, so the next invocation
continues where the last one stopped — also after ``--crash-at POINT`` killed it like a power cut.
When an operation leaves a reversal pending, the terminal sends it at once ("at idle") unless
``reverse_at_idle`` is off; ``reverse`` sends pending reversals on demand.

Options that apply to every command (before or after the command name): ``--host``, ``--port``,
``--dialect``, ``--journal``, ``--tid``, ``--mid``, ``--timeout``, ``--config FILE`` (YAML settings),
``--set name=value`` (repeatable), ``--crash-at POINT``, ``--operator ID`` (who does it: CUP 63.1,
the journal's ``operator``; roles from the ``operators`` setting), ``--now ISO-DATETIME`` (the
business time to use instead of the clock synced at sign-on, e.g. a scenario's clock) and ``--json``.

With ``--json`` each command prints one JSON object: the result keys (``command``, ``outcome``,
``mti``, ``response_mti``, ``rc``, ``stan``, ``text``, and what the command adds) plus ``operator``
and ``trace``, the wire trace of this invocation (events as :meth:`emulator.journal.Journal.trace`
returns them: ``kind`` sent / received / timeout / link_lost / unreadable / connect_failed / crash,
the masked ``message``, ``matched`` and ``mac_verified`` for received messages).  ``status --json``
shows the durable state (see :func:`status_of`); ``trace --since N --json`` the trace after event N
(also what a process that died at a crash point had sent).

Exit codes: 0 the exchange completed (approved, declined, balanced or unbalanced); 2 bad usage or
configuration; 3 no connection could be made; 4 a request went out and no (trustworthy) answer
came; 5 refused by the terminal itself, nothing sent; 137 died at the armed crash point.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from emulator.channel import Endpoint, RequestNotBuilt, run_invocation, run_operation
from emulator.hostproc import HostStartError, start_host
from emulator.journal import Journal, JournalInUse, JournalProblem, damaged_message, exclusive, journal_exists
from emulator.messages import DEFAULT_MID, DEFAULT_NII, DEFAULT_TID, Profile
from emulator.pcap import PcapError, PcapWriter
from emulator.settings import SettingsError, TerminalSettings, describe, load_settings
from emulator.terminal import (
    Adjust,
    Balance,
    Books,
    Completion,
    CompletionVoid,
    DismissReceipt,
    Echo,
    OfflineSale,
    Operation,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Reference,
    Refund,
    Reprint,
    Result,
    Reverse,
    Sale,
    Settle,
    SignOff,
    SignOn,
    Terminal,
    Void,
)
from specs.cards import Card, seeded_card
from specs.cliopts import CONTROL_TOKEN_ENV, database_open_problem, framing_options, resolve_wire, wire_options
from specs.crypto import DEFAULT_TEST_TMK, check_pin
from specs.dialects import DIALECTS
from specs.logs import configure_logging
from specs.masking import mask_pan
from specs.vocabulary import CRASH_POINTS

if TYPE_CHECKING:
    from emulator.prober import ProbeConfig

T = TypeVar("T")


EXIT_CONNECT_FAILED = 3
EXIT_NO_ANSWER = 4
EXIT_REFUSED = 5

_EXIT_CODES = {Outcome.CONNECT_FAILED: EXIT_CONNECT_FAILED, Outcome.NO_ANSWER: EXIT_NO_ANSWER,
               Outcome.MAC_FAILED: EXIT_NO_ANSWER, Outcome.REFUSED: EXIT_REFUSED}

#: Options every command takes, also after the command name: name -> click option factory.
_COMMON = ("host", "port", "dialect", "journal", "tid", "mid", "timeout", "config", "overrides", "crash_at",
           "operator", "now", "json_output", "pcap", "new_journal", "move_journal", "journal_wait")


def _common_options(func: Callable[..., Any], *, top: bool) -> Callable[..., Any]:
    """The options every command takes.  At the top level they carry the defaults; after the
    command name they default to None ("as given before the command")."""
    def default(value: Any) -> Any:
        return value if top else None
    options = [
        click.option("--host", default=default("127.0.0.1"), show_default=top, help="Host address."),
        click.option("--port", type=click.IntRange(1, 65535), default=None, help="Host TCP port."),
        click.option("--dialect", type=click.Choice(sorted(DIALECTS)), default=default("intl-bcd"), show_default=top),
        click.option("--journal", default=default("terminal.sqlite"), show_default=top,
                     help="Terminal journal (SQLite file); created only by signon or with --new-journal."),
        click.option("--new-journal", is_flag=True, default=None if not top else False,
                     help="Create the --journal file if it does not exist (signon always may)."),
        click.option("--move-journal", is_flag=True, default=None if not top else False,
                     help="Rebind the journal to this dialect, TID, MID and host on purpose (it is refused otherwise)."),
        click.option("--journal-wait", type=click.FloatRange(0, 600), default=default(0.0), show_default=top,
                     help="Seconds to wait while another invocation holds the journal (then exit 2)."),
        click.option("--tid", default=default(DEFAULT_TID), show_default=top,
                     help="Terminal ID (field 41, 8 characters)."),
        click.option("--mid", default=default(DEFAULT_MID), show_default=top,
                     help="Merchant ID (field 42, 15 characters)."),
        click.option("--timeout", type=click.FloatRange(min=0.001), default=default(60.0), show_default=top,
                     help="Response timeout in seconds (default 60, as real terminals; settlement waits "
                          "settlement_timeout_factor times as long)."),
        click.option("--config", type=click.Path(dir_okay=False), default=None,
                     help="YAML file of settings (fix toggles, limits, keys, terminal faults)."),
        click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
                     help="Override one setting (repeatable), e.g. --set final_reversal_codes=00,12,25."),
        click.option("--crash-at", type=click.Choice(sorted(CRASH_POINTS)), default=None,
                     help="Die like a power cut at this crash point (docs/domain.md#crash-points a-g)."),
        click.option("--operator", default=None, metavar="ID",
                     help="Operator doing the command (3 digits, CUP 63.1); default: the first supervisor of the "
                          "operators setting, or 001."),
        click.option("--now", default=None, metavar="ISO-DATETIME",
                     help="Business time to use (e.g. 2024-06-03T09:00:00) instead of the clock synced at sign-on."),
        click.option("--json", "json_output", is_flag=True, default=None if not top else False,
                     help="Print one JSON object per command on stdout."),
        click.option("--pcap", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                     help="Write the frames exchanged into this pcap file (appended to when it holds one), "
                          "card data masked."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class Options:
    """Options of one invocation, resolved once."""

    def __init__(self, **options: Any) -> None:
        self.raw = options
        self.resolve()

    def merge(self, local: dict[str, Any]) -> None:
        """Apply options given after the command name (those not None win)."""
        for name in _COMMON:
            value = local.get(name)
            if name == "overrides":
                self.raw["overrides"] = (*self.raw.get("overrides", ()), *(value or ()))
            elif value is not None:
                self.raw[name] = value
        self.resolve()

    def resolve(self) -> None:
        o = self.raw
        _validate_identity(o["tid"], o["mid"])
        self.host: str = o["host"]
        self.port: int | None = o["port"]
        self.dialect, self.framing = resolve_wire(o["dialect"], o.get("profile"), o.get("packager"), o["length_prefix"],
                                                  o["tpdu"], o["cup_header"], o["max_frame_bytes"])
        self.journal_path: str = o["journal"]
        self.new_journal: bool = bool(o.get("new_journal"))
        self.move_journal: bool = bool(o.get("move_journal"))
        self.journal_wait: float = float(o.get("journal_wait") or 0.0)
        self.profile = Profile(tid=o["tid"], mid=o["mid"], family=self.dialect.family, nii=o["nii"],
                               wire=self.dialect.profile)
        self.timeout: float = o["timeout"]
        self.json: bool = bool(o["json_output"])
        self.pcap: str | None = o.get("pcap")
        operator = o.get("operator")
        if operator is not None and not (len(operator) == 3 and operator.isdigit()):
            raise click.BadParameter(f"operator {operator!r} is {len(operator)} characters, expecting 3 digits like 001",
                                     param_hint="--operator")
        self.operator: str | None = operator
        self.now: datetime | None = None
        if o.get("now"):
            try:
                self.now = datetime.fromisoformat(o["now"]).replace(tzinfo=None)
            except ValueError:
                raise click.BadParameter(f"{o['now']!r} is not an ISO date-time, expecting e.g. 2024-06-03T09:00:00",
                                         param_hint="--now") from None
        try:
            settings = load_settings(o["config"], o["overrides"])
            if o["crash_at"]:
                settings = load_settings(overrides=[f"crash_at={o['crash_at']}"], base=settings)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--config/--set") from None
        self.settings: TerminalSettings = settings

    @property
    def wire_args(self) -> tuple[str, ...]:
        """``--profile`` / ``--packager`` as given, for a stub host started to match this terminal."""
        return (*(("--profile", self.raw["profile"]) if self.raw.get("profile") else ()),
                *(("--packager", self.raw["packager"]) if self.raw.get("packager") else ()))


class BadRequest(click.ClickException):
    """A request the operator's input made unbuildable: exit 2 like any other bad usage."""

    exit_code = 2


class JournalRefused(click.ClickException):
    """The journal cannot be used: missing, damaged, in use, or another terminal's (exit 2)."""

    exit_code = 2


def parse_amount(text: str) -> int:
    """``"12.34"`` -> 1234 minor units.

    Raises:
        click.BadParameter: not a positive decimal with at most 2 places.
    """
    try:
        if not text.removeprefix("-").replace(".", "", 1).isdigit():  # Decimal alone takes 1e3, NaN and " 5"
            raise InvalidOperation
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a decimal amount, expecting e.g. 12.34") from None
    if not value.is_finite() or value <= 0:
        raise click.BadParameter(f"{text!r} is not a positive amount, expecting e.g. 12.34")
    if value != value.quantize(Decimal("0.01")):
        raise click.BadParameter(f"{text!r} has more than 2 decimal places, expecting e.g. 12.34")
    minor = int(value * 100)
    if minor > 999_999_999_999:
        raise click.BadParameter(f"{text!r} does not fit field 4 (12 digits of minor units)")
    return minor


def _validate_identity(tid: str, mid: str) -> None:
    if len(tid) != 8:
        raise click.BadParameter(f"TID {tid!r} is {len(tid)} characters, expecting 8", param_hint="--tid")
    if len(mid) != 15:
        raise click.BadParameter(f"MID {mid!r} is {len(mid)} characters, expecting 15", param_hint="--mid")


def _top_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return _common_options(func, top=True)


@click.group()
@_top_options
@click.option("--nii", default=DEFAULT_NII, show_default=True, help="NII (INTL field 24 and TPDU destination).")
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr instead of console text.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@framing_options
@wire_options
@click.pass_context
def main(ctx: click.Context, /, log_json: bool, log_level: str, **options: Any) -> None:
    """Emulated ISO 8583 POS terminal."""
    configure_logging(json=log_json, level=log_level)
    ctx.obj = Options(**options)


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A subcommand that also takes the common options after its name."""
    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)  # also carries the click parameters declared on func
        def wrapper(**params: Any) -> Any:
            options: Options = click.get_current_context().obj
            options.merge({k: params.pop(k) for k in _COMMON if k in params})
            return func(options, **params)
        wrapper.__click_params__ = list(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
        return main.command(name, **kwargs)(_common_options(wrapper, top=False))
    return decorate


# --------------------------------------------------------------------------- running operations


def _now(books: Books, options: Options | None = None) -> datetime:
    """The terminal's clock: the business time given with ``--now``, else local time plus the offset
    learnt from the host at sign-on."""
    if options is not None and options.now is not None:
        return options.now
    return datetime.now() + timedelta(seconds=books.clock_offset_seconds)


def _operation(options: Options, make: Callable[[datetime], Operation], books: Books) -> Operation:
    operation = make(_now(books, options))
    return dataclasses.replace(operation, operator=options.operator) if options.operator else operation


async def _drive(options: Options, journal: Journal, make: Callable[[datetime], Operation]) -> Result:
    books = journal.load()
    trace_from = journal.last_trace_seq()
    terminal = Terminal(options.profile, books, response_timeout_seconds=options.timeout, settings=options.settings)
    assert options.port is not None
    endpoint = Endpoint.for_timeout(options.host, options.port, options.timeout)
    operation = _operation(options, make, books)
    result = await run_invocation(operation, terminal=terminal, journal=journal, endpoint=endpoint,
                                  framing=options.framing, dialect=options.dialect,
                                  idle_now=lambda: _now(terminal.books, options), tap=pcap_tap(options))
    return _with_trace(result, journal, trace_from)


def pcap_tap(options: Options) -> PcapWriter | None:
    """The ``--pcap`` writer of this invocation, or None without ``--pcap``.

    Raises:
        click.UsageError: the file cannot be written or holds something else than a pcap (exit 2).
    """
    if options.pcap is None:
        return None
    try:
        return PcapWriter(options.pcap, dialect=options.dialect, framing=options.framing)
    except PcapError as exc:
        raise click.UsageError(str(exc)) from None


def _with_trace(result: Result, journal: Journal, since: int) -> Result:
    """The result with the wire trace this invocation wrote (``trace``)."""
    return dataclasses.replace(result, details={**result.details, "trace": journal.trace(since=since)})


def _open_journal(options: Options, *, create: bool = False) -> Journal:
    """The ``--journal`` file, opened and checked for damaged pages; a missing (or empty) file is
    created only when ``create`` (signon, ``--new-journal``).

    Raises:
        JournalRefused: no such journal, or it is damaged (exit 2).
        click.UsageError: the file cannot be opened or is not a journal (exit 2), naming the option,
            the path and what was wrong.
    """
    path = options.journal_path
    if not create and not journal_exists(path):
        target = Path(path)
        found = ("the file is empty" if target.exists() else "no file" if target.parent.is_dir()
                 else f"no file: folder {target.parent} does not exist")
        raise JournalRefused(f"--journal {path}: no such journal ({found}); a new journal is created only by signon "
                             "or with --new-journal")
    try:
        journal = Journal(path)
    except (sqlite3.Error, OSError) as exc:
        raise click.UsageError(database_open_problem("--journal", path, exc, "a pos-terminal journal")) from None
    try:
        journal.check_intact()
    except JournalProblem as exc:
        journal.close()
        raise JournalRefused(str(exc)) from None
    return journal


def _read_journal(options: Options, read: Callable[[Journal], T]) -> T:
    """Read from the journal (status, journal, trace): no lock, nothing created or written."""
    journal = _open_journal(options)
    try:
        return read(journal)
    except sqlite3.DatabaseError as exc:
        raise JournalRefused(damaged_message(options.journal_path, str(exc))) from None
    finally:
        journal.close()


def _identity(options: Options, *, offline: bool) -> dict[str, str]:
    identity = {"dialect": options.dialect.name, "tid": options.profile.tid, "mid": options.profile.mid}
    if not offline:
        identity["host"] = f"{options.host}:{options.port}"
    return identity


def _run(options: Options, make: Callable[[datetime], Operation], *, creates: bool = False) -> Result:
    if options.port is None:
        raise click.UsageError("--port is required for commands that talk to the host")
    return _in_journal(options, lambda journal: _drive(options, journal, make), creates=creates, offline=False)


def _run_offline(options: Options, make: Callable[[datetime], Operation]) -> Result:
    """An operation that sends nothing (offline sale, tip adjust): no port is needed."""
    return _in_journal(options, lambda journal: _offline(options, journal, make), creates=False, offline=True)


def _in_journal(options: Options, drive: Callable[[Journal], Coroutine[Any, Any, T]], *, creates: bool,
                offline: bool) -> T:
    """Hold the journal's lock for the whole invocation, open the journal (bound to this terminal's
    identity), run ``drive`` on it, close it; what goes wrong becomes a CLI error."""
    path = options.journal_path
    create = creates or options.new_journal
    if not create and not journal_exists(path):
        _open_journal(options)  # raises: no such journal (and no lock file is left beside nothing)
    lock = contextlib.ExitStack()
    try:
        lock.enter_context(exclusive(path, wait_seconds=options.journal_wait))
    except JournalInUse as exc:
        raise JournalRefused(str(exc)) from None
    except OSError as exc:  # the lock file beside the journal cannot be made
        raise click.UsageError(database_open_problem("--journal", path, exc, "a pos-terminal journal")) from None
    with lock:
        journal = _open_journal(options, create=create)
        try:
            journal.bind_identity(_identity(options, offline=offline), move=options.move_journal)
            return asyncio.run(drive(journal))
        except JournalProblem as exc:
            raise JournalRefused(str(exc)) from None
        except RequestNotBuilt as exc:
            raise BadRequest(str(exc)) from None
        except sqlite3.OperationalError as exc:  # disk full, I/O error ... mid-operation
            raise click.ClickException(
                f"--journal {path}: could not be written ({exc}); it keeps its last committed state, as after "
                "a power cut, and the next command recovers from it (a pending reversal first)") from None
        except sqlite3.DatabaseError as exc:  # damaged pages found mid-operation: nothing repairs that
            raise click.ClickException(damaged_message(path, str(exc))) from None
        finally:
            journal.close()


def run_command(options: Options, make: Callable[[datetime], Operation], *, offline: bool = False) -> Result:
    """One operation run exactly as one ``pos-terminal`` command runs it, for in-process callers
    (the pytest plugin's ``pos_terminal``): the journal opened and closed, a reversal left behind
    sent at idle, the invocation's wire trace in ``details["trace"]``.

    Args:
        options: the invocation's options (``Options(**raw)``, as the command line builds them).
        make: the operation at the terminal's clock, e.g. ``lambda now: Sale(now=now, ...)``.
        offline: an operation that sends nothing (offline sale, tip adjust): no port needed.

    Returns:
        The result ``--json`` prints (``result.as_dict()``); no exit code is derived from it.
    """
    return (_run_offline if offline else _run)(options, make)


def _exit_code(result: Result) -> int:
    failed = result.details.get("failed_step")
    if failed:
        return _EXIT_CODES.get(Outcome(failed["outcome"]), 0)
    return _EXIT_CODES.get(result.outcome, 0)


def _report(options: Options, result: Result) -> None:
    click.echo(json.dumps(result.as_dict()) if options.json else format_result(result))
    code = _exit_code(result)
    if code:
        sys.exit(code)


def format_result(result: Result) -> str:
    """One human line per command."""
    exchange = f"{result.mti or '----'} -> {result.response_mti or '----'}"
    parts = [f"{result.command:<8}", exchange, f"rc {result.rc or '--'}", f"{result.outcome.value:<10}"]
    if result.stan:
        parts.append(f"STAN {result.stan}")
    d = result.details
    if "amount_minor" in d:
        parts.append(f"amount {d['amount_minor'] / 100:.2f}")
    if d.get("rrn"):
        parts.append(f"RRN {d['rrn']} auth {d['auth_code']}")
    if "settlement_result" in d:
        parts.append(f"batch {d['batch']} sales {d['sale_count']}/{d['sale_amount_minor'] / 100:.2f}")
        if d.get("uploaded"):
            parts.append(f"uploaded {d['uploaded']}")
    if d.get("reversal_sent"):
        parts.append("reversal " + ("cleared" if d.get("reversal_cleared") else
                                    "parked" if d.get("reversal_parked") else "still pending"))
    parts.append(f"({result.text})")
    return "  ".join(parts)


def card_of(options: Options, pan: str | None, expiry: str | None) -> Card:
    """The card a command uses: ``--pan``/``--expiry`` checked, else the terminal's seeded,
    Luhn-valid test card (the pytest plugin's terminals take the same).

    Raises:
        BadRequest: a card number or expiry that does not check (exit 2).
    """
    default = seeded_card(seed=int(options.profile.tid) if options.profile.tid.isdigit() else 8583,
                          scheme="unionpay" if options.dialect.family == "cup" else "visa")
    try:
        return Card(pan=pan or default.pan, expiry=expiry or default.expiry)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pan" if "number" in str(exc) else "--expiry") from None


def _pin_option(ctx: click.Context, param: click.Parameter, pin: str | None) -> str | None:
    if pin is not None:
        try:
            check_pin(pin)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return pin


def _card_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--pin", default=None, callback=_pin_option, help="PIN entered by the cardholder (sent as an ISO 9564 "
                                                    "format 0 block under the PIN key).")(func)
    func = click.option("--expiry", default=None, help="Card expiry YYMM.")(func)
    func = click.option("--pan", default=None, help="Card number (default: a seeded Luhn-valid test card).")(func)
    return func


def _original_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--rrn", default=None, help="The original's retrieval reference number.")(func)
    func = click.option("--invoice", default=None, help="The original's invoice number (default: the last "
                                                        "eligible transaction).")(func)
    return func


def _ref(invoice: str | None, rrn: str | None) -> Reference:
    return Reference(invoice=invoice, rrn=rrn)


# --------------------------------------------------------------------------- commands


@command()
def signon(options: Options) -> None:
    """Sign on (0800) and load the working keys: INTL 70=001, CUP 60.3 = key_mode; CUP adopts the host's batch."""
    _warn_test_tmk(options)
    _report(options, _run(options, lambda now: SignOn(now=now), creates=True))


def _uses_test_tmk(options: Options) -> bool:
    return options.settings.tmk_bytes == DEFAULT_TEST_TMK


def _warn_test_tmk(options: Options) -> None:
    """Say so when the published test TMK protects the working keys the journal keeps."""
    if _uses_test_tmk(options):
        click.echo("pos-terminal: warning: the public test TMK is in use (set tmk with --config or --set): the "
                   "working keys kept in the journal are protected by a published key, fit for tests only",
                   err=True)


@command()
def signoff(options: Options) -> None:
    """Sign off (INTL 0800 70=002, CUP 0820 60.3=002)."""
    _report(options, _run(options, lambda now: SignOff(now=now)))


@command()
def echo(options: Options) -> None:
    """Echo test (INTL 0800 70=301, CUP 0820 60.3=301)."""
    _report(options, _run(options, lambda now: Echo(now=now)))


@command()
@click.argument("amount")
@_card_options
def sale(options: Options, amount: str, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Sale (0200) of AMOUNT, a decimal such as 12.34."""
    minor = parse_amount(amount)
    card = card_of(options, pan, expiry)
    _report(options, _run(options, lambda now: Sale(now=now, amount_minor=minor, card=card, pin=pin)))


@command()
@_card_options
def balance(options: Options, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Balance inquiry (0200 310000)."""
    card = card_of(options, pan, expiry)
    _report(options, _run(options, lambda now: Balance(now=now, card=card, pin=pin)))


@command()
@click.argument("amount")
@_card_options
def preauth(options: Options, amount: str, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Pre-authorization (0100) of AMOUNT."""
    minor = parse_amount(amount)
    card = card_of(options, pan, expiry)
    _report(options, _run(options, lambda now: PreAuth(now=now, amount_minor=minor, card=card, pin=pin)))


@command("preauth-void")
@_original_options
def preauth_void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a pre-authorization (INTL 0120 advice, CUP 0100 60.1=11)."""
    _report(options, _run(options, lambda now: PreAuthVoid(now=now, original=_ref(invoice, rrn))))


@command()
@click.argument("amount")
@_original_options
def completion(options: Options, amount: str, invoice: str | None, rrn: str | None) -> None:
    """Complete a pre-authorization for AMOUNT (INTL 0220 advice, CUP 0200 60.1=20)."""
    minor = parse_amount(amount)
    _report(options, _run(options, lambda now: Completion(now=now, amount_minor=minor, original=_ref(invoice, rrn))))


@command("completion-void")
@_original_options
def completion_void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a completion of the open batch."""
    _report(options, _run(options, lambda now: CompletionVoid(now=now, original=_ref(invoice, rrn))))


@command()
@_original_options
def void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a sale of the open batch."""
    _report(options, _run(options, lambda now: Void(now=now, original=_ref(invoice, rrn))))


@command()
@click.argument("amount")
@_original_options
@click.option("--pan", default=None, help="The card again, for an original of a closed batch (its PAN is purged).")
@click.option("--expiry", default=None, help="Card expiry YYMM (with --pan).")
def refund(options: Options, amount: str, invoice: str | None, rrn: str | None, pan: str | None,
           expiry: str | None) -> None:
    """Refund AMOUNT of an earlier sale (INTL 0200 200000, CUP 0220 advice 60.1=25)."""
    minor = parse_amount(amount)
    card = card_of(options, pan, expiry) if pan else None
    _report(options, _run(options, lambda now: Refund(now=now, amount_minor=minor, original=_ref(invoice, rrn),
                                                      card=card)))


@command("offline-sale")
@click.argument("amount")
@click.option("--pan", default=None, help="Card number (default: a seeded Luhn-valid test card).")
@click.option("--expiry", default=None, help="Card expiry YYMM.")
def offline_sale(options: Options, amount: str, pan: str | None, expiry: str | None) -> None:
    """Offline sale of AMOUNT: approved by the terminal, queued as an advice (no traffic now)."""
    minor = parse_amount(amount)
    card = card_of(options, pan, expiry)
    _report(options, _run_offline(options, lambda now: OfflineSale(now=now, amount_minor=minor, card=card)))


@command()
@_original_options
@click.option("--tip", default=None, help="Tip to add to the original amount.")
@click.option("--amount", "new_amount", default=None, help="The new total amount.")
def adjust(options: Options, invoice: str | None, rrn: str | None, tip: str | None, new_amount: str | None) -> None:
    """Tip adjust of a sale in the open batch (queued advice): --tip TIP or --amount NEW_TOTAL."""
    if (tip is None) == (new_amount is None):
        raise click.UsageError("give exactly one of --tip and --amount")
    tip_minor = parse_amount(tip) if tip is not None else None
    new_minor = parse_amount(new_amount) if new_amount is not None else None
    _report(options, _run_offline(options, lambda now: Adjust(
        now=now, original=_ref(invoice, rrn), tip_minor=tip_minor, new_amount_minor=new_minor)))


async def _offline(options: Options, journal: Journal, make: Callable[[datetime], Operation]) -> Result:
    """An operation that sends nothing (offline sale, tip adjust): no endpoint is needed."""
    books = journal.load()
    trace_from = journal.last_trace_seq()
    terminal = Terminal(options.profile, books, response_timeout_seconds=options.timeout, settings=options.settings)
    result = await run_operation(_operation(options, make, books), terminal=terminal, journal=journal,
                                 endpoint=Endpoint(host=options.host, port=options.port or 1),
                                 framing=options.framing, dialect=options.dialect)
    return _with_trace(result, journal, trace_from)


@command()
@click.option("--invoice", default=None, help="The record to reprint (default: the oldest pending receipt, else "
                                              "the last record).")
def reprint(options: Options, invoice: str | None) -> None:
    """Print a receipt again, same RRN and auth code (no traffic); clears a pending receipt."""
    _report(options, _run_offline(options, lambda now: Reprint(now=now, invoice=invoice)))


@command("dismiss-receipt")
@click.option("--invoice", default=None, help="The record whose receipt to dismiss (default: every pending one).")
def dismiss_receipt(options: Options, invoice: str | None) -> None:
    """Waive a receipt that never printed without printing it (no traffic), so sales can go on."""
    _report(options, _run_offline(options, lambda now: DismissReceipt(now=now, invoice=invoice)))


@command()
def settle(options: Options) -> None:
    """Settle the open batch (or resume an interrupted settlement), uploading it when unbalanced."""
    _report(options, _run(options, lambda now: Settle(now=now)))


@command()
def reverse(options: Options) -> None:
    """Send the pending reversals now (also one that is stuck)."""
    _report(options, _run(options, lambda now: Reverse(now=now)))


def status_of(options: Options, books: Books, *, trace_seq: int = 0) -> dict[str, Any]:
    """What ``status`` shows: counters, sign-on, open batch, R, Q, S, host instructions, exceptions,
    closed batches.

    Keys (``--json``): ``stan``, ``invoice``, ``batch``, ``signed_on``, ``signon_date``,
    ``daily_signon``, ``keys_loaded``, ``signon_required``, ``param_download_required``;
    ``open_records`` and the open batch's ``sale_count`` / ``sale_amount_minor`` / ``refund_count`` /
    ``refund_amount_minor``; ``pending_reversals`` (rows) and ``pending_reversal_stans``;
    ``saf_queue`` (rows) and ``saf_queue_stans``; ``settlement`` (S or null) and
    ``settlement_state`` (``idle`` or the stage of the unfinished settlement: started, uploading,
    ending, host_closed); ``parked`` (every parked item), ``parked_reversals`` and
    ``parked_advices`` (rows: stan, why); ``closed_batches`` (batch, debit_count, debit_minor,
    credit_count, credit_minor, result, uploaded) and ``batches_closed``; ``receipt_pending``
    (invoices of journal records whose receipt never printed, closed batches included) and
    ``unprinted_receipts`` (those of the open batch); ``operators``; ``test_tmk`` (the working
    keys are under the public test TMK); ``trace_seq`` (the last trace event: ``trace --since`` it).
    """
    totals = books.open_batch_totals()
    terminal = Terminal(options.profile, books, settings=options.settings)
    stuck_after = options.settings.reversal_max_attempts
    return {
        "stan": f"{books.stan:06d}", "invoice": f"{books.invoice:06d}", "batch": f"{books.batch:06d}",
        "signed_on": books.signed_on, "open_records": len(books.records),
        "sale_count": totals.debit_count, "sale_amount_minor": totals.debit_minor,
        "refund_count": totals.credit_count, "refund_amount_minor": totals.credit_minor,
        "keys_loaded": terminal.has_keys, "signon_required": books.signon_required,
        "param_download_required": books.param_download or None,
        "pending_reversals": [{"stan": r.stan, "kind": r.kind, "reason": r.reason, "attempts": r.attempts,
                               "refusals": r.refusals, "last_rc": r.last_rc, "stuck": r.refusals >= stuck_after}
                              for r in books.reversals],
        "saf_queue": [{"stan": a.stan, "kind": a.kind, "mti": a.message["t"], "attempts": a.attempts,
                       "invoice": a.invoice} for a in books.advices],
        "settlement": None if books.settlement is None else {
            "batch": books.settlement.batch, "stage": books.settlement.stage.value, "result": books.settlement.result,
            "uploaded": books.settlement.uploaded},
        "parked": [{"what": what, "stan": stan, "why": why} for what, stan, why in books.parked],
        "unprinted_receipts": [r.invoice for r in books.records if r.receipt_pending],
        "pending_reversal_stans": [r.stan for r in books.reversals],
        "saf_queue_stans": [a.stan for a in books.advices],
        "settlement_state": "idle" if books.settlement is None else books.settlement.stage.value,
        "parked_reversals": [{"stan": stan, "why": why} for what, stan, why in books.parked if what == "reversal"],
        "parked_advices": [{"stan": stan, "why": why} for what, stan, why in books.parked if what == "advice"],
        "closed_batches": [b.as_dict() for b in books.closed_batches],
        "batches_closed": len(books.closed_batches),
        "receipt_pending": [r.invoice for r in (*books.history, *books.records) if r.receipt_pending],
        "signon_date": books.signon_date or None, "daily_signon": books.daily_signon,
        "operators": dict(options.settings.operators),
        "test_tmk": _uses_test_tmk(options),
        "trace_seq": trace_seq,
    }


@command()
def status(options: Options) -> None:
    """Show counters, sign-on state, the open batch, pending reversals, the SAF queue and the
    settlement state (no traffic)."""
    data = _read_journal(options, lambda journal: status_of(options, journal.load(),
                                                            trace_seq=journal.last_trace_seq()))
    if options.json:
        click.echo(json.dumps(data))
        return
    flat = {k: v for k, v in data.items() if not isinstance(v, (list, dict)) or v}
    click.echo("  ".join(f"{k} {json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in flat.items()))


@command("journal")
@click.option("--all", "include_settled", is_flag=True, help="Also show the records of closed batches.")
def journal_command(options: Options, include_settled: bool) -> None:
    """Show the journal, card numbers masked (no traffic)."""
    rows = _read_journal(options, lambda store: store.records(include_settled=include_settled))
    if not rows and not options.json:  # JSON lines: no record, no line
        click.echo("no transactions in the journal" if include_settled else
                   "no transactions in the open batch (--all shows closed batches too)")
    for row in rows:
        row["pan"] = mask_pan(row["pan"])
        click.echo(json.dumps(row) if options.json else
                   f"inv {row['invoice']} STAN {row['stan']} batch {row['batch']} {row['kind']} {row['status']} "
                   f"{row['amount_minor'] / 100:.2f} {row['pan']} RRN {row['rrn'] or '-'} auth {row['auth_code']} "
                   f"operator {row['operator'] or '-'}" + (" RECEIPT PENDING" if row["receipt_pending"] else ""))


@command("trace")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only events after this sequence number (status shows the last as trace_seq).")
def trace_command(options: Options, since: int) -> None:
    """Show the wire trace (masked): what was sent and received, with the terminal's verdict on each
    answer (matched, MAC verified), timeouts, link events, crashes (no traffic)."""
    events = _read_journal(options, lambda store: store.trace(since=since))
    for event in events:
        if options.json:
            click.echo(json.dumps(event))
            continue
        message = event["message"] or {}
        verdict = ""
        if event["kind"] == "received":
            verdict = (" matched" if event["matched"] else " STRAY") + {True: " mac ok", False: " MAC BAD", None: ""}[
                event["mac_verified"]]
        click.echo(f"{event['seq']:>5} {event['at']} {event['command'] or '-':<8} {event['kind']:<14} "
                   f"{message.get('t', ''):<4} {message.get('11', ''):<6} {message.get('39', ''):<2}{verdict}"
                   + (f" ({event['detail']})" if event["detail"] else ""))


@command("settings")
def show_settings(options: Options) -> None:
    """Show the effective settings (defaults, --config, --set), the TMK hidden."""
    data = describe(options.settings)
    click.echo(json.dumps(data) if options.json else "\n".join(f"{k} = {v}" for k, v in data.items()))


@main.command("load")
@click.option("--terminals", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="Terminals (distinct TIDs from --first-tid on), each with its own journal.")
@click.option("--rate", type=click.FloatRange(min=0.001), default=None, metavar="TPS",
              help="Open loop: operations per second over all terminals, on a schedule.")
@click.option("--closed", is_flag=True, help="Closed loop: each terminal waits for its answer, then goes again.")
@click.option("--duration", type=click.FloatRange(min=0.001), default=None, metavar="S",
              help="Length of the load phase in seconds.")
@click.option("--count", type=click.IntRange(1), default=None, metavar="N", help="Operations in the load phase.")
@click.option("--mix", default="sale=80,void=5,refund=5,balance=10", show_default=True,
              help="Transaction mix, percent per operation type (sale, void, refund, balance, offline_sale, echo).")
@click.option("--faults", default="", metavar="TYPE=PERCENT[,...]",
              help="Host faults on that percent of the mix's requests, e.g. drop_response=2,delay_response=2.")
@click.option("--fault-delay", type=click.FloatRange(min=0), default=None, metavar="S",
              help="How late delay_response answers (default: 1.5 x --timeout, after the terminal gave up).")
@click.option("--host", "host_address", default=None, metavar="HOST:PORT",
              help="Load this host instead of a stub host child (needs --control).")
@click.option("--control", "control_url", default=None, metavar="URL", help="The host's control API URL.")
@click.option("--control-token", envvar="POS_CONTROL_TOKEN", default=None,
              help="Bearer token for the control API (or POS_CONTROL_TOKEN).")
@click.option("--dialect", "dialect_name", type=click.Choice(sorted(DIALECTS)), default="intl-bcd", show_default=True)
@click.option("--timeout", "response_timeout", type=click.FloatRange(min=0.01), default=2.0, show_default=True,
              help="The terminals' response timeout in seconds.")
@click.option("--journal-dir", type=click.Path(file_okay=False), default=None,
              help="One journal file per terminal here (default: journals in memory).")
@click.option("--host-ledger", default=None, help="Ledger file of the stub host child (default: a temporary file).")
@click.option("--concurrency", type=click.IntRange(1), default=100, show_default=True,
              help="Terminals signing on or settling at once.")
@click.option("--first-tid", type=click.IntRange(1, 99_999_999), default=30000001, show_default=True,
              help="TID of the first terminal; the others take the next numbers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the schedule, mix, amounts, fault draws.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write load.json and load.html (latency over time) into this directory.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal).")
@click.pass_context
def load(ctx: click.Context, terminals: int, rate: float | None, closed: bool, duration: float | None,
         count: int | None, mix: str, faults: str, fault_delay: float | None, host_address: str | None,
         control_url: str | None, control_token: str | None, dialect_name: str, response_timeout: float,
         journal_dir: str | None, host_ledger: str | None, concurrency: int, first_tid: int, seed: int,
         report_dir: str | None, progress: bool | None) -> None:
    """Many terminals against one host: sign on, the mix at a rate (or closed loop) with a fault mix,
    settle every terminal, check the books (G1-G8).  Exit 1 when money was lost or doubled, a
    terminal did not settle, or (with no fault mix) a request went unanswered."""
    from emulator.control_client import ControlApiError, ControlApiUnreachable
    from emulator.hostproc import HostStartError
    from emulator.load import LoadError, LoadOptions, parse_mix, run_load
    from emulator.load_report import format_summary, write_reports

    if (rate is None) == (not closed):
        raise click.UsageError("give --rate TPS (open loop) or --closed, one of them")
    if duration is None and count is None:
        raise click.UsageError("give --duration S or --count N: a load is always bounded")
    try:
        options = LoadOptions(terminals=terminals, rate=rate, duration_seconds=duration, count=count,
                              mix=parse_mix(mix), faults=parse_mix(faults, option="--faults", allowed=None),
                              fault_delay_seconds=fault_delay, dialect=dialect_name, host=host_address,
                              control_url=control_url, control_token=control_token, host_ledger=host_ledger,
                              journal_dir=journal_dir, timeout_seconds=response_timeout, concurrency=concurrency,
                              seed=seed, first_tid=first_tid, mid=ctx.obj.profile.mid, settings=ctx.obj.settings)
        options.validate()
    except (LoadError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    group = ctx.parent.params if ctx.parent is not None else {}
    if group.get("log_level") == "warning":  # the default: the expected lost answers are not warnings here
        configure_logging(json=bool(group.get("log_json")), level="error")
    try:
        result = asyncio.run(run_load(options, progress=sys.stderr.isatty() if progress is None else progress))
    except (HostStartError, ControlApiError, ControlApiUnreachable) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the control API broke off
        raise click.ClickException(f"--control {control_url}: {exc}") from None
    data = result.as_dict()
    click.echo(format_summary(data))
    if report_dir is not None:
        paths = write_reports(data, report_dir)
        click.echo(f"reports: {', '.join(str(p) for p in paths.values())}")
    if not result.ok:
        sys.exit(1)


@command()
@click.option("--sales", "amounts", default="10.00,20.00,30.00", show_default=True,
              help="Comma-separated sale amounts.")
def demo(options: Options, amounts: str) -> None:
    """Start a stub host child, then sign on, run the sales and settle (balanced)."""
    minors = [parse_amount(a.strip()) for a in amounts.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="pos-harness-demo-") as tmp:
        try:
            host = start_host("serve", "--dialect", options.dialect.profile.base, "--port", "0",
                              "--ledger", str(Path(tmp) / "host.sqlite"), *options.wire_args,
                              "--length-prefix", options.framing.length_prefix,
                              "--tpdu" if options.framing.tpdu else "--no-tpdu",
                              "--cup-header" if options.framing.cup_header else "--no-cup-header")
        except HostStartError as exc:
            raise click.ClickException(str(exc)) from None
        with host:
            click.echo(f"stub host ({options.dialect.name}) ready on port {host.port}")
            options.port = host.port
            options.journal_path = str(Path(tmp) / "terminal.sqlite")
            options.new_journal = True
            card = card_of(options, None, None)
            steps: list[Callable[[datetime], Operation]] = [lambda now: SignOn(now=now)]
            steps += [lambda now, m=m: Sale(now=now, amount_minor=m, card=card) for m in minors]  # type: ignore[misc]
            steps.append(lambda now: Settle(now=now))
            result: Result | None = None
            for step in steps:
                result = _run(options, step)
                click.echo(json.dumps(result.as_dict()) if options.json else format_result(result))
                if not result.outcome.completed or result.outcome is Outcome.DECLINED:
                    raise click.ClickException(f"demo stopped: {result.command} {result.outcome.value} ({result.text})")
            assert result is not None
            if result.outcome is not Outcome.BALANCED:
                raise click.ClickException(f"demo settlement was {result.outcome.value}, expecting balanced")
            click.echo("demo complete: signed on, "
                       f"{len(minors)} sales approved, settlement balanced, batch closed")


def _given(name: str) -> bool:
    """The user gave option ``name`` (before or after the command name), not its default."""
    ctx = click.get_current_context()
    sources = [c.get_parameter_source(name) for c in (ctx, ctx.parent) if c is not None]
    return any(s not in (None, click.core.ParameterSource.DEFAULT) for s in sources)


def _raw_config(options: Options, pan: str | None, expiry: str | None, **extra: Any) -> ProbeConfig:
    """The probe's and the replay's configuration from the options; their journal lives in memory
    unless ``--journal`` was given (their own counters and keys, gone when the command ends)."""
    from emulator.prober import ProbeConfig

    if options.port is None:
        raise click.UsageError("--port is required: this command talks to the host at --host:--port")
    if not _given("journal"):
        options.journal_path = ":memory:"
    return ProbeConfig(endpoint=Endpoint.for_timeout(options.host, options.port, options.timeout),
                       dialect=options.dialect, framing=options.framing, profile=options.profile,
                       settings=options.settings, timeout=options.timeout, card=card_of(options, pan, expiry), **extra)


@command("probe")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write probe.json, junit.xml and index.html (message ladder per check) into this directory.")
@click.option("--only", default=None, metavar="NAMES",
              help="Run only these checks (comma-separated; sign-on always runs, the others need its keys).")
@click.option("--expect", "expect_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="YAML file of expectations that override the defaults, per check.")
@click.option("--pan", default=None, help="Test card number the host accepts (default: a seeded Luhn-valid test card).")
@click.option("--expiry", default=None, help="Test card expiry YYMM.")
def probe_command(options: Options, report_dir: str | None, only: str | None, expect_file: str | None,
                  pan: str | None, expiry: str | None) -> None:
    """Probe a host from the terminal side only: duplicates, reversals, MAC handling, stale STANs,
    advices, unbalanced settlement, response times.  Prints one row per check; exit 1 when any check
    fails or cannot run.  What a check creates is reversed or settled."""
    import yaml

    from emulator.probe import CHECK_NAMES, ExpectationError, format_table, load_expectations, result_data
    from emulator.prober import run_probe
    from emulator.report import write_probe_reports

    names = tuple(n.strip() for n in (only or "").split(",") if n.strip())
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} is not a check, expecting some of {', '.join(CHECK_NAMES)}",
                                 param_hint="--only")
    try:
        given = yaml.safe_load(Path(expect_file).read_text(encoding="utf-8")) if expect_file else None
        expectations = load_expectations(given, source=expect_file or "defaults")
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{expect_file}: cannot be read ({exc})", param_hint="--expect") from None
    except ExpectationError as exc:
        raise click.BadParameter(str(exc), param_hint="--expect") from None
    config = _raw_config(options, pan, expiry, expectations=expectations, only=names)
    tap = pcap_tap(options)
    records = _in_journal(options, lambda journal: run_probe(
        config, journal, tap=tap, progress=lambda line: click.echo(f"probe: {line}", err=True)),
        creates=True, offline=False)
    data = result_data(records, expectations, {
        "host": options.host, "port": options.port, "dialect": options.dialect.name, "tid": options.profile.tid,
        "timeout": options.timeout, "only": list(names), "expect": expect_file})
    click.echo(json.dumps(data, ensure_ascii=False, default=str) if options.json else format_table(data))
    if report_dir is not None:
        paths = write_probe_reports(data, report_dir)
        click.echo(f"\nreports: {', '.join(str(p) for p in paths.values())}", err=options.json)
    if not data["ok"]:
        sys.exit(1)


@command("replay")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--ignore", default=None, metavar="FIELDS",
              help="Answer fields not compared (comma-separated; default 11,12,13,37,38,64: STAN, time, date, RRN, "
                   "approval code, MAC).")
@click.option("--pan", default=None, help="The real card of the recorded session (the capture holds it masked; "
                                          "default: the emulator's seeded test card).")
@click.option("--expiry", default=None, help="Its expiry YYMM.")
def replay_command(options: Options, capture: str, ignore: str | None, pan: str | None, expiry: str | None) -> None:
    """Send the terminal side of a recorded session (a --pcap file) to the host again, with new
    STANs, dates and MACs after a fresh sign-on, and show each answer field that differs from the
    recorded one.  Exit 1 when any answer differs."""
    from emulator.pcap import read_pcap
    from emulator.prober import Session
    from emulator.replay import DEFAULT_IGNORE, HostUnreachable, as_rows, format_differences, pairs, run_replay

    skipped = tuple(f.strip() for f in ignore.split(",") if f.strip()) if ignore is not None else DEFAULT_IGNORE
    bad = [f for f in skipped if not (f.isdigit() and 1 <= int(f) <= 128)]
    if bad:
        raise click.BadParameter(f"{', '.join(bad)} is not a field number, expecting e.g. 11,12,13", param_hint="--ignore")
    try:
        recorded = pairs(read_pcap(capture, options.dialect, options.framing))
    except PcapError as exc:
        raise click.UsageError(str(exc)) from None
    if not recorded:
        raise click.ClickException(f"{capture}: no terminal request decodes in dialect {options.dialect.name}")
    config = _raw_config(options, pan, expiry)
    tap = pcap_tap(options)
    try:
        differences = _in_journal(options, lambda journal: run_replay(recorded, Session(config, journal, tap),
                                                                      ignore=skipped), creates=True, offline=False)
    except HostUnreachable as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CONNECT_FAILED)
    if options.json:
        click.echo(json.dumps({"replayed": len(recorded), "differences": as_rows(differences)}))
    else:
        click.echo(format_differences(differences, len(recorded), ignore=skipped))
    if differences:
        sys.exit(1)


@main.command("matrix")
@click.option("--only", default=None, metavar="C01,C22", help="Run only these scenarios (comma-separated ids).")
@click.option("--scenarios", "scenario_dirs", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Run the scenario files (*.yaml) of DIR instead of the built-in matrix C01-C42: a team's "
                   "copies of cause files and scenarios of its own (repeatable).")
@click.option("--dialect", "dialect_filter", default=None, metavar="D[,D]",
              help=f"Run only these dialects (comma-separated; {', '.join(sorted(DIALECTS))}); default: every "
                   "dialect each scenario lists.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write matrix.json, junit.xml and index.html into this directory.")
@click.option("--host", "host_address", default=None, metavar="HOST:PORT",
              help="Run against this host instead of stub host children (needs --control and one --dialect).")
@click.option("--control", "control_url", default=None, metavar="URL",
              help="The control API of the --host, e.g. http://127.0.0.1:8584.")
@click.option("--control-token", envvar=CONTROL_TOKEN_ENV, show_envvar=True, default=None,
              help="Bearer token of the --control API.")
@click.option("--jobs", type=click.IntRange(1, 32), default=2, show_default=True,
              help="Scenarios run in parallel (one stub host child per job and dialect).")
@click.option("--timeout", "response_timeout", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="The terminal's response timeout in every run (fault delays scale with it).")
@click.option("--pcap", "pcap_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write one pcap per run (cause, dialect, flawed/fixed) into this directory, card data masked.")
@click.pass_context
def matrix(ctx: click.Context, only: str | None, scenario_dirs: tuple[str, ...], dialect_filter: str | None,
           report_dir: str | None, host_address: str | None, control_url: str | None, control_token: str | None,
           jobs: int, response_timeout: float, pcap_dir: str | None) -> None:
    """Run the cause-and-fix matrix: every cause with the fix off (the symptom must appear) and on
    (its invariants must hold); print one row per cause and the wall time.  With --scenarios, run a
    team's own files instead (a regression file runs once and must meet its expectations).  Exit 1
    if any row does not behave as its scenario file expects."""
    from emulator.report import format_failures, format_table, write_reports
    from emulator.runner import MatrixError, MatrixOptions
    from emulator.runner import run as run_matrix
    from specs.scenario import ScenarioError, load_files

    group = ctx.parent.params if ctx.parent is not None else {}
    if group.get("log_level") == "warning":  # the default: keep the progress lines readable
        configure_logging(json=bool(group.get("log_json")), level="error")
    dialects = tuple(d.strip() for d in (dialect_filter or "").split(",") if d.strip())
    unknown = [d for d in dialects if d not in DIALECTS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} is not a dialect, expecting {', '.join(sorted(DIALECTS))}",
                                 param_hint="--dialect")
    if (host_address is None) != (control_url is None):
        raise click.UsageError("--host and --control go together")
    try:
        scenarios = None
        if scenario_dirs:
            files = sorted(p for d in scenario_dirs for p in Path(d).glob("*.yaml"))
            if not files:
                raise click.BadParameter(f"no scenario file (*.yaml) in {', '.join(scenario_dirs)}",
                                         param_hint="--scenarios")
            scenarios = tuple(load_files(files))
        options = MatrixOptions(only=tuple(c.strip() for c in (only or "").split(",") if c.strip()),
                                dialects=dialects, jobs=jobs, host=host_address, control_url=control_url,
                                control_token=control_token, response_timeout_seconds=response_timeout,
                                scenarios=scenarios,
                                pcap_dir=Path(pcap_dir) if pcap_dir else None)
        result = run_matrix(options, progress=lambda line: click.echo(line, err=True))
    except MatrixError as exc:
        raise click.UsageError(str(exc)) from None
    except ScenarioError as exc:  # a malformed scenario file: file, line and key, no traceback
        raise click.ClickException(f"scenario file: {exc}") from None
    data = result.as_dict()
    click.echo(format_table(data))
    failures = format_failures(data)
    if failures:
        click.echo("\nNot as the scenario files expect:\n" + failures)
    if report_dir is not None:
        paths = write_reports(data, report_dir)
        click.echo(f"\nreports: {', '.join(str(p) for p in paths.values())}")
    click.echo(f"wall time {result.wall_seconds:.1f} s")
    if not result.ok:
        sys.exit(1)


@main.group("scenario")
def scenario_group() -> None:
    """Scenario files: check them, and the JSON Schema an editor completes them with."""


@scenario_group.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True))
def scenario_validate(files: tuple[str, ...]) -> None:
    """Load and check scenario FILES (or every *.yaml of a directory) as the matrix would: one line
    per file, the first problem of each named by file, line and key.  Exit 1 if any file is not valid."""
    from specs.scenario import ScenarioError, load_files, load_scenario

    paths = [p for f in files for p in (sorted(Path(f).glob("*.yaml")) if Path(f).is_dir() else [Path(f)])]
    if not paths:
        raise click.BadParameter(f"no scenario file (*.yaml) in {', '.join(files)}", param_hint="FILES")
    bad = 0
    for path in paths:
        try:
            s = load_scenario(path)
        except (ScenarioError, OSError, UnicodeDecodeError) as exc:
            bad += 1
            click.echo(f"{path}: {exc}")
            continue
        runs = f", {', '.join(s.dialects)}" if s.runs else ""
        click.echo(f"{path}: ok ({s.id}, {s.status}{runs})")
    if not bad:
        try:  # each file is fine on its own: the ids must also be unique, merged stubs must have their file
            load_files(paths)
        except ScenarioError as exc:
            bad += 1
            click.echo(f"together: {exc}")
    if bad:
        sys.exit(1)


@scenario_group.command("schema")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the schema to this file instead of standard output.")
def scenario_schema(output: str | None) -> None:
    """Print the JSON Schema of scenario files (for editor completion; the loader stays the judge)."""
    from specs.scenario_schema import schema_text

    if output is None:
        click.echo(schema_text(), nl=False)
    else:
        Path(output).write_text(schema_text(), encoding="utf-8")


if __name__ == "__main__":
    main()
