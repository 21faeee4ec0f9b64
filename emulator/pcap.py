"""``--pcap FILE``: the frames a terminal exchanged, as a capture file Wireshark opens.

The terminal talks to its host over a real socket, but the capture is written from what the
terminal's :class:`~emulator.channel.Link` wrote and read (a :class:`~emulator.channel.FrameTap`),
not sniffed: each frame becomes one TCP segment of a synthetic Ethernet/IPv4/TCP packet between
127.0.0.1:<the terminal's local port> and 127.0.0.1:<the host's port>, with a three-way handshake at
connect, sequence and acknowledgement numbers that follow the bytes (so Wireshark reassembles the
stream) and FIN/ACK at close.  Packets are built and the file is written by ``dpkt`` (classic
pcap, little-endian, Ethernet link type); a file that already holds a capture is appended to, so
the invocations of one session (or a matrix run and its crash-point children) share one file.

Card data is masked inside each frame before it is written, as in the wire trace, but so that the
frame still decodes: the message is decoded, masked with zeros
(:func:`specs.masking.mask_message_encodable`: PAN first 6 / last 4 kept, track data, PIN block, ICC
data and sign-on keys zeroed), encoded and framed again.  The MAC in field 64 is the one that was
sent, so it no longer verifies over the masked fields.  A frame our codec cannot read is written
with its ISO message bytes zeroed (its length and framing kept): where its card data sits is
unknown.

:func:`read_pcap` reads such a file back (the replay command, the tests).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

from specs.codec import CodecError, Message, decode_unvalidated, encode
from specs.dialects import Dialect
from specs.framing import Frame, FrameReader, Framing, FramingError, pack
from specs.masking import mask_message_encodable

LOOPBACK = socket.inet_aton("127.0.0.1")
#: Initial sequence numbers of the synthetic connections (terminal, host).
TERMINAL_ISN, HOST_ISN = 1000, 50000
_ZERO_MAC = b"\x00" * 6
SNAPLEN = 65535


class PcapError(ValueError):
    """A capture file that cannot be written to or read as a pcap of ours."""


@dataclass
class _Connection:
    host_port: int
    terminal_seq: int = TERMINAL_ISN + 1
    host_seq: int = HOST_ISN + 1


def masked_frame(data: bytes, dialect: Dialect, framing: Framing) -> bytes:
    """One framed message with its card data masked and encoded again (see the module doc)."""
    try:
        frames = FrameReader(framing).feed(data)
    except FramingError:
        frames = []
    if len(frames) != 1:
        prefix = framing.prefix_size
        return data[:prefix + framing.overhead] + b"\x00" * (len(data) - prefix - framing.overhead)
    frame = frames[0]
    try:
        body = encode(mask_message_encodable(decode_unvalidated(frame.message, dialect)), dialect)
    except CodecError:
        body = b"\x00" * len(frame.message)
    return pack(Frame(message=body, tpdu=frame.tpdu, header=frame.header), framing)


class PcapWriter:
    """A :class:`~emulator.channel.FrameTap` writing every frame into a pcap file.

    Args:
        path: the file; created with a pcap header, or appended to when it already holds one.
        dialect, framing: how the frames are encoded and framed (to mask them).
        clock: wall-clock seconds for the packet timestamps.

    Raises:
        PcapError: the file exists and is not a pcap with the Ethernet link type, or cannot be written.
    """

    def __init__(self, path: str | Path, *, dialect: Dialect, framing: Framing,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.dialect, self.framing, self.clock = dialect, framing, clock
        self._connections: dict[int, _Connection] = {}
        self.packets = 0
        try:
            if self.path.exists() and self.path.stat().st_size > 0:
                self._record_header = self._existing_header()
            else:
                with self.path.open("wb") as out:  # little-endian whatever the machine: the same bytes everywhere
                    out.write(bytes(dpkt.pcap.LEFileHdr(snaplen=SNAPLEN, linktype=dpkt.pcap.DLT_EN10MB,
                                                        magic=dpkt.pcap.TCPDUMP_MAGIC)))
                self._record_header = dpkt.pcap.LEPktHdr
        except OSError as exc:
            raise PcapError(f"--pcap {self.path}: cannot be written ({exc.strerror or exc})") from None

    def _existing_header(self) -> Any:
        with self.path.open("rb") as existing:
            head = existing.read(4)
            existing.seek(0)
            try:
                reader = dpkt.pcap.Reader(existing)
            except ValueError as exc:
                raise PcapError(f"--pcap {self.path}: holds something else than a pcap capture ({exc}), "
                                "expecting a pcap file to append to or a new file") from None
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                raise PcapError(f"--pcap {self.path}: link type {reader.datalink()}, expecting Ethernet (1) "
                                "as this command writes")
        return dpkt.pcap.LEPktHdr if head == struct.pack("<I", dpkt.pcap.TCPDUMP_MAGIC) else dpkt.pcap.PktHdr

    # ------------------------------------------------------------------ FrameTap

    def connected(self, local_port: int, remote_port: int) -> None:
        self._connections[local_port] = connection = _Connection(host_port=remote_port)
        syn, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
        self._write([self._segment(local_port, connection, sent=True, flags=syn, seq=TERMINAL_ISN, ack=0),
                     self._segment(local_port, connection, sent=False, flags=syn | ack, seq=HOST_ISN,
                                   ack=TERMINAL_ISN + 1),
                     self._segment(local_port, connection, sent=True, flags=ack)])

    def frame(self, local_port: int, *, sent: bool, data: bytes) -> None:
        connection = self._connections.get(local_port)
        if connection is None:
            return
        payload = masked_frame(data, self.dialect, self.framing)
        packet = self._segment(local_port, connection, sent=sent, flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK,
                               payload=payload)
        if sent:
            connection.terminal_seq += len(payload)
        else:
            connection.host_seq += len(payload)
        self._write([packet])

    def disconnected(self, local_port: int) -> None:
        connection = self._connections.pop(local_port, None)
        if connection is None:
            return
        fin, ack = dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK
        first = self._segment(local_port, connection, sent=True, flags=fin)
        connection.terminal_seq += 1
        second = self._segment(local_port, connection, sent=False, flags=fin)
        connection.host_seq += 1
        self._write([first, second, self._segment(local_port, connection, sent=True, flags=ack)])

    # ------------------------------------------------------------------ packets

    def _segment(self, local_port: int, connection: _Connection, *, sent: bool, flags: int, payload: bytes = b"",
                 seq: int | None = None, ack: int | None = None) -> bytes:
        if sent:
            ports = (local_port, connection.host_port)
            seq = connection.terminal_seq if seq is None else seq
            ack = connection.host_seq if ack is None else ack
        else:
            ports = (connection.host_port, local_port)
            seq = connection.host_seq if seq is None else seq
            ack = connection.terminal_seq if ack is None else ack
        tcp = dpkt.tcp.TCP(sport=ports[0], dport=ports[1], seq=seq, ack=ack, flags=flags, win=65535, data=payload)
        ip = dpkt.ip.IP(src=LOOPBACK, dst=LOOPBACK, p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
        ip.len = len(ip)
        return bytes(dpkt.ethernet.Ethernet(src=_ZERO_MAC, dst=_ZERO_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))

    def _write(self, packets: list[bytes]) -> None:
        now = self.clock()
        records = b""
        for packet in packets:
            seconds = int(now)
            records += bytes(self._record_header(tv_sec=seconds, tv_usec=int((now - seconds) * 1_000_000),
                                                 caplen=len(packet), len=len(packet))) + packet
        try:
            with self.path.open("ab") as out:  # open per write: a child process may append in between
                out.write(records)
        except OSError as exc:
            raise PcapError(f"--pcap {self.path}: cannot be written ({exc.strerror or exc})") from None
        self.packets += len(packets)


# ============================================================================ reading back


@dataclass(frozen=True, slots=True)
class Captured:
    """One message of a capture: which connection (the terminal's port), which way, when, what."""

    connection: int
    sent: bool
    at: float
    frame: Frame
    message: Message | None
    problem: str = ""


@dataclass
class _Stream:
    terminal_port: int
    readers: dict[bool, FrameReader] = field(default_factory=dict)


def read_pcap(path: str | Path, dialect: Dialect, framing: Framing) -> list[Captured]:
    """Every framed message of a capture, in capture order, decoded (``message`` is None and
    ``problem`` says why when a frame does not decode).

    The side that sent the SYN is the terminal; TCP payloads are joined per connection and
    direction and cut into frames with ``framing``.

    Raises:
        PcapError: not a pcap file, or a stream that is not framed as ``framing`` says.
    """
    streams: dict[tuple[int, int], _Stream] = {}
    out: list[Captured] = []
    try:
        with Path(path).open("rb") as capture:
            try:
                packets = list(dpkt.pcap.Reader(capture))
            except (ValueError, dpkt.dpkt.UnpackError) as exc:  # NeedData (too short) is an UnpackError
                raise PcapError(f"{path}: not a pcap capture ({exc})") from None
    except OSError as exc:
        raise PcapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for at, raw in packets:
        try:
            ip = dpkt.ethernet.Ethernet(raw).data
        except dpkt.dpkt.UnpackError:  # a cut or foreign packet: not one of ours
            continue
        if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
            continue
        tcp = ip.data
        key = (min(tcp.sport, tcp.dport), max(tcp.sport, tcp.dport))
        if tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
            streams[key] = _Stream(terminal_port=tcp.sport)
            continue
        stream = streams.get(key)
        if stream is None or not tcp.data:
            continue
        sent = tcp.sport == stream.terminal_port
        reader = stream.readers.setdefault(sent, FrameReader(framing))
        try:
            frames = reader.feed(bytes(tcp.data))
        except FramingError as exc:
            raise PcapError(f"{path}: the stream of terminal port {stream.terminal_port} is not framed as "
                            f"{framing.length_prefix}{' + TPDU' if framing.tpdu else ''}"
                            f"{' + CUP header' if framing.cup_header else ''} ({exc}); give the --dialect and "
                            "framing switches the session was recorded with") from None
        for frame in frames:
            try:
                message: Message | None = decode_unvalidated(frame.message, dialect)
                problem = ""
            except CodecError as exc:
                message, problem = None, str(exc)
            out.append(Captured(connection=stream.terminal_port, sent=sent, at=float(at), frame=frame,
                                message=message, problem=problem))
    return out
