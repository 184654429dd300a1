# A segment-LCD screen: 8 characters and icons, encoded through the glass
# map into the HT1621's 32 nibbles. Only the addresses that changed since
# the last write are sent, in one successive-address frame.
from display.ht1621 import RAM_NIBBLES
from display.glass import CELLS, ICON_BASE, CHARS, FONT

_UNKNOWN = const(0x49)     # segments a, d, g: a character the glass cannot show


class SegmentScreen:
    """The display interface (display/__init__.py) on an HT1621 glass."""

    def __init__(self, lcd, seg_map):
        self._lcd = lcd
        self._map = seg_map
        self._ram = bytearray(RAM_NIBBLES)    # what the glass should show
        self._sent = bytearray(RAM_NIBBLES)   # what the controller holds
        self._stale = True                    # controller RAM unknown: send all
        self.asleep = False
        lcd.init()

    def _set(self, i):
        b = self._map[i]
        self._ram[b >> 2] |= 1 << (b & 3)

    def show(self, text, icons):
        """text: up to 8 cells, right-aligned by the caller; a '.' lights
        the decimal point of the cell before it and takes no cell."""
        ram = self._ram
        for i in range(RAM_NIBBLES):
            ram[i] = 0
        cell = 0
        for ch in text:
            if ch == ".":
                if cell:
                    self._set((cell - 1) * 8 + 7)
                continue
            if cell >= CELLS:
                break
            k = CHARS.find(ch)
            mask = FONT[k] if k >= 0 else _UNKNOWN
            for s in range(7):
                if mask >> s & 1:
                    self._set(cell * 8 + s)
            cell += 1
        k = 0
        while icons >> k:
            if icons >> k & 1:
                self._set(ICON_BASE + k)
            k += 1
        if not self.asleep:
            self._flush()

    def _flush(self):
        ram, sent = self._ram, self._sent
        first, last = 0, RAM_NIBBLES
        if not self._stale:
            while first < RAM_NIBBLES and ram[first] == sent[first]:
                first += 1
            if first == RAM_NIBBLES:
                return
            while ram[last - 1] == sent[last - 1]:
                last -= 1
        self._lcd.write(first, ram, first, last)
        for i in range(first, last):
            sent[i] = ram[i]
        self._stale = False

    def sleep(self):
        if not self.asleep:
            self._lcd.sleep()
            self.asleep = True

    def wake(self):
        """The whole RAM sent again (the controller may have lost it in a
        brown-out while asleep), then oscillator and glass on: what lights
        up is what show() drew last, never the page from before the sleep.
        The serial interface is clocked by WR, so the RAM takes writes
        while the oscillator is off."""
        if self.asleep:
            self._stale = True
            self._flush()
            self._lcd.wake()
            self.asleep = False
