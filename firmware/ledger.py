# The exactly-once register of credits.
#
# Every credit carries a key (source, account, seq). Sequences are issued in
# increasing order per (source, account), though they may arrive out of order
# (a card bought after an online top-up, a head-end resend). Per account the
# ledger keeps the highest sequence applied and a 32-bit window of the ones
# below it, as IPsec anti-replay does: a key inside the window is known
# exactly; one below it is too old to tell, and is refused as OLD.
import codes

WINDOW = const(32)
MAX_ACCOUNTS = const(16)


class Ledger:
    def __init__(self, entries=None):
        # "source:account" -> [max_seq, window bits, last use counter]
        self._acc = entries or {}
        self._use = max([e[2] for e in self._acc.values()] or [0])

    def check(self, source, account, seq):
        e = self._acc.get(_key(source, account))
        if e is None:
            return codes.ACCEPTED
        top, bits, _ = e
        if seq > top:
            return codes.ACCEPTED
        off = top - seq
        if off >= WINDOW:
            return codes.OLD
        return codes.USED if bits & (1 << off) else codes.ACCEPTED

    def record(self, source, account, seq):
        k = _key(source, account)
        self._use += 1
        e = self._acc.get(k)
        if e is None:
            if len(self._acc) >= MAX_ACCOUNTS:
                self._evict()
            self._acc[k] = [seq, 1, self._use]
            return
        top, bits, _ = e
        if seq > top:
            shift = seq - top
            bits = ((bits << shift) | 1) & 0xFFFFFFFF if shift < WINDOW else 1
            top = seq
        else:
            bits |= 1 << (top - seq)
        e[0], e[1], e[2] = top, bits, self._use

    def last(self, source, account):
        e = self._acc.get(_key(source, account))
        return e[0] if e else 0

    def _evict(self):
        # The account unused for longest goes. A meter serves one or two
        # accounts, so this only bites after many re-bindings.
        oldest = min(self._acc, key=lambda k: self._acc[k][2])
        del self._acc[oldest]

    def copy(self):
        return Ledger({k: e[:] for k, e in self._acc.items()})

    def to_state(self):
        return self._acc


def _key(source, account):
    return "%s:%d" % (source, account)
