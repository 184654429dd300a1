"""Every test docs/SECURITY.md cites exists: each `file::name` in its
tables names a file of the repository and a test function in it. A bare
`::name` means the file named last before it in the same cell, so every
cell names its first file in full."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF = re.compile(r"((?:tests|bench)/[\w/.-]+\.py)|::(\w+)")


def cited():
    """(row label, file, test name) for every citation in the tables."""
    out, bad = [], []
    for line in (ROOT / "docs" / "SECURITY.md").read_text().splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        for cell in cells:
            current = None
            for m in REF.finditer(cell):
                if m.group(1):
                    current = m.group(1)
                elif current is None:
                    bad.append(f"{cells[0]}: ::{m.group(2)} names no file in its cell")
                else:
                    out.append((cells[0], current, m.group(2)))
    return out, bad


def test_every_cited_test_exists():
    refs, bad = cited()
    assert len(refs) > 50, "the tables were not parsed"
    defs = {}
    for row, f, name in refs:
        p = ROOT / f
        if not p.is_file():
            bad.append(f"{row}: {f} does not exist")
            continue
        if f not in defs:
            defs[f] = set(re.findall(r"^\s*def (\w+)\(", p.read_text(), re.M))
        if name not in defs[f]:
            bad.append(f"{row}: {f}::{name} is not a function of that file")
    assert not bad, "\n".join(bad)
