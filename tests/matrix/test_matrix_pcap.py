"""``matrix --pcap DIR``: one pcap per run, the crash-point child's frames appended to its run's file."""

from __future__ import annotations

from pathlib import Path

from emulator.pcap import read_pcap
from emulator.runner import MatrixOptions, run
from specs.codec import decode
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING


def test_every_run_of_a_crash_scenario_gets_its_own_pcap_that_decodes(tmp_path: Path) -> None:
    result = run(MatrixOptions(only=("C42",), dialects=("intl-bcd",), jobs=1, pcap_dir=tmp_path))
    assert result.ok
    files = sorted(p.name for p in tmp_path.glob("*.pcap"))
    assert files == [f"C42-intl-bcd-{name}.pcap" for name in
                     ("broken", "broken_uninterrupted", "fixed", "fixed_uninterrupted")]
    dialect, framing = get_dialect("intl-bcd"), DEFAULT_FRAMING["intl-bcd"]
    fixed = read_pcap(tmp_path / "C42-intl-bcd-fixed.pcap", dialect, framing)
    assert fixed and all(decode(f.frame.message, dialect) for f in fixed)
    data = result.as_dict()
    run_data = data["rows"][0]["runs"]["intl-bcd"]["fixed"]
    sent = [m["mti"] for m in run_data["messages"] if m["kind"] == "sent"]
    # Every request the run's trace shows, the in-process steps' and the crashed child's, is in the file.
    assert [f.message["t"] for f in fixed if f.sent and f.message] == sent
    assert len({f.connection for f in fixed}) >= 3
