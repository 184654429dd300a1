"""bench/bench_ram.py's exit status is its verdict: 1 when the simulated day
fails in a heap this build is documented to run it in (a regression), 0 when
it only does not fit a smaller heap asked for (a figure, said as such). The
day runs are replaced by their outcome per heap, so the verdict logic is
tested without minutes of simulation; the runs themselves are the bench's."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_ram  # noqa: E402


def verdict(monkeypatch, capsys, bits, runs_from_k, argv=()):
    """bench_ram.main's exit status and output on a build of `bits` whose
    day runs clean from runs_from_k kB of heap up (None: never)."""
    def day(mp, heap, speed=300, extra=(), env=None):
        ok = runs_from_k is not None and int(heap.rstrip("K")) >= runs_from_k
        return {"ok": ok, "memory_error": not ok, "boot": 1, "median": 1, "max": 1,
                "samples": 1, "max_block": 1, "romfs": 0}
    monkeypatch.setattr(bench_ram, "day", day)
    monkeypatch.setattr(bench_ram, "import_figures", lambda mp: [("meter", 1000)])
    monkeypatch.setattr(bench_ram, "sim_world", lambda mp, env=None: 0)
    monkeypatch.setattr(bench_ram, "mp_bits", lambda mp: bits)
    rc = bench_ram.main(list(argv))
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("bits, runs_from, rc, said", [
    ("32bit", 90, 0, "96K: ran to its end"),
    ("32bit", 112, 1, "FAILED (MemoryError, or events lost): a regression"),
    ("64bit", 600, 0, "does not fit (MemoryError, or events lost); not a regression"),
    ("64bit", None, 1, "FAILED: the day fails even at 2048K"),
])
def test_exit_status_is_the_verdict(monkeypatch, capsys, bits, runs_from, rc, said):
    got, out = verdict(monkeypatch, capsys, bits, runs_from)
    assert got == rc and said in out, out
    assert ("FAILED" in out) == (rc == 1), "FAILED is printed exactly when the exit status says so"


def test_a_bisected_peak_above_the_limit_fails(monkeypatch, capsys):
    rc, out = verdict(monkeypatch, capsys, "32bit", 100, ["--heap", "128K", "--bisect"])
    assert rc == 1 and "smallest -X heapsize that runs the day clean: 100K" in out
    assert "FAILED: above this build's documented limit of 96K" in out
