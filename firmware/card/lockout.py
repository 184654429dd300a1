# Card lockout: per card UID, counting authentication failures only (no key
# of ours opens the card, a forged MAC, a sector whose key fails mid-tap).
# docs/CARD.md, "Lockout", is the contract.
#
# - A UID's own failures lock only that UID: after LOCK_AFTER failures it
#   waits LOCK_BASE_MS, doubling with each further failure up to LOCK_MAX_MS.
#   Nothing resets the count but a day without a failure, so alternating a
#   genuine tap (USED) with forged ones does not buy more guesses.
# - The table has _SLOTS entries and never evicts a counting UID. Failures of
#   UIDs that find it full share one more entry (the overflow gate), so
#   changing the UID of a magic card buys no guesses either. While the gate
#   is shut, a card with no entry of its own is tried with this meter's own
#   key A only: one of the meter's own cards (the paying customer's, a new
#   replacement card) opens and is read, anything else waits. A card that
#   opens with the meter's own key A has the UID of a card the office issued
#   for this meter (the key is diversified by UID from a secret no card
#   holds), so MAC guessing only ever happens on such UIDs, each with its own
#   entry; the guessing rate is bounded by about (_SLOTS + 1) tries per
#   LOCK_MAX_MS, and no card waits for another's failures.
# - Counts and known cards are kept in a two-copy state file (written on each
#   counted failure, at most one per locked-out interval per entry). At boot
#   every entry at or above LOCK_AFTER is locked again for its full delay:
#   a power cut never shortens a lockout.
LOCK_AFTER = const(3)
LOCK_BASE_MS = const(30_000)
LOCK_MAX_MS = const(3_600_000)
FORGET_MS = const(86_400_000)   # an entry with no failure for a day is dropped
_SLOTS = const(8)
_KNOWN = const(4)
_OVERFLOW = b"*"
# state(uid)
FREE = const(0)
LOCKED = const(1)
OWN_ONLY = const(2)


def delay_ms(fails):
    if fails < LOCK_AFTER:
        return 0
    return min(LOCK_BASE_MS << min(fails - LOCK_AFTER, 7), LOCK_MAX_MS)


class Lockout:
    def __init__(self, clock, store=None):
        self.clock = clock
        self.store = store
        self._t = {}          # uid -> [fails, lock until (ticks ms) or None, last failure (ticks ms)]
        self.known = []       # UIDs that verified here, newest last
        if store is not None:
            self._load()

    def _load(self):
        import binascii
        try:
            d = self.store.load() or {}
            now = self.clock.ticks_ms()
            for uid, fails in d.get("t", ()):
                uid = _OVERFLOW if uid == "*" else binascii.unhexlify(uid)
                self._t[uid] = [fails, None, now]
                self._arm(self._t[uid], now)
            self.known = [binascii.unhexlify(u) for u in d.get("k", ())][-_KNOWN:]
        except (ValueError, TypeError, KeyError):
            self._t, self.known = {}, []     # unreadable: start counting again

    def _save(self):
        if self.store is None:
            return
        import binascii

        def h(u):
            return "*" if u == _OVERFLOW else binascii.hexlify(u).decode()
        try:
            self.store.save({"t": [[h(u), e[0]] for u, e in self._t.items()],
                             "k": [h(u) for u in self.known]})
        except OSError:
            pass              # the count stays in RAM; the tap is not the place to fail

    def _arm(self, e, now):
        ms = delay_ms(e[0])
        e[1] = self.clock.ticks_add(now, ms) if ms else None

    def _entry_locked(self, e, now):
        if e[1] is None:
            return False
        left = self.clock.ticks_diff(e[1], now)
        if 0 < left <= LOCK_MAX_MS:       # anything else is past (or a wrapped tick count)
            return True
        e[1] = None
        return False

    def _prune(self, now):
        for uid in [u for u, e in self._t.items()
                    if not 0 <= self.clock.ticks_diff(now, e[2]) < FORGET_MS]:
            del self._t[uid]

    def _slot_for(self, uid, now, create):
        # the card's own entry; else, when the table is full and the card is
        # not a known one, the shared overflow entry
        e = self._t.get(uid)
        if e is not None:
            return e
        own = len(self._t) - (1 if _OVERFLOW in self._t else 0)
        key = uid if own < _SLOTS or uid in self.known else _OVERFLOW
        e = self._t.get(key)
        if e is None and create:
            e = self._t[key] = [0, None, now]
        return e

    def state(self, uid):
        """FREE, LOCKED (this card waits), or OWN_ONLY (the overflow gate is
        shut: try this meter's own key A only). Checked before any key."""
        now = self.clock.ticks_ms()
        self._prune(now)
        e = self._t.get(uid)
        if e is not None:
            return LOCKED if self._entry_locked(e, now) else FREE
        e = self._slot_for(uid, now, False)
        return OWN_ONLY if e is not None and self._entry_locked(e, now) else FREE

    def failed(self, uid):
        """Count an authentication failure of this card."""
        now = self.clock.ticks_ms()
        e = self._slot_for(uid, now, True)
        e[0] += 1
        e[2] = now
        self._arm(e, now)
        self._save()

    def passed(self, uid):
        """The card's MAC verified: it is one of this meter's own cards."""
        if uid in self.known:
            return
        self.known.append(uid)
        del self.known[:-_KNOWN]
        self._save()

    def fails(self, uid):
        e = self._t.get(uid)
        return e[0] if e else 0
