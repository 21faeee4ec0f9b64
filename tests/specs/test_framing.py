"""FrameReader against TCP slicing: frames split across segments and merged within one."""

from __future__ import annotations

import pytest

from specs.framing import CupHeader, Frame, FrameReader, Framing, Tpdu, pack

FRAMINGS = [Framing(), Framing(length_prefix="ascii4"), Framing(tpdu=True), Framing(tpdu=True, cup_header=True)]
MESSAGES = [b"\x08\x00" + bytes(range(40)), b"\x02\x10" + b"x" * 300, b"\x05\x00\x01"]


def _frames(framing: Framing) -> list[Frame]:
    tpdu = Tpdu(destination="0112", source="0000") if framing.tpdu else None
    header = CupHeader(processing_requirement="3") if framing.cup_header else None
    return [Frame(message=m, tpdu=tpdu, header=header) for m in MESSAGES]


@pytest.mark.parametrize("framing", FRAMINGS, ids=repr)
def test_whole_stream_at_once(framing: Framing) -> None:
    frames = _frames(framing)
    stream = b"".join(pack(f, framing) for f in frames)
    assert FrameReader(framing).feed(stream) == frames


@pytest.mark.parametrize("framing", FRAMINGS, ids=repr)
def test_byte_by_byte(framing: Framing) -> None:
    frames = _frames(framing)
    stream = b"".join(pack(f, framing) for f in frames)
    reader = FrameReader(framing)
    got: list[Frame] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i:i + 1])
    assert got == frames
    assert reader.buffered == 0
    reader.close()  # nothing left over: no error


@pytest.mark.parametrize("framing", FRAMINGS, ids=repr)
def test_split_at_every_offset(framing: Framing) -> None:
    frames = _frames(framing)
    stream = b"".join(pack(f, framing) for f in frames)
    for cut in range(1, len(stream)):
        reader = FrameReader(framing)
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == frames


def test_declared_length_below_overhead() -> None:
    from specs.framing import FramingError

    with pytest.raises(FramingError) as exc_info:
        FrameReader(Framing(tpdu=True, cup_header=True)).feed(b"\x00\x05" + b"\x60\x00\x00\x00\x00")
    assert str(exc_info.value) == "Declared frame length 5 is below the minimum 13 (TPDU/header plus an MTI): pos 0"


def test_pack_refuses_oversize() -> None:
    with pytest.raises(ValueError, match="Frame of 5000 bytes exceeds the maximum 4096"):
        pack(Frame(message=b"x" * 5000), Framing(max_frame_bytes=4096))
