# The customer's display (docs/DISPLAY.md).
#
# A board hands the firmware a screen as hw.display (None: no display). A
# screen is any object with:
#   show(text, icons)  text: up to 8 cells, '.' lighting the point of the
#                      cell before it; icons: glass.* bits
#   sleep(), wake()    power down / back on; show() while asleep only
#                      records what to draw on wake
#   asleep             True between sleep() and wake()
# segment.SegmentScreen is the HT1621 glass; text.TextScreen puts a
# framebuf-based dot-matrix driver (micropython-lib's ssd1306) behind the
# same four members, with words in the configured language.


def attach(hw, meter):
    """The display's controller (ui.Display) on the board's screen. A
    screen with words (text.TextScreen) takes the configured language."""
    from display.ui import Display
    if hasattr(hw.display, "set_language"):
        hw.display.set_language(meter.cfg["display_lang"])
    return Display(hw.display, meter, hw.clock, hw.battery)
