# ESP32-S3-DevKitC-1 (N8R8 / N16R8) meter board.
#
# Wiring: docs/BOARDS.md. The S3 has PCNT (machine.Counter) and native USB
# (GPIO 19/20); the octal PSRAM of N8R8/N16R8 modules takes GPIO 33-37, and
# the RGB LED of the kit (GPIO 48 or 38) is not used.
#   GPIO 4   flow sensor pulse (external pull-up + RC + Schmitt)
#   GPIO 5   flow direction (optional)       GPIO 18  sensor cable loop
#   GPIO 6   valve H-bridge IN1 (open)       GPIO 7   valve H-bridge IN2 (close)
#   GPIO 15/16 valve limit switches (open/closed, to ground)
#   GPIO 12/11/13 SPI2 (FSPI) SCK/MOSI/MISO GPIO 10 MFRC522 SDA (CS)  GPIO 9 RST
#   GPIO 17  status LED   GPIO 21 buzzer    GPIO 0  user button (BOOT, active low)
#   GPIO 14  case tamper switch (active low) GPIO 1  battery divider (ADC1_CH0)
import machine
from machine import Pin

from boards import Hardware
from boards.esp32_common import Battery, Clock, WifiLink, pin_in, pin_out, pulse_counter

NAME = "esp32s3_devkitc"
CHIP = "esp32s3"
HAS_WIFI = True
SPI_ID = const(1)             # machine.SPI(1) is SPI2_HOST (FSPI) on the S3
SPI_BAUD = const(4_000_000)
COUNTER_UNIT = 0
TIMER_ID = 0
PINS = {
    "pulse": 4, "direction": 5, "sensor": 18,
    "valve_open": 6, "valve_close": 7, "fb_open": 15, "fb_closed": 16,
    "spi_sck": 12, "spi_mosi": 11, "spi_miso": 13, "card_cs": 10, "card_rst": 9,
    "led": 17, "buzzer": 21, "button": 0, "tamper": 14, "battery": 1,
}
VALVE = {"type": "latching", "pulse_ms": 50}


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    from boards import validate
    from boards.ticker import TimerTicker
    p = validate.merged(PINS, pins)
    vcfg = dict(VALVE)
    vcfg.update(valve or {})
    card = p["card_cs"] is not None
    dpin = pin_in(p["direction"])
    return Hardware(
        name=NAME,
        clock=Clock(),
        state_dir=state_dir,
        pulse_counter=pulse_counter(COUNTER_UNIT, p["pulse"], dpin),
        pulse_pin=Pin(p["pulse"], Pin.IN),
        pulse_trigger=Pin.IRQ_RISING,
        direction_pin=dpin,
        sensor_pin=pin_in(p["sensor"]),
        valve_open_pin=pin_out(p["valve_open"]),
        valve_close_pin=pin_out(p["valve_close"]),
        valve_fb_open_pin=pin_in(p["fb_open"], Pin.PULL_UP),
        valve_fb_closed_pin=pin_in(p["fb_closed"], Pin.PULL_UP),
        valve_cfg=vcfg,
        card_spi=machine.SPI(SPI_ID, baudrate=SPI_BAUD, sck=Pin(p["spi_sck"]),
                             mosi=Pin(p["spi_mosi"]), miso=Pin(p["spi_miso"])) if card else None,
        card_cs=pin_out(p["card_cs"], 1),
        card_rst=pin_out(p["card_rst"], 1),
        led=pin_out(p["led"]),
        buzzer=pin_out(p["buzzer"]),
        button=pin_in(p["button"], Pin.PULL_UP),
        tamper_pin=pin_in(p["tamper"], Pin.PULL_UP),
        battery=Battery(p["battery"]) if p["battery"] is not None else None,
        net=WifiLink(*wifi),
        wdt=machine.WDT(timeout=30_000),
        ticker=TimerTicker(TIMER_ID),
    )
