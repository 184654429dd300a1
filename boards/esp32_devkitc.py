# ESP32-DevKitC (WROOM-32) meter board.
#
# Pin map (see docs/BOARDS.md for the wiring):
#   GPIO 34  flow sensor pulse in (input only; external pull-up + RC + Schmitt)
#   GPIO 35  flow direction in (optional)
#   GPIO 25  valve H-bridge IN1 (open coil)     GPIO 26  valve H-bridge IN2 (close coil)
#   GPIO 18/23/19  SPI2 (VSPI) SCK/MOSI/MISO    GPIO 5  MFRC522 SDA (CS)   GPIO 22  MFRC522 RST
#   GPIO 2   status LED                         GPIO 4   buzzer
#   GPIO 0   user button (BOOT, active low)     GPIO 27  case tamper switch (active low)
#   GPIO 36  battery divider (ADC1)
import machine
from machine import Pin

from boards import Hardware
from boards.esp32_common import Clock, WifiLink

NAME = "esp32_devkitc"
SPI_ID = const(2)
SPI_BAUD = const(4_000_000)


def build(state_dir="/data", wifi=("", "")):
    return Hardware(
        name=NAME,
        clock=Clock(),
        state_dir=state_dir,
        pulse_counter=machine.Counter(0, Pin(34, Pin.IN), edge=machine.Counter.RISING, filter_ns=12_000),
        pulse_pin=Pin(34, Pin.IN),
        pulse_trigger=Pin.IRQ_RISING,
        direction_pin=Pin(35, Pin.IN),
        valve_open_pin=Pin(25, Pin.OUT, value=0),
        valve_close_pin=Pin(26, Pin.OUT, value=0),
        valve_cfg={"type": "latching", "pulse_ms": 50},
        card_spi=machine.SPI(SPI_ID, baudrate=SPI_BAUD, sck=Pin(18), mosi=Pin(23), miso=Pin(19)),
        card_cs=Pin(5, Pin.OUT, value=1),
        card_rst=Pin(22, Pin.OUT, value=1),
        led=Pin(2, Pin.OUT, value=0),
        buzzer=Pin(4, Pin.OUT, value=0),
        button=Pin(0, Pin.IN, Pin.PULL_UP),
        tamper_pin=Pin(27, Pin.IN, Pin.PULL_UP),
        battery=machine.ADC(Pin(36)),
        net=WifiLink(*wifi),
        wdt=machine.WDT(timeout=30_000),
    )
