# The self-test a new image runs on its first boot before it marks itself
# valid (docs/OTA.md §3). Each check returns True when it passes; the
# first that fails gives its number, and the image is not confirmed.
METERING = const(1)    # the pulse source reads and the meter polls without error
STATE = const(2)       # the state just restored saves and reads back the same
VALVE = const(3)       # valve controller without fault; the limit switches agree with it
CARD = const(4)        # the card reader answers (VersionReg)
LINK = const(5)        # the MQTT link is up (checked last: it is waited for)


def _metering(meter, hw):
    meter.poll()          # reads the pulse source, folds volume and money
    return not meter.save_failing


def _state(meter, hw):
    meter.save()
    s = meter.store.load()
    return s is not None and s["bal"] == meter.balance and s["fwv"] == meter.fw_floor


def _valve(meter, hw):
    v = meter.valve
    if v is None:
        return True
    if v.fault:
        return False
    if v.busy or not v.feedback.present:
        return True
    got = v.feedback.read()
    return got is None or got == v.position


def _card(meter, hw):
    if hw.card_spi is None:
        return True
    from card.mfrc522 import MFRC522
    r = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock)
    if hw.deepsleep is not None:
        # a battery board keeps the reader in hard power-down between
        # looks (card/wakepoll.py): brought up (init raises without an
        # answer), then down again
        try:
            r.init()
            return True
        finally:
            r.hard_power_down()
    ver = r.read_reg(0x37)
    return ver in (0x88, 0x91, 0x92)


CHECKS = ((METERING, _metering), (STATE, _state), (VALVE, _valve), (CARD, _card))


def check(n, meter, hw, link):
    """Check number n alone: True if it passes (LINK: the link is up now)."""
    if n == LINK:
        return link is not None and link.connected
    for m, fn in CHECKS:
        if m == n:
            try:
                return bool(fn(meter, hw))
            except Exception:  # noqa: BLE001 - a check that raises has failed
                return False
    return False


def run(meter, hw, link):
    """0 if every check passes, else the number of the first that fails.
    The link check only asks whether it is up; the caller waits for it."""
    for n, fn in CHECKS:
        try:
            if not fn(meter, hw):
                return n
        except Exception:  # noqa: BLE001 - a check that raises has failed
            return n
    if link is None or not link.connected:
        return LINK
    return 0
