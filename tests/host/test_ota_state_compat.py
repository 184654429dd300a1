"""State written by this firmware, read by an older one (docs/OTA.md §5): the
old image a rollback returns to must restore what the new image saved. The
older firmware here is the real one, taken from git: the first image that
can take updates over the air (9d7f70b), so every image since must stay
readable by it. (The firmware before it, 9f1c1a6, cannot read today's
state: it unpacked the billing record "bill" as exactly 7 values, and the
social-tariff work appended 3; readers now take a prefix.)"""

import json
import subprocess
import tarfile
from io import BytesIO

from conftest import MICROPYTHON, ROOT

OLD = "9d7f70b"

WRITE = """
import sys
from simkit import make_meter
m, hw = make_meter(sys.argv[1])
m.apply_credit("mqtt", 1, 7, 123_456)
m.confirm()
hw.world.flow.set_rate_lph(600)
for _ in range(30):
    hw.clock.advance(1000)
    m.poll()
m.raise_fw_floor(5)
m.save()
print("STATE", m.balance, m.volume.ml(), m.fw_floor)
"""

READ = """
import sys
from simkit import make_meter
m, hw = make_meter(sys.argv[1])
print("STATE", m.balance, m.volume.ml(), m.fw_floor,
      len([e for e in m.log.recent(16) if e[2] == 17]))    # EV_STATE_CORRUPT
"""


def _tree(commit, dest):
    raw = subprocess.run(["git", "archive", commit, "firmware", "boards", "tests/mp"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(raw)) as t:
        t.extractall(dest, filter="data")


def _run(root, script, state):
    path = ":".join([".frozen", f"{root}/firmware", str(root), f"{root}/tests/mp",
                     str(ROOT / "build" / "lib")])
    p = subprocess.run([MICROPYTHON, "-c", script, state], capture_output=True, text=True,
                       env={"MICROPYPATH": path}, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return [ln for ln in p.stdout.splitlines() if ln.startswith("STATE")][-1].split()[1:]


def test_the_pre_ota_firmware_restores_the_state_this_one_writes(tmp_path):
    old = tmp_path / "old"
    _tree(OLD, old)
    state = tmp_path / "state"
    state.mkdir()
    bal, ml, floor = _run(ROOT, WRITE, str(state))
    assert int(floor) == 5 and int(ml) > 0
    newest = max(state.glob("state.[01]"), key=lambda p: p.stat().st_mtime)
    assert "fwv" in json.loads(newest.read_bytes().split(b"\n", 1)[1])
    got = _run(old, READ, str(state))
    assert got == [bal, ml, floor, "0"], (got, bal, ml)
