"""Draw the meter's segment glass to a PNG, from the HT1621's display RAM.

    python tools/lcdpng.py RAMHEX OUT.png      # RAMHEX: 32 nibbles, address 0 first

The RAM is decoded through the same glass map the firmware encodes with
(firmware/display/glass.py): each lit segment is drawn as a bar of a
seven-segment digit, each icon as a marker with its name (glass.ICONS),
dark when lit and dim when not.
Standard library only (zlib + struct): the PNG is written by hand.
"""

import argparse
import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))
from display import glass

SCALE = 4                          # pixels per glass unit
DIGIT_W, DIGIT_H = 14, 24          # one digit cell, in glass units
SLOTS = 7                          # icons per row, two rows
ICON_ROW = 16                      # pixels per icon row
BG, ON, OFF = (196, 206, 180), (24, 28, 22), (182, 192, 168)

# segment bars in glass units: (x0, y0, x1, y1) inside a digit cell
_BARS = {
    0: (3, 1, 10, 3), 1: (10, 3, 12, 11), 2: (10, 13, 12, 21), 3: (3, 21, 10, 23),
    4: (1, 13, 3, 21), 5: (1, 3, 3, 11), 6: (3, 11, 10, 13), 7: (12, 21, 14, 23),
}
# a 3 x 5 font for the icon labels: five rows of three bits, MSB on the left
_FONT = {
    "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6), "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6),
    "E": (7, 4, 6, 4, 7), "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "K": (5, 5, 6, 5, 5),
    "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5), "O": (2, 5, 5, 5, 2),
    "P": (6, 5, 6, 4, 4), "R": (6, 5, 6, 5, 5), "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2),
    "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2), "W": (5, 5, 7, 7, 5), "Y": (5, 5, 2, 2, 2),
    "3": (6, 1, 2, 1, 6), "-": (0, 0, 7, 0, 0),
}


def size():
    """(width, height) of the picture in pixels."""
    w = (glass.CELLS * DIGIT_W + 4) * SCALE
    return w, (DIGIT_H + 4) * SCALE + 2 * ICON_ROW + 8


def segments(ram):
    """Lit segment indices (glass.SEG numbering) of a 32-nibble RAM image."""
    return {i for i, b in enumerate(glass.SEG) if ram[b >> 2] >> (b & 3) & 1}


def icon_box(k):
    """Pixel box (x0, y0, x1, y1) of icon k's marker."""
    slot = size()[0] // SLOTS
    x = 4 + (k % SLOTS) * slot
    y = (DIGIT_H + 4) * SCALE + 2 + (k // SLOTS) * ICON_ROW
    return x, y, x + 12, y + 12


def draw(ram, lit=True):
    """The glass as rows of RGB tuples: the digits, then each icon as a
    marker with its name (dim when unlit)."""
    on = segments(ram) if lit else set()
    w, h = size()
    px = [[BG] * w for _ in range(h)]

    def box(x0, y0, x1, y1, colour):
        for y in range(y0, y1):
            for x in range(x0, x1):
                px[y][x] = colour

    for cell in range(glass.CELLS):
        ox = 2 + cell * DIGIT_W
        for s, (x0, y0, x1, y1) in _BARS.items():
            box((ox + x0) * SCALE, (2 + y0) * SCALE, (ox + x1) * SCALE, (2 + y1) * SCALE,
                ON if cell * 8 + s in on else OFF)
    for k, name in enumerate(glass.ICONS):
        x0, y0, x1, y1 = icon_box(k)
        colour = ON if glass.ICON_BASE + k in on else OFF
        box(x0, y0, x1, y1, colour)
        x = x1 + 3
        for ch in name.upper():
            for r, bits in enumerate(_FONT[ch]):
                for c in range(3):
                    if bits >> (2 - c) & 1:
                        box(x + 2 * c, y0 + 1 + 2 * r, x + 2 * c + 2, y0 + 3 + 2 * r, colour)
            x += 8
    return px


def png(px):
    """PNG bytes (8-bit RGB, no interlace) of rows of RGB tuples."""
    h, w = len(px), len(px[0])
    raw = bytearray()
    for row in px:
        raw += b"\x00"                             # filter type 0
        for rgb in row:
            raw += bytes(rgb)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def ram_from_hex(text):
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("the RAM image is 32 hex nibbles, address 0 first")
    return bytes(int(c, 16) for c in text)


def write(ram_hex, path, lit=True):
    Path(path).write_bytes(png(draw(ram_from_hex(ram_hex), lit)))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lcdpng.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("ram", metavar="RAMHEX", help="the display RAM: 32 hex nibbles, address 0 first")
    ap.add_argument("out", metavar="OUT.png")
    a = ap.parse_args(argv)
    try:
        write(a.ram, a.out)
    except ValueError as e:
        print(f"lcdpng: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
