"""The operator's rollout commands (headend.py rollout, docs/OTA.md §6), each
a process of its own, on a real Mosquitto with TLS and the project's ACL and
a meter process with its modelled OTA flash: start signs and publishes the
first group's manifest, run serves blocks and applies the rules (killed
mid-download and started again, it carries on from the database), status
reports, halt clears the board's manifest in the region and resume brings
it back; another board's rollout runs beside it in the same region."""

import json
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
from conftest import ROOT, wait_for
from test_ota_rollout import _image, _restart_after_reset, _start

sys.path.insert(0, str(ROOT / "tools"))
from rollout import bucket


def _cli(w, *args, check=True):
    cmd = [sys.executable, str(ROOT / "tools" / "headend.py"), "--db", str(w.tmp / "he.sqlite"),
           "--broker", f"{w.broker.host}:{w.broker.admin_port}", "--ca", w.broker.ca_file,
           "--user", "headend", "--password", w.he_password, "rollout", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert not check or p.returncode == 0, p.stdout + p.stderr
    return p


def _run(w, every=0.5):
    cmd = [sys.executable, str(ROOT / "tools" / "headend.py"), "--db", str(w.tmp / "he.sqlite"),
           "--broker", f"{w.broker.host}:{w.broker.admin_port}", "--ca", w.broker.ca_file,
           "--user", "headend", "--password", w.he_password, "rollout", "run", "--every", str(every)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _retained(w, topic="r/1/ota/unix", wait=3.0):
    """The retained message on topic (None: none within wait seconds)."""
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rollout-cli-test")
    c.username_pw_set("headend", w.he_password)
    c.tls_set(ca_certs=w.broker.ca_file)
    c.on_connect = lambda cl, *_: cl.subscribe(topic, 1)
    c.on_message = lambda cl, u, msg: (got.append(msg.payload), done.set())
    c.connect(w.broker.host, w.broker.admin_port)
    c.loop_start()
    done.wait(wait)
    c.loop_stop()
    c.disconnect()
    return got[0] if got else None


def test_an_operator_starts_runs_halts_and_resumes_a_rollout(fresh_world, tmp_path):
    w = fresh_world
    w.office.save(w.tmp / "he.sqlite.office.pem")
    (w.tmp / "he.sqlite.master").write_text(w.master.hex() + "\n")
    assert bucket("M1") == 53                      # group 3 only
    p = _start(w, "M1")
    p.wait(lambda s: s["connected"] and s.get("ota") == 0, 60, "M1 up with OTA")
    img = tmp_path / "v2.bin"
    img.write_bytes(_image(b"version two "))

    out = _cli(w, "start", img, "--version", 2, "--board", "unix", "--region", 1, "--soak-hours", 0,
               "--min-failed", 1, "--chunk", 16384).stdout
    assert "version 2 unix region 1: group 1 (1 %) running" in out, out
    doc = json.loads(_retained(w).rpartition(b"|")[0])
    assert (doc["v"], doc["g"], doc["cs"]) == (2, 1, 16384)
    assert _retained(w, "r/1/ota") == _retained(w)     # the region-wide topic of older images, too
    # one rollout per board and region: a second one is refused with its reason
    again = _cli(w, "start", img, "--version", 4, "--board", "unix", "--region", 1, check=False)
    assert again.returncode == 2 and "version 4" not in again.stdout
    assert "version 2 for unix is running in region 1: halt it first" in again.stderr
    # another board's runs beside it; its halt leaves unix's manifest alone
    # and gives the region-wide topic back to it
    other = ("--version", 4, "--board", "unix_b", "--region", 1)
    assert "group 3 (all) running" in _cli(w, "start", img, *other, "--group", 3).stdout
    assert json.loads(_retained(w, "r/1/ota/unix_b").rpartition(b"|")[0])["b"] == "unix_b"
    assert json.loads(_retained(w, "r/1/ota").rpartition(b"|")[0])["b"] == "unix_b"   # the latest out
    assert "halted" in _cli(w, "halt", *other).stdout
    assert _retained(w, "r/1/ota/unix_b", wait=1.5) is None
    assert json.loads(_retained(w, "r/1/ota").rpartition(b"|")[0])["b"] == "unix"
    assert json.loads(_retained(w).rpartition(b"|")[0])["v"] == 2
    topic = _cli(w, "start", img, "--version", 5, "--board", "unix/#", "--region", 1, check=False)
    assert topic.returncode == 2 and "1 to 32 letters, digits or _" in topic.stderr
    not_image = tmp_path / "x.bin"
    not_image.write_bytes(b"MZ not an app image")
    bad = _cli(w, "start", not_image, "--version", 5, "--board", "unix", "--region", 2, check=False)
    assert bad.returncode == 2 and "is not an app image" in bad.stderr

    # run: groups 1 and 2 have no member here, so it goes on to 3 and M1 downloads
    run = _run(w)
    try:
        p.wait(lambda s: s.get("ota") == 1, 120, "M1 downloading")
        run.kill()                                 # the head-end dies mid-download ...
        run.wait(10)
        assert "group 3 (all) running" in _cli(w, "status", "--version", 2, "--board", "unix",
                                               "--region", 1).stdout
        wait_for(lambda: "busy 1" in _cli(w, "status").stdout, 30, "M1's accepted event")
        run = _run(w)                              # ... and starts again from its database
        _restart_after_reset(p)                    # downloaded, checked, switched, reset
        p.wait(lambda s: s.get("fw") == 2 and s.get("ota") == 0 and s["connected"], 180,
               "M1 confirmed version 2")
        wait_for(lambda: "done" in _cli(w, "status").stdout, 60, "rollout done")
    finally:
        run.kill()
        run.wait(10)
    assert "valid 1" in _cli(w, "status").stdout

    # version 3 to group 1 with a soak: halted by the operator, then resumed
    img3 = tmp_path / "v3.bin"
    img3.write_bytes(_image(b"version three "))
    key = ("--version", 3, "--board", "unix", "--region", 1)
    out = _cli(w, "start", img3, *key, "--soak-hours", 1, "--threshold", 0.3).stdout
    assert "group 1 (1 %) running" in out and "soak 1.0 h left" in out, out
    assert "halted" in _cli(w, "halt", *key).stdout
    assert _retained(w, wait=1.5) is None          # the board's manifest is cleared
    assert _retained(w, "r/1/ota", wait=1.5) is None   # and the region-wide one: no other rollout runs
    refused = _cli(w, "resume", "--version", 2, "--board", "unix", "--region", 1, check=False)
    assert refused.returncode == 2 and "is done, not halted" in refused.stderr
    out = _cli(w, "resume", *key, "--threshold", 0.5).stdout
    assert "group 1 (1 %) running" in out and "threshold 0.5" in out, out
    assert json.loads(_retained(w).rpartition(b"|")[0])["v"] == 3
    p.kill()


def _esp_image(chip_id, first_segment):
    """An ESP image's first bytes: the 24-byte header (magic 0xE9, chip id at
    bytes 12-13), the first segment's header, then the segment's data."""
    head = bytes([0xE9, 1, 2, 0x20]) + bytes(8) + chip_id.to_bytes(2, "little") + bytes(10)
    return head + (0x3F400020).to_bytes(4, "little") + len(first_segment).to_bytes(4, "little") + first_segment


def test_rollout_start_takes_the_app_image_not_the_serial_flash_image(tmp_path):
    """`rollout start` needs the build's micropython.bin. firmware.bin (the
    bootloader, partition table and app, docs/BUILD.md) starts with 0xE9
    too, its bootloader's: it is refused with the file to take instead, as
    is an app for another chip, before the broker is reached (none here)."""
    db = tmp_path / "he.sqlite"
    base = [sys.executable, str(ROOT / "tools" / "headend.py"), "--db", str(db)]
    subprocess.run(base + ["init"], capture_output=True, check=True, timeout=60)
    app = tmp_path / "micropython.bin"
    app.write_bytes(_esp_image(0, (0xABCD5432).to_bytes(4, "little") + bytes(252)))
    serial = tmp_path / "firmware.bin"
    serial.write_bytes(_esp_image(0, bytes(256)))       # the bootloader's image: no app descriptor

    def start(img, board):
        return subprocess.run(base + ["--broker", "127.0.0.1:1", "rollout", "start", str(img), "--version",
                                      "2", "--board", board, "--region", "1"],
                              capture_output=True, text=True, timeout=60, check=False)

    p = start(serial, "esp32_devkitc")
    assert p.returncode == 2 and "no ESP-IDF app descriptor" in p.stderr and "micropython.bin" in p.stderr, p.stderr
    p = start(app, "esp32s3_devkitc")
    assert p.returncode == 2 and "built for esp32, not for esp32s3_devkitc's esp32s3" in p.stderr, p.stderr
    p = start(app, "esp32_devkitx")
    assert p.returncode == 2 and "unknown board 'esp32_devkitx'" in p.stderr, p.stderr
    for board in ("esp32_devkitc", "esp32_battery"):     # the right image: on to the broker (refused here)
        p = start(app, board)
        assert p.returncode == 2 and "cannot reach broker" in p.stderr and "Traceback" not in p.stderr, p.stderr
