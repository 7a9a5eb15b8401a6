"""A suite killed with SIGKILL mid-run resumes: finished cells are neither recomputed nor lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import tiny_suite, to_toml


def _bench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def _snapshot(cells: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in cells.glob("*.json")}


def test_resume_after_sigkill(tmp_path: Path) -> None:
    data = tiny_suite(tmp_path / "out", seeds=[0, 1, 2, 3, 4, 5], strategies=[{"name": "linear_probe"}])
    data["tasks"] = data["tasks"][:1]
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    cells = tmp_path / "out" / "cells"

    process = _bench("run", str(suite), "--quiet")
    deadline = time.monotonic() + 300
    while len(list(cells.glob("*.json"))) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    finished = _snapshot(cells)
    assert 2 <= len(finished) < 6, "the kill came mid-suite"
    for text in finished.values():
        assert json.loads(text)["status"] == "ok"  # every file that exists is complete

    resumed = _bench("run", str(suite), "--quiet")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    assert f"{len(finished)} already done" in stderr
    assert f"this run: {6 - len(finished)} ok" in stderr
    after = _snapshot(cells)
    assert len(after) == 6
    assert {name: after[name] for name in finished} == finished  # byte for byte: not recomputed
    ran = [line for line in stderr.splitlines() if line.startswith("[")]
    assert len(ran) == 6 - len(finished)  # only the missing cells ran
