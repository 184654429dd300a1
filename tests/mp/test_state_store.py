# storage/state.py's save streams the JSON body through json.dump three times
# (length, CRC, file) instead of holding it as bytes: the header it writes
# must describe the body on the flash byte for byte, non-ASCII text included
# (a str's length counts characters, the header counts bytes).
import json
from binascii import crc32

from mptest import fresh_dir
from storage.state import StateStore


def _slot(d, gen):
    with open("%s/state.%d" % (d, gen & 1), "rb") as f:
        return f.read()


def test_the_header_describes_the_streamed_body_byte_for_byte():
    d = fresh_dir("store")
    state = {"bal": 123456789, "name": "Müller €", "l": [1, [2, None], {"a": True}], "neg": -5}
    s = StateStore(d)
    s.save(state)
    raw = _slot(d, 1)
    head, body = raw.split(b"\n", 1)
    magic, gen, crc, length = head.split()
    assert magic == b"MS2" and int(gen, 16) == 1
    assert int(length) == len(body) == len(json.dumps(state).encode())
    assert int(length) > len(json.dumps(state))          # the text is not ASCII
    assert int(crc, 16) == crc32(body, crc32(b"1 %d\n" % len(body)))
    assert json.loads(body) == state
    assert StateStore(d).load() == state


def test_successive_saves_alternate_slots_and_load_the_newest():
    d = fresh_dir("store2")
    s = StateStore(d)
    for n in range(1, 4):
        s.save({"n": n, "pad": "x" * (100 * n)})
    t = StateStore(d)
    assert t.load() == {"n": 3, "pad": "x" * 300} and t.generation == 3
    assert json.loads(_slot(d, 2).split(b"\n", 1)[1])["n"] == 2
