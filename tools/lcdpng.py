"""Draw the meter's segment glass to a PNG, from the HT1621's display RAM.

    python tools/lcdpng.py RAMHEX OUT.png      # RAMHEX: 32 nibbles, address 0 first

The RAM is decoded through the same glass map the firmware encodes with
(firmware/display/glass.py): each lit segment is drawn as a bar of a
seven-segment digit, each lit icon as a marker in the icon row (in the
order of glass.ICONS, which docs/DISPLAY.md prints as the label's key).
Standard library only (zlib + struct): the PNG is written by hand.
"""

import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))
from display import glass

SCALE = 4
DIGIT_W, DIGIT_H = 14, 24          # one digit cell, in glass units
ICON_W = 8
BG, ON, OFF = (196, 206, 180), (24, 28, 22), (182, 192, 168)

# segment bars in glass units: (x0, y0, x1, y1) inside a digit cell
_BARS = {
    0: (3, 1, 10, 3), 1: (10, 3, 12, 11), 2: (10, 13, 12, 21), 3: (3, 21, 10, 23),
    4: (1, 13, 3, 21), 5: (1, 3, 3, 11), 6: (3, 11, 10, 13), 7: (12, 21, 14, 23),
}


def segments(ram):
    """Lit segment indices (glass.SEG numbering) of a 32-nibble RAM image."""
    return {i for i, b in enumerate(glass.SEG) if ram[b >> 2] >> (b & 3) & 1}


def draw(ram, lit=True):
    """The glass as rows of RGB tuples."""
    on = segments(ram) if lit else set()
    cols = glass.CELLS * DIGIT_W + 4
    rows = DIGIT_H + 4 + ICON_W + 2
    px = [[BG] * cols for _ in range(rows)]

    def box(x0, y0, x1, y1, colour):
        for y in range(y0, y1):
            for x in range(x0, x1):
                px[y][x] = colour

    for cell in range(glass.CELLS):
        ox = 2 + cell * DIGIT_W
        for s, (x0, y0, x1, y1) in _BARS.items():
            box(ox + x0, 2 + y0, ox + x1, 2 + y1, ON if cell * 8 + s in on else OFF)
    for k in range(len(glass.ICONS)):
        ox = 2 + k * ICON_W
        box(ox + 1, DIGIT_H + 5, ox + ICON_W - 1, DIGIT_H + 5 + ICON_W - 2,
            ON if glass.ICON_BASE + k in on else OFF)
    return px


def png(px, scale=SCALE):
    """PNG bytes (8-bit RGB, no interlace) of rows of RGB tuples."""
    h, w = len(px) * scale, len(px[0]) * scale
    raw = bytearray()
    for row in px:
        line = bytearray(b"\x00")                  # filter type 0
        for rgb in row:
            line += bytes(rgb) * scale
        raw += bytes(line) * scale

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
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        write(args[0], args[1])
    except ValueError as e:
        print(f"lcdpng: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
