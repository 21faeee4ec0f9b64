"""``--pcap``: the frames of real invocations written as pcap (dpkt), read back with dpkt, every
frame decoded by our codec, card data masked inside the frames, TCP sequence numbers that follow
the bytes."""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from emulator.pcap import PcapError, PcapWriter, masked_frame, read_pcap
from specs.cards import seeded_card
from specs.codec import decode, encode
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING, Frame, pack
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import cli


@pytest.mark.parametrize("dialect", ["intl-ascii", "intl-bcd", "cup"])
def test_a_session_of_invocations_lands_in_one_pcap_that_decodes(dialect: str, tmp_path: Path) -> None:
    capture, journal = tmp_path / "session.pcap", tmp_path / "t.sqlite"
    pan = seeded_card(seed=4242, scheme="unionpay" if dialect == "cup" else "visa").pan

    async def session() -> int:
        async with running_host(dialect) as server:
            port = server.port or 0
            for args in (("signon",), ("sale", "12.34", "--pan", pan, "--pin", "1234"), ("settle",)):
                await cli(port, journal, "--pcap", str(capture), *args, dialect=dialect)
            return port

    host_port = run_bounded(session(), 30.0)
    data = capture.read_bytes()
    assert pan.encode() not in data and bytes.fromhex(pan if len(pan) % 2 == 0 else pan + "0") not in data
    d, framing = get_dialect(dialect), DEFAULT_FRAMING[dialect]
    frames = read_pcap(capture, d, framing)
    assert [(f.sent, f.message and f.message["t"]) for f in frames] == [
        (True, "0800"), (False, "0810"), (True, "0200"), (False, "0210"), (True, "0500"), (False, "0510"),
        *([(True, "0320"), (False, "0330")] if dialect == "cup" else [])]  # CUP ends a balanced batch with 207
    for f in frames:
        decode(f.frame.message, d)  # every frame decodes with the validating codec, masked as it is
    sale = frames[2].message
    assert sale is not None and sale["2"] == pan[:6] + "0" * (len(pan) - 10) + pan[-4:] and set(sale["52"]) == {"0"}
    assert set(frames[1].message["62"]) == {"0"}  # type: ignore[index]  # the working keys never reach the file
    assert len({f.connection for f in frames}) == 3  # one TCP connection per invocation, appended

    # Sequence and acknowledgement numbers follow the bytes of each direction.
    with capture.open("rb") as f:
        segments = [dpkt.ethernet.Ethernet(raw).data.data for _, raw in dpkt.pcap.Reader(f)]
    expected: dict[tuple[int, int], int] = {}
    for tcp in segments:
        key = (tcp.sport, tcp.dport)
        if tcp.flags & dpkt.tcp.TH_SYN:
            expected[key] = tcp.seq + 1
            continue
        assert tcp.seq == expected[key], f"segment {key} seq {tcp.seq}, expecting {expected[key]}"
        assert tcp.ack == expected[(tcp.dport, tcp.sport)]
        expected[key] += len(tcp.data) + (1 if tcp.flags & dpkt.tcp.TH_FIN else 0)
    assert {tcp.dport for tcp in segments if tcp.sport != host_port} == {host_port}


def test_a_frame_our_codec_cannot_read_is_written_zeroed(tmp_path: Path) -> None:
    d, framing = get_dialect("intl-ascii"), DEFAULT_FRAMING["intl-ascii"]
    garbled = pack(Frame(message=b"02004761739001010010garbage"), framing)
    out = masked_frame(garbled, d, framing)
    assert out[:2] == garbled[:2] and out[2:] == b"\x00" * (len(garbled) - 2)
    good = pack(Frame(message=encode({"t": "0800", "11": "000001", "41": "10000001", "70": "301", "24": "112",
                                      "12": "093000", "13": "1122"}, d)), framing)
    assert masked_frame(good, d, framing) == good  # nothing sensitive: the bytes are kept


def test_a_file_that_is_not_a_pcap_is_refused_with_its_name(tmp_path: Path) -> None:
    other = tmp_path / "notes.pcap"
    other.write_text("not a capture\n" * 3)
    with pytest.raises(PcapError, match=r"notes\.pcap: holds something else than a pcap"):
        PcapWriter(other, dialect=get_dialect("intl-bcd"), framing=DEFAULT_FRAMING["intl-bcd"])


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3\xb2\xa1\x02"], ids=["empty", "cut-header"])
def test_a_short_file_is_not_a_capture_for_the_reader(tmp_path: Path, content: bytes) -> None:
    short = tmp_path / "short.pcap"
    short.write_bytes(content)
    with pytest.raises(PcapError, match=r"short\.pcap: not a pcap capture"):
        read_pcap(short, get_dialect("intl-bcd"), DEFAULT_FRAMING["intl-bcd"])


def test_the_file_header_and_a_syn_are_pinned_byte_for_byte(tmp_path: Path) -> None:
    """Classic pcap (LE magic, v2.4, snaplen 65535, Ethernet), then Ethernet + IPv4 127.0.0.1 -> 127.0.0.1
    + TCP 40000 -> 8583 SYN seq 1000, header checksums included."""
    path = tmp_path / "one.pcap"
    PcapWriter(path, dialect=get_dialect("intl-ascii"), framing=DEFAULT_FRAMING["intl-ascii"],
               clock=lambda: 1.5).connected(40000, 8583)
    data = path.read_bytes()
    assert data[:24] == bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
    assert data[24:40] == bytes.fromhex("0100000020a107003600000036000000")  # 1.5 s, 54 bytes
    assert data[40:94] == bytes.fromhex(
        "000000000000000000000000" "0800"                                      # Ethernet, IPv4
        "4500002800000000" "40067cce" "7f000001" "7f000001"                    # IPv4, TTL 64, TCP
        "9c40" "2187" "000003e8" "00000000" "5002" "ffff" "f030" "0000")       # TCP SYN
