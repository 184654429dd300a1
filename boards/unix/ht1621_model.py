# Bus-level model of the Holtek HT1621 segment-LCD controller (RAM mapping
# 32 x 4) for the unix board, from its datasheet.
#
# Pin side: it watches three SimPins the firmware drives. CS falling opens a
# frame and CS rising ends it (the serial interface resets). While CS is
# low, each rising edge of WR latches the DATA level as the next bit:
#   100 + 9-bit commands (C8..C1 the code, C0 don't care), any number per
#       frame: SYS DIS/EN (oscillator), LCD OFF/ON (bias generator), RC 256K,
#       BIAS & COM, and the rest accepted and recorded;
#   101 + 6-bit address (MSB first) + 4-bit nibbles D0..D3 (LSB first),
#       successive addresses, wrapping at 32;
#   110 (read) and 111 are not modelled: counted in bad_frames, ignored.
# A WR low or high phase shorter than the datasheet's minimum clock width
# (write mode, VDD = 3 V: 3.34 us) is counted in timing_errors, on the
# SimClock, so a driver that clocks too fast fails its tests.
#
# Chip side: the display RAM (ram, 32 nibbles, bit k of a nibble = COM k).
# The glass shows it only while the oscillator runs and the bias generator
# is on (lit). decode() reads the RAM back through the board's glass map
# (firmware/display/glass.py) into characters and icon names, which is
# what the tests assert and what `make sim` draws.
#
# Power (datasheet D.C. characteristics, VDD = 3 V, no load): operating,
# on-chip RC oscillator, LCD on, IDD 150 uA typ / 300 uA max; power-down
# (SYS DIS), ISTB 5 uA max. current_ua() gives the typical figure for the
# state the chip is in, the standby maximum when powered down.
from display import glass as G

TCLK_NS = 3340
IDD_ON_UA = 150
IDD_ON_MAX_UA = 300
ISTB_MAX_UA = 5
_SYS_DIS, _SYS_EN, _LCD_OFF, _LCD_ON = 0x00, 0x01, 0x02, 0x03


class HT1621Model:
    def __init__(self, clock, cs, wr, data, seg_map=G.SEG):
        self.clock = clock
        self._data = data
        self.map = seg_map
        self.ram = bytearray(32)
        self.osc = False          # power-on reset: SYS DIS, LCD OFF
        self.bias = False
        self.commands = []        # every command code received, in order
        self.frames = 0
        self.bad_frames = 0
        self.timing_errors = 0
        self.clocks = 0
        self.last_write_us = None  # when the last RAM nibble was latched
        self.on_frame = None      # fn(model) after each frame (the simulator's glass)
        self._cs = 1
        self._bits = 0
        self._n = 0
        self._mode = None
        self._addr = 0
        self._in_data = False
        self._edge_us = 0
        cs.watch(self._on_cs)
        wr.watch(self._on_wr)

    # -- pins ------------------------------------------------------------------
    def _on_cs(self, pin, old, new):
        if old == new:
            return
        self._cs = new
        if new == 0:
            self._bits = self._n = 0
            self._mode = None
            self._in_data = False
        elif self._mode is not None:
            self.frames += 1
            if self.on_frame is not None:
                self.on_frame(self)

    def _on_wr(self, pin, old, new):
        if old == new or self._cs:
            return
        now = self.clock.now_us()
        if (now - self._edge_us) * 1000 < TCLK_NS:
            self.timing_errors += 1
        self._edge_us = now
        if new == 1:
            self.clocks += 1
            self._bit(self._data.value())

    def _bit(self, b):
        self._bits = (self._bits << 1) | b
        self._n += 1
        if self._mode is None:
            if self._n == 3:
                self._mode = self._bits
                if self._mode not in (0b100, 0b101):
                    self.bad_frames += 1
                self._bits = self._n = 0
        elif self._mode == 0b100:
            if self._n == 9:
                self._command(self._bits >> 1)
                self._bits = self._n = 0
        elif self._mode == 0b101:
            self._write_bit()

    def _write_bit(self):
        # first 6 bits: the address; then nibbles, D0 first
        if not self._in_data:
            if self._n == 6:
                self._addr = self._bits
                self._in_data = True
                self._bits = self._n = 0
        elif self._n == 4:
            v = self._bits
            nib = (v >> 3 & 1) | (v >> 1 & 2) | (v << 1 & 4) | (v << 3 & 8)  # D0 came first
            self.ram[self._addr & 31] = nib
            self._addr = (self._addr + 1) & 31
            self.last_write_us = self.clock.now_us()
            self._bits = self._n = 0

    def _command(self, code):
        self.commands.append(code)
        if code == _SYS_DIS:
            self.osc = False
            self.bias = False     # SYS DIS turns both off
        elif code == _SYS_EN:
            self.osc = True
        elif code == _LCD_OFF:
            self.bias = False
        elif code == _LCD_ON:
            self.bias = True

    # -- what tests and the simulator read ---------------------------------------
    @property
    def lit(self):
        return self.osc and self.bias

    def current_ua(self):
        if self.osc:
            return IDD_ON_UA
        return ISTB_MAX_UA

    def segment(self, i):
        b = self.map[i]
        return self.ram[b >> 2] >> (b & 3) & 1

    def cell_mask(self, cell):
        m = 0
        for s in range(8):
            m |= self.segment(cell * 8 + s) << s
        return m

    def decode(self):
        """(text, icon names) the RAM shows through the glass map; a
        segment pattern no character has reads '?'."""
        out = ""
        for c in range(G.CELLS):
            m = self.cell_mask(c)
            k = G.FONT.find(bytes((m & 0x7F,)))
            out += G.CHARS[k] if k >= 0 else "?"
            if m & 0x80:
                out += "."
        icons = [n for k, n in enumerate(G.ICONS) if self.segment(G.ICON_BASE + k)]
        return out, icons

    def shows(self, text, icons=None):
        """True when the glass holds exactly what SegmentScreen.show(text)
        draws, compared segment by segment (so "OFF" matches the 0-glyph
        O), and, given icons (names), exactly those icons."""
        want = []
        for ch in text:
            if ch == "." and want:
                want[-1] |= 0x80
            else:
                k = G.CHARS.find(ch)
                want.append(G.FONT[k] if k >= 0 else -1)
        want += [0] * (G.CELLS - len(want))
        if [self.cell_mask(c) for c in range(G.CELLS)] != want:
            return False
        return icons is None or sorted(icons) == sorted(self.icons())

    def text(self):
        return self.decode()[0]

    def icons(self):
        return self.decode()[1]

    def ascii(self):
        """The glass drawn seven-segment style in three text rows, and the
        lit icons; a dark glass (asleep) draws blank."""
        rows = ["", "", ""]
        for c in range(G.CELLS):
            m = self.cell_mask(c) if self.lit else 0
            on = [(m >> s) & 1 for s in range(8)]
            rows[0] += " " + ("_" if on[0] else " ") + "  "
            rows[1] += ("|" if on[5] else " ") + ("_" if on[6] else " ") + ("|" if on[1] else " ") + " "
            rows[2] += ("|" if on[4] else " ") + ("_" if on[3] else " ") + ("|" if on[2] else " ") + ("." if on[7] else " ")
        icons = self.icons() if self.lit else []
        rows.append("[" + " ".join(icons) + "]" if self.lit else "[asleep]")
        return rows

    def hex(self):
        return "".join("%x" % n for n in self.ram)
