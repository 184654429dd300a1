# Board configuration check, run at boot before any pin is touched.
#
# A board module declares CHIP and PINS (role -> GPIO, or None for a feature
# the board lacks); board.txt may override single pins (pin.<role>=<gpio>).
# check() returns the list of problems in plain words. main.boot() refuses
# to build a board with problems: no pin is configured, so no output is
# driven, no watchdog is started, and the REPL stays available to fix
# board.txt. That is the safe state, and it cannot become a reset loop.

# What each chip allows. "reserved": SPI flash/PSRAM, USB and console pins;
# "input_only": no output driver; "strap": sampled at reset, so an output
# that a peripheral pulls may stop the chip from booting; "adc1": ADC unit 1
# (ADC2 cannot be read while Wi-Fi is on).
CHIPS = {
    "esp32": {
        "gpio": tuple(i for i in range(40) if i not in (20, 24, 28, 29, 30, 31)),
        "reserved": (1, 3, 6, 7, 8, 9, 10, 11),
        "input_only": (34, 35, 36, 37, 38, 39),
        "strap": (0, 2, 5, 12, 15),
        "adc1": (32, 33, 34, 35, 36, 37, 38, 39),
        "pcnt": True,
    },
    "esp32s3": {
        "gpio": tuple(i for i in range(49) if not 22 <= i <= 25),
        # 26-32 SPI flash; 33-37 octal PSRAM (N8R8 / N16R8 modules); 19/20 USB; 43/44 UART0
        "reserved": (19, 20, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 43, 44),
        "input_only": (),
        "strap": (0, 3, 45, 46),
        "adc1": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
        "pcnt": True,
    },
    "esp32c3": {
        "gpio": tuple(range(22)),
        # 12-17 SPI flash; 18/19 USB serial/JTAG; 20/21 UART0 console
        "reserved": (12, 13, 14, 15, 16, 17, 18, 19, 20, 21),
        "input_only": (),
        "strap": (2, 8, 9),
        "adc1": (0, 1, 2, 3, 4),
        "pcnt": False,
    },
}

REQUIRED = ("pulse", "valve_open", "valve_close")
OUTPUTS = ("valve_open", "valve_close", "spi_sck", "spi_mosi", "card_cs", "card_rst", "led", "buzzer",
           "lcd_cs", "lcd_wr", "lcd_data")
# outputs that must not sit on a strapping pin: a valve coil or the card's
# chip select pulled at reset can stop the boot or move the valve
NO_STRAP = ("valve_open", "valve_close")
# the power-fail comparator's output is low while the supply is below its
# threshold, and the 3V3 rail can be up (the chip leaving reset, sampling
# its straps) before the supply reaches it: on a strapping pin it could
# stop the boot (GPIO 0 low: the ROM's download mode)
STRAP_LOW_AT_RESET = ("power_fail",)
CARD = ("spi_sck", "spi_mosi", "spi_miso", "card_cs")
LCD = ("lcd_cs", "lcd_wr", "lcd_data")     # the HT1621's serial interface: all three or none


def merged(pins, over=None):
    out = {}
    for k, v in pins.items():
        out[k] = v
    if over:
        for k, v in over.items():
            out[k] = v
    return out


def check(chip, pins, over=None, counter=None):
    """Problems with this pin map on this chip; [] when it is good."""
    errs = []
    if chip not in CHIPS:
        return ["unknown chip %r (known: %s)" % (chip, ", ".join(sorted(CHIPS)))]
    c = CHIPS[chip]
    if over:
        for k in over:
            if k not in pins:
                errs.append("pin.%s: no such role (roles: %s)" % (k, ", ".join(sorted(pins))))
    p = merged(pins, over)
    for role in REQUIRED:
        if p.get(role) is None:
            errs.append("%s: missing (required)" % role)
    used = {}
    for role in sorted(p):
        g = p[role]
        if g is None:
            continue
        if not isinstance(g, int):
            errs.append("%s: %r is not a GPIO number" % (role, g))
            continue
        if g not in c["gpio"]:
            errs.append("%s: GPIO %d does not exist on %s" % (role, g, chip))
            continue
        if g in c["reserved"]:
            errs.append("%s: GPIO %d is reserved on %s (flash, PSRAM, USB or console)" % (role, g, chip))
        if role in OUTPUTS and g in c["input_only"]:
            errs.append("%s: GPIO %d is input-only on %s" % (role, g, chip))
        if role in NO_STRAP and g in c["strap"]:
            errs.append("%s: GPIO %d is a strapping pin; a valve driver there can break boot" % (role, g))
        if role in STRAP_LOW_AT_RESET and g in c["strap"]:
            errs.append("%s: GPIO %d is a strapping pin; the comparator may hold it low at reset" % (role, g))
        if role == "battery" and g not in c["adc1"]:
            errs.append("battery: GPIO %d is not on ADC1 (ADC2 is unusable with Wi-Fi)" % g)
        if g in used:
            errs.append("%s and %s: both on GPIO %d" % (used[g], role, g))
        else:
            used[g] = role
    card = [r for r in CARD if p.get(r) is not None]
    if card and len(card) != len(CARD):
        errs.append("card reader: needs all of %s (has %s)" % (", ".join(CARD), ", ".join(card)))
    lcd = [r for r in LCD if p.get(r) is not None]
    if lcd and len(lcd) != len(LCD):
        errs.append("display: needs all of %s (has %s)" % (", ".join(LCD), ", ".join(lcd)))
    if counter is not None and not c["pcnt"]:
        errs.append("counter unit %r: %s has no PCNT; use counter=None (IRQ counting)" % (counter, chip))
    return errs


def check_module(mod, over=None):
    """check() for a board module; boards without PINS (the simulator) pass."""
    pins = getattr(mod, "PINS", None)
    if pins is None:
        return ["pin.%s: this board has no pin map" % k for k in (over or {})]
    return check(getattr(mod, "CHIP", "?"), pins, over, getattr(mod, "COUNTER_UNIT", None))
