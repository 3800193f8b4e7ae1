"""The peer benchmark's helpers: round times from stamps, paired ratios, curve agreement,
target checks, and peak memory summed over a process tree with shared pages counted once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"peers_{name}", PEERS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stats = _load("stats")
memory = _load("memory")


def test_round_times_from_stamps():
    times = stats.round_times(100.0, [105.0, 108.0, 110.5, 112.5])
    assert times["startup_s"] == pytest.approx(5.0)
    assert times["first_round_s"] == pytest.approx(3.0)
    assert times["warm_round_s"] == pytest.approx(2.25)  # median of 2.5 and 2.0
    assert times["round_with_startup_s"] == pytest.approx(12.5 / 3)
    with pytest.raises(ValueError, match=">= 2 rounds"):
        stats.round_times(0.0, [1.0, 2.0])


def test_ratios_are_paired_per_repetition_and_targets_checked():
    def run(t):
        return {"warm_round_s": t, "round_with_startup_s": t, "startup_s": t, "peak_pss_mb": t}

    runs = {
        "bare": [run(1.0), run(2.0), run(4.0)],
        "lit": [run(1.1), run(2.0), run(4.0)],
        "flower": [run(2.0), run(4.0), run(8.0)],
    }
    summary = stats.summarise(runs)
    lit = summary["ratios"]["lit"]["warm_round_s"]
    # Unpaired medians would give 2.0 / 2.0; the paired ratios are 1.1, 1.0, 1.0.
    assert (lit["median"], lit["min"], lit["max"]) == pytest.approx((1.0, 1.0, 1.1))
    assert summary["variants"]["flower"]["peak_pss_mb"]["median"] == 4.0
    rows = stats.check_targets(summary, {"warm_round_s": 1.05, "peak_pss_mb": 0.9})
    met = {row["target"]: row["met"] for row in rows}
    assert met == {
        "warm_round_s lit/bare <= 1.05": True,
        "warm_round_s lit < flower": True,
        "peak_pss_mb lit/bare <= 0.9": False,
        "peak_pss_mb lit < flower": True,
    }


def test_curve_gap_is_the_largest_relative_difference():
    assert stats.max_relative_gap([10.0, 9.009, 8.8], [10.0, 9.0, 8.8]) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="cannot be compared"):
        stats.max_relative_gap([1.0], [1.0, 2.0])


# A parent that fills 160 MiB, then forks a child sharing those pages (copy-on-write).
FORKED = """
import os, sys, time
data = bytearray(b"\\x01") * (160 * 2**20)
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""


def test_tree_memory_counts_children_and_shared_pages_once():
    process = subprocess.Popen([sys.executable, "-c", FORKED], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        tree = psutil.Process(process.pid)
        members = [tree, *tree.children(recursive=True)]
        rss_mb = sum(p.memory_info().rss for p in members) / 2**20
        with memory.PeakTreeMemory(process.pid, interval_s=0.05) as peak:
            peak.sample()
        pss_mb = peak.peak_bytes / 2**20
        assert peak.peak_processes == 2
        assert rss_mb > 320  # RSS counts the shared 160 MiB in both processes
        assert 160 <= pss_mb < 230  # PSS counts it once (plus two interpreters)
    finally:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait(timeout=30)
