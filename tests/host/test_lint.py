"""Host tools and the utility platform (CPython 3.11) pass ruff with its default rules."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tools_pass_ruff():
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "ruff"), "check", "--output-format", "concise",
                        "tools", "utility"], cwd=str(ROOT), capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
