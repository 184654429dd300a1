# What every ESP32 board shares: the clock, the watchdog and Wi-Fi.
import time
import asyncio

from boards import tls

# Ports before 1.22 count from 2000; the firmware always works in Unix seconds.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


class Clock:
    ticks_ms = staticmethod(time.ticks_ms)
    ticks_us = staticmethod(time.ticks_us)
    ticks_diff = staticmethod(time.ticks_diff)
    ticks_add = staticmethod(time.ticks_add)
    delay_ms = staticmethod(time.sleep_ms)
    delay_us = staticmethod(time.sleep_us)

    def time(self):
        return time.time() + _EPOCH_OFFSET

    def set_time(self, secs):
        import machine
        y, mo, d, hh, mm, ss, wd, _ = time.gmtime(secs - _EPOCH_OFFSET)
        machine.RTC().datetime((y, mo, d, wd, hh, mm, ss, 0))

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(ms)


class WifiLink:
    """Wi-Fi station with reconnect; RSSI for telemetry."""

    def __init__(self, ssid, password):
        import network
        self._ssid = ssid
        self._password = password
        self._sta = network.WLAN(network.STA_IF)

    def connect(self):
        if not self._sta.active():
            self._sta.active(True)
        if not self._sta.isconnected() and self._ssid:
            try:
                self._sta.connect(self._ssid, self._password)
            except OSError:
                return False
        return self._sta.isconnected()

    def isconnected(self):
        return self._sta.isconnected()

    def dns(self):
        """The DNS server DHCP gave the station (comms.dns asks it itself:
        the port's getaddrinfo would block the loop)."""
        try:
            return self._sta.ifconfig()[3]
        except (OSError, IndexError):
            return None

    def rssi(self):
        try:
            return self._sta.status("rssi")
        except (OSError, ValueError):
            return None

    # TLS client (mbedTLS) over a connected socket, the broker's certificate
    # checked against cadata (DER); a cellular modem link would offer the same
    wrap_tls = staticmethod(tls.wrap_tls)


class Battery:
    """Battery voltage through a resistor divider on an ADC1 pin.
    millivolts() = pin voltage * (r_top + r_bottom) / r_bottom."""

    def __init__(self, gpio, r_top=100, r_bottom=100):
        import machine
        self._adc = machine.ADC(machine.Pin(gpio), atten=machine.ADC.ATTN_11DB)
        self._num = r_top + r_bottom
        self._den = r_bottom

    def millivolts(self):
        return self._adc.read_uv() // 1000 * self._num // self._den


def pin_in(gpio, pull=None):
    from machine import Pin
    if gpio is None:
        return None
    return Pin(gpio, Pin.IN) if pull is None else Pin(gpio, Pin.IN, pull)


def pin_out(gpio, value=0):
    from machine import Pin
    if gpio is None:
        return None
    return Pin(gpio, Pin.OUT, value=value)


def pulse_counter(unit, pulse_gpio, direction_pin=None):
    """PCNT unit on the flow sensor's pulse pin. With the sensor's direction
    output wired, the unit counts down while it is high (reverse flow), so
    the meter sees a negative count and never bills backflow."""
    import machine
    d = direction_pin if direction_pin is not None else machine.Counter.UP
    return machine.Counter(unit, machine.Pin(pulse_gpio, machine.Pin.IN),
                           edge=machine.Counter.RISING, direction=d, filter_ns=12_000)


def segment_display(p, clock):
    """The HT1621 glass on three GPIOs (docs/DISPLAY.md), or None when the
    pin map fits none."""
    if p.get("lcd_cs") is None:
        return None
    from display.ht1621 import HT1621
    from display.segment import SegmentScreen
    from display.glass import SEG
    lcd = HT1621(pin_out(p["lcd_cs"], 1), pin_out(p["lcd_wr"], 1), pin_out(p["lcd_data"]),
                 clock.delay_us)
    return SegmentScreen(lcd, SEG)


def build_hardware(name, pins_map, valve_cfg, counter_unit, spi_id, spi_baud,
                   state_dir, wifi, pins=None, valve=None, irq_max_k=None):
    """The Hardware of an ESP32 meter board from its pin map and settings.
    counter_unit None: the chip has no PCNT, so pulses are counted by IRQ."""
    import machine
    from machine import Pin
    from boards import Hardware, validate
    from boards.ticker import ThreadTicker, ESP32_STACK
    p = validate.merged(pins_map, pins)
    vcfg = dict(valve_cfg)
    vcfg.update(valve or {})
    card = p["card_cs"] is not None
    dpin = pin_in(p["direction"])
    clock = Clock()
    return Hardware(
        name=name,
        clock=clock,
        state_dir=state_dir,
        pulse_counter=pulse_counter(counter_unit, p["pulse"], dpin) if counter_unit is not None else None,
        pulse_pin=Pin(p["pulse"], Pin.IN),
        pulse_trigger=Pin.IRQ_RISING,
        irq_max_k=irq_max_k if counter_unit is None else None,
        direction_pin=dpin,
        sensor_pin=pin_in(p["sensor"]),
        valve_open_pin=pin_out(p["valve_open"]),
        valve_close_pin=pin_out(p["valve_close"]),
        valve_fb_open_pin=pin_in(p["fb_open"], Pin.PULL_UP),
        valve_fb_closed_pin=pin_in(p["fb_closed"], Pin.PULL_UP),
        valve_cfg=vcfg,
        card_spi=machine.SPI(spi_id, baudrate=spi_baud, sck=Pin(p["spi_sck"]),
                             mosi=Pin(p["spi_mosi"]), miso=Pin(p["spi_miso"])) if card else None,
        card_cs=pin_out(p["card_cs"], 1),
        card_rst=pin_out(p["card_rst"], 1),
        led=pin_out(p["led"]),
        buzzer=pin_out(p["buzzer"]),
        button=pin_in(p["button"], Pin.PULL_UP),
        display=segment_display(p, clock),
        tamper_pin=pin_in(p["tamper"], Pin.PULL_UP),
        # an external comparator's open-drain output, active low (assumed,
        # docs/BOARDS.md "Power-fail input"); the pull-up also holds the pin
        # high on a board where none is fitted, so it never falls
        power_fail_pin=pin_in(p["power_fail"], Pin.PULL_UP),
        battery=Battery(p["battery"]) if p["battery"] is not None else None,
        net=WifiLink(*wifi),
        wdt=machine.WDT(timeout=30_000),
        ticker=ThreadTicker(ESP32_STACK),
        reset=machine.reset,
        partitions=ota_partitions(),
        wake_reason="power" if machine.reset_cause() == machine.PWRON_RESET else "reset",
    )


def ota_partitions():
    """esp32.Partition when the running partition table has a second app
    slot (docs/OTA.md §2: the OTA build's partitions-ota.csv), else None."""
    try:
        import esp32
        if len(esp32.Partition.find(esp32.Partition.TYPE_APP)) >= 2:
            return esp32.Partition
    except (ImportError, AttributeError, OSError):
        pass
    return None     # a table with one app slot (or none found): updates only by serial
