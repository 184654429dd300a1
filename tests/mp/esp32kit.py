# The ESP32 port's machine and network modules at the pin level, so that the
# ESP32 board files (boards/esp32_*.py, boards/esp32_common.py) build their
# Hardware on the unix port: the hardware boundary and nothing above it.
# Importing this module puts the stand-ins in sys.modules (the unix port
# looks there before its own machine module). A Pin remembers how it was set
# up and every level written to it; drive() is the world outside moving an
# input, and a falling edge runs the IRQ armed for it at once, as the port's
# soft IRQ runs it at the next bytecode.
import sys


class Pin:
    IN = 1
    OUT = 3
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    made = {}                  # GPIO -> the last Pin made on it

    def __init__(self, gpio, mode=-1, pull=-1, value=None):
        self.gpio = gpio
        self.mode = mode
        self.pull = pull
        self.writes = []
        self.handler = None
        self.trigger = 0
        self._level = value if value is not None else 1 if pull == Pin.PULL_UP else 0
        Pin.made[gpio] = self

    def value(self, v=None):
        if v is None:
            return self._level
        self._level = 1 if v else 0
        self.writes.append(self._level)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING):
        self.handler = handler
        self.trigger = trigger

    def drive(self, level):
        old, self._level = self._level, level
        edge = Pin.IRQ_FALLING if old and not level else Pin.IRQ_RISING if level and not old else 0
        if self.handler is not None and edge & self.trigger:
            self.handler(self)


class Counter:
    UP = 1
    RISING = 1

    def __init__(self, unit, src, edge=RISING, direction=UP, filter_ns=0):
        self.unit = unit
        self.src = src
        self._n = 0

    def value(self, v=None):
        n = self._n
        if v is not None:
            self._n = v
        return n


class SPI:
    def __init__(self, bus, baudrate=0, sck=None, mosi=None, miso=None):
        self.bus = bus


class WDT:
    def __init__(self, timeout=5000):
        self.timeout = timeout

    def feed(self):
        pass


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin, atten=0):
        self.pin = pin

    def read_uv(self):
        return 1_800_000           # 3.6 V behind the mains boards' 1:2 divider


class RTC:
    def datetime(self, t=None):
        return t


class machine:
    Pin = Pin
    Counter = Counter
    SPI = SPI
    WDT = WDT
    ADC = ADC
    RTC = RTC
    PWRON_RESET = 1
    resets = []

    @staticmethod
    def reset_cause():
        return machine.PWRON_RESET

    @staticmethod
    def reset():
        machine.resets.append(1)


class WLAN:
    def __init__(self, interface):
        self._on = False

    def active(self, on=None):
        if on is None:
            return self._on
        self._on = on

    def isconnected(self):
        return False

    def connect(self, ssid, password):
        pass

    def status(self, what=None):
        return None

    def ifconfig(self):
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")


class network:
    STA_IF = 0
    WLAN = WLAN


sys.modules["machine"] = machine
sys.modules["network"] = network
