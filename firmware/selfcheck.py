# The technician's self-test checks (service.selftest(), docs/SERVICE.md):
# one per part, each called with the session, the board and the meter inside
# the ticker's hold, each returning (ok, message), ok None when the board has
# no such part (SKIP). A check may raise: the command counts that as a
# failure and shows the exception.
import os

import timeutil
from units import when


def card(s, hw, m):
    if hw.card_spi is None:
        return None, "no reader on this board"
    try:
        from card.mfrc522 import MFRC522
    except ImportError:
        return None, "no card driver in this build"
    v = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock).read_reg(0x37)
    # VersionReg: 0x91 = v1.0, 0x92 = v2.0 (0x88 on clones, 0x00/0xFF: no chip)
    return v in (0x88, 0x91, 0x92), "VersionReg 0x%02x" % v


def valve(s, hw, m):
    if m.valve is None:
        return None, "no valve on this board"
    fb = getattr(hw, "valve_feedback", None)
    want = 1 if m.want_open else 0
    if fb is None:
        return True, "driven to %s; no position feedback on this board" % ("open" if want else "closed")
    got = fb.value()
    return got == want, "feedback says %s, meter wants %s" % (got, want)


def flash(s, hw, m):
    p = hw.state_dir + "/selftest.tmp"
    data = b"selftest-%d" % m.clock.time()
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "rb") as f:
        ok = f.read() == data
    os.remove(p)
    free = ""
    try:
        st = os.statvfs(hw.state_dir)
        free = ", %d kB free" % (st[0] * st[3] // 1024)
    except (AttributeError, OSError):
        pass
    return ok, "write/read/remove %s%s" % ("ok" if ok else "MISMATCH", free)


def clock(s, hw, m):
    c = m.clock
    a = c.ticks_ms()
    c.delay_ms(5)
    d = c.ticks_diff(c.ticks_ms(), a)
    t = c.time()
    y = timeutil.local_parts(t, 0)[0]
    ok = d >= 5 and 2024 <= y < 2100
    return ok, "ticks +%d ms over a 5 ms delay, RTC %s" % (d, when(t))


def network(s, hw, m):
    if hw.net is None:
        return None, "no network on this board"
    up = hw.net.isconnected()
    return up, ("up, rssi %s" % hw.net.rssi()) if up else "not connected"


def broker(s, hw, m):
    if s.link is None:
        return None, "MQTT not configured"
    return s.link.connected, "connected" if s.link.connected else "not connected"


CHECKS = (("card reader", card), ("valve", valve), ("flash", flash),
          ("clock", clock), ("network", network), ("broker", broker))
