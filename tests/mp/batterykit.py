# Building blocks for battery-meter tests and benches: every wake is a fresh
# boot of the unix battery board (boards/unix_battery.py) on one Plant,
# which keeps what a deep sleep does not reset (clock, water, valve, ULP,
# the card reader and the cards at it).
import boards
import main
from card import wakepoll
from card.keys import testing_meter_keys
from meter import WHY_NONE
from simkit import make_cfg
from ulpkit import binary

PRICE_L = 350        # config default: 350_000 units per m^3, 1 pulse/L


def build(plant, d, ulp_binary=None, **cfg):
    """The board built on plant (state in d) and its meter, no friendly
    hours unless cfg says otherwise. Returns (meter, hw)."""
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=ulp_binary or binary())
    c = {"friendly_hours": [0, 0], "friendly_days": []}
    c.update(cfg)
    return main.assemble(hw, make_cfg(**c)), hw


def boot(plant, d, **cfg):
    """build(), and the card session on the board's reader. Returns
    (meter, hw, session)."""
    m, hw = build(plant, d, **cfg)
    import card
    return m, hw, card.attach(hw, m, testing_meter_keys(m.cfg["meter_id"]))


def open_with(m, litres):
    """Credit for litres at PRICE_L, the valve wanted open, saved."""
    m.balance = litres * PRICE_L
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()


def valve_pulses(plant):
    """Coil pulses the valve has had, both ways."""
    return len(plant.valve.rises["open"]) + len(plant.valve.rises["close"])


def reader_and_naps_uas(clock_us, field_us, light_ms):
    """Charge of the reader's clock and field and of the CPU's light sleep,
    at the MFRC522 datasheet's Table 1 typical currents (13.5 mA with the
    clock running, + 60 mA with the field on) and the nap current."""
    return clock_us * 135 // 10_000 + field_us * 60 // 1000 + light_ms * wakepoll.NAP_UA // 1000


class Placer:
    """Puts a card on the reader at a virtual time (a device on the clock)."""

    def __init__(self, plant, c, at_us):
        self.plant, self.c, self.at_us = plant, c, at_us
        plant.clock.attach(self)

    def next_event_us(self, now):
        return self.at_us

    def advance(self, t0, t1):
        pass

    def at(self, t):
        if self.at_us is not None and t >= self.at_us:
            self.at_us = None
            self.plant.reader.place(self.c)


def place_after(plant, c, ms):
    """Card c goes on the reader ms of virtual time from now."""
    return Placer(plant, c, plant.clock.now_us() + ms * 1000)
