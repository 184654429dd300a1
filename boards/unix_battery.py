# The simulated battery board: the unix port standing in for
# boards/esp32_battery.py. Pulses reach the firmware only through the ULP
# program (firmware/ulp/counter.S) on the emulator, sampling a reed contact
# on the flow model; the CPU deep-sleeps between wakes.
#
# A deep-sleep wake is a fresh boot, so what outlives it is kept apart, in a
# Plant: the clock and the water (flow, valve, reed contact) and the RTC
# domain (the ULP and its slow memory). Everything else is built anew at each
# build(plant=...), as the chip rebuilds it. deepsleep(ms) puts the CPU to
# sleep on the virtual clock until the ULP wakes it or the timer runs out,
# and returns (the test or simulator then boots again); plant.wake_reason
# says which.
import time

from boards import Hardware
from boards import ulp as ulpboot
from boards.unix import HostNet, SimWDT, _mkdirs
from boards.unix.clock import SimClock, EPOCH_2026
from boards.unix.pins import SimPin, OUT, IN, PULL_UP
from boards.unix.spi import SimSPI
from boards.unix.mfrc522_model import MFRC522Model
from boards.unix.flow import FlowSensor
from boards.unix.reed import ReedContact
from boards.unix.ulp_emu import UlpEmu
from boards.unix.valve_model import LatchingValveModel

NAME = "unix_battery"
PULSE_RTC_IO = const(4)       # GPIO34 on the ESP32 battery board
ULP_BINARY = "build/ulp/counter.ulp"   # tools/ulp_build.py
SPI_BAUD = const(4_000_000)


class _Clock(SimClock):
    """The virtual clock; with `real` set, a blocking delay also takes that
    long on the host, because the network on the other side is real (a
    reporting window waits for the broker between link steps)."""
    real = False

    def delay_us(self, us):
        if self.real:
            time.sleep_us(us)
        self.advance_us(us)


class _Ext1:
    """The button's EXT1 wake: a press at a given virtual time ends the
    deep sleep (the chip wakes on the pin's level, all-low)."""

    def __init__(self, clock):
        self.at_us = None
        self.fired = False
        self.armed = True
        clock.attach(self)

    def next_event_us(self, now):
        return self.at_us

    def advance(self, t0, t1):
        pass

    def at(self, t):
        if self.at_us is not None and t >= self.at_us:
            self.at_us = None
            self.fired = self.armed     # a press with EXT1 off wakes nothing


class Reset(BaseException):
    """hw.reset was called (machine.reset on the chip: it does not return).
    The wake ends here; the test or simulator boots again, wake_reason
    "reset". A BaseException, so no `except Exception` survives it."""


class Plant:
    """What a deep sleep does not reset: time, water, valve, RTC domain,
    and the flash's OTA slots (ota_dir: the modelled flash's directory,
    boards/unix/ota_model.py, ota_slot bytes a slot; None: no OTA slots)."""

    def __init__(self, start=EPOCH_2026, k=(1, 1), bounce_us=0, valve_open=True, real_time=False,
                 cell_mv=None, ota_dir=None, ota_slot=None):
        self.ota_dir = ota_dir
        self.ota_slot = ota_slot
        self.flash = None             # the OtaFlash of the boot now (a new one at every boot)
        self.clock = _Clock(start, 0)
        # the cell's voltage at the board's divider (None: no divider fitted);
        # a test puts in another cell by setting it
        self.cell_mv = cell_mv
        self.clock.real = real_time
        self.valve_open_pin = SimPin("valve_open", OUT)
        self.valve_close_pin = SimPin("valve_close", OUT)
        self.fb_open = SimPin("valve_fb_open", IN, PULL_UP)
        self.fb_closed = SimPin("valve_fb_closed", IN, PULL_UP)
        self.valve = LatchingValveModel(self.clock, self.valve_open_pin, self.valve_close_pin,
                                        travel_ms=80, start=1 if valve_open else 0,
                                        fb_open=self.fb_open, fb_closed=self.fb_closed)
        self.flow = FlowSensor(self.clock, self.valve, k[0], k[1])
        self.reed = ReedContact(self.clock, self.flow, bounce_us, 500)
        self.ulp = UlpEmu(self.clock, {PULSE_RTC_IO: self.reed})
        self.ext1 = _Ext1(self.clock)
        self.button = SimPin("button", IN, PULL_UP)   # the customer's finger holds it low
        # the card reader and the cards at it outlive a boot; NRSTPD has a
        # pull-down on the board, so the reader is in hard power-down
        # whenever the CPU does not drive the pin (deep sleep, reset)
        self.card_spi = SimSPI(1, SPI_BAUD, self.clock)
        self.card_cs = SimPin("card_cs", OUT, value=1)
        self.card_rst = SimPin("card_rst", OUT, value=0)
        self.reader = MFRC522Model(self.clock)
        self.card_spi.attach(self.card_cs, self.reader)
        self.reader.attach_rst(self.card_rst)
        # the HT1621 glass keeps its RAM and its power state through a deep
        # sleep (it is on the 3V3 rail); each boot's driver starts it again
        from boards.unix.ht1621_model import HT1621Model
        from display.glass import SEG
        self.lcd_cs = SimPin("lcd_cs", OUT, value=1)
        self.lcd_wr = SimPin("lcd_wr", OUT, value=1)
        self.lcd_data = SimPin("lcd_data", OUT)
        self.lcd = HT1621Model(self.clock, self.lcd_cs, self.lcd_wr, self.lcd_data, SEG)
        self.light_ms = 0             # virtual time the CPU spent in light sleep, in total
        self.power_lost = True        # the first boot is a power-on
        self.wake_reason = "power"
        self.boots = 0
        self.sleep_ms = 0             # virtual time spent in deep sleep, in total
        self.awake_ms = 0             # virtual time from boot to deep sleep, in total
        self.wakes = {}               # wake reason -> count
        self._boot_ms = 0
        self._boot_light = 0

    def lightsleep(self, ms):
        """machine.lightsleep: RAM kept, the ULP counts on, the CPU stopped."""
        self.clock.advance(ms)
        self.light_ms += ms

    def press_button(self, after_ms):
        """The customer presses the button after_ms into the next sleep."""
        self.ext1.at_us = None if after_ms is None else self.clock.now_us() + after_ms * 1000

    def hold_button(self, held):
        """The button held down (True) or let go."""
        self.button.drive(0 if held else 1)

    def deepsleep(self, ms, button=True):
        self.awake_ms += self.clock.now_ms() - self._boot_ms - (self.light_ms - self._boot_light)
        self.card_rst.value(0)        # the pads float: the pull-down holds NRSTPD low
        ulp = self.ulp
        ext1 = self.ext1
        ulp.cpu_asleep = True
        ext1.armed = button
        ext1.fired = button and not self.button.value()   # EXT1 wakes on the level: held, at once
        # event by event: the sleep ends at the ULP run or the press that woke the CPU
        self.sleep_ms += self.clock.advance_until(ms, lambda: not ulp.cpu_asleep or ext1.fired)
        self.wake_reason = "button" if ext1.fired else "timer" if ulp.cpu_asleep else "ulp"
        self.wakes[self.wake_reason] = self.wakes.get(self.wake_reason, 0) + 1
        ulp.cpu_asleep = False
        ext1.fired = False
        ext1.at_us = None

    def cpu_reset(self):
        """The CPU resets in the middle of a wake (watchdog, a crash, a cut
        of the CPU's rail): its pads float, so the board's pull-downs take
        the valve's H-bridge inputs and the reader's NRSTPD low; the RTC
        domain (ULP, slow memory) runs on."""
        self.valve_open_pin.value(0)
        self.valve_close_pin.value(0)
        self.card_rst.value(0)
        self.power_lost = False       # the next boot's reset cause: a reset, even
        self.wake_reason = "reset"    # if the boot it ended was a power-on's

    def reset(self):
        """machine.reset(): the CPU restarts at once (the new image after a
        set_boot, the old one after a failed trial); the RTC domain runs on."""
        self.cpu_reset()
        raise Reset()

    def brown_out(self):
        """The cell sags below the brown-out level: RTC memory is lost too."""
        self.cpu_reset()
        self.ulp.power_loss()
        self.power_lost = True
        self.wake_reason = "power"


class _Divider:
    """The battery divider on an ADC pin (esp32_common.Battery): the cell's
    voltage now."""

    def __init__(self, plant):
        self._plant = plant

    def millivolts(self):
        return self._plant.cell_mv


def _screen(plant):
    from display.ht1621 import HT1621
    from display.segment import SegmentScreen
    from display.glass import SEG
    return SegmentScreen(HT1621(plant.lcd_cs, plant.lcd_wr, plant.lcd_data, plant.clock.delay_us), SEG)


def _binary(path):
    with open(path, "rb") as f:
        return f.read()


def build(state_dir="sim-state", plant=None, ulp_binary=None, speed=0):
    # speed (board.txt): the virtual clock follows the host's times speed,
    # as the unix board's (a technician's session on a pseudo-terminal)
    if plant is None:
        plant = Plant(real_time=bool(speed))
        plant.clock.speed = speed
    plant.boots += 1
    plant._boot_ms = plant.clock.now_ms()
    plant._boot_light = plant.light_ms
    fresh, not_counting = ulpboot.start_or_fault(
        plant.ulp, plant.ulp, lambda: ulp_binary or _binary(ULP_BINARY), plant.power_lost,
        plant.reed.level(plant.clock.now_us()), plant.ulp.entry is not None)
    plant.power_lost = False
    _mkdirs(state_dir)
    spi = plant.card_spi
    parts = None
    if plant.ota_dir:
        # every wake runs the second-stage bootloader, so a rollback comes
        # at the first wake after an image pending verify slept unconfirmed
        from boards.unix import _ota_flash
        from boards.unix.ota_model import FAULT_CARD
        parts, fault = _ota_flash(plant.ota_dir, plant.ota_slot)
        plant.flash = parts
        if fault == FAULT_CARD:
            spi = SimSPI(1, SPI_BAUD, plant.clock)   # this image's card driver never reaches the reader
    return Hardware(
        name=NAME,
        clock=plant.clock,
        state_dir=state_dir,
        ulp_ram=plant.ulp,
        ulp_fresh=fresh,
        deepsleep=plant.deepsleep,
        wake_reason=plant.wake_reason,
        valve_open_pin=plant.valve_open_pin,
        valve_close_pin=plant.valve_close_pin,
        valve_cfg={"type": "latching", "pulse_ms": 50, "settle_ms": 200},
        valve_fb_open_pin=plant.fb_open,
        valve_fb_closed_pin=plant.fb_closed,
        button=plant.button,
        sensor_pin=not_counting,
        battery=_Divider(plant) if plant.cell_mv is not None else None,
        display=_screen(plant),
        card_spi=spi,
        card_cs=plant.card_cs,
        card_rst=plant.card_rst,
        lightsleep=plant.lightsleep,
        net=HostNet(),
        wdt=SimWDT(30_000),
        world=plant,
        test_build=True,
        partitions=parts,
        reset=plant.reset,
    )
