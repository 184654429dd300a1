# ESP32-C3-DevKitM-1 meter board: the IRQ-counting path.
#
# Wiring: docs/BOARDS.md. The C3 has no PCNT, so pulse_counter is None and
# main.pulse_source() counts edges with Pin.irq (a soft IRQ on this port:
# fit the RC + Schmitt filter; a sensor of at most IRQ_MAX_K pulses/L). Only
# GPIO 0-10 are free (12-17 flash, 18/19 USB, 20/21 console UART), so this
# board has no flow-direction input and no separate buzzer; strapping pins
# 2, 8 and 9 carry inputs with pull-ups or the card reset, never the valve.
#   GPIO 1   flow sensor pulse                GPIO 10  sensor cable loop
#   GPIO 6   valve H-bridge IN1 (open)        GPIO 7   valve H-bridge IN2 (close)
#   GPIO 4/5/3 SPI2 SCK/MOSI/MISO             GPIO 8   MFRC522 SDA (CS; also the RGB LED pin)
#   GPIO 2   MFRC522 RST (held high)          GPIO 9   user button (BOOT, active low)
#   GPIO 0   battery divider (ADC1_CH0)       no LED/tamper pins spare: see BOARDS.md
#   no power-fail input: no GPIO left (pin.sensor=none + pin.power_fail=10 trades the loop for it)
from boards.esp32_common import build_hardware

NAME = "esp32c3_devkitm"
CHIP = "esp32c3"
HAS_WIFI = True
SPI_ID = const(1)             # SPI2_HOST, the C3's one general-purpose SPI
SPI_BAUD = const(4_000_000)
COUNTER_UNIT = None           # no PCNT on the C3: IRQ counting
IRQ_MAX_K = 3                 # pulses/L counted without loss at Q3 (bench/bench_irq_loss.py)
PINS = {
    "pulse": 1, "direction": None, "sensor": 10,
    "valve_open": 6, "valve_close": 7, "fb_open": None, "fb_closed": None,
    "spi_sck": 4, "spi_mosi": 5, "spi_miso": 3, "card_cs": 8, "card_rst": 2,
    "led": None, "buzzer": None, "button": 9, "tamper": None, "battery": 0,
    "power_fail": None,
}
VALVE = {"type": "latching", "pulse_ms": 50}


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    return build_hardware(NAME, PINS, VALVE, COUNTER_UNIT, SPI_ID, SPI_BAUD,
                          state_dir, wifi, pins, valve, IRQ_MAX_K)
