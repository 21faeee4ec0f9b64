"""Host throughput, latency and CPU per round trip: our stub host against a bare asyncio + pyiso8583 host.

    python benchmarks/host_throughput.py [--terminals 8] [--seconds 5] [--dialect intl-bcd] [--ledger file|memory]
                                         [--repeat 1]

Both hosts run as child processes of this script (one process tree) and get the same closed-loop
load: ``--terminals`` concurrent connections, each sending a sale, waiting for its answer, sending
the next (a new STAN each time, one TID per terminal).  Printed per host: round trips per second,
p50/p99 latency, and the host process's CPU time (user + system, from /proc) per round trip.

* bare host: decode the request with pyiso8583, encode an approval, nothing else (no validation,
  no books, no faults);
* our host: ``pos-host serve`` with its ledger on (an SQLite file by default) and an empty fault
  list, logging at ``warning`` (request/response log lines are per-request info lines).

Figures only, no assertions: CPU and latency depend on the machine.  On a shared machine the
figures move with whatever else runs: ``--repeat N`` measures both hosts N times, interleaved, and
prints the median of each figure and of the CPU ratio (and every run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


async def measure(name: str, command: list[str], dialect_name: str, terminals: int, seconds: float) -> dict[str, Any]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        port = json.loads(process.stdout.readline())["port"]
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
    return {"name": name, "round_trips": count, "per_second": count / wall,
            "p50_ms": statistics.median(latencies) * 1000, "p99_ms": latencies[min(count - 1, int(count * 0.99))] * 1000,
            "cpu_us": cpu / count * 1e6 if count else float("nan")}


async def main(args: argparse.Namespace) -> None:
    runs: list[tuple[dict[str, float], dict[str, float]]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            ledger = ":memory:" if args.ledger == "memory" else str(Path(tmp) / "bench.sqlite")
            bare = [sys.executable, str(Path(__file__).resolve()), "--bare-host", "--dialect", args.dialect]
            ours = [sys.executable, "-m", "host_stub.cli", "--log-level", "warning", "serve", "--dialect",
                    args.dialect, "--port", "0", "--ledger", ledger]
            runs.append((await measure("bare asyncio + pyiso8583", bare, args.dialect, args.terminals, args.seconds),
                         await measure(f"pos-host (ledger {args.ledger}, no faults)", ours, args.dialect,
                                       args.terminals, args.seconds)))
    print(f"dialect {args.dialect}, {args.terminals} concurrent terminals, closed loop, {args.seconds:g} s per host"
          + (f", {args.repeat} runs" if args.repeat > 1 else ""))
    print(f"{'host':<40} {'round trips':>11} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8} {'host CPU us/rt':>15}")
    if args.repeat > 1:
        for n, pair in enumerate(runs, 1):
            for r in pair:
                _row(f"run {n}: {r['name']}", r)
            print(f"run {n}: CPU per round trip, pos-host / bare: {pair[1]['cpu_us'] / pair[0]['cpu_us']:.2f}x")
        print("median of the runs:")
    for i in (0, 1):
        median = {k: statistics.median(pair[i][k] for pair in runs) for k in runs[0][i] if k != "name"}
        _row(str(runs[0][i]["name"]), median)
    ratio = statistics.median(pair[1]["cpu_us"] / pair[0]["cpu_us"] for pair in runs)
    print(f"CPU per round trip, pos-host / bare: {ratio:.2f}x")


def _row(name: str, r: dict[str, float]) -> None:
    print(f"{name:<40} {r['round_trips']:>11.0f} {r['per_second']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
          f"{r['cpu_us']:>15.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--dialect", default="intl-bcd", choices=["intl-ascii", "intl-bcd", "cup"])
    parser.add_argument("--ledger", default="file", choices=["file", "memory"])
    parser.add_argument("--repeat", type=int, default=1, help="Measure both hosts this many times; print medians.")
    parser.add_argument("--bare-host", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_host:
        asyncio.run(bare_host(arguments.dialect))
    else:
        asyncio.run(main(arguments))
