# Credit in: top-ups (apply_credit, the one entry point for every credit),
# the office's voids, arrears and signed floor after a total state loss,
# and the installation that binds the meter to an account (docs/CARD.md §5,
# docs/METERING.md "Credit policy"). Each is durable before it answers: the
# state is saved, or everything is rolled back and the answer is STORAGE.
#
# These are methods of meter.Meter (it binds them; self is the meter). They
# are the only writers of the credit ledger and of the recovery nonce, and,
# with the REPL's and head-end's configure of identity (Meter.configure), of
# the binding (cfg account, region, install_seq). A top-up repays emergency
# credit first (creditpolicy.py grants it) and, under a recovery rule,
# the debt register (metering/debt.py).
import codes
from storage.record import KEY_MAX as _KEY_MAX


def apply_credit(self, source, account, seq, amount):
    """The one entry point for every credit. Durable before it says ACCEPTED.
    A bound meter (account != 0, set by an installation card) takes
    credits of its own account only; after a total state loss it takes
    none until the head-end's signed floor (restore_floors)."""
    if not (isinstance(amount, int) and isinstance(seq, int) and isinstance(account, int)):
        return self._reject(codes.FORMAT)
    if amount <= 0 or not 0 <= seq < _KEY_MAX or not 0 <= account < _KEY_MAX:
        return self._reject(codes.RANGE)      # an absurd seq would block the account
    if self.state_lost:
        return self._reject(codes.REFUSED)    # the ledger is gone: no key can be trusted new
    bound = self.cfg["account"]
    if bound and account != bound:
        return self._reject(codes.WRONG_ACCOUNT)
    code = self.ledger.check(source, account, seq)
    if code == codes.USED:
        return code  # acknowledged again, not applied again
    if code != codes.ACCEPTED:
        return self._reject(code)
    repay = min(amount, self.emergency_owed)   # emergency credit is paid back first
    d = self.debt_reg
    balance, debt, debt_friendly = d.split(self.balance, amount - repay, self.billing.tariff)
    if amount > self.cfg["max_topup"] or balance > self.cfg["max_balance"]:
        return self._reject(codes.OVER_LIMIT)
    before = (self.balance, self.emergency_owed, self.in_debt, self.ledger.copy(), d.amount,
              d.friendly)
    self.balance, d.amount, d.friendly = balance, debt, debt_friendly
    self.emergency_owed -= repay
    if self.balance > 0:
        self.in_debt = False
    self.ledger.record(source, account, seq)
    try:
        self.save()
    except Exception:  # noqa: BLE001 - OSError, MemoryError, anything
        # Not durable, so not applied: roll back and let the sender retry.
        (self.balance, self.emergency_owed, self.in_debt, self.ledger, d.amount,
         d.friendly) = before
        return self._reject(codes.STORAGE)
    if debt != before[4]:
        self.log.add(codes.EV_DEBT, debt - before[4])
    self.log.add(codes.EV_CREDIT, amount)
    self._policy(self.clock.time())
    return codes.ACCEPTED


def add_arrears(self, amount, seq):
    """The office adds arrears to the debt register (command "debt"):
    each sequence once (USED again, OLD below the last), durable before
    ACCEPTED."""
    for v in (amount, seq):
        if not isinstance(v, int) or not 0 <= v < _KEY_MAX:
            return codes.RANGE
    d = self.debt_reg
    if seq <= d.arrears_seq:
        return codes.USED if seq == d.arrears_seq else codes.OLD
    before = (d.amount, d.arrears_seq)
    d.amount += amount
    d.arrears_seq = seq
    try:
        self.save()
    except Exception:  # noqa: BLE001 - not durable, so not added
        d.amount, d.arrears_seq = before
        return codes.STORAGE
    self.log.add(codes.EV_DEBT, amount)
    return codes.ACCEPTED


def void_credit(self, source, account, seq):
    """The office's signed void of a credit it will refund or re-issue
    (head-end command "void"): settles the key without applying it, so
    it can never apply. ACCEPTED: it had not been applied (and now never
    will be); USED: it had been applied (nothing is owed); OLD/RANGE
    below or above the window; REFUSED after a total state loss (the
    meter cannot know until the floor); STORAGE if it could not be saved."""
    if not (isinstance(seq, int) and isinstance(account, int)):
        return codes.FORMAT
    if not 0 <= seq < _KEY_MAX or not 0 <= account < _KEY_MAX:
        return codes.RANGE
    if self.state_lost:
        return codes.REFUSED
    code = self.ledger.check(source, account, seq)
    if code == codes.VOIDED:
        return codes.ACCEPTED                 # voided before: the same answer again
    if code != codes.ACCEPTED:
        return code
    before = self.ledger.copy()
    self.ledger.record(source, account, seq, void=True)
    try:
        self.save()
    except Exception:  # noqa: BLE001
        self.ledger = before
        return codes.STORAGE
    self.log.add(codes.EV_CREDIT_VOID, seq)
    return codes.ACCEPTED


def _nonce(self):
    # A fresh random value per loss, saved before it is shown: the floor
    # must carry it, so a floor sent after an earlier loss cannot be
    # replayed (the command counter was lost with the state).
    if not self.state_lost:
        self.recovery_nonce = 0
    elif not self.recovery_nonce:
        import os
        self.recovery_nonce = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF or 1
    return self.recovery_nonce


def restore_floors(self, account, card_floor, mqtt_floor, install_floor, nonce):
    """The head-end's signed floor after a total state loss or on a
    replacement meter (command "floor", docs/CARD.md): binds account,
    raises its card and MQTT floors and the installation sequence
    (never lowers them) and lets credits in again. nonce must be the
    meter's recovery nonce (snapshot "rn"), else OLD; USED if no loss
    is pending."""
    for v in (account, card_floor, mqtt_floor, install_floor, nonce):
        if not isinstance(v, int) or not 0 <= v < _KEY_MAX:
            return codes.RANGE
    if not self.state_lost:
        return codes.USED
    if not account or nonce != self.recovery_nonce:
        return codes.OLD if account else codes.RANGE
    before = (self.ledger.copy(), self.cfg["account"], self.cfg["install_seq"], self.state_lost)
    if account != self.cfg["account"]:
        self.ledger.keep_only(account)
    self.cfg["account"] = account
    self.cfg["install_seq"] = max(self.cfg["install_seq"], install_floor)
    self.ledger.raise_floor("card", account, card_floor)
    self.ledger.raise_floor("mqtt", account, mqtt_floor)
    self.state_lost = False
    try:
        self.save()
    except Exception:  # noqa: BLE001
        self.ledger, self.cfg["account"], self.cfg["install_seq"], self.state_lost = before
        return codes.STORAGE
    self.log.add(codes.EV_CREDIT_FLOOR, card_floor)
    return codes.ACCEPTED


def _reject(self, code):
    self.log.add(codes.EV_CREDIT_REJECTED, code)
    return code


def install(self, account, region, seq, card_floor=0):
    """An installation card binds the meter to its account and region.
    Each card is good once: its sequence must be newer than the last.
    A new account drops the ledger of every other (their credits are
    refused by the binding from now on); card_floor is the office's
    floor of the account's card credits (docs/CARD.md)."""
    for v in (account, seq, card_floor):
        if not isinstance(v, int) or not 0 <= v < _KEY_MAX:
            return codes.RANGE
    if not isinstance(region, int) or not 0 <= region <= 65535 or not account or not seq:
        return codes.RANGE
    last = self.cfg["install_seq"]
    if seq <= last:
        return codes.OLD if seq < last else codes.USED
    before = (self.cfg["account"], self.cfg["region"], last, self.ledger.copy())
    if account != self.cfg["account"]:
        # a new binding: the other accounts' credits are refused from now
        # on, and this account's card credits up to the office's floor
        # are settled (the office re-issued any it had not seen applied)
        self.ledger.keep_only(account)
        self.ledger.raise_floor("card", account, card_floor)
    self.cfg["account"], self.cfg["region"], self.cfg["install_seq"] = account, region, seq
    try:
        self.save()       # identity lives in the CRC-checked state
    except Exception:  # noqa: BLE001 - not saved, so not applied
        self.cfg["account"], self.cfg["region"], self.cfg["install_seq"], self.ledger = before
        return codes.STORAGE
    if self.persist_config is not None:
        try:
            self.persist_config()     # config.json's copy is informative only
        except Exception:  # noqa: BLE001
            pass
    self.log.add(codes.EV_CONFIG, region)
    return codes.ACCEPTED
