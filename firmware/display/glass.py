# The meter's segment glass: 8 seven-segment digits with decimal points and
# 14 icons, on an HT1621's 32 x 4 display RAM. This is data: the firmware
# encodes through it, the unix board's controller model decodes through it,
# and tools/lcdpng.py draws it. A board with another glass declares its own
# table of the same form.
#
# SEG[i] is the RAM bit that lights segment i, as address * 4 + COM:
#   i = cell * 8 + s for the digits, cell 0 the leftmost, s = 0..6 the
#       segments a, b, c, d, e, f, g and s = 7 the decimal point after it;
#   i = 64 + k for icon k (ICONS).
# The glass is wired as its maker routed it, not in a tidy order: cell n
# uses SEG lines 2n (COM0..3 = f, g, e, d) and 2n + 1 (a, b, c, dp); the
# icons sit on SEG 16..19.
try:
    from micropython import const
except ImportError:         # CPython: tools/lcdpng.py
    def const(x):  # type: ignore[misc]
        return x

CELLS = const(8)
ICON_BASE = const(64)


def _digit_bits(cell):
    lo, hi = 2 * cell * 4, (2 * cell + 1) * 4
    # a      b       c       d      e      f   g       dp
    return (hi + 0, hi + 1, hi + 2, lo + 3, lo + 2, lo, lo + 1, hi + 3)


SEG = bytes([b for c in range(CELLS) for b in _digit_bits(c)] +
            [16 * 4 + k for k in range(16)])

# icons, in SEG order from ICON_BASE; what lights them: docs/DISPLAY.md
ICONS = ("valve", "shut", "low", "card", "batt", "alarm", "money", "m3",
         "per-m3", "month", "today", "block", "emerg", "press")
VALVE = const(1 << 0)      # valve open
SHUT = const(1 << 1)       # valve closed
LOW = const(1 << 2)        # credit below the first low-credit threshold
CARD = const(1 << 3)       # a card result or a top-up is shown
BATT = const(1 << 4)       # battery low
ALARM = const(1 << 5)      # an alarm is active
MONEY = const(1 << 6)      # the figure is money
M3 = const(1 << 7)         # the figure is cubic metres
PER_M3 = const(1 << 8)     # ... per cubic metre (a price)
MONTH = const(1 << 9)      # this billing period (the month)
TODAY = const(1 << 10)     # today, since local midnight
BLOCK = const(1 << 11)     # tariff block
EMERG = const(1 << 12)     # emergency credit in use
PRESS = const(1 << 13)     # credit is back: press the button or tap to reopen

# seven-segment font: FONT[CHARS.find(ch)], bit s = segment s (a = bit 0);
# O and S are the glyphs of 0 and 5 (read back, they read as 0 and 5)
CHARS = " 0123456789AbCdEFGHLnoPrtU-_OS"
FONT = bytes((0x00, 0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F,
              0x77, 0x7C, 0x39, 0x5E, 0x79, 0x71, 0x3D, 0x76, 0x38, 0x54, 0x5C,
              0x73, 0x50, 0x78, 0x3E, 0x40, 0x08, 0x3F, 0x6D))
