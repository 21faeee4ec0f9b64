"""Host throughput, latency and CPU per round trip: our stub host against a bare asyncio + pyiso8583 host.

    python benchmarks/host_throughput.py [--terminals 8,64] [--seconds 5] [--dialect intl-bcd]
                                         [--ledger file|memory] [--repeat 1] [--steps 3000]
                                         [--loop auto|asyncio|uvloop]

Every host runs as a child process of this script and gets the same closed-loop load:
``--terminals`` concurrent connections (a comma list runs each count), each sending a sale, waiting
for its answer, sending the next (a new STAN each time, one TID per terminal).  Printed per host:
round trips per second, p50/p99 latency, and the host process's CPU time (user + system, from
/proc) per round trip.

* bare host: decode the request with pyiso8583, encode an approval, nothing else (no validation,
  no books, no faults);
* iso8583sim's mock host (``MockHost``, approve-all rules), when the ``iso8583sim`` package is
  installed (intl-bcd and intl-ascii; it has no CUP header): a mock host a user might pick instead;
* our host: ``pos-host serve`` with its ledger on (an SQLite file by default: WAL,
  ``synchronous=FULL``, every answer's writes committed before it is written) and an empty fault
  list, logging at ``warning``, on uvloop when installed (the ready line says which loop).

Then two ratios per terminal count: pos-host's CPU per round trip over the bare host's, and
pos-host's round trips per second over iso8583sim's.  Last, a per-step CPU breakdown of one
request through the same code the server runs, measured in this process (``--steps`` requests, a
file ledger): framing, pyiso8583 decode, validation, fault plan, host decision, ledger SQL
statements, commit (fsync; per request for groups of 1 and of 8 requests), response encoding,
framing + socket write.

Figures only, no assertions: CPU and latency depend on the machine.  On a shared machine the
figures move with whatever else runs: ``--repeat N`` measures the hosts N times, interleaved, and
prints the median of each figure and of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from specs.codec import encode  # noqa: E402
from specs.dialects import get_dialect  # noqa: E402
from specs.framing import DEFAULT_FRAMING, CupHeader, Frame, FrameReader, Tpdu, pack  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the bare host (child process)


async def bare_host(dialect_name: str) -> None:
    """Length prefix, TPDU/header skipped, pyiso8583 decode, approval encode. Prints its port."""
    import iso8583

    dialect = get_dialect(dialect_name)
    framing = DEFAULT_FRAMING[dialect_name]
    spec = dict(dialect.spec)
    skip = framing.overhead

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                body = await reader.readexactly(size)
                head, message = body[:skip], body[skip:]
                request, _ = iso8583.decode(message, spec)
                answer = {"t": "0210", "39": "00", "37": "000000000001", "38": "123456"}
                for key in ("3", "4", "11", "41", "42", "60"):
                    if key in request:
                        answer[key] = request[key]
                raw, _ = iso8583.encode(answer, spec)
                if framing.tpdu:  # swap source and destination
                    head = head[:1] + head[3:5] + head[1:3] + head[5:]
                out = head + bytes(raw)
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(json.dumps({"event": "ready", "port": server.sockets[0].getsockname()[1]}), flush=True)
    async with server:
        await server.serve_forever()


# --------------------------------------------------------------------------- load


def sale(dialect_name: str, tid: str, stan: int, now: datetime) -> dict[str, str]:
    dialect = get_dialect(dialect_name)
    message = {"t": "0200", "2": "4260181590830167", "3": "000000", "4": "000000001000", "11": f"{stan % 999_999 + 1:06d}",
               "12": f"{now:%H%M%S}", "13": f"{now:%m%d}", "14": "3602", "22": "012", "25": "00", "41": tid,
               "42": "123456789012345"}
    if dialect.family == "cup":
        message.update({"49": "156", "60": "22000001000"})
    else:
        message.update({"24": "112", "62": "000001"})
    return message


async def terminal_loop(port: int, dialect_name: str, tid: str, deadline: float, latencies: list[float]) -> None:
    dialect = get_dialect(dialect_name)
    framing = DEFAULT_FRAMING[dialect_name]
    tpdu = Tpdu(destination="0112", source="0000") if framing.tpdu else None
    header = CupHeader() if framing.cup_header else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader(framing)
    loop = asyncio.get_running_loop()
    now = datetime.now()
    stan = 0
    try:
        while loop.time() < deadline:
            stan += 1
            data = pack(Frame(message=encode(sale(dialect_name, tid, stan, now), dialect), tpdu=tpdu, header=header),
                        framing)
            started = loop.time()
            writer.write(data)
            await writer.drain()
            got: list[Frame] = []
            while not got:
                chunk = await reader.read(4096)
                if not chunk:
                    raise ConnectionError("host closed the connection")
                got = frames.feed(chunk)
            latencies.append(loop.time() - started)
    finally:
        writer.close()
        await writer.wait_closed()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def iso8583sim_host(dialect_name: str) -> None:
    """iso8583sim's mock host (approve everything) with the framing of ``dialect_name``. Prints its port."""
    from iso8583sim.net import MockHost
    from iso8583sim.net.framing import Framing as SimFraming
    from iso8583sim.wire import WireFormat

    dialect = get_dialect(dialect_name)
    framing = DEFAULT_FRAMING[dialect_name]
    host = MockHost(wire_format=WireFormat.bcd() if dialect.bcd else WireFormat.ascii_hex(),
                    framing=SimFraming(tpdu=bytes.fromhex("6000000000") if framing.tpdu else None))
    await host.start("127.0.0.1", 0)
    print(json.dumps({"event": "ready", "port": host.port, "loop": "asyncio"}), flush=True)
    await asyncio.Event().wait()


def has_iso8583sim(dialect_name: str) -> bool:
    try:
        import iso8583sim  # noqa: F401
    except ImportError:
        return False
    return not DEFAULT_FRAMING[dialect_name].cup_header


async def measure(name: str, command: list[str], dialect_name: str, terminals: int, seconds: float) -> dict[str, Any]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        port = ready["port"]
        warm: list[float] = []
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(terminal_loop(port, dialect_name, f"9{i:07d}", loop.time() + 0.5, warm)
                               for i in range(terminals)))
        latencies: list[float] = []
        cpu_before, wall_before = cpu_seconds(process.pid), time.perf_counter()
        deadline = loop.time() + seconds
        await asyncio.gather(*(terminal_loop(port, dialect_name, f"8{i:07d}", deadline, latencies)
                               for i in range(terminals)))
        wall = time.perf_counter() - wall_before
        cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout:
            process.stdout.close()
    latencies.sort()
    count = len(latencies)
    return {"name": f"{name} [{ready.get('loop', 'asyncio')}]", "round_trips": count, "per_second": count / wall,
            "p50_ms": statistics.median(latencies) * 1000, "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
            "cpu_us": cpu / count * 1e6 if count else float("nan")}


async def main(args: argparse.Namespace) -> None:
    print(machine())
    for terminals in args.terminals:
        await compare(args, terminals)
    print()
    print_steps(args.dialect, args.steps)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"machine: {os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


async def compare(args: argparse.Namespace, terminals: int) -> None:
    script = [sys.executable, str(Path(__file__).resolve())]
    hosts: list[tuple[str, Callable[[str], list[str]]]] = [
        ("bare asyncio + pyiso8583", lambda ledger: [*script, "--bare-host", "--dialect", args.dialect])]
    if has_iso8583sim(args.dialect):
        hosts.append(("iso8583sim MockHost", lambda ledger: [*script, "--iso8583sim-host", "--dialect", args.dialect]))
    hosts.append((f"pos-host (ledger {args.ledger})", lambda ledger: [
        sys.executable, "-m", "host_stub.cli", "--log-level", "warning", "serve", "--dialect", args.dialect,
        "--port", "0", "--ledger", ledger, "--loop", args.loop]))
    runs: list[list[dict[str, Any]]] = []
    for _ in range(args.repeat):
        run = []
        for name, command in hosts:
            with tempfile.TemporaryDirectory() as tmp:
                ledger = ":memory:" if args.ledger == "memory" else str(Path(tmp) / "bench.sqlite")
                run.append(await measure(name, command(ledger), args.dialect, terminals, args.seconds))
        runs.append(run)
    print(f"\ndialect {args.dialect}, {terminals} concurrent terminals, closed loop, {args.seconds:g} s per host"
          + (f", {args.repeat} runs" if args.repeat > 1 else ""))
    print(f"{'host':<48} {'round trips':>11} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'host CPU us/rt':>15}")
    if args.repeat > 1:
        for n, run in enumerate(runs, 1):
            for r in run:
                _row(f"run {n}: {r['name']}", r)
        print("median of the runs:")
    for i in range(len(hosts)):
        median = {k: statistics.median(run[i][k] for run in runs) for k in runs[0][i] if k != "name"}
        _row(str(runs[0][i]["name"]), median)
    ratio = statistics.median(run[-1]["cpu_us"] / run[0]["cpu_us"] for run in runs)
    print(f"CPU per round trip, pos-host / bare: {ratio:.2f}x (aim: 1.5x or less)")
    if len(hosts) == 3:
        speed = statistics.median(run[-1]["per_second"] / run[1]["per_second"] for run in runs)
        print(f"round trips per second, pos-host / iso8583sim: {speed:.2f}x (aim: above 1)")


# --------------------------------------------------------------------------- per-step CPU breakdown


class _TimedConnection:
    """Stands in for the ledger's SQLite connection and adds up the time of its statements."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.seconds = 0.0

    def execute(self, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.db.execute(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def print_steps(dialect_name: str, count: int) -> None:
    """Time per request of each step the server takes, in this process, on a file ledger.

    Each step runs for all requests in one go (one clock reading per step, not per request: reading
    the clock costs as much as a small step).  The steps are pure CPU work, so their wall time is their
    CPU time; a commit waits for the disk, so commits are measured in process CPU time.
    """
    import iso8583

    from host_stub.faults import FaultEngine
    from host_stub.host import Host, classify
    from host_stub.ledger import Ledger
    from host_stub.wire import encode_response
    from specs.codec import decode

    dialect = get_dialect(dialect_name)
    framing = DEFAULT_FRAMING[dialect_name]
    tpdu = Tpdu(destination="0112", source="0000") if framing.tpdu else None
    header = CupHeader() if framing.cup_header else None
    now = datetime.now()
    wires = [pack(Frame(message=encode(sale(dialect_name, f"7{n % 8:07d}", n, now), dialect), tpdu=tpdu,
                        header=header), framing) for n in range(count)]
    steps: dict[str, float] = {}
    clock = time.perf_counter

    def timed(name: str, work: Callable[[], Any]) -> Any:
        """The best of three runs (a shared machine only ever adds time)."""
        best = float("inf")
        for _ in range(3):
            started = clock()
            result = work()
            best = min(best, clock() - started)
        steps[name] = best
        return result

    frames = timed("framing (FrameReader)", lambda: [f for w in wires for f in FrameReader(framing).feed(w)])
    timed("decode (pyiso8583)", lambda: [iso8583.decode(f.message, dialect.spec) for f in frames])
    requests = timed("validate (fields, MTI, mandatory)", lambda: [decode(f.message, dialect) for f in frames])
    steps["validate (fields, MTI, mandatory)"] -= steps["decode (pyiso8583)"]  # decode() includes the layout decode
    faults = FaultEngine()
    kinds = timed("fault plan", lambda: [(k, faults.plan_for(r, kind=k, now=now))[0]
                                         for r in requests for k in (classify(r, dialect),)])
    with tempfile.TemporaryDirectory() as tmp:
        answers: list[Any] = []
        for group in (1, 8):
            ledger = Ledger(str(Path(tmp) / f"steps-{group}.sqlite"))
            ledger.group_commits = True
            connection = _TimedConnection(ledger._db)
            ledger._db = connection  # type: ignore[assignment]
            host = Host(ledger, dialect)
            commit_cpu = decide = sql = 0.0
            for n, (request, kind, frame) in enumerate(zip(requests, kinds, frames, strict=True)):
                started, sql_before = clock(), connection.seconds
                answer = host.answer(request, now=now, kind=kind, raw=frame.message)
                decide += clock() - started
                sql += connection.seconds - sql_before
                if group == 1:
                    answers.append(answer)
                if n % group == group - 1:
                    cpu = time.process_time()
                    ledger.commit_pending()
                    commit_cpu += time.process_time() - cpu
            if group == 1:
                steps["host decision"] = decide - sql
                steps["ledger SQL statements"] = sql
            steps[f"commit, groups of {group} (fsync, CPU)"] = commit_cpu
            ledger._db = connection.db
            ledger.close()
    encoded = timed("encode response", lambda: [encode_response(a.response, dialect) for a in answers])
    sink, drain = socket.socketpair()
    drain.setblocking(False)

    def write() -> None:
        for message, frame in zip(encoded, frames, strict=True):
            sink.send(pack(Frame(message=message, tpdu=frame.tpdu.swapped() if frame.tpdu else None,
                                 header=frame.header), framing))
            try:
                while drain.recv(65536):
                    pass
            except BlockingIOError:
                pass

    timed("frame + socket write (and read back)", write)
    sink.close()
    drain.close()
    print(f"per-step CPU of one sale ({dialect_name}, {count} requests, file ledger, in this process):")
    for name, seconds in steps.items():
        print(f"  {name:<40} {seconds / count * 1e6:8.1f} us")
    total = sum(v for k, v in steps.items() if "groups of 1 " not in k)
    print(f"  {'sum (commits in groups of 8)':<40} {total / count * 1e6:8.1f} us")
    print("  (the rest of the server's CPU per round trip: asyncio, the request journal, the group commit's wait)")


def _row(name: str, r: dict[str, float]) -> None:
    print(f"{name:<40} {r['round_trips']:>11.0f} {r['per_second']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
          f"{r['cpu_us']:>15.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=lambda text: [int(n) for n in text.split(",")], default=[8, 64],
                        help="Concurrent terminals; a comma list runs each (default 8,64).")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--dialect", default="intl-bcd", choices=["intl-ascii", "intl-bcd", "cup"])
    parser.add_argument("--ledger", default="file", choices=["file", "memory"])
    parser.add_argument("--repeat", type=int, default=1, help="Measure both hosts this many times; print medians.")
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"],
                        help="pos-host's event loop (auto: uvloop when installed).")
    parser.add_argument("--steps", type=int, default=3000, help="Requests for the per-step CPU breakdown.")
    parser.add_argument("--bare-host", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--iso8583sim-host", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_host:
        asyncio.run(bare_host(arguments.dialect))
    elif arguments.iso8583sim_host:
        asyncio.run(iso8583sim_host(arguments.dialect))
    else:
        asyncio.run(main(arguments))
