"""Fuzz a ``pos-host`` child with malformed frames and report how it took them.

    python benchmarks/fuzz_host.py [--frames 100000] [--dialect intl-bcd] [--connections 16] [--seed 1]

The host runs as a child process (file ledger in a temporary folder, short connection limits set
through ``--config``: idle timeout 2 s, frame deadline 1 s).  ``--connections`` concurrent clients
send ``--frames`` frames in all, each drawn (seeded) from these kinds:

==================  ==================================================================================
kind                what is sent
==================  ==================================================================================
valid               a well-formed sale (the control group: answered 00)
bitmap              a sale whose bitmap bytes are random
field_bytes         a sale with 1-4 random bytes changed after the bitmap
truncated_message   a sale cut short, with a length prefix that matches the cut
random_body         random bytes with a correct length prefix
bad_length_long     a length prefix above the host's maximum frame size
bad_length_short    a length prefix below the smallest possible frame
bad_tpdu            a TPDU whose id is not 0x60 (dialects framed with a TPDU)
length_lies         a length prefix longer than what follows, then the client half-closes (EOF)
split               a sale (or a damaged one) written in 2-6 segments
merged              2-4 frames, valid and damaged, in one write
half_open           the start of a frame, then nothing: the connection is left open
silent              a connection that sends nothing
==================  ==================================================================================

Printed: frames sent per kind; how the host answered (rc 00, rc 30, other codes, closed the
connection, no answer); host crashes (the child exited; it is restarted on the same ledger) and
tracebacks in its stderr; the host's RSS and open descriptors (from /proc/PID/status and
/proc/PID/fd) before, at the peak, and after (once the clients are gone and the host's timeouts
have closed what was left open).  Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_throughput import sale  # noqa: E402

from specs.codec import CodecError, decode_unvalidated, encode  # noqa: E402
from specs.dialects import Dialect, get_dialect  # noqa: E402
from specs.framing import DEFAULT_FRAMING, CupHeader, Frame, FrameReader, Framing, FramingError, Tpdu, pack  # noqa: E402

KINDS = ("valid", "bitmap", "field_bytes", "truncated_message", "random_body", "bad_length_long",
         "bad_length_short", "bad_tpdu", "length_lies", "split", "merged", "half_open", "silent")
IDLE_TIMEOUT_SECONDS = 2.0
FRAME_DEADLINE_SECONDS = 1.0
ANSWER_TIMEOUT_SECONDS = 3.0
MAX_HALF_OPEN = 64  # half-open connections this script keeps at once (the oldest is dropped)


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    frames: int = 0
    peak_fds: int = 0
    peak_rss_kib: int = 0
    rss_by_quarter: list[int] = field(default_factory=list)  # RSS (KiB) as each quarter of the frames is reached


class Host:
    """The pos-host child: started, watched, restarted after a crash."""

    def __init__(self, dialect_name: str, folder: Path) -> None:
        self.dialect_name = dialect_name
        self.ledger = folder / "fuzz.sqlite"
        self.config = folder / "host.json"
        self.config.write_text(json.dumps({"settings": {"idle_timeout_seconds": IDLE_TIMEOUT_SECONDS,
                                                        "frame_deadline_seconds": FRAME_DEADLINE_SECONDS}}))
        self.stderr_path = folder / "host.stderr"
        self.stderr = self.stderr_path.open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host_stub.cli", "--log-level", "warning", "serve", "--dialect", self.dialect_name,
             "--port", str(self.port), "--ledger", str(self.ledger), "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=self.stderr, cwd=ROOT)
        assert self.process.stdout is not None
        self.port = int(json.loads(self.process.stdout.readline())["port"])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            if self.process.stdout:
                self.process.stdout.close()
        self.stderr.close()

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def fds(self) -> int:
        assert self.process is not None
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def tracebacks(self) -> int:
        return self.stderr_path.read_text(errors="replace").count("Traceback")


class Frames:
    """Seeded builders of good and bad frames for one dialect and framing."""

    def __init__(self, dialect: Dialect, framing: Framing, rng: random.Random) -> None:
        self.dialect, self.framing, self.rng = dialect, framing, rng
        self.tpdu = Tpdu(destination="0112", source="0000") if framing.tpdu else None
        self.header = CupHeader() if framing.cup_header else None
        self.stan = 0
        self.now = datetime.now()
        self.bitmap_at = 2 if dialect.bcd else 4
        self.bitmap_size = 8 if dialect.bcd else 16

    def message(self) -> bytes:
        self.stan += 1
        return encode(sale(self.dialect.name, f"6{self.rng.randrange(10_000):07d}", self.stan, self.now), self.dialect)

    def framed(self, message: bytes) -> bytes:
        return pack(Frame(message=message, tpdu=self.tpdu, header=self.header), self.framing)

    def prefix(self, length: int) -> bytes:
        if self.framing.length_prefix == "binary2":
            return min(length, 0xFFFF).to_bytes(2, "big")
        return f"{min(length, 9999):04d}".encode("ascii")

    def damaged(self) -> bytes:
        """One frame, well framed, whose message is damaged in one of the codec-level ways."""
        return getattr(self, "_" + self.rng.choice(("bitmap", "field_bytes", "truncated_message", "random_body")))()

    def _bitmap(self) -> bytes:
        raw = bytearray(self.message())
        raw[self.bitmap_at:self.bitmap_at + self.bitmap_size] = self.rng.randbytes(self.bitmap_size)
        return self.framed(bytes(raw))

    def _field_bytes(self) -> bytes:
        raw = bytearray(self.message())
        for _ in range(self.rng.randint(1, 4)):
            raw[self.rng.randrange(self.bitmap_at + self.bitmap_size, len(raw))] = self.rng.randrange(256)
        return self.framed(bytes(raw))

    def _truncated_message(self) -> bytes:
        raw = self.message()
        return self.framed(raw[:self.rng.randrange(2, len(raw))])

    def _random_body(self) -> bytes:
        return self.framed(self.rng.randbytes(self.rng.randint(2, 200)))

    def build(self, kind: str) -> tuple[list[bytes], int]:
        """The writes for one draw of ``kind`` and how many frames they hold."""
        if kind == "valid":
            return [self.framed(self.message())], 1
        if kind in ("bitmap", "field_bytes", "truncated_message", "random_body"):
            return [getattr(self, "_" + kind)()], 1
        if kind == "bad_length_long":
            return [self.prefix(self.framing.max_frame_bytes + self.rng.randint(1, 50_000)) + b"\x60" * 8], 1
        if kind == "bad_length_short":
            return [self.prefix(self.rng.randint(0, self.framing.overhead + 1)) + b"\x00" * 4], 1
        if kind == "bad_tpdu":
            frame = bytearray(self.framed(self.message()))
            frame[self.framing.prefix_size] = self.rng.choice([b for b in range(256) if b != 0x60])
            return [bytes(frame)], 1
        if kind == "length_lies":
            frame = self.framed(self.message())
            body = frame[self.framing.prefix_size:]
            return [self.prefix(len(body) + self.rng.randint(1, 100)) + body], 1
        if kind == "split":
            frame = self.framed(self.message()) if self.rng.random() < 0.5 else self.damaged()
            cuts = sorted(self.rng.sample(range(1, len(frame)), min(len(frame) - 1, self.rng.randint(1, 5))))
            return [frame[a:b] for a, b in itertools.pairwise([0, *cuts, len(frame)])], 1
        if kind == "merged":
            count = self.rng.randint(2, 4)
            return [b"".join(self.framed(self.message()) if self.rng.random() < 0.5 else self.damaged()
                             for _ in range(count))], count
        raise ValueError(kind)


async def read_answers(reader: asyncio.StreamReader, frames: FrameReader, dialect: Dialect, expected: int,
                       tally: Tally) -> bool:
    """Read up to ``expected`` answers; False when the host closed the connection."""
    got = 0
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
            while got < expected:
                data = await reader.read(8192)
                if not data:
                    tally.outcomes["host closed the connection"] += expected - got
                    return False
                for frame in frames.feed(data):
                    got += 1
                    try:
                        rc = decode_unvalidated(frame.message, dialect).get("39", "none")
                    except CodecError:
                        rc = "unreadable"
                    tally.outcomes[f"answered rc {rc}"] += 1
    except TimeoutError:
        tally.outcomes["no answer within 3 s"] += expected - got
        return False
    except (ConnectionError, FramingError):
        tally.outcomes["host closed the connection"] += expected - got
        return False
    return True


async def client(host: Host, dialect: Dialect, framing: Framing, builder: Frames, total: int, tally: Tally,
                 half_open: list[asyncio.StreamWriter]) -> None:
    rng = builder.rng
    kinds = [k for k in KINDS if framing.tpdu or k != "bad_tpdu"]
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameReader] | None = None
    while tally.frames < total:
        kind = rng.choice(kinds)
        try:
            if kind in ("half_open", "silent"):
                _, writer = await asyncio.open_connection("127.0.0.1", host.port)
                if kind == "half_open":
                    frame = builder.framed(builder.message())
                    writer.write(frame[:rng.randrange(1, len(frame))])
                half_open.append(writer)
                if len(half_open) > MAX_HALF_OPEN:
                    half_open.pop(0).close()
                tally.sent[kind] += 1
                tally.frames += 1
                tally.outcomes["left open (the host's timeouts close it)"] += 1
                continue
            if connection is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
                connection = (reader, writer, FrameReader(framing))
            reader, writer, frames = connection
            writes, count = builder.build(kind)
            for data in writes:
                writer.write(data)
                await writer.drain()
                if len(writes) > 1:
                    await asyncio.sleep(0)  # separate segments
            if kind == "length_lies":
                writer.write_eof()
            tally.sent[kind] += 1
            tally.frames += count
            expected = 0 if kind in ("bad_length_long", "bad_length_short", "bad_tpdu", "length_lies") else count
            keep = await read_answers(reader, frames, dialect, expected, tally) if expected else False
            if not expected:
                await read_answers(reader, frames, dialect, 1, Tally())  # until the host closes
                tally.outcomes["host closed the connection"] += count
            if not keep:
                writer.close()
                connection = None
        except (ConnectionError, OSError):
            connection = None
            if not host.alive():
                tally.crashes += 1
                host.start()


async def sample(host: Host, tally: Tally, total: int, done: asyncio.Event) -> None:
    while not done.is_set():
        if host.alive():
            tally.peak_fds = max(tally.peak_fds, host.fds())
            rss = host.rss_kib()
            tally.peak_rss_kib = max(tally.peak_rss_kib, rss)
            while len(tally.rss_by_quarter) < 4 and tally.frames >= total * (len(tally.rss_by_quarter) + 1) / 4:
                tally.rss_by_quarter.append(rss)
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except TimeoutError:
            pass


async def settle_descriptors(host: Host, floor: int) -> int:
    """The host's descriptor count once it stops falling (its timeouts close what clients left)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS + FRAME_DEADLINE_SECONDS + 3
    count = host.fds()
    while count > floor and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        count = host.fds()
    return count


async def main(args: argparse.Namespace) -> None:
    dialect, framing = get_dialect(args.dialect), DEFAULT_FRAMING[args.dialect]
    rng = random.Random(args.seed)
    builder = Frames(dialect, framing, rng)
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        host = Host(args.dialect, Path(tmp))
        host.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", host.port)  # warm up: 200 good sales
            warm = FrameReader(framing)
            for _ in range(200):
                writer.write(builder.framed(builder.message()))
                await read_answers(reader, warm, dialect, 1, Tally())
            writer.close()
            await asyncio.sleep(0.5)
            fds_before, rss_before = host.fds(), host.rss_kib()
            half_open: list[asyncio.StreamWriter] = []
            done = asyncio.Event()
            sampler = asyncio.create_task(sample(host, tally, args.frames, done))
            started = time.perf_counter()
            await asyncio.gather(*(client(host, dialect, framing, builder, args.frames, tally, half_open)
                                   for _ in range(args.connections)))
            elapsed = time.perf_counter() - started
            for writer in half_open:
                writer.close()
            done.set()
            await sampler
            while len(tally.rss_by_quarter) < 4:  # a quarter the half-second sampler did not catch
                tally.rss_by_quarter.append(host.rss_kib())
            fds_after = await settle_descriptors(host, fds_before)
            rss_after = host.rss_kib()
            alive = host.alive()
        finally:
            host.stop()
        tracebacks = host.tracebacks()
    print(f"pos-host fuzz: dialect {args.dialect}, {tally.frames} frames over {args.connections} clients "
          f"in {elapsed:.1f} s (seed {args.seed})")
    print("frames sent by kind:")
    for kind in KINDS:
        if tally.sent[kind]:
            print(f"  {kind:<20} {tally.sent[kind]:>8}")
    print("what the host did:")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {outcome:<44} {count:>8}")
    print(f"host crashes: {tally.crashes}; still running at the end: {'yes' if alive else 'no'}")
    print(f"tracebacks in the host's stderr: {tracebacks}")
    print(f"host RSS: {rss_before / 1024:.1f} MB before, {tally.peak_rss_kib / 1024:.1f} MB peak, "
          f"{rss_after / 1024:.1f} MB after")
    print("host RSS as the frames went by: " + ", ".join(
        f"{25 * (i + 1)}% {kib / 1024:.1f} MB" for i, kib in enumerate(tally.rss_by_quarter))
        + " (the request journal keeps the last 10,000 entries; memory levels off once it is full)")
    print(f"host descriptors: {fds_before} before, {tally.peak_fds} peak, {fds_after} after")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--dialect", default="intl-bcd", choices=["intl-ascii", "intl-bcd", "cup"])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
