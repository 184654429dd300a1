# ESP32-C3-DevKitM-1 meter board: the IRQ-counting path.
#
# Wiring: docs/BOARDS.md. The C3 has no PCNT, so pulse_counter is None and
# main.pulse_source() counts edges with Pin.irq (a soft IRQ on this port:
# fit the RC + Schmitt filter, keep the pulse rate well under ~100 Hz). Only
# GPIO 0-10 are free (12-17 flash, 18/19 USB, 20/21 console UART), so this
# board has no flow-direction input and no separate buzzer; strapping pins
# 2, 8 and 9 carry inputs with pull-ups or the card reset, never the valve.
#   GPIO 1   flow sensor pulse                GPIO 10  sensor cable loop
#   GPIO 6   valve H-bridge IN1 (open)        GPIO 7   valve H-bridge IN2 (close)
#   GPIO 4/5/3 SPI2 SCK/MOSI/MISO             GPIO 8   MFRC522 SDA (CS; also the RGB LED pin)
#   GPIO 2   MFRC522 RST (held high)          GPIO 9   user button (BOOT, active low)
#   GPIO 0   battery divider (ADC1_CH0)       no LED/tamper pins spare: see BOARDS.md
import machine
from machine import Pin

from boards import Hardware
from boards.esp32_common import Battery, Clock, WifiLink, pin_in, pin_out

NAME = "esp32c3_devkitm"
CHIP = "esp32c3"
HAS_WIFI = True
SPI_ID = const(1)             # SPI2_HOST, the C3's one general-purpose SPI
SPI_BAUD = const(4_000_000)
COUNTER_UNIT = None           # no PCNT on the C3: IRQ counting
TIMER_ID = 0                  # the C3 has timers 0 and 1
PINS = {
    "pulse": 1, "direction": None, "sensor": 10,
    "valve_open": 6, "valve_close": 7, "fb_open": None, "fb_closed": None,
    "spi_sck": 4, "spi_mosi": 5, "spi_miso": 3, "card_cs": 8, "card_rst": 2,
    "led": None, "buzzer": None, "button": 9, "tamper": None, "battery": 0,
}
VALVE = {"type": "latching", "pulse_ms": 50}


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    from boards import validate
    from boards.ticker import TimerTicker
    p = validate.merged(PINS, pins)
    vcfg = dict(VALVE)
    vcfg.update(valve or {})
    card = p["card_cs"] is not None
    return Hardware(
        name=NAME,
        clock=Clock(),
        state_dir=state_dir,
        pulse_counter=None,
        pulse_pin=Pin(p["pulse"], Pin.IN),
        pulse_trigger=Pin.IRQ_RISING,
        direction_pin=pin_in(p["direction"]),
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
