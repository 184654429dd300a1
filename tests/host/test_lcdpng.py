"""tools/lcdpng.py (CPython) draws what the HT1621 model's RAM holds: a RAM
image made in the unix port by the firmware's driver is decoded through the
same glass map and drawn segment by segment into a valid PNG."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from conftest import MICROPYTHON, mp_env
import lcdpng
from display import glass

SCRIPT = """
from boards.unix.clock import SimClock
from boards.unix.pins import SimPin
from boards.unix.ht1621_model import HT1621Model
from display.ht1621 import HT1621
from display.segment import SegmentScreen
from display import glass as G
c = SimClock()
p = [SimPin(n, SimPin.OUT, value=1) for n in ("cs", "wr", "d")]
m = HT1621Model(c, p[0], p[1], p[2], G.SEG)
SegmentScreen(HT1621(p[0], p[1], p[2], c.delay_us), G.SEG).show(" -1234.56", G.MONEY | G.SHUT)
print(m.hex())
"""


def _glass_ram():
    out = subprocess.run([MICROPYTHON, "-c", SCRIPT], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=mp_env())
    return out.stdout.strip()


def _expected(text, icons):
    on, cell = set(), 0
    for ch in text:
        if ch == ".":
            on.add((cell - 1) * 8 + 7)
            continue
        mask = glass.FONT[glass.CHARS.index(ch)]
        on |= {cell * 8 + s for s in range(7) if mask >> s & 1}
        cell += 1
    return on | {glass.ICON_BASE + glass.ICONS.index(n) for n in icons}


def _pixels(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    i, idat = 8, b""
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        assert struct.unpack(">I", data[i + 8 + n:i + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IDAT":
            idat += body
        i += 12 + n
    raw = zlib.decompress(idat)
    stride = 1 + 3 * w
    assert len(raw) == stride * h

    def px(x, y):
        o = y * stride + 1 + 3 * x
        return tuple(raw[o:o + 3])
    return w, h, px


def test_the_png_shows_the_segments_the_firmware_wrote(tmp_path):
    hexram = _glass_ram()
    ram = lcdpng.ram_from_hex(hexram)
    assert lcdpng.segments(ram) == _expected(" -1234.56", ["money", "shut"])
    out = tmp_path / "g.png"
    lcdpng.write(hexram, out)
    w, h, px = _pixels(out.read_bytes())
    assert (w, h) == lcdpng.size()

    def bar(cell, seg):       # the centre of a segment's bar, in PNG pixels
        x0, y0, x1, y1 = lcdpng._BARS[seg]
        x = 2 + cell * lcdpng.DIGIT_W + (x0 + x1) / 2
        return px(int(x * lcdpng.SCALE), int((2 + (y0 + y1) / 2) * lcdpng.SCALE))
    assert bar(1, 6) == lcdpng.ON           # the minus sign: segment g of cell 1
    assert bar(1, 0) == lcdpng.OFF
    assert bar(0, 6) == lcdpng.OFF          # cell 0 is blank
    assert bar(5, 7) == lcdpng.ON           # the decimal point after the 4

    def marker(name):
        x0, y0, x1, y1 = lcdpng.icon_box(glass.ICONS.index(name))
        return px((x0 + x1) // 2, (y0 + y1) // 2)
    assert marker("money") == marker("shut") == lcdpng.ON
    assert marker("valve") == marker("card") == lcdpng.OFF
    dark = lcdpng.png(lcdpng.draw(ram, lit=False))
    assert all(_pixels(dark)[2](x, y) != lcdpng.ON for x in range(0, w, 7) for y in range(0, h, 7))


def test_a_bad_ram_image_is_a_clear_error():
    with pytest.raises(ValueError, match="32 hex nibbles"):
        lcdpng.ram_from_hex("12")
    assert lcdpng.main(["zz", "/tmp/x.png"]) == 2
