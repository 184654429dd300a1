# What every ESP32 board shares: the clock, the watchdog and Wi-Fi.
import time
import asyncio

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

    def rssi(self):
        try:
            return self._sta.status("rssi")
        except (OSError, ValueError):
            return None

    @staticmethod
    def wrap_tls(sock, server_hostname, cadata):
        """TLS client (mbedTLS) over a connected socket; the broker's
        certificate must chain to cadata (DER) and match server_hostname.
        A cellular modem link would offer the same method."""
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # documented SSLContext attribute (default CERT_NONE in MicroPython),
        # missing from the port's type stubs
        setattr(ctx, "verify_mode", ssl.CERT_REQUIRED)
        if cadata:
            ctx.load_verify_locations(cadata=cadata)
        return ctx.wrap_socket(sock, server_hostname=server_hostname)


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
