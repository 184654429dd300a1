# ESP32-DevKitC (WROOM-32 / WROVER) meter board.
#
# Wiring: docs/BOARDS.md. Pins are in PINS (role -> GPIO; None: not fitted);
# board.txt may override one with pin.<role>=<gpio>, and boards/validate.py
# checks the result before any pin is configured.
#   GPIO 34  flow sensor pulse (input only; external pull-up + RC + Schmitt)
#   GPIO 35  flow direction (optional)       GPIO 39  sensor cable loop
#   GPIO 25  valve H-bridge IN1 (open)       GPIO 26  valve H-bridge IN2 (close)
#   GPIO 32/33 valve limit switches (open/closed, to ground)
#   GPIO 18/23/19 SPI2 VSPI SCK/MOSI/MISO   GPIO 5  MFRC522 SDA (CS)   GPIO 22 RST
#   GPIO 2   status LED   GPIO 4 buzzer    GPIO 0  user button (BOOT, active low)
#   GPIO 27  case tamper switch (active low) GPIO 36 battery divider (ADC1)
#   GPIO 13/14/21 HT1621 segment LCD CS/WR/DATA (CS pulled up: idle at boot)
#   GPIO 16  power-fail comparator output (open drain, active low; optional:
#            on a WROVER module GPIO 16 is the PSRAM's, pin.power_fail=none)
from boards.esp32_common import build_hardware

NAME = "esp32_devkitc"
CHIP = "esp32"
HAS_WIFI = True
SPI_ID = const(2)             # VSPI: its IO_MUX pins are 18/23/19
SPI_BAUD = const(4_000_000)   # MFRC522 allows 10 MHz; 4 MHz is safe on 20 cm leads
COUNTER_UNIT = 0              # PCNT unit of machine.Counter
PINS = {
    "pulse": 34, "direction": 35, "sensor": 39,
    "valve_open": 25, "valve_close": 26, "fb_open": 32, "fb_closed": 33,
    "spi_sck": 18, "spi_mosi": 23, "spi_miso": 19, "card_cs": 5, "card_rst": 22,
    "led": 2, "buzzer": 4, "button": 0, "tamper": 27, "battery": 36,
    "lcd_cs": 13, "lcd_wr": 14, "lcd_data": 21, "power_fail": 16,
}
# valve timings (keys: firmware/valve/__init__.py DEFAULTS, docs/VALVE.md);
# for a motorised ball valve: {"type": "motor", "timeout_ms": ..., "run_ms": ...}
VALVE = {"type": "latching", "pulse_ms": 50, "settle_ms": 200, "retries": 2,
         "backoff_s": 60, "backoff_max_s": 3600, "exercise_days": 30, "exercise_hour": 3}


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    return build_hardware(NAME, PINS, VALVE, COUNTER_UNIT, SPI_ID, SPI_BAUD,
                          state_dir, wifi, pins, valve)
