# Boards: one module per board. Each exposes build(**options) -> Hardware,
# the only place where pins, buses and port differences are known.


class Hardware:
    """What a board hands the firmware. Attributes a board leaves at None are
    features it lacks; the firmware degrades that feature and nothing else.

    clock            ticks_ms/ticks_us/ticks_diff/time/set_time/delay_ms, async sleep_ms
    state_dir        directory of the state file, event log and config
    pulse_counter    machine.Counter-like (value()), or None
    pulse_pin        input Pin of the flow sensor (for the IRQ path)
    irq_max_k        on a board that counts by IRQ: the highest K (pulses/L) it
                     counts without loss at Q3 (docs/BOARDS.md), else None
    direction_pin    input Pin high on reverse flow, or None
    valve_open_pin, valve_close_pin   H-bridge inputs of a latching valve
    valve_cfg        dict: type, pulse_ms, travel_ms, ...
    card_spi, card_cs, card_rst       MFRC522 on SPI
    led, buzzer, button               indication and the user's button
    display          the customer's screen (firmware/display: show/sleep/wake), or None
    tamper_pin       case switch / magnet sensor, active low, or None
    battery          object with millivolts(), or None (mains-powered board)
    sensor_pin       flow sensor cable loop, high when the loop is open, or None
    power_fail_pin   brown-out comparator output, falls when the supply goes
                     (a hold-up capacitor carries one valve pulse and one
                     save: docs/VALVE.md "Power fail"), or None
    net              network link: connect(), isconnected(), rssi()
    wdt              watchdog with feed(), or None
    test_build       True only where test keys may be accepted (the simulator)
    ticker           periodic callback that drives the meter behind the REPL, or None
    reset            hard reset (the chip restarts from boot), or None
    partitions       esp32.Partition, or a model of it (boards/unix/ota_model.py),
                     on a board whose partition table has OTA slots, else None
    ulp_ram          battery boards: RTC slow memory of the ULP pulse counter,
                     word(i) / set_word(i, v) (boards/ulp.py), else None
    ulp_fresh        True when the ULP count started again from zero at this boot
    deepsleep        battery boards: deepsleep(ms, button=True) ends this wake (the
                     next is a fresh boot; button: the button may end the sleep),
                     else None: the board runs all the time
    wake_reason      why this boot ran: "power" (power-on, brown-out), "reset" (a
                     watchdog, a crash, machine.reset); battery boards also
                     "ulp", "timer", "button"
    lightsleep       battery boards: lightsleep(ms), the CPU stopped with RAM kept
                     (machine.lightsleep), else None
    """

    def __init__(self, **kw):
        self.name = "?"
        self.clock = None
        self.state_dir = "."
        self.pulse_counter = None
        self.pulse_pin = None
        self.pulse_trigger = 1
        self.irq_max_k = None
        self.direction_pin = None
        self.valve_open_pin = None
        self.valve_close_pin = None
        self.valve_cfg = {"type": "latching", "pulse_ms": 50}
        self.card_spi = None
        self.card_cs = None
        self.card_rst = None
        self.led = None
        self.buzzer = None
        self.button = None
        self.display = None
        self.tamper_pin = None
        self.battery = None
        self.sensor_pin = None
        self.power_fail_pin = None
        self.net = None
        self.wdt = None
        self.world = None   # simulator only: the device models
        self.test_build = False
        self.ticker = None
        self.reset = None
        self.partitions = None
        self.ulp_ram = None
        self.ulp_fresh = False
        self.deepsleep = None
        self.wake_reason = "power"
        self.lightsleep = None
        for k, v in kw.items():
            setattr(self, k, v)


def load(name):
    mod = __import__("boards." + name)
    return getattr(mod, name)
