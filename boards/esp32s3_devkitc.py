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
#   GPIO 39/40/41 HT1621 segment LCD CS/WR/DATA (CS pulled up: idle at boot)
#   GPIO 2   power-fail comparator output (open drain, active low; optional)
from boards.esp32_common import build_hardware

NAME = "esp32s3_devkitc"
CHIP = "esp32s3"
HAS_WIFI = True
SPI_ID = const(1)             # machine.SPI(1) is SPI2_HOST (FSPI) on the S3
SPI_BAUD = const(4_000_000)
COUNTER_UNIT = 0
PINS = {
    "pulse": 4, "direction": 5, "sensor": 18,
    "valve_open": 6, "valve_close": 7, "fb_open": 15, "fb_closed": 16,
    "spi_sck": 12, "spi_mosi": 11, "spi_miso": 13, "card_cs": 10, "card_rst": 9,
    "led": 17, "buzzer": 21, "button": 0, "tamper": 14, "battery": 1,
    "lcd_cs": 39, "lcd_wr": 40, "lcd_data": 41, "power_fail": 2,
}
VALVE = {"type": "latching", "pulse_ms": 50}


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    return build_hardware(NAME, PINS, VALVE, COUNTER_UNIT, SPI_ID, SPI_BAUD,
                          state_dir, wifi, pins, valve)
