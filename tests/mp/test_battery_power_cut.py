# Power cuts at every save point of a battery wake. Two wakes are played: the
# ULP wakes the CPU at the pulse that spends the credit (count taken, billed,
# valve closed, saved), then the customer presses the button with a user
# card on the reader (card applied and confirmed, valve reopened, saved).
# The play is cut at each point in turn, once as a CPU reset (the ULP and
# its RTC memory run on) and once as the battery pulled (RTC memory lost:
# the count starts again at 0). Then the meter boots on and wakes a few
# times with the card still on the reader. The expected values come from
# the plant, not from the meter:
#   - volume: every closing of the reed contact, once, less (battery pulled
#     only) those after the ULP mark of the last state copy that was durable
#     when the cell went: nothing else is lost and nothing counts twice;
#   - money: the balance is the credits (the first one and the card's,
#     exactly once) minus the price of that volume, one block, exactly;
#   - the valve ends open (credit left) and agrees with the meter.
import boards
import codes
import main
import wake
import storage.state as st
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
from boards.unix_battery import Plant
from card.keys import testing_meter_keys
from meter import Meter, WHY_NONE
from metering.ulpcount import UlpSource
from test_card_rig import user_card

TIMEOUT = 600           # each test about 100 s alone on 2 cores; a loaded shared host takes 3x (seen: 300 s)
PRICE = 350_000            # per m^3, the one block
FIRST_L = 5                # the credit the ULP threshold spends
AMOUNT = 1_000_000         # the card's credit
CARD_STRIDE = 8            # every 8th SPI transfer of the reader is a cut point


class Cut(BaseException):
    """The power goes: nothing after this point runs (BaseException, so no
    `except Exception` of the firmware catches it)."""


class Points:
    """The cut points of the play, in order; cut() raises at the n-th."""

    def __init__(self, at=None):
        self.at = at
        self.tags = []
        self.meter = None          # the meter of the boot running now
        self.durable = None        # the ULP mark of the newest durable state copy
        self._mark = None
        self._spi = 0

    def hit(self, tag):
        self.tags.append(tag)
        if self.at is not None and len(self.tags) == self.at:
            raise Cut(tag)


P = Points()
_take, _poll, _apply = UlpSource.take, Meter.poll, Meter.apply_credit
_open, _os = open, st.os


def _taken(self):
    n = _take(self)
    P.hit("take")              # the count is in RAM, the state on flash is older
    return n


def _polled(self):
    _poll(self)
    P.hit("bill")


def _applied(self, *a):
    r = _apply(self, *a)
    P.hit("applied")           # durable, the card not yet told
    return r


class _File:
    """A state file being written: cut after its first write (a torn copy)
    and once it is whole but not yet renamed. (Not at every write: the
    state is streamed by json.dump, a write per token, and the copy between
    the first and the last is as torn as after the first.)"""

    def __init__(self, f):
        self._f = f
        self._first = True

    def write(self, b):
        n = self._f.write(b)
        self._f.flush()
        if self._first:
            self._first = False
            P.hit("write")
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        if exc[0] is None:
            P.hit("written")


class _Os:
    def rename(self, a, b):
        P._mark = P.meter.pulses.mark() if P.meter is not None else None
        P.hit("rename")
        _os.rename(a, b)
        if a.endswith(".tmp") or "state" in b:
            P.durable = P._mark
        P.hit("renamed")

    def remove(self, p):
        _os.remove(p)

    def __getattr__(self, name):
        return getattr(_os, name)


def _store_open(path, mode="r"):
    f = _open(path, mode)
    return _File(f) if "w" in mode else f


UlpSource.take = _taken
Meter.poll = _polled
Meter.apply_credit = _applied
st.open = _store_open
st.os = _Os()


def _watch_plant(plant):
    def coil(pin, old, new):
        if new and not old:
            P.hit("valve")         # a coil pulse starts
    plant.valve_open_pin.watch(coil)
    plant.valve_close_pin.watch(coil)

    def spi(n):
        P._spi += 1
        if P._spi % CARD_STRIDE == 0:
            P.hit("card")
    plant.card_spi.on_transfer = spi


def _boot(plant, d):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    m = main.assemble(hw, make_cfg(tariff={"v": 1, "b": [[0, PRICE]]}, friendly_hours=[0, 0],
                                   friendly_days=[]))
    P.meter = m
    import card
    return m, hw, card.attach(hw, m, testing_meter_keys(m.cfg["meter_id"]))


def _setup(d):
    plant = Plant()
    _watch_plant(plant)
    m, hw, s = _boot(plant, d)
    m.balance = FIRST_L * PRICE // 1000
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    m, hw, s = _boot(plant, d)              # the boot after the top-up opens the valve
    P.durable = m.pulses.mark()
    plant.flow.pour(8000, 600)
    plant.deepsleep(wake.work(m, hw, cards=s))
    assert plant.wake_reason == "ulp"
    return plant


def _play(plant, d, c):
    m, hw, s = _boot(plant, d)
    ms = wake.work(m, hw, cards=s)          # the credit is spent: the valve closes
    assert not m.want_open
    plant.reader.place(c)
    plant.press_button(60_000)
    plant.deepsleep(ms)
    assert plant.wake_reason == "button"
    m, hw, s = _boot(plant, d)
    ms = wake.work(m, hw, cards=s)          # the card is applied, the valve reopens
    plant.deepsleep(ms)


def _life(at, battery):
    """One play cut at point `at` (None: not cut). Returns the tags seen."""
    global P
    d = fresh_dir("bpc")
    P = Points()
    plant = _setup(d)
    c, _ = user_card(amount=AMOUNT, seq=1)
    P.at, P.tags = at, []
    lost = 0           # battery pulled: closings after the durable mark
    cut = None
    try:
        _play(plant, d, c)
    except Cut as e:
        cut = e.args[0]
    P.at = None
    played = list(P.tags)
    if cut is not None:
        if battery:
            # the count started at 0 at the power-on before _setup, so the
            # durable mark is the number of pulses that reached the flash
            lost = plant.reed.closings - P.durable
            plant.brown_out()
        else:
            plant.cpu_reset()
        if plant.reader.cards == []:
            plant.reader.place(c)           # the customer's card stays on the reader
    for _ in range(3):
        m, hw, s = _boot(plant, d)
        plant.deepsleep(wake.work(m, hw, cards=s))
    m, hw, s = _boot(plant, d)
    wake.work(m, hw, cards=s)
    # every closing of the reed contact (the flow model's), less the lost ones
    pulses = plant.reed.closings - lost
    where = "cut at %r (point %r, %s)" % (cut, at, "battery" if battery else "reset")
    assert m.volume.ml() == pulses * 1000, (where, m.volume.ml(), plant.reed.closings, lost)
    assert 0 <= lost <= 8, where
    charge = m.volume.ml() * PRICE // 1_000_000
    assert m.balance == FIRST_L * PRICE // 1000 + AMOUNT - charge, (where, m.balance)
    assert s.last[0] == codes.USED, where     # the card was applied, once
    assert m.want_open and plant.valve.state == 1, where
    return played, cut


def _cut_each(battery, half):
    """Cut the play at each point of one half of the list (the whole list
    in one test runs past the runner's TIMEOUT: every life emulates the ULP
    over ten minutes of flow); each cut lands on the point the uncut play
    lists there."""
    tags, _ = _life(None, False)
    for kind in ("take", "bill", "write", "written", "rename", "renamed", "valve", "applied",
                 "card"):
        assert kind in tags, (kind, tags)
    mid = len(tags) // 2
    for at in range(1, mid + 1) if half == 0 else range(mid + 1, len(tags) + 1):
        _, cut = _life(at, battery)
        assert cut == tags[at - 1], (at, cut, tags[at - 1])


def test_a_reset_at_each_point_of_the_first_half_of_two_wakes_loses_and_doubles_nothing():
    _cut_each(False, 0)


def test_a_reset_at_each_point_of_the_second_half_of_two_wakes_loses_and_doubles_nothing():
    _cut_each(False, 1)


def test_the_battery_pulled_at_each_point_of_the_first_half_loses_and_doubles_nothing():
    _cut_each(True, 0)


def test_the_battery_pulled_at_each_point_of_the_second_half_loses_and_doubles_nothing():
    _cut_each(True, 1)
