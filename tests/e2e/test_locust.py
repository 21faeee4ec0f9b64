"""``pos_harness.locust``: a headless Locust run of terminal users against a stub host child, judged
by Locust's own CSV stats and by the host's ledger; and Locust's pytest plugin kept out of our runs."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from emulator.hostproc import start_host

LOCUSTFILE = '''\
from pos_harness.locust import PosTerminalUser


class Till(PosTerminalUser):
    mix = {"sale": 80, "balance": 20}
    response_timeout = 0.9
'''


def test_a_headless_locust_run_reports_every_exchange_and_reaches_the_host(tmp_path: Path) -> None:
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE, encoding="utf-8")
    with start_host("--log-level", "warning", "serve", "--port", "0", "--control-port", "0") as host:
        run = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(tmp_path / "locustfile.py"), "--headless", "-u", "5", "-r", "5",
             "-t", "3s", "--stop-timeout", "10", "--host", f"127.0.0.1:{host.port}", "--csv", str(tmp_path / "run"),
             "--only-summary", "--loglevel", "WARNING"],
            capture_output=True, text=True, timeout=90, cwd=tmp_path)
        with urllib.request.urlopen(f"http://127.0.0.1:{host.ready['control_port']}/ledger/authorizations?"
                                    "tid=40000001&kind=sale", timeout=10) as response:
            posted = json.load(response)["authorizations"]
    assert run.returncode == 0, run.stderr[-3000:]
    with (tmp_path / "run_stats.csv").open(encoding="utf-8") as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    total = rows[("", "Aggregated")]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, rows
    assert int(rows[("0800", "signon")]["Request Count"]) == 5
    assert int(rows[("0200", "sale")]["Request Count"]) > 0
    assert posted and all(row["tid"] == "40000001" and row["status"] == "approved" for row in posted)


def test_locust_is_installed_and_its_pytest_plugin_stays_out(request: pytest.FixtureRequest,
                                                             pytester: pytest.Pytester) -> None:
    assert importlib.metadata.distribution("locust")  # the test extra brings it, for the test above
    assert request.config.pluginmanager.get_plugin("locust") is None
    pytester.makepyfile("def test_nothing():\n    pass\n")
    inner = pytester.runpytest("--help")  # a project's own pytest run inside ours (tests/plugin does this)
    assert inner.ret == 0 and "-H HOST" not in inner.stdout.str()
