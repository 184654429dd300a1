# The exactly-once register of credits. docs/CARD.md "The ledger" is the
# contract (it holds for card and MQTT credits alike).
#
# Every credit carries a key (source, account, seq). The office issues
# sequences in increasing order per (source, account); they may arrive out of
# order (a card bought before an online top-up, a head-end resend). Per
# (source, account) the ledger keeps a floor and a WINDOW-bit map of the
# sequences above it that are settled (applied, or voided by the office), and
# which of those were voided. The window slides up only when a newer sequence
# needs it, and only over settled sequences, so no paid credit ever falls
# below the floor unapplied: a late credit stays good however late it comes.
# A sequence WINDOW or more above the oldest unsettled one is RANGE until the
# older ones are settled (the office voids what will never come). At or
# below the floor is OLD: settled, at least WINDOW sequences ago. A new
# account's window starts WINDOW below its first credit.
#
# Accounts: a bound meter takes credits of its one account only (the Meter
# checks), and an installation drops every other account, so the register
# never fills up with former tenants. That is safe: a dropped account's
# credits are refused by the binding check, and if it is bound again, its
# installation card carries the office's floor for it. Only an unbound meter
# can fill the register (MAX_ACCOUNTS), and then refuses new accounts.
import codes

WINDOW = const(32)
MAX_ACCOUNTS = const(16)


class Ledger:
    def __init__(self, entries=None, legacy=False):
        # "source:account" -> [floor, settled bits, voided bits]; bit i is seq floor+1+i
        self._acc = {}
        for k, e in (entries or {}).items():
            self._acc[k] = _from_legacy(e) if legacy else [e[0], e[1], e[2]]

    def check(self, source, account, seq):
        """ACCEPTED if (source, account, seq) may be applied now, else USED
        (applied), VOIDED (the office voided it), OLD (at or below the floor),
        RANGE (too far above the oldest unsettled one) or REFUSED (full register)."""
        e = self._acc.get(_key(source, account))
        if e is None:
            return codes.REFUSED if len(self._acc) >= MAX_ACCOUNTS else codes.ACCEPTED
        off = seq - e[0] - 1
        if off < 0:
            return codes.OLD
        if off >= WINDOW:
            # the window may slide over its settled prefix, never further
            return codes.ACCEPTED if off - _settled_prefix(e[1]) < WINDOW else codes.RANGE
        if e[2] & (1 << off):
            return codes.VOIDED
        return codes.USED if e[1] & (1 << off) else codes.ACCEPTED

    def record(self, source, account, seq, void=False):
        """Settle a sequence that check() answered ACCEPTED: applied, or
        (void=True) voided by the office, so that it never applies."""
        k = _key(source, account)
        e = self._acc.get(k)
        if e is None:
            # a new account's window ends at its first credit: the office may
            # number on from another meter, and the 31 below stay good
            e = self._acc[k] = [max(seq - WINDOW, 0), 0, 0]
        _slide(e, seq - e[0] - WINDOW)
        bit = 1 << (seq - e[0] - 1)
        e[1] |= bit
        if void:
            e[2] |= bit

    def floor(self, source, account):
        """Every sequence up to this one is settled."""
        e = self._acc.get(_key(source, account))
        return e[0] + _settled_prefix(e[1]) if e else 0

    def raise_floor(self, source, account, floor):
        """The office's word that every sequence up to floor is settled (an
        installation card, the head-end's floor after a state loss). Never
        lowers a floor."""
        k = _key(source, account)
        e = self._acc.get(k)
        if e is None:
            e = self._acc[k] = [0, 0, 0]
        _slide(e, floor - e[0])

    def keep_only(self, account):
        """An installation bound the meter to account: forget the others."""
        for k in [k for k in self._acc if not k.endswith(":%d" % account)]:
            del self._acc[k]

    def copy(self):
        return Ledger({k: e[:] for k, e in self._acc.items()})

    def to_state(self):
        return self._acc


def _settled_prefix(bits):
    n = 0
    while n < WINDOW and bits & (1 << n):
        n += 1
    return n


def _slide(e, n):
    # move the floor up by n (over settled sequences, or the office's word)
    if n > 0:
        e[0] += n
        e[1] = e[1] >> n if n < WINDOW else 0
        e[2] = e[2] >> n if n < WINDOW else 0


def _from_legacy(e):
    # the first firmware's [highest, bits below it, use counter]: bit i was
    # seq highest - i. Its window becomes the map above highest - WINDOW.
    top, bits = e[0], e[1]
    floor = max(top - WINDOW, 0)
    new = 0
    for i in range(WINDOW):
        if bits & (1 << i) and top - i > floor:
            new |= 1 << (top - i - floor - 1)
    return [floor, new, 0]


def _key(source, account):
    return "%s:%d" % (source, account)
