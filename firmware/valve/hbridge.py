# Two-input H-bridge (DRV8833, TB6612, L9110S or discrete): IN1 drives the
# valve toward open, IN2 toward closed. On a discrete bridge both inputs high
# shorts the supply (shoot-through); on an integrated one it brakes. Neither
# is ever wanted, so the only way to raise an input is energise(), which
# lowers both before it raises one: both high cannot happen by construction.
from valve import POSITION_OPEN


class HBridge:
    def __init__(self, in_open, in_close):
        self._in_open = in_open
        self._in_close = in_close
        self.driving = 0            # 1 toward open, -1 toward closed, 0 off
        self.release()

    def release(self):
        self._in_open.value(0)
        self._in_close.value(0)
        self.driving = 0

    def energise(self, goal):
        self._in_open.value(0)
        self._in_close.value(0)
        if goal == POSITION_OPEN:
            self._in_open.value(1)
            self.driving = 1
        else:
            self._in_close.value(1)
            self.driving = -1
