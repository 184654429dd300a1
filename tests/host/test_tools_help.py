"""Every script in tools/ answers --help and a bad option the way a new user
expects: a usage text, exit 0 for --help and 2 for the bad option (argparse's
codes), never a traceback, and nothing written where it was run (a script
that took --help for its output folder made a directory called '--help').
A library module (rollout.py, office.py, ...) says what to run instead."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (ROOT / "tools").glob("*.py"))


def run(tmp_path, script, arg):
    return subprocess.run([sys.executable, str(ROOT / "tools" / script), arg], cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          check=False)


def test_every_tool_is_checked():
    assert {"rollout.py", "headend.py", "sim.py", "fetch_umqtt.py", "manifest.py"} <= set(SCRIPTS)


def _usage(tmp_path, script, arg, code, stream):
    """script given arg exits with code and a usage text on stream (stdout
    or stderr), no traceback, no file written."""
    p = run(tmp_path, script, arg)
    out = p.stdout + p.stderr
    assert "Traceback" not in out, out
    assert p.returncode == code, (p.returncode, out)
    assert "usage:" in getattr(p, stream).lower(), out
    assert list(tmp_path.iterdir()) == [], f"{arg} wrote files"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_exits_0(tmp_path, script):
    _usage(tmp_path, script, "--help", 0, "stdout")


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_option_prints_usage_and_exits_2(tmp_path, script):
    _usage(tmp_path, script, "--no-such-option", 2, "stderr")


def test_rollout_points_at_the_headend_command(tmp_path):
    p = run(tmp_path, "rollout.py", "--help")
    assert "tools/headend.py" in p.stdout and "rollout {start,status,halt,resume,run}" in p.stdout
