# The exactly-once register of credits.
#
# Every credit carries a key (source, account, seq). Sequences are issued in
# increasing order per (source, account), though they may arrive out of order
# (a card bought after an online top-up, a head-end resend). Per account the
# ledger keeps the highest sequence applied and a 32-bit window of the ones
# below it, as IPsec anti-replay does: a key inside the window is known
# exactly; one below it is too old to tell, and is refused as OLD. Accounts
# are never forgotten (that would reopen their old keys): a full register
# refuses a new account.
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
            # Forgetting an account would let its old credits apply again,
            # so a full register refuses new accounts instead (a meter has
            # one or two; 16 means something is wrong and needs the office).
            return codes.REFUSED if len(self._acc) >= MAX_ACCOUNTS else codes.ACCEPTED
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

    def copy(self):
        return Ledger({k: e[:] for k, e in self._acc.items()})

    def to_state(self):
        return self._acc


def _key(source, account):
    return "%s:%d" % (source, account)
