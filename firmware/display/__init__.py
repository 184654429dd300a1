# The customer's display (docs/DISPLAY.md).
#
# A board hands the firmware a screen as hw.display (None: no display). A
# screen is any object with:
#   show(text, icons)  text: up to 8 cells, '.' lighting the point of the
#                      cell before it; icons: glass.* bits
#   sleep(), wake()    power down / back on; show() while asleep only
#                      records what to draw on wake
#   asleep             True between sleep() and wake()
# segment.SegmentScreen is the HT1621 glass; a dot-matrix board wraps its
# framebuffer driver (micropython-lib ssd1306) in the same four members.


def attach(hw, meter):
    """The display's controller (ui.Display) on the board's screen."""
    from display.ui import Display
    return Display(hw.display, meter, hw.clock, hw.battery)
