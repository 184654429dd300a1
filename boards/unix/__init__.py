# The simulated board: the unix port standing in for an ESP32 meter board.
#
# It builds the same kinds of objects an ESP32 board does (pins, an SPI bus, a
# pulse counter, a clock, a state directory), backed by device models, and
# keeps the models in hw.world so that tests and scenarios can drive the water
# and the cards.
import os

from boards import Hardware, tls
from boards.unix.clock import SimClock, EPOCH_2026
from boards.unix.pins import SimPin, OUT, IN, PULL_UP
from boards.unix.spi import SimSPI
from boards.unix.flow import FlowSensor
from boards.unix.valve_model import LatchingValveModel, MotorValveModel
from boards.unix.softirq import SoftIrq
from boards.unix.mains import Mains
from boards.ticker import ThreadTicker, UNIX_STACK

NAME = "unix"
SPI_BAUD = const(4_000_000)


class World:
    """The device models of one simulated meter."""

    def __init__(self, clock, flow, valve, reader=None, softirq=None, lcd=None, mains=None):
        self.clock = clock
        self.mains = mains        # the supply and its power-fail comparator (mains.py)
        self.flow = flow
        self.valve = valve
        self.reader = reader
        self.softirq = softirq    # the ESP32 port's schedule queue, modelled
        self.lcd = lcd            # the HT1621 model behind hw.display, or None


class HostNet:
    """The host's network stands in for Wi-Fi: always up, fixed RSSI."""

    def __init__(self):
        self.up = True

    def connect(self):
        return self.up

    def isconnected(self):
        return self.up

    def rssi(self):
        return -55 if self.up else None

    @staticmethod
    def dns():
        """The host's first name server, as a board's DHCP would give it."""
        try:
            with open("/etc/resolv.conf") as f:
                for line in f:
                    w = line.split()
                    if len(w) >= 2 and w[0] == "nameserver" and "." in w[1]:
                        return w[1]
        except OSError:
            pass
        return None

    wrap_tls = staticmethod(tls.wrap_tls)     # the ESP32 boards' own


class SimWDT:
    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def power_cycle():
    """The simulator's hard reset: the process ends (as reboot() does), from
    whichever thread calls it; the next start boots from the saved state.
    sh's parent is this process."""
    os.system("kill -TERM $PPID")


def _mkdirs(path):
    p = ""
    for part in path.split("/"):
        p = p + part + "/" if p or part else "/"
        if part:
            try:
                os.mkdir(p)
            except OSError:
                pass


def _segment_display(clock):
    # the HT1621 glass on three GPIOs, as the ESP32 boards wire it
    from boards.unix.ht1621_model import HT1621Model
    from display.ht1621 import HT1621
    from display.segment import SegmentScreen
    from display.glass import SEG
    cs = SimPin("lcd_cs", OUT, value=1)
    wr = SimPin("lcd_wr", OUT, value=1)
    data = SimPin("lcd_data", OUT)
    model = HT1621Model(clock, cs, wr, data, SEG)
    return SegmentScreen(HT1621(cs, wr, data, clock.delay_us), SEG), model


def build(state_dir="sim-state", speed=0, start=EPOCH_2026, k=(1, 1), pulse="counter",
          travel_ms=None, valve_open=False, bounce=0, valve="latching", feedback="both",
          valve_cfg=None, flow_lph=0, display=True, ota_dir=None, ota_slot=None, wake_reason="power"):
    # valve: "latching" or "motor"; feedback: the limit switches wired,
    # "both", "open", "closed" or "none"; valve_cfg: overrides of the board's
    # valve timings (firmware/valve DEFAULTS for the keys); flow_lph: water
    # drawn from boot on (a tap left open, for tests that watch from outside);
    # display: the HT1621 segment glass fitted (False: a board without one);
    # ota_dir: the directory of the modelled OTA flash (boards/unix/ota_model.py,
    # ota_slot bytes per app slot), None: a board without OTA slots. The
    # bootloader model runs first, as on the chip, and the image it boots
    # may carry a defect the board then shows (FAULT_CARD: no reader);
    # wake_reason: how the previous run ended, as machine.reset_cause() tells
    # it ("power": the supply went; "reset": a watchdog, a crash, a reset).
    flash, fault = _ota_flash(ota_dir, ota_slot) if ota_dir else (None, 0)
    clock = SimClock(start, speed)
    irq = SoftIrq()     # one schedule queue for every pin, as on the chip
    vo = SimPin("valve_open", OUT)
    vc = SimPin("valve_close", OUT)
    fbo = SimPin("valve_fb_open", IN, PULL_UP, softirq=irq) if feedback in ("both", "open") else None
    fbc = SimPin("valve_fb_closed", IN, PULL_UP, softirq=irq) if feedback in ("both", "closed") else None
    if valve == "motor":
        valve = MotorValveModel(clock, vo, vc, travel_ms=travel_ms or 5000,
                                start=1 if valve_open else 0, fb_open=fbo, fb_closed=fbc)
        vcfg = {"type": "motor", "timeout_ms": 12_000, "run_ms": 8_000, "coast_ms": 200}
    else:
        valve = LatchingValveModel(clock, vo, vc, travel_ms=travel_ms or 80,
                                   start=1 if valve_open else 0, fb_open=fbo, fb_closed=fbc)
        vcfg = {"type": "latching", "pulse_ms": 50, "settle_ms": 200}
    vcfg.update(valve_cfg or {})
    fpin = SimPin("flow_pulse", IN, softirq=irq)
    dpin = SimPin("flow_dir", IN, softirq=irq)
    flow = FlowSensor(clock, valve, k[0], k[1], pin=fpin, direction_pin=dpin, bounce=bounce)
    flow.set_rate_lph(flow_lph)
    spi = SimSPI(1, SPI_BAUD, clock)
    cs = SimPin("card_cs", OUT, value=1)
    rst = SimPin("card_rst", OUT, value=1)
    reader = None
    try:
        from boards.unix.mfrc522_model import MFRC522Model
        reader = MFRC522Model(clock)
        if not fault:   # this image's card driver never reaches the reader
            spi.attach(cs, reader)
        if hasattr(reader, "attach_reset"):
            reader.attach_reset(rst)
    except ImportError:
        pass  # the card model is not part of this build yet
    screen, lcd = _segment_display(clock) if display else (None, None)
    pfail = SimPin("power_fail", IN, PULL_UP, softirq=irq)   # comparator, open drain, active low
    _mkdirs(state_dir)
    return Hardware(
        name=NAME,
        clock=clock,
        state_dir=state_dir,
        pulse_counter=flow.counter if pulse == "counter" else None,
        pulse_pin=fpin,
        pulse_trigger=SimPin.IRQ_RISING,
        irq_max_k=3 if pulse != "counter" else None,   # an IRQ board is the C3's
        direction_pin=dpin,
        valve_open_pin=vo,
        valve_close_pin=vc,
        valve_cfg=vcfg,
        valve_fb_open_pin=fbo,
        valve_fb_closed_pin=fbc,
        card_spi=spi,
        card_cs=cs,
        card_rst=rst,
        led=SimPin("led", OUT),
        buzzer=SimPin("buzzer", OUT),
        button=SimPin("button", IN, PULL_UP, softirq=irq),
        net=HostNet(),
        wdt=SimWDT(30_000),
        display=screen,
        power_fail_pin=pfail,
        world=World(clock, flow, valve, reader, irq, lcd, Mains(clock, pfail)),
        ticker=ThreadTicker(UNIX_STACK),   # the ESP32 boards' ticker and stack, at 64 bits
        test_build=True,     # the simulator is a test build: test keys accepted
        reset=power_cycle,
        partitions=flash,
        wake_reason=wake_reason,
    )


def _ota_flash(ota_dir, slot):
    from boards.unix import ota_model
    _mkdirs(ota_dir)
    flash = ota_model.OtaFlash(ota_dir, slot or ota_model.SLOT_SIZE)
    if not flash.image_ok("ota_0") and not flash.image_ok("ota_1"):
        # a board as the factory flashed it: the first image in ota_0
        img = ota_model.make_image(b"factory image")
        part = flash("ota_0")
        buf = bytearray(ota_model.BLOCK)
        buf[:len(img)] = img
        for i in range(len(img), len(buf)):
            buf[i] = 0xFF
        part.writeblocks(0, buf)
    label = flash.boot()
    return flash, flash.image_info(label)[1]
