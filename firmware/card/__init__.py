# IC-card subsystem: MFRC522 driver (mfrc522), MIFARE Classic operations
# (mifare), record layout and crypto shared with tools/cardtool.py (records),
# key material (keys) and the tap (session). See docs/CARD.md.


def attach(hw, meter, keys):
    """Build the card session from a board's hardware. Returns a Session, or
    None when no reader answers (the meter then runs without cards; the
    caller logs it). Call session.poll() from the meter loop."""
    from card.mfrc522 import MFRC522, NoChip
    from card.session import Session
    from storage.state import StateStore
    try:
        reader = MFRC522(hw.card_spi, hw.card_cs, hw.card_rst, hw.clock)
    except NoChip:
        return None
    # the lockout's counts survive a power cut (card/lockout.py)
    return Session(reader, meter, keys, hw.clock, lock_store=StateStore(hw.state_dir, "cardlock"))
