# HT1621 segment-LCD controller (Holtek, RAM mapping 32 x 4), driven from
# its datasheet over the 3-wire serial interface: CS, WR, DATA (RD is not
# used: tie it high).
#
# CS low opens a frame, CS high ends it. DATA is latched on each rising
# edge of WR. A frame starts with a 3-bit mode ID:
#   100  command mode: 9-bit commands C8..C0, MSB first (C0 is "don't
#        care", sent 0); further commands in the same frame omit the ID;
#   101  write mode: a 6-bit address A5..A0, MSB first, then 4-bit data
#        D0..D3, LSB FIRST; each further nibble goes to the next address.
# Address n is the SEG n line; bit Dk of its nibble drives COM k.
#
# Timing (datasheet A.C. characteristics, VDD = 3 V): WR pulse width at
# least 3.34 us in write mode (150 kHz). Each half bit waits HALF_US, so a
# bit takes 8 us (125 kHz) however fast the CPU toggles pins.

HALF_US = const(4)
_ID_CMD = const(0b100)
_ID_WRITE = const(0b101)
# command codes C8..C1 (the datasheet's "0000-0001-X" form without the X)
SYS_DIS = const(0x00)      # oscillator and bias generator off: power down
SYS_EN = const(0x01)       # oscillator on
LCD_OFF = const(0x02)      # bias generator off: the glass is blank
LCD_ON = const(0x03)
RC_256K = const(0x18)      # on-chip RC oscillator (the power-on default)
BIAS_THIRD_4COM = const(0x29)  # 0010-abX1: ab = 10 four commons, 1/3 bias
RAM_NIBBLES = const(32)

_INIT = bytes((SYS_EN, RC_256K, BIAS_THIRD_4COM, LCD_ON))
_WAKE = bytes((SYS_EN, LCD_ON))
_SLEEP = bytes((LCD_OFF, SYS_DIS))


class HT1621:
    """pins: output Pin objects (value()); delay_us: the board clock's
    blocking microsecond delay. clocks counts WR clocks sent (bus cost)."""

    def __init__(self, cs, wr, data, delay_us, half_us=HALF_US):
        self._cs = cs
        self._wr = wr
        self._data = data
        self._delay = delay_us
        self._half = half_us
        self.clocks = 0
        cs.value(1)
        wr.value(1)

    def _send(self, value, n, msb_first):
        wr, data, delay, half = self._wr, self._data, self._delay, self._half
        for i in range(n):
            bit = (value >> (n - 1 - i)) & 1 if msb_first else (value >> i) & 1
            wr.value(0)
            data.value(bit)
            delay(half)
            wr.value(1)           # the controller latches DATA here
            delay(half)
        self.clocks += n

    def _begin(self, mode):
        self._cs.value(0)
        self._delay(self._half)   # CS to WR set-up (100 ns min)
        self._send(mode, 3, True)

    def _end(self):
        self._cs.value(1)
        self._delay(self._half)   # CS high at least 250 ns: the serial reset

    def commands(self, codes):
        """Send command codes (bytes of C8..C1) in one command-mode frame."""
        self._begin(_ID_CMD)
        for c in codes:
            self._send(c << 1, 9, True)
        self._end()

    def init(self):
        """After power-up (the datasheet asks the host to initialise the
        chip: its power-on reset may fail): oscillator, bias, glass on."""
        self.commands(_INIT)

    def sleep(self):
        self.commands(_SLEEP)

    def wake(self):
        self.commands(_WAKE)

    def write(self, addr, nibbles, start, end):
        """Write nibbles[start:end] to RAM addresses addr, addr + 1, ... in
        one successive-address frame."""
        self._begin(_ID_WRITE)
        self._send(addr, 6, True)
        for i in range(start, end):
            self._send(nibbles[i], 4, False)
        self._end()
