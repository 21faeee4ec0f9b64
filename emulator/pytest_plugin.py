"""pytest plugin (entry point ``pytest11``, name ``pos_harness``): fixtures and scenario files as tests.

Fixtures, for a team's own tests:

* ``pos_host`` — a stub acquirer host: one ``pos-host serve --port 0 --control-port 0`` child per
  dialect and session (or the external host of ``--pos-host`` / ``--pos-control``), reset through
  the control API (``POST /reset``) before every test, so no test sees another's books or faults.
  Its helpers speak the control API only (:class:`PosHost`); the emulator never imports the host.
* ``pos_terminal`` — an emulated terminal bound to ``pos_host``, its journal in ``tmp_path``, a
  sub-second response timeout (``--pos-timeout``).  Each method is one ``pos-terminal`` command run
  through the command line's own code path (:func:`emulator.cli.run_command`) and returns the
  :class:`~emulator.terminal.Result` whose ``as_dict()`` is what ``--json`` prints.
* ``make_pos_terminal(**settings)`` — more terminals, or one with fix toggles off from the start
  (``profile=`` gives one terminal another host profile than its host's).

A host profile (``--pos-profile FILE|NAME`` for the session, ``@pytest.mark.pos_profile(ref)`` for
one test) is loaded by both ``pos_host`` and ``pos_terminal``; its dialect replaces the dialect.
A scenario file names its own profile (its ``profile`` key).

Scenario files as test items (opt-in, so a suite whose test paths hold scenario files does not
run them by accident):

* ``--pos-matrix``: the built-in cause-and-fix matrix, one item per runnable cause and dialect
  (``C40[intl-bcd]``), one per outside or merged cause;
* ``--pos-scenarios DIR`` or the ini option ``pos_scenarios`` (glob patterns such as
  ``scenarios/C*.yaml``): a team's own copies of cause files (a copy keeps its cause id as its
  file name: ``C40.yaml``), with their own amounts, dialects, faults and expectations.

The runs are made once per session, before the first test runs: one :func:`emulator.runner.run`
over every selected scenario and dialect (``-k`` and ``--pos-dialect`` narrow it), ``--pos-jobs``
at a time.  Each item then reports its own verdict; a failure names the cause, the dialect and the
failed checks, and a JUnit test case (``--junitxml``) carries the time of its own runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import fnmatch
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from emulator.control_client import ControlApiError, ControlClient
from specs.dialects import DIALECTS

__all__ = ["ControlApiError", "PosHost", "PosTerminal"]

if TYPE_CHECKING:  # the emulator is imported only when a fixture or a scenario item needs it
    from emulator.cli import Options
    from emulator.hostproc import HostProcess
    from emulator.runner import CauseRow
    from emulator.terminal import Operation, Result
    from specs.scenario import Scenario

DEFAULT_DIALECT = "intl-bcd"
DEFAULT_TIMEOUT_SECONDS = 0.5
DEFAULT_JOBS = 2
#: How long one control API call may take.
CONTROL_TIMEOUT_SECONDS = 10.0
#: The built-in matrix's files (the scenario directory holds nothing else, but be exact).
BUILTIN_FILE_PATTERN = "C[0-9][0-9].yaml"


# ============================================================================ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pos-harness", "pos-harness: emulated POS terminal, stub acquirer host, scenarios")
    group.addoption("--pos-dialect", choices=sorted(DIALECTS), default=None,
                    help=f"Dialect of pos_host (default {DEFAULT_DIALECT}; a test's pos_dialect marker wins); "
                         "when given, scenario items run in this dialect only.")
    group.addoption("--pos-profile", metavar="FILE|NAME", default=None,
                    help="Host profile (YAML file or shipped name) of pos_host and pos_terminal (a test's "
                         "pos_profile marker wins); its dialect replaces --pos-dialect for them.")
    group.addoption("--pos-host", metavar="HOST:PORT", default=None,
                    help="Use this host (serving the stub's control API) instead of stub host children; "
                         "needs --pos-control.")
    group.addoption("--pos-control", metavar="URL", default=None,
                    help="Control API of --pos-host, e.g. http://127.0.0.1:8584.")
    group.addoption("--pos-control-token", metavar="TOKEN", default=None,
                    help="Bearer token of the --pos-control API (default: the POS_HOST_CONTROL_TOKEN variable).")
    group.addoption("--pos-timeout", type=float, metavar="SECONDS", default=DEFAULT_TIMEOUT_SECONDS,
                    help=f"Terminal response timeout of pos_terminal and of scenario runs "
                         f"(default {DEFAULT_TIMEOUT_SECONDS}; fault delays in scenario files scale with it).")
    group.addoption("--pos-matrix", action="store_true", default=False,
                    help="Collect the built-in cause-and-fix matrix (C01-C42): one item per runnable cause "
                         "and dialect.")
    group.addoption("--pos-scenarios", metavar="DIR", action="append", default=[],
                    help="Collect the scenario files (*.yaml) in DIR: copies of cause files and a team's own "
                         "scenarios (repeatable).")
    group.addoption("--pos-jobs", type=int, metavar="N", default=DEFAULT_JOBS,
                    help=f"Scenario runs in parallel (default {DEFAULT_JOBS}).")
    parser.addini("pos_scenarios", type="args", default=[],
                  help="pos-harness: glob patterns of scenario files to collect, relative to the rootdir "
                       "(e.g. scenarios/C*.yaml).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pos_dialect(name): the dialect of this test's pos_host and pos_terminal "
                                       f"({', '.join(sorted(DIALECTS))}).")
    config.addinivalue_line("markers", "pos_profile(ref): the host profile (YAML file or shipped name) of this "
                                       "test's pos_host and pos_terminal.")
    host, control = config.getoption("--pos-host"), config.getoption("--pos-control")
    if (host is None) != (control is None):
        raise pytest.UsageError("--pos-host and --pos-control go together")
    if host is not None:
        from emulator.hostproc import host_address

        try:
            host_address(host, "--pos-host")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    if config.getoption("--pos-timeout") <= 0:
        raise pytest.UsageError("--pos-timeout must be a positive number of seconds")
    if config.getoption("--pos-jobs") < 1:
        raise pytest.UsageError("--pos-jobs must be at least 1")
    config.stash[_STATE] = state = _State.from_config(config)
    if state.profile is not None:
        try:
            state.profile = _checked_profile(state.profile, Path(config.invocation_params.dir))
        except ValueError as exc:
            raise pytest.UsageError(f"--pos-profile: {exc}") from None
    for directory in state.directories:
        if not directory.is_dir():
            raise pytest.UsageError(f"--pos-scenarios {directory} is not a directory")
    _add_collection_paths(config, state)


def _add_collection_paths(config: pytest.Config, state: _State) -> None:
    """Make sure the scenario files are reached by collection.

    ``--pos-matrix`` and ``--pos-scenarios`` are asked for on the command line: their directories
    are collected whatever the arguments.  Files named by the ini option are added when no paths
    were given (like ``testpaths``); given paths are collected as given.
    """
    extra = list(state.directories)
    if state.matrix:
        extra.append(_builtin_dir())
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        for pattern in state.patterns:
            extra += sorted(p for p in config.rootpath.glob(pattern) if p.is_file())
    given = [Path(config.invocation_params.dir, a.split("::")[0]).resolve() for a in config.args]
    for path in extra:
        if not any(path == g or g in path.parents for g in given):
            config.args.append(str(path))
            given.append(path)


def _builtin_dir() -> Path:
    from specs.scenario import SCENARIO_DIR

    return Path(SCENARIO_DIR).resolve()


@dataclass
class _State:
    """What the options ask for, and the scenario runs of the session."""

    matrix: bool
    directories: list[Path]
    patterns: list[str]
    rootpath: Path
    dialect: str | None
    profile: str | None
    external_host: str | None
    control_url: str | None
    control_token: str | None
    timeout_seconds: float
    jobs: int
    runs: _Runs | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> _State:
        return cls(matrix=bool(config.getoption("--pos-matrix")),
                   directories=[Path(config.invocation_params.dir, d).resolve()
                                for d in config.getoption("--pos-scenarios")],
                   patterns=list(config.getini("pos_scenarios")), rootpath=config.rootpath,
                   dialect=config.getoption("--pos-dialect"), profile=config.getoption("--pos-profile"),
                   external_host=config.getoption("--pos-host"), control_url=config.getoption("--pos-control"),
                   control_token=config.getoption("--pos-control-token"), timeout_seconds=config.getoption("--pos-timeout"),
                   jobs=config.getoption("--pos-jobs"))

    def wants(self, path: Path) -> bool:
        """Is ``path`` a scenario file the options ask for?"""
        if path.suffix != ".yaml":
            return False
        path = path.resolve()
        if self.matrix and path.parent == _builtin_dir() and fnmatch.fnmatchcase(path.name, BUILTIN_FILE_PATTERN):
            return True
        if any(d == path.parent or d in path.parents for d in self.directories):
            return True
        try:
            relative = path.relative_to(self.rootpath).as_posix()
        except ValueError:
            return False
        return any(fnmatch.fnmatch(relative if "/" in p else path.name, p) for p in self.patterns)

    def item_dialects(self, scenario_dialects: tuple[str, ...]) -> list[str]:
        """The dialects a runnable scenario gets items for."""
        if self.external_host is not None:  # that host speaks one dialect
            return [d for d in scenario_dialects if d == (self.dialect or DEFAULT_DIALECT)]
        return [d for d in scenario_dialects if self.dialect is None or d == self.dialect]


_STATE = pytest.StashKey[_State]()


def _checked_profile(ref: str, base: Path) -> str:
    """A profile reference as both sides can open it: a file (relative to ``base``) as an absolute
    path, or a shipped name; loaded once here so that a bad file fails early.

    Raises:
        ValueError: the profile's error (file, line, key), or no such file or shipped name.
    """
    from specs.profile import load_profile

    path = base / ref
    resolved = str(path.resolve()) if path.is_file() else ref
    load_profile(resolved)  # ProfileError is a ValueError
    return resolved


# ============================================================================ the control API, synchronously


class PosHost(ControlClient):
    """A stub host (or an external host serving its control API), and the control API's helpers
    (:class:`~emulator.control_client.ControlClient`: ``add_fault``, ``ledger``, ``journal``,
    ``set_clock`` …), synchronous, so they work from async tests too.

    Attributes:
        host, port: where terminals connect.
        control_url: the control API, e.g. ``http://127.0.0.1:40123``.
        dialect: the dialect the host speaks.
        control_token: sent as a bearer token on every call (default: ``POS_HOST_CONTROL_TOKEN``).
        profile: its host profile (a file's absolute path or a shipped name), None for none.
    """

    def __init__(self, *, host: str, port: int, control_url: str, dialect: str,
                 response_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, control_token: str | None = None,
                 profile: str | None = None) -> None:
        super().__init__(control_url, timeout_seconds=CONTROL_TIMEOUT_SECONDS, token=control_token)
        self.host, self.port, self.dialect, self.profile = host, port, dialect, profile
        #: The terminals' response timeout (``--pos-timeout``): ``timeout_multiple`` in a fault scales with it.
        self.response_timeout_seconds = response_timeout_seconds

    def add_fault(self, when: Mapping[str, Any] | None = None, action: Mapping[str, Any] | str = "drop_response",
                  *, times: int | None = None, id: str | None = None) -> str:
        """Add a fault and return its id.  The action may be written as in a scenario file
        (``{"type": "delay_response", "timeout_multiple": 2}``, ``{"type": "totals_delta", "debit_amount":
        "1.00"}``) or in the control API's own terms (``seconds``, ``debit_minor``)."""
        from specs.scenario import api_action

        if not isinstance(action, str):
            action = api_action(action, response_timeout_seconds=self.response_timeout_seconds)
        return super().add_fault(when, action, times=times, id=id)

    def __repr__(self) -> str:
        return f"PosHost(host={self.host!r}, port={self.port}, control_url={self.control_url!r}, dialect={self.dialect!r})"

    # ---------------------------------------------------------------- verification, WireMock-style

    def received(self, mti: str | None = None, **where: Any) -> list[dict[str, Any]]:
        """The requests the host received (its journal, masked), of one MTI if given, whose entry or
        request fields equal ``where`` (``tid="10000001"``, ``outcome="answered"``, ``field_3="000000"``)."""
        rows = self.journal(mti=mti) if mti is not None else self.journal()
        return [e for e in rows if all(_entry_value(e, k) == v for k, v in where.items())]

    def verify_received(self, mti: str, *, count: int | None = None, at_least: int = 1,
                        **where: Any) -> list[dict[str, Any]]:
        """Assert the host received ``count`` (or at least ``at_least``) such requests; return them.

        Raises:
            AssertionError: naming what was asked and what the host did receive.
        """
        got = self.received(mti, **where)
        wanted = f"exactly {count}" if count is not None else f"at least {at_least}"
        if (count is not None and len(got) != count) or (count is None and len(got) < at_least):
            seen = sorted({str(e.get("mti")) for e in self.journal() if e.get("mti")})
            criteria = "".join(f", {k}={v!r}" for k, v in where.items())
            raise AssertionError(f"expected {wanted} {mti} request(s){criteria} at the host, found {len(got)} "
                                 f"(MTIs received: {', '.join(seen) or 'none'})")
        return got

    def fired(self, fault_id: str) -> int:
        """How many times the fault was applied."""
        for fault in self.faults():
            if fault["id"] == fault_id:
                return int(fault["fired"])
        raise KeyError(f"no fault {fault_id!r} on the host (faults: {', '.join(f['id'] for f in self.faults())})")

    def verify_fired(self, fault_id: str, *, times: int | None = None) -> int:
        """Assert the fault fired (``times`` times exactly, when given); return how often it did."""
        fired = self.fired(fault_id)
        if (times is None and fired == 0) or (times is not None and fired != times):
            raise AssertionError(f"expected fault {fault_id} to fire {times if times is not None else 'at least once'}"
                                 f" time(s), it fired {fired}")
        return fired

    def unfired_faults(self) -> list[str]:
        """The ids of faults that never fired: a test whose fault never applied proved nothing."""
        return [f["id"] for f in self.faults() if not f["fired"]]


def _entry_value(entry: Mapping[str, Any], key: str) -> Any:
    """A journal entry's key, or ``field_N`` of its request."""
    if key.startswith("field_"):
        return (entry.get("request") or {}).get(key.removeprefix("field_"))
    return entry.get(key)


class _HostPool:
    """Stub host children, one per dialect and profile, started on first use and stopped at the session's end."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self._children: dict[tuple[str, str | None], tuple[HostProcess, PosHost]] = {}

    def get(self, dialect: str, profile: str | None = None) -> PosHost:
        s = self.state
        if s.external_host is not None:
            assert s.control_url is not None
            from emulator.hostproc import host_address

            address, port = host_address(s.external_host, "--pos-host")
            return PosHost(host=address, port=port, control_url=s.control_url, dialect=dialect, profile=profile,
                           response_timeout_seconds=s.timeout_seconds, control_token=s.control_token)
        key = (dialect, profile)
        if key not in self._children:
            from emulator.hostproc import start_host

            process = start_host("serve", "--dialect", dialect, "--port", "0", "--control-port", "0",
                                 *(("--profile", profile) if profile else ()))
            self._children[key] = (process, PosHost(
                host="127.0.0.1", port=process.port, dialect=dialect, response_timeout_seconds=s.timeout_seconds,
                control_url=f"http://127.0.0.1:{process.ready['control_port']}", profile=profile))
        return self._children[key][1]

    def close(self) -> None:
        for process, _ in self._children.values():
            process.stop()
        self._children.clear()


@pytest.fixture(scope="session")
def _pos_host_pool(pytestconfig: pytest.Config) -> Iterator[_HostPool]:
    pool = _HostPool(pytestconfig.stash[_STATE])
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def pos_host(request: pytest.FixtureRequest, _pos_host_pool: _HostPool) -> PosHost:
    """A stub host, freshly reset: ``.host``, ``.port``, ``.control_url``, ``.dialect`` and control helpers.

    The dialect is the test's ``@pytest.mark.pos_dialect("cup")``, else ``--pos-dialect``, else intl-bcd;
    a host profile (``@pytest.mark.pos_profile(ref)``, else ``--pos-profile``) brings its own dialect.
    """
    state = request.config.stash[_STATE]
    marker = request.node.get_closest_marker("pos_dialect")
    dialect = str(marker.args[0]) if marker and marker.args else (state.dialect or DEFAULT_DIALECT)
    if dialect not in DIALECTS:
        pytest.fail(f"pos_dialect({dialect!r}) is not a dialect, expecting one of {', '.join(sorted(DIALECTS))}",
                    pytrace=False)
    profile_marker = request.node.get_closest_marker("pos_profile")
    profile = state.profile
    if profile_marker and profile_marker.args:
        try:
            profile = _checked_profile(str(profile_marker.args[0]), request.path.parent)
        except ValueError as exc:
            pytest.fail(f"pos_profile({profile_marker.args[0]!r}): {exc}", pytrace=False)
    if profile is not None:
        from specs.profile import load_profile

        dialect = load_profile(profile).base
    host = _pos_host_pool.get(dialect, profile)
    host.reset()
    return host


# ============================================================================ the terminal


Amount = str | Decimal | int | float


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class PosTerminal:
    """An emulated terminal: one method per ``pos-terminal`` command, run in-process.

    Every command goes through :func:`emulator.cli.run_command`, the command line's own path (journal,
    terminal core, channel, the reversal at idle) and returns its :class:`~emulator.terminal.Result`
    (``result.as_dict()`` is what ``pos-terminal --json`` prints; ``details["trace"]`` the wire trace).
    Amounts are decimals in major units (``"12.34"``); originals are chosen by ``invoice`` or ``rrn``
    (default: the last eligible one).  The helpers are synchronous (each runs its own event loop).
    """

    def __init__(self, host: PosHost, journal_path: Path, *, timeout_seconds: float, tid: str | None = None,
                 mid: str | None = None, settings: Mapping[str, Any] | None = None,
                 profile: str | None = None) -> None:
        from emulator.messages import DEFAULT_MID, DEFAULT_TID
        from emulator.runner import FAST_BACKOFF

        self.host = host
        self.journal_path = Path(journal_path)
        self.settings_path = self.journal_path.with_name(self.journal_path.stem + "-settings.yaml")
        self.timeout_seconds = timeout_seconds
        self.tid, self.mid = tid or DEFAULT_TID, mid or DEFAULT_MID  # pos-terminal's defaults
        #: The host profile the terminal speaks (default: its host's).
        self.profile = profile or host.profile
        #: The operator of every command (CUP 63.1), unless a command names one.
        self.operator: str | None = None
        #: Business time the terminal uses instead of its clock (None: synced from the host at sign-on).
        self.now: datetime | None = None
        # Repeats of reversals and advices wait as long as the timeout is scaled down (like the matrix).
        self._settings: dict[str, Any] = dict(FAST_BACKOFF)
        self.configure(**(settings or {}))

    # ---------------------------------------------------------------- settings and options

    def configure(self, **settings: Any) -> None:
        """Change settings (fix toggles, limits, terminal faults), e.g. ``save_reversal_before_send=False``.

        They are written to a YAML file read as ``pos-terminal --config FILE`` reads it.

        Raises:
            ValueError: an unknown setting or a value of the wrong kind (the message names it).
        """
        import yaml

        def write(values: Mapping[str, Any]) -> None:
            self.settings_path.write_text(yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v
                                                          for k, v in values.items()}), encoding="utf-8")

        merged = {**self._settings, **settings}
        write(merged)
        try:
            self.options()
        except ValueError:
            write(self._settings)
            raise
        self._settings = merged

    def options(self, *, operator: str | None = None) -> Options:
        """The :class:`emulator.cli.Options` one command of this terminal runs with."""
        import click

        from emulator.cli import Options
        from emulator.messages import DEFAULT_NII
        from specs.framing import DEFAULT_MAX_FRAME_BYTES

        raw = {"host": self.host.host, "port": self.host.port, "dialect": self.host.dialect,
               "journal": str(self.journal_path), "tid": self.tid, "mid": self.mid, "timeout": self.timeout_seconds,
               "config": str(self.settings_path), "overrides": (), "crash_at": None,
               "operator": operator or self.operator, "now": self.now.isoformat() if self.now else None,
               "json_output": True, "nii": DEFAULT_NII, "length_prefix": None, "tpdu": None, "cup_header": None,
               "max_frame_bytes": DEFAULT_MAX_FRAME_BYTES, "new_journal": True, "profile": self.profile,
               "packager": None}
        try:
            return Options(**raw)
        except click.ClickException as exc:
            raise ValueError(exc.format_message()) from None

    def effective_settings(self) -> dict[str, Any]:
        """What ``pos-terminal settings --json`` shows (the TMK hidden)."""
        from emulator.settings import describe

        return describe(self.options().settings)

    # ---------------------------------------------------------------- running commands

    def run(self, make: Callable[[datetime], Operation], *, operator: str | None = None,
            offline: bool = False) -> Result:
        """Run one operation (``make(now)``) as one ``pos-terminal`` command.

        From an async test (an event loop running in this thread) the command runs on a thread of its
        own, with its own loop, and this call waits for it: the helpers work the same in both kinds.
        """
        import click

        from emulator.cli import run_command

        options = self.options(operator=operator)
        try:
            if _loop_running():
                with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                    return pool.submit(run_command, options, make, offline=offline).result()
            return run_command(options, make, offline=offline)
        except click.ClickException as exc:
            raise ValueError(exc.format_message()) from None

    def _minor(self, amount: Amount) -> int:
        import click

        from emulator.cli import parse_amount

        try:
            return parse_amount(str(amount))
        except click.ClickException as exc:
            raise ValueError(exc.format_message()) from None

    def _card(self, pan: str | None, expiry: str | None) -> Any:
        import click

        from emulator.cli import card_of  # the command line's default (seeded, Luhn-valid) card

        try:
            return card_of(self.options(), pan, expiry)
        except click.ClickException as exc:
            raise ValueError(exc.format_message()) from None

    @staticmethod
    def _ref(invoice: str | int | None, rrn: str | None) -> Any:
        from emulator.terminal import Reference

        return Reference(invoice=None if invoice is None else str(invoice), rrn=rrn)

    def signon(self, *, operator: str | None = None) -> Result:
        from emulator.terminal import SignOn

        return self.run(lambda now: SignOn(now=now), operator=operator)

    def signoff(self, *, operator: str | None = None) -> Result:
        from emulator.terminal import SignOff

        return self.run(lambda now: SignOff(now=now), operator=operator)

    def echo(self) -> Result:
        from emulator.terminal import Echo

        return self.run(lambda now: Echo(now=now))

    def sale(self, amount: Amount, *, pan: str | None = None, expiry: str | None = None, pin: str | None = None,
             operator: str | None = None) -> Result:
        from emulator.terminal import Sale

        minor, card = self._minor(amount), self._card(pan, expiry)
        return self.run(lambda now: Sale(now=now, amount_minor=minor, card=card, pin=pin), operator=operator)

    def balance(self, *, pan: str | None = None, expiry: str | None = None, pin: str | None = None) -> Result:
        from emulator.terminal import Balance

        card = self._card(pan, expiry)
        return self.run(lambda now: Balance(now=now, card=card, pin=pin))

    def preauth(self, amount: Amount, *, pan: str | None = None, expiry: str | None = None,
                pin: str | None = None, operator: str | None = None) -> Result:
        from emulator.terminal import PreAuth

        minor, card = self._minor(amount), self._card(pan, expiry)
        return self.run(lambda now: PreAuth(now=now, amount_minor=minor, card=card, pin=pin), operator=operator)

    def preauth_void(self, *, invoice: str | int | None = None, rrn: str | None = None,
                     operator: str | None = None) -> Result:
        from emulator.terminal import PreAuthVoid

        return self.run(lambda now: PreAuthVoid(now=now, original=self._ref(invoice, rrn)), operator=operator)

    def completion(self, amount: Amount, *, invoice: str | int | None = None, rrn: str | None = None,
                   operator: str | None = None) -> Result:
        from emulator.terminal import Completion

        minor = self._minor(amount)
        return self.run(lambda now: Completion(now=now, amount_minor=minor, original=self._ref(invoice, rrn)),
                        operator=operator)

    def completion_void(self, *, invoice: str | int | None = None, rrn: str | None = None,
                        operator: str | None = None) -> Result:
        from emulator.terminal import CompletionVoid

        return self.run(lambda now: CompletionVoid(now=now, original=self._ref(invoice, rrn)), operator=operator)

    def void(self, *, invoice: str | int | None = None, rrn: str | None = None,
             operator: str | None = None) -> Result:
        from emulator.terminal import Void

        return self.run(lambda now: Void(now=now, original=self._ref(invoice, rrn)), operator=operator)

    def refund(self, amount: Amount, *, invoice: str | int | None = None, rrn: str | None = None,
               operator: str | None = None) -> Result:
        from emulator.terminal import Refund

        minor = self._minor(amount)
        return self.run(lambda now: Refund(now=now, amount_minor=minor, original=self._ref(invoice, rrn)),
                        operator=operator)

    def offline_sale(self, amount: Amount, *, pan: str | None = None, expiry: str | None = None,
                     operator: str | None = None) -> Result:
        """Approved by the terminal, queued as an advice: no traffic now."""
        from emulator.terminal import OfflineSale

        minor, card = self._minor(amount), self._card(pan, expiry)
        return self.run(lambda now: OfflineSale(now=now, amount_minor=minor, card=card), operator=operator,
                        offline=True)

    def adjust(self, *, tip: Amount | None = None, amount: Amount | None = None, invoice: str | int | None = None,
               rrn: str | None = None, operator: str | None = None) -> Result:
        """Tip adjust (queued advice): ``tip=`` or the new total ``amount=``."""
        from emulator.terminal import Adjust

        if (tip is None) == (amount is None):
            raise ValueError("give exactly one of tip and amount")
        tip_minor = self._minor(tip) if tip is not None else None
        new_minor = self._minor(amount) if amount is not None else None
        return self.run(lambda now: Adjust(now=now, original=self._ref(invoice, rrn), tip_minor=tip_minor,
                                           new_amount_minor=new_minor), operator=operator, offline=True)

    def settle(self, *, operator: str | None = None) -> Result:
        from emulator.terminal import Settle

        return self.run(lambda now: Settle(now=now), operator=operator)

    def reverse(self) -> Result:
        """Send the pending reversals now."""
        from emulator.terminal import Reverse

        return self.run(lambda now: Reverse(now=now))

    # ---------------------------------------------------------------- the durable state (no traffic)

    def status(self) -> dict[str, Any]:
        """What ``pos-terminal status --json`` shows: counters, R, Q, S, closed batches ..."""
        from emulator.cli import status_of
        from emulator.journal import Journal

        options = self.options()
        journal = Journal(options.journal_path)
        try:
            return status_of(options, journal.load(), trace_seq=journal.last_trace_seq())
        finally:
            journal.close()

    def journal(self, *, include_settled: bool = False) -> list[dict[str, Any]]:
        """The journal's records as ``pos-terminal journal --json`` shows them (PAN masked)."""
        from emulator.journal import Journal
        from specs.masking import mask_pan

        store = Journal(str(self.journal_path))
        try:
            rows = store.records(include_settled=include_settled)
        finally:
            store.close()
        return [{**row, "pan": mask_pan(row["pan"])} for row in rows]

    def trace(self, *, since: int = 0) -> list[dict[str, Any]]:
        """The wire trace (masked) after event ``since``."""
        from emulator.journal import Journal

        store = Journal(str(self.journal_path))
        try:
            return store.trace(since=since)
        finally:
            store.close()


@pytest.fixture
def make_pos_terminal(pos_host: PosHost, tmp_path: Path, pytestconfig: pytest.Config) -> Callable[..., PosTerminal]:
    """A factory of terminals bound to ``pos_host``: ``make_pos_terminal(tid="10000002", reversal_first=False)``.

    Keyword arguments other than ``tid``, ``mid``, ``timeout_seconds`` and ``profile`` (a host profile,
    YAML file or shipped name; default: ``pos_host``'s) are terminal settings.
    """
    _configure_logging()
    made: list[PosTerminal] = []

    def make(*, tid: str | None = None, mid: str | None = None, timeout_seconds: float | None = None,
             profile: str | None = None, **settings: Any) -> PosTerminal:
        terminal = PosTerminal(pos_host, tmp_path / f"terminal-{len(made) + 1}.sqlite",
                               timeout_seconds=timeout_seconds or pytestconfig.stash[_STATE].timeout_seconds,
                               tid=tid, mid=mid, settings=settings, profile=profile)
        made.append(terminal)
        return terminal

    return make


@pytest.fixture
def pos_terminal(make_pos_terminal: Callable[..., PosTerminal]) -> PosTerminal:
    """An emulated terminal bound to ``pos_host`` (journal in ``tmp_path``, ``--pos-timeout``)."""
    return make_pos_terminal()


def _configure_logging() -> None:
    """As the command line does when nobody configured logging: masked, warnings and up (the
    terminal core logs every message it sends; structlog's defaults would not mask card data)."""
    import structlog

    if not structlog.is_configured():
        from specs.logs import configure_logging

        configure_logging(level="warning")


# ============================================================================ scenario files as items


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    state = parent.config.stash[_STATE]
    if state.wants(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFailure(AssertionError):
    """A scenario item that did not behave as its file expects (reported without a traceback)."""


class ScenarioFile(pytest.File):
    """One scenario file: an item per dialect it runs in (or one for an outside or merged cause)."""

    def collect(self) -> Iterator[pytest.Item]:
        from specs.scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(self.path)
        except (ScenarioError, OSError, UnicodeDecodeError) as exc:  # one failed item, not an interrupted session
            yield BrokenScenarioItem.from_parent(self, name=self.path.name, problem=str(exc))
            return
        state = self.config.stash[_STATE]
        if scenario.runs:
            for dialect in state.item_dialects(scenario.dialects):
                yield ScenarioItem.from_parent(self, name=f"{scenario.id}[{dialect}]", scenario=scenario,
                                               dialect=dialect)
        else:
            yield ScenarioItem.from_parent(self, name=f"{scenario.id}[{scenario.status}]", scenario=scenario,
                                           dialect=None)


class BrokenScenarioItem(pytest.Item):
    """A scenario file that does not load: it fails as one item, naming the file, line and key."""

    def __init__(self, *, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self) -> None:
        raise ScenarioFailure(f"scenario file {self.path}: {self.problem}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}: does not load"


class ScenarioItem(pytest.Item):
    """One cause in one dialect: passes when the flawed run shows the symptom and the fixed run
    holds the invariants its file lists (an outside cause: reported as outside; a merged stub: as
    the file that covers it)."""

    def __init__(self, *, scenario: Scenario, dialect: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.dialect = dialect
        self.seconds: float | None = None
        self.user_properties += [("cause", scenario.id), ("dialect", dialect or scenario.status),
                                 ("title", scenario.title)]

    @property
    def target_path(self) -> Path:
        """The file whose runs decide this item (a merged stub: the file covering it)."""
        if self.scenario.status == "merged":
            return self.path.parent / f"{self.scenario.merged_into}.yaml"
        return self.path

    def runtest(self) -> None:
        state = self.config.stash[_STATE]
        # Under pytest-xdist each worker runs the items it is sent, each in its own dialect, when it
        # gets them; otherwise every selected item was run before the first test, in parallel.
        runs = _run_scenarios(state, [self], None) if _xdist_worker(self.config) else state.runs
        assert runs is not None, "the scenario runs are made before the first test"
        s = self.scenario
        where = f"{s.id} [{self.dialect or s.status}] {s.title}"
        if runs.error is not None:
            raise ScenarioFailure(f"{where}: the scenario runs could not be made: {runs.error}")
        row = runs.rows.get(self.target_path.resolve())
        if s.status == "outside":
            assert row is not None and row.status == "outside", f"{where}: not reported outside"
            return
        if row is None:
            raise ScenarioFailure(f"{where}: no result for {self.target_path} (merged into {s.merged_into}, "
                                  "expecting that file beside this one)")
        results = row.dialects if self.dialect is None else [d for d in row.dialects if d.dialect == self.dialect]
        self.seconds = sum(d.seconds for d in results)
        failures = [f"{d.dialect} {f}" if self.dialect is None else f for d in results
                    for f in (d.failures or ([] if d.passed else ["no verdict"]))]
        if not results:
            failures = ["no run was made"]
        if failures:
            cover = f" (covered by {s.merged_into})" if s.status == "merged" else ""
            raise ScenarioFailure(f"{where}{cover}:\n  " + "\n  ".join(failures))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ScenarioFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.scenario.id} [{self.dialect or self.scenario.status}]: {self.scenario.title}"


@dataclass
class _Runs:
    """The session's scenario runs: one row per scenario file, by path."""

    rows: dict[Path, CauseRow] = field(default_factory=dict)
    error: str | None = None
    wall_seconds: float = 0.0


def _run_scenarios(state: _State, items: list[ScenarioItem], progress: Callable[[str], None] | None) -> _Runs:
    """Run every selected scenario file in the dialects its items need, as few matrix runs as the
    cause ids allow (two copies of one cause cannot share a run: rows are per cause)."""
    from emulator.runner import MatrixError, MatrixOptions, run
    from specs.scenario import ScenarioError, load_scenario

    wanted: dict[Path, tuple[Scenario, set[str]]] = {}
    for item in items:
        path = item.path.resolve()
        wanted.setdefault(path, (item.scenario, set()))
        if item.dialect is not None:
            wanted[path][1].add(item.dialect)
    runs = _Runs()
    try:
        for item in items:  # a merged stub needs the file that covers it, in every dialect it runs in
            target = item.target_path.resolve()
            if item.scenario.status == "merged" and target not in wanted and target.is_file():
                covering = load_scenario(target)
                wanted[target] = (covering, set(state.item_dialects(covering.dialects)))
    except (ScenarioError, OSError) as exc:
        runs.error = str(exc)
        return runs
    batches: list[dict[str, tuple[Path, Scenario]]] = []
    for path, (scenario, dialects) in wanted.items():
        if scenario.status == "merged":  # its item is judged by the covering file's row
            continue
        if scenario.runs:
            if not dialects:
                continue
            scenario = dataclasses.replace(scenario, dialects=tuple(d for d in scenario.dialects if d in dialects))
        batch = next((b for b in batches if scenario.id not in b), None)
        if batch is None:
            batches.append(batch := {})
        batch[scenario.id] = (path, scenario)
    for batch in batches:
        options = MatrixOptions(scenarios=tuple(s for _, s in batch.values()), jobs=state.jobs,
                                response_timeout_seconds=state.timeout_seconds, host=state.external_host,
                                control_url=state.control_url, control_token=state.control_token,
                                dialects=(state.dialect or DEFAULT_DIALECT,) if state.external_host else ())
        try:
            result = run(options, progress=progress)
        except MatrixError as exc:
            runs.error = str(exc)
            return runs
        runs.wall_seconds += result.wall_seconds
        for row in result.rows:
            runs.rows[batch[row.scenario.id][0]] = row
    return runs


def _xdist_worker(config: pytest.Config) -> bool:
    """Is this a pytest-xdist worker (which runs only the items the controller sends it)?"""
    return hasattr(config, "workerinput")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    """Make the scenario runs of the selected items once, before the first test runs."""
    state = session.config.stash[_STATE]
    items = [i for i in session.items if isinstance(i, ScenarioItem)]
    if items and not session.config.option.collectonly and state.runs is None and not _xdist_worker(session.config):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        verbose = session.config.get_verbosity() >= 2
        write = (lambda line: reporter.write_line(line)) if reporter is not None and verbose else None
        if reporter is not None and session.config.get_verbosity() >= 0:
            reporter.write_line(f"pos-harness: running {len(items)} scenario item(s), {state.jobs} job(s), "
                                f"response timeout {state.timeout_seconds:g} s")
        state.runs = _run_scenarios(state, items, write)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A scenario item's call takes the time of its own runs (they were made before, in parallel)."""
    report = yield
    if isinstance(item, ScenarioItem) and call.when == "call" and item.seconds is not None:
        report.duration = item.seconds
    return report
