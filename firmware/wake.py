# One wake of a battery meter (docs/BATTERY.md §3).
#
# A deep-sleep wake is a fresh boot: main.assemble() has just restored the
# state, and the ULP pulse source resumed from the mark saved with it. This
# bills what the ULP counted in sleep, runs the credit policy and the valve,
# saves (the mark together with the volume it produced), tells the ULP when
# to wake the CPU again, and ends in deep sleep. Nothing here runs on a
# mains board.
from metering.ulpcount import ARM_MAX

_STEP_MS = const(20)          # valve pulses and settles are tens of ms
_VALVE_MAX_MS = const(15_000)  # a motor valve's whole travel, and more
_DAY_S = const(86400)
_MIN_SLEEP_S = const(60)


def pulses_left(meter):
    """Pulses until the credit is spent at the dearest block price: the ULP
    wakes the CPU no later than that (earlier costs one wasted wake). With
    the valve closed nothing is due: wake only to keep the count in range."""
    if not meter.want_open:
        return ARM_MAX
    money = meter.balance
    if meter.friendly(meter.clock.time()):
        money += max(0, meter.cfg["friendly_debt_max"] - meter.debt_friendly)   # no cut-off before the cap
    if money <= 0:
        return 1
    price = 0
    for _, p in meter.billing.tariff.blocks:
        price = p if p > price else price
    if price <= 0:
        return ARM_MAX
    ml = money * 1_000_000 // price       # prices are per m^3
    v = meter.volume
    n = ml * v.k_num // (1000 * v.k_den)
    return 1 if n < 1 else ARM_MAX if n > ARM_MAX else n


def sleep_s(meter):
    """Until the day's registers close (local midnight), at most a day."""
    now = meter.clock.time()
    end = meter.history.day_end
    s = end - now + 1 if end and end > now else _DAY_S
    return _MIN_SLEEP_S if s < _MIN_SLEEP_S else _DAY_S if s > _DAY_S else s


def work(meter, hw):
    """Bill, run the policy and the valve to rest, save, arm the ULP.
    Returns the milliseconds to sleep."""
    meter.poll()
    v = meter.valve
    waited = 0
    while v is not None and v.busy and waited < _VALVE_MAX_MS:
        hw.clock.delay_ms(_STEP_MS)
        waited += _STEP_MS
        meter.poll()
    if meter.cell is not None:
        # a valve that moved this wake: one coil pulse (retries add more)
        meter.cell.wake(meter.clock.time(), 0, 1 if waited else 0)
    meter.save()      # durable before the ULP is told anything new
    meter.pulses.wake_after(pulses_left(meter))
    return sleep_s(meter) * 1000


def cycle(meter, hw):
    ms = work(meter, hw)
    hw.deepsleep(ms)      # the chip does not return: the next wake boots afresh
    return None
