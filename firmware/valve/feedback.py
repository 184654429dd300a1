# Position feedback from zero, one or two limit switches.
#
# read() -> POSITION_OPEN / POSITION_CLOSED / POSITION_UNKNOWN, or None when
# no switch is fitted. With two switches, neither active means mid-travel (or
# a cut wire) and both active means the feedback is broken: both UNKNOWN.
# With one switch, its end is told apart from "anywhere else".
from valve import POSITION_OPEN, POSITION_CLOSED, POSITION_UNKNOWN


class Feedback:
    def __init__(self, open_pin=None, closed_pin=None, active=0):
        self.open_pin = open_pin
        self.closed_pin = closed_pin
        self._active = active
        self.present = open_pin is not None or closed_pin is not None

    def has(self, goal):
        """Is there a switch at this end?"""
        return (self.open_pin if goal == POSITION_OPEN else self.closed_pin) is not None

    def at(self, goal):
        """Is the switch at this end active? (False when there is none.)"""
        p = self.open_pin if goal == POSITION_OPEN else self.closed_pin
        return p is not None and p.value() == self._active

    def conflict(self):
        return self.open_pin is not None and self.closed_pin is not None and \
            self.at(POSITION_OPEN) and self.at(POSITION_CLOSED)

    def read(self):
        if not self.present:
            return None
        o = self.at(POSITION_OPEN)
        c = self.at(POSITION_CLOSED)
        if self.open_pin is None:
            return POSITION_CLOSED if c else POSITION_OPEN
        if self.closed_pin is None:
            return POSITION_OPEN if o else POSITION_CLOSED
        if o == c:
            return POSITION_UNKNOWN
        return POSITION_OPEN if o else POSITION_CLOSED
