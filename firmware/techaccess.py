# Technician access to a production meter: a challenge on the serial line,
# answered by the office's signature (docs/SERVICE.md, "Opening a production
# meter"). Nothing the customer can reach opens the REPL: no button, no case
# switch, no shared PIN. The meter holds only the office's public keys, so a
# dump of one meter opens no other.
#
#   technician types   svc
#   meter prints       svc-challenge M000123 4711 9f03...c1e2      (id, counter, nonce)
#   office signs       "M000123 4711 9f03...c1e2 30"  with purpose b"svc"
#   technician types   svc-open 30 <128 hex: r || s>
#   meter opens the REPL for 30 min, event service-open (arg: minutes)
#
# A challenge is answered once (right or wrong, it is gone), is bound to this
# meter's id and lasts CHALLENGE_S of the meter's ticks (the RTC may be
# wrong; ticks are not). The counter is the event log's sequence number, so
# the office's audit of challenges is in the same order as the meter's log.
# A wrong answer doubles the wait before the next challenge (a verify costs
# seconds of pure-Python arithmetic on the chip: junk must not buy them).
import codes

CHALLENGE_S = const(600)      # an unanswered challenge lapses after 10 min
MAX_MINUTES = const(120)      # the longest service window a token may grant
WAIT_BASE_S = const(5)        # first wait after a wrong answer; doubles
WAIT_MAX_S = const(3600)
LINE_MAX = const(200)         # a longer line is junk, dropped whole
READ_MAX = const(256)         # bytes taken per poll: a flood cannot hold the loop
NONCE_BYTES = const(16)
PURPOSE = b"svc"


class Console:
    """The serial line while the REPL is closed: bytes from stdin without
    blocking (Ctrl-C is masked, so 0x03 arrives as a byte), cut into lines
    of printable ASCII; a line with any other byte is dropped whole."""

    def __init__(self, stream=None, out=print):
        import select
        import sys
        s = stream if stream is not None else sys.stdin
        self._in = getattr(s, "buffer", s)
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        self._line = bytearray()
        self._junk = False
        self.out = out

    def lines(self):
        """The complete lines received since the last call (at most
        READ_MAX bytes are read per call; the rest waits in the port's
        buffer, or is dropped there when it overflows)."""
        got = []
        for _ in range(READ_MAX):
            if not self._poll.poll(0):
                break
            b = self._in.read(1)
            if not b:
                break
            c = b[0] if isinstance(b, bytes) else ord(b)   # a port without stdin.buffer
            if c in (3, 10, 13):      # Ctrl-C drops the line so far, as at a prompt
                if c != 3 and self._line and not self._junk:
                    got.append(self._line.decode())
                self._line = bytearray()
                self._junk = False
            elif 32 <= c < 127 and len(self._line) < LINE_MAX:
                self._line.append(c)
            else:
                self._junk = True
        return got


class _NoHold:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Challenger:
    def __init__(self, meter, keys, verify, rand=None, hold=None):
        # verify(keys, purpose, payload, sig) -> bool: authority.verify
        # hold(): the meter thread's lock (ticker.hold), taken only around
        # the event log, never around a verify: the meter meters meanwhile
        self.meter = meter
        self.hold = hold if hold is not None else _NoHold
        self.keys = keys
        self.verify = verify
        if rand is None:
            import os
            rand = os.urandom
        self.rand = rand
        self.current = None       # (counter, nonce hex, issued ticks_ms)
        self.fails = 0
        self.wait_until = None    # ticks_ms before which no challenge is issued

    def _clock(self):
        return self.meter.clock

    def _since(self, t):
        c = self._clock()
        return c.ticks_diff(c.ticks_ms(), t)

    def challenge(self):
        """A fresh challenge line, or why there is none."""
        if self.keys is None:
            return "svc: no office key on this meter; the REPL cannot be opened"
        if self.wait_until is not None and self._since(self.wait_until) < 0:
            return "svc: wait %d s" % (-self._since(self.wait_until) // 1000 + 1)
        import binascii
        nonce = binascii.hexlify(self.rand(NONCE_BYTES)).decode()
        with self.hold():
            seq = self.meter.log.seq
        self.current = (seq, nonce, self._clock().ticks_ms())
        return "svc-challenge %s %d %s" % (self.meter.cfg["meter_id"], self.current[0], nonce)

    def answer(self, minutes_txt, sig_hex):
        """(minutes, None) for a valid answer to the current challenge, else
        (0, reason). The challenge is spent either way."""
        cur = self.current
        self.current = None
        if cur is None:
            return 0, "no challenge (type svc first)"
        if self._since(cur[2]) > CHALLENGE_S * 1000:
            return 0, "challenge lapsed"
        try:
            minutes = int(minutes_txt)
            import binascii
            sig = binascii.unhexlify(sig_hex)
        except ValueError:
            return self._wrong("malformed")
        if not 1 <= minutes <= MAX_MINUTES or len(sig) != 64:
            return self._wrong("malformed")
        payload = ("%s %d %s %d" % (self.meter.cfg["meter_id"], cur[0], cur[1], minutes)).encode()
        if not self.verify(self.keys, PURPOSE, payload, sig):
            return self._wrong("signature")
        self.fails = 0
        self.wait_until = None
        return minutes, None

    def _wrong(self, why):
        self.fails += 1
        wait = min(WAIT_BASE_S << min(self.fails - 1, 10), WAIT_MAX_S)
        c = self._clock()
        self.wait_until = c.ticks_add(c.ticks_ms(), wait * 1000)
        with self.hold():
            self.meter.log.add(codes.EV_SERVICE_AUTH, self.fails)
        return 0, why


def handle(challenger, line, out):
    """One line typed at a closed meter. Returns the minutes granted, or 0.
    Anything that is not a service request is ignored, silently."""
    parts = line.split()
    if parts == ["svc"]:
        out(challenger.challenge())
    elif len(parts) == 3 and parts[0] == "svc-open":
        minutes, why = challenger.answer(parts[1], parts[2])
        if minutes:
            return minutes
        out("svc: refused (%s)" % why)
    return 0
