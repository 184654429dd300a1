"""A real meter's card keys, end to end: the office derives them from the
vending station's issuer masters (`cardtool.py meter-secret`, `headend.py
provision --card-keys`), the meter boots with them (main.boot on the unix
board) and opens a user card that `cardtool.py --keys` issued; without them
it says why it has no card reader. And `headend.py init`'s public office
file is what simmeter's --office takes, checked."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from storage.state import mark_provisioned

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
MP = os.environ.get("MICROPYTHON", str(ROOT / ".venv" / "bin" / "micropython"))
MPPATH = ":".join([".frozen", str(ROOT / "firmware"), str(ROOT), str(ROOT / "build" / "lib")])
METER = "M000777"

TAP = """
import main
s = main.boot("unix", state_dir=%r)
with s.ticker.hold():
    print("CARDS", s.cards is not None)
    if s.cards is not None:
        from boards.unix.mifare_card import ClassicCard
        s.hw.world.reader.place(ClassicCard.load(%r))
        print("TAP", s.cards.poll(), s.meter.balance)
s.ticker.stop()
"""


def tool(name, *args, check=True):
    p = subprocess.run([PY, str(ROOT / "tools" / name), *map(str, args)], capture_output=True,
                       text=True, timeout=60, cwd=ROOT, check=False)
    assert not check or p.returncode == 0, p.stdout + p.stderr
    return p


def boot_and_tap(state, card):
    p = subprocess.run([MP, "-c", TAP % (str(state), str(card))], env=dict(os.environ, MICROPYPATH=MPPATH),
                       capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_office_derived_card_keys_open_the_meters_cards(tmp_path):
    db = tmp_path / "he.sqlite"
    tool("headend.py", "--db", db, "init")
    issuer = tmp_path / "issuer.json"       # the vending station's masters, not the test ones
    issuer.write_text(json.dumps({"rev": 1, "mb": secrets.token_hex(16), "mr": secrets.token_hex(16)}))
    state = tmp_path / METER
    tool("headend.py", "--db", db, "--broker", "127.0.0.1:1", "provision", METER, "--region", 1,
         "--state", state, "--card-keys", issuer)
    mark_provisioned(str(state))
    sec = json.loads((state / "secrets.json").read_text())
    printed = json.loads(tool("cardtool.py", "--keys", issuer, "meter-secret", METER).stdout)
    assert sec["card"] == printed["card"] and len(sec["card"]["rec"]) == 64
    card = tmp_path / "card.json"
    tool("cardtool.py", "--keys", issuer, "new", card, "--uid", "0a0b0c0d")
    tool("cardtool.py", "--keys", issuer, "issue", card, "user", "--meter", METER, "--region", 1,
         "--account", 5, "--amount", 7000)
    out = boot_and_tap(state, card)
    assert "CARDS True" in out and "TAP 0 7000" in out, out       # ACCEPTED, credited

    # the same meter without its card section: no reader, and it says why
    del sec["card"]
    (state / "secrets.json").write_text(json.dumps(sec))
    out = boot_and_tap(state, card)
    assert "CARDS False" in out and 'secrets.json has no "card" keys' in out, out
    # and --into merges the section back (mode 0600)
    tool("cardtool.py", "--keys", issuer, "meter-secret", METER, "--into", state / "secrets.json")
    assert json.loads((state / "secrets.json").read_text())["card"] == printed["card"]
    assert (state / "secrets.json").stat().st_mode & 0o077 == 0
    # another meter's file is refused
    p = tool("cardtool.py", "--keys", issuer, "meter-secret", "M000778", "--into",
             state / "secrets.json", check=False)
    assert p.returncode != 0 and "not 'M000778'" in p.stderr


def test_simmeter_takes_init_s_public_office_file_and_refuses_another(tmp_path):
    db = tmp_path / "he.sqlite"
    tool("headend.py", "--db", db, "init")
    public = json.loads((tmp_path / "he.sqlite.office-public.json").read_text())
    assert list(public["office"]) == ["1"] and len(public["office"]["1"]) == 128
    for wrong in (tmp_path / "he.sqlite.office.json", db.with_suffix(".sqlite.master")):
        p = tool("simmeter.py", "--state", tmp_path / "m", "--master", tmp_path / "he.sqlite.master",
                 "--fleet", 1, "--region", 1, "--broker", "127.0.0.1:1", "--office", wrong, check=False)
        assert p.returncode != 0 and "use the DB.office-public.json of headend.py init" in p.stderr, \
            p.stdout + p.stderr
        assert not (tmp_path / "m").exists()


def test_simmeter_gives_each_meter_its_card_keys(tmp_path):
    import signal
    import time
    sys.path.insert(0, str(ROOT / "firmware"))
    from card import keys as K
    issuer = tmp_path / "issuer.json"
    mb, mr = secrets.token_hex(16), secrets.token_hex(16)
    issuer.write_text(json.dumps({"rev": 2, "mb": mb, "mr": mr}))
    master = tmp_path / "master"
    master.write_text(secrets.token_hex(32))
    p = subprocess.Popen([PY, str(ROOT / "tools" / "simmeter.py"), "--state", str(tmp_path / "m"),
                          "--master", str(master), "--fleet", "2", "--region", "1",
                          "--broker", "127.0.0.1:1", "--card-keys", str(issuer)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        files = [tmp_path / "m" / mid / "secrets.json" for mid in ("SIM0001", "SIM0002")]
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.1)
        want = K.IssuerKeys(mb, mr, 2)
        for mid, f in zip(("SIM0001", "SIM0002"), files):
            assert json.loads(f.read_text())["card"] == want.meter_secrets(mid)
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
