# An outside review's attacks on a battery meter's count (docs/SECURITY.md,
# "Battery meter", B9-): the customer holds the cell and the chip's resets.
# Every boot is the firmware's own wake (wake.work) on the unix battery
# plant, the ULP program on its emulator, on virtual time.
import boards
import main
import wake
from simkit import make_cfg
from mptest import fresh_dir
from ulpkit import binary
from boards.unix_battery import Plant
from meter import WHY_NONE

PRICE_L = 350      # config default: 350_000 units per m^3, 1 pulse/L


def _boot(plant, d):
    hw = boards.load("unix_battery").build(state_dir=d, plant=plant, ulp_binary=binary())
    return main.assemble(hw, make_cfg(friendly_hours=[0, 0], friendly_days=[])), hw


def _meter(d, litres_of_credit):
    plant = Plant()
    m, hw = _boot(plant, d)
    m.balance = litres_of_credit * PRICE_L
    m.want_open, m.why_closed = True, WHY_NONE
    m.save()
    m, hw = _boot(plant, d)
    plant.deepsleep(wake.work(m, hw))
    return plant


def test_attack_pulling_the_cell_before_midnight_loses_at_most_save_l_litres():
    # a day's water drawn, then the cell pulled a minute before the
    # midnight wake would have saved it: RTC memory (the ULP's count) is
    # lost, so whatever was not saved goes unbilled; done every evening,
    # that would be all the water, for one power-up event a day
    d = fresh_dir("abr0")
    plant = _meter(d, 1000)
    m, hw = _boot(plant, d)
    plant.flow.pour(40_000, 600)                 # 40 L in 4 min, in the morning
    ms = wake.work(m, hw)
    pull = m.history.day_end - 60                # 23:59, local
    while True:
        left = (pull - m.clock.time()) * 1000
        plant.deepsleep(ms if ms < left else left)
        if m.clock.time() >= pull:
            break                                # asleep at 23:59 ...
        m, hw = _boot(plant, d)                  # (woken before: by the ULP)
        ms = wake.work(m, hw)
    plant.brown_out()                            # ... the cell pulled and put back
    m, hw = _boot(plant, d)
    assert hw.ulp_fresh
    wake.work(m, hw)
    assert plant.flow.delivered_ml() == 40_000
    assert m.volume.ml() >= 40_000 - m.cfg["save_l"] * 1000, m.volume.ml()
    assert m.balance <= (1000 - 40 + m.cfg["save_l"]) * PRICE_L
