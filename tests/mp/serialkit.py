# The serial line of a test meter on the virtual clock (the service gate's
# tests: tests/mp/test_attack_serial_gate.py, test_battery_service.py).


class Stop(Exception):
    """The line's time is up (Line's until_s)."""


class Line:
    """The serial line: lines typed at virtual times (s since the line was
    made; a line may be a function of what the meter printed), all it
    printed. until_s: a read after that many seconds raises Stop (None:
    never)."""

    def __init__(self, clock, script, until_s=None):
        self.clock = clock
        self.script = list(script)
        self.until = None if until_s is None else until_s * 1000
        self.printed = []
        self.t0 = clock.now_ms()

    def out(self, *a):
        self.printed.append(" ".join(str(x) for x in a))

    def text(self):
        return "\n".join(self.printed)

    def lines(self):
        t = self.clock.now_ms() - self.t0
        if self.until is not None and t > self.until:
            raise Stop()
        # one line per read: the next is typed after the meter's answer
        if self.script and self.script[0][0] * 1000 <= t:
            item = self.script.pop(0)[1]
            return [item(self) if callable(item) else item]
        return []
