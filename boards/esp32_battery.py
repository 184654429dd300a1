# ESP32 (WROOM-32) battery meter board: a LiSOCl2 cell, a reed-contact
# meter, a latching valve; deep sleep between wakes (docs/BATTERY.md).
#
# Pulses are counted by the ULP program (firmware/ulp/counter.S) on
# GPIO34 = RTC_GPIO4, also while the CPU sleeps; the CPU wakes on the ULP's
# count threshold, on the RTC timer, or on the button (EXT1: MicroPython's
# esp32.wake_on_ulp refuses to combine with EXT0, modesp32.c). GPIO34 is
# never made a machine.Pin: that would hand the pad back to the digital GPIO
# matrix and the ULP would read nothing. Wiring as esp32_devkitc, except:
#   GPIO 34  reed contact to ground, 1 MOhm external pull-up (input only:
#            no internal pull), read by the ULP
#   GPIO 0   user button, active low (RTC_GPIO11: EXT1 wake, all-low)
#   GPIO 18/23/19 SPI2 SCK/MOSI/MISO, GPIO 5 MFRC522 SDA (CS), GPIO 22 its
#            NRSTPD with a 100 kOhm pull-down: the reader is in hard
#            power-down whenever the CPU does not drive the pin (deep sleep,
#            reset; docs/BATTERY.md §8)
#   no PCNT; no card-present switch: EXT1 takes one level for all its pins
#   (all-low or any-high on the ESP32) and the active-low button on GPIO 0,
#   a strapping pin, cannot become active-high, so a button wake opens the
#   card window instead (firmware/card/wakepoll.py)
import machine
from boards.esp32_common import Clock, WifiLink, Battery, ota_partitions, pin_in, pin_out, segment_display

NAME = "esp32_battery"
CHIP = "esp32"
HAS_WIFI = True
COUNTER_UNIT = None
ULP_BINARY = "/ulp/counter.ulp"     # tools/ulp_build.py, copied at deploy
PINS = {
    "pulse": 34, "direction": None, "sensor": None,
    "valve_open": 25, "valve_close": 26, "fb_open": 32, "fb_closed": 33,
    "spi_sck": 18, "spi_mosi": 23, "spi_miso": 19, "card_cs": 5, "card_rst": 22,
    "led": 2, "buzzer": None, "button": 0, "tamper": None, "battery": 36,
    "lcd_cs": 13, "lcd_wr": 14, "lcd_data": 21,
}
VALVE = {"type": "latching", "pulse_ms": 50, "settle_ms": 200, "retries": 2,
         "backoff_s": 60, "backoff_max_s": 3600, "exercise_days": 30, "exercise_hour": 3}

SPI_ID = const(2)             # VSPI: its IO_MUX pins are 18/23/19
SPI_BAUD = const(4_000_000)
_RTC_SLOW_MEM = const(0x50000000)
# RTC_IO_ADC_PAD_REG: GPIO34 is its "ADC1" pad. MUX_SEL (bit 29) routes the
# pad to the RTC side, FUN_SEL (27:26) = 0 selects RTC GPIO, FUN_IE (23)
# enables its input: ESP-IDF soc/esp32 rtc_io_reg.h, what rtc_gpio_init()
# and rtc_gpio_set_direction(input) set. To confirm on the bench.
_RTC_IO_ADC_PAD = const(0x3FF48480)
_ADC1_MUX_SEL = const(1 << 29)
_ADC1_FUN_SEL = const(3 << 26)
_ADC1_FUN_IE = const(1 << 23)


class RtcSlowMem:
    """The ULP's words in RTC slow memory (it stores 16 bits; the high half
    holds the storing PC, so callers mask)."""

    @staticmethod
    def word(i):
        return machine.mem32[_RTC_SLOW_MEM + 4 * i]

    @staticmethod
    def set_word(i, v):
        machine.mem32[_RTC_SLOW_MEM + 4 * i] = v


_RTC_GPIO_IN = const(0x3FF48424)    # RTC_GPIO_IN_REG: RTC_GPIOn at bit 14 + n (counter.S)
_PULSE_BIT = const(18)               # GPIO34 = RTC_GPIO4


# RTC_CNTL_STATE0_REG bit 24, RTC_CNTL_ULP_CP_SLP_TIMER_EN (ESP-IDF soc/esp32
# rtc_cntl_reg.h, reset value 0): ulp_run() sets it; a system reset (RTC
# watchdog, the brown-out reset) clears it and keeps RTC slow memory
_RTC_CNTL_STATE0 = const(0x3FF48018)
_ULP_TIMER_EN = const(1 << 24)


def _ulp_running():
    return bool(machine.mem32[_RTC_CNTL_STATE0] & _ULP_TIMER_EN)


def _pulse_level():
    return (machine.mem32[_RTC_GPIO_IN] >> _PULSE_BIT) & 1


def _route_pulse_pad():
    m = machine.mem32
    m[_RTC_IO_ADC_PAD] = (m[_RTC_IO_ADC_PAD] & ~_ADC1_FUN_SEL) | _ADC1_MUX_SEL | _ADC1_FUN_IE


def _wake_reason():
    cause = machine.wake_reason()
    for name, reason in (("ULP_WAKE", "ulp"), ("TIMER_WAKE", "timer"), ("EXT1_WAKE", "button")):
        if cause == getattr(machine, name, -1):
            return reason
    return "power" if machine.reset_cause() == machine.PWRON_RESET else "reset"


def _deepsleep_on(button_gpio):
    def deepsleep(ms, button=True):
        import esp32
        esp32.wake_on_ulp(True)
        # an empty tuple clears EXT1 (modesp32.c: None would keep the pins)
        pins = (machine.Pin(button_gpio),) if button and button_gpio is not None else ()
        esp32.wake_on_ext1(pins, esp32.WAKEUP_ALL_LOW)
        machine.deepsleep(ms)
    return deepsleep


def _read_binary():
    with open(ULP_BINARY, "rb") as f:
        return f.read()


def build(state_dir="/data", wifi=("", ""), pins=None, valve=None):
    import esp32
    from boards import Hardware, ulp, validate
    p = validate.merged(PINS, pins)
    vcfg = dict(VALVE)
    vcfg.update(valve or {})
    _route_pulse_pad()
    ram = RtcSlowMem()
    power_lost = machine.reset_cause() == machine.PWRON_RESET   # RTC memory holds noise
    fresh, not_counting = ulp.start_or_fault(esp32.ULP(), ram, _read_binary, power_lost,
                                             _pulse_level(), _ulp_running())
    clock = Clock()
    return Hardware(
        name=NAME,
        clock=clock,
        state_dir=state_dir,
        ulp_ram=ram,
        ulp_fresh=fresh,
        deepsleep=_deepsleep_on(p["button"]),
        wake_reason=_wake_reason(),
        valve_open_pin=pin_out(p["valve_open"]),
        valve_close_pin=pin_out(p["valve_close"]),
        valve_fb_open_pin=pin_in(p["fb_open"], machine.Pin.PULL_UP),
        valve_fb_closed_pin=pin_in(p["fb_closed"], machine.Pin.PULL_UP),
        valve_cfg=vcfg,
        led=pin_out(p["led"]),
        button=pin_in(p["button"], machine.Pin.PULL_UP),
        sensor_pin=not_counting,
        card_spi=machine.SPI(SPI_ID, baudrate=SPI_BAUD, sck=machine.Pin(p["spi_sck"]),
                             mosi=machine.Pin(p["spi_mosi"]), miso=machine.Pin(p["spi_miso"]))
        if p["card_cs"] is not None else None,
        card_cs=pin_out(p["card_cs"], 1),
        card_rst=pin_out(p["card_rst"], 0),     # the driver's init is the hard reset
        lightsleep=machine.lightsleep,
        display=segment_display(p, clock),
        battery=Battery(p["battery"], 1000, 1000) if p["battery"] is not None else None,   # 1 MOhm each
        net=WifiLink(*wifi),
        wdt=machine.WDT(timeout=30_000),
        reset=machine.reset,
        partitions=ota_partitions(),     # updates in the reporting windows (docs/OTA.md §9)
    )
