# The dot-matrix screen (display/text.py) on a 128 x 64 monochrome panel
# with the surface of micropython-lib's ssd1306 driver: a framebuf
# FrameBuffer (MONO_VLSB, as the SSD1306's pages are) plus show(),
# poweroff() and poweron(). What the panel shows is read back pixel by
# pixel and compared with framebuf's font drawing the expected line.
import framebuf

import codes
import config
import display
from display import glass as G
from display import pages
from display.text import TextScreen, describe, LANGS, ROW
from simkit import make_meter

W, H = 128, 64


class Panel(framebuf.FrameBuffer):
    """The SSD1306's frame memory and its three commands that matter here."""

    def __init__(self):
        self.buf = bytearray(W * H // 8)
        super().__init__(self.buf, W, H, framebuf.MONO_VLSB)
        self.shown = None          # the frame memory as last sent to the panel
        self.on = True

    def show(self):
        self.shown = bytes(self.buf)

    def poweroff(self):
        self.on = False

    def poweron(self):
        self.on = True


def _row(panel, y, text):
    """True when the panel's row at y shows exactly text (8 px high)."""
    ref = bytearray(W * H // 8)
    fb = framebuf.FrameBuffer(ref, W, H, framebuf.MONO_VLSB)
    fb.text(text, 0, y, 1)
    shown = framebuf.FrameBuffer(bytearray(panel.shown), W, H, framebuf.MONO_VLSB)
    for yy in range(y, y + 8):
        for x in range(W):
            if shown.pixel(x, yy) != fb.pixel(x, yy):
                return False
    return True


def _lines(panel, first, words):
    assert _row(panel, 0, first), first
    for i, w in enumerate(words):
        assert _row(panel, ROW + 2 + i * ROW, w), (i, w)


def test_a_refused_tap_in_french_and_english():
    for lang, words in (("en", ["other meter", "valve closed"]), ("fr", ["autre compteur", "vanne fermee"])):
        p = Panel()
        s = TextScreen(p, lang=lang)
        s.show(pages.error(codes.WRONG_METER), G.CARD | G.SHUT)
        _lines(p, "E     07", words)


def test_the_language_comes_from_the_settings_table():
    assert config.check("display_lang", "fr")[0] == codes.ACCEPTED
    assert config.check("display_lang", "de")[0] == codes.RANGE
    assert config.check("display_lang", 1)[0] == codes.FORMAT
    assert tuple(sorted(LANGS)) == ("en", "fr")
    m, hw = make_meter(display_lang="fr", board_opts={"display": False})
    p = Panel()
    hw.display = TextScreen(p)
    d = display.attach(hw, m)
    assert hw.display.lang == "fr"
    m.apply_credit("card", 1, 1, 1_250_000)
    d.refresh()
    _lines(p, pages.line("", "12.50"), ["solde", "vanne fermee", "appuyer: ouvrir"])


def test_every_result_valve_reason_and_alarm_has_words_in_every_language():
    for lang in LANGS:
        for code in range(1, len(codes.RESULT_NAMES)):
            w = describe(pages.error(code), G.CARD, lang)[0]
            assert w and len(w) <= 16 and not w.startswith("code"), (lang, code, w)
        for why in (codes.WHY_CREDIT, codes.WHY_COMMAND, codes.WHY_LEAK, codes.WHY_BURST,
                    codes.WHY_TAMPER, codes.WHY_BATTERY, codes.WHY_SENSOR):
            assert len(describe(pages.line("OFF", "%02d" % why), G.SHUT, lang)) >= 3
        for _, ev in pages.ALARM_CODES:
            assert len(describe("AL %d" % ev, G.ALARM, lang)) == 3, (lang, ev)


def test_sleep_powers_the_panel_off_and_wake_shows_the_new_content():
    p = Panel()
    s = TextScreen(p)
    s.show(pages.line("", "1.00"), G.MONEY | G.VALVE)
    s.sleep()
    assert not p.on and s.asleep
    s.show(pages.line("", "0.50"), G.MONEY | G.VALVE)
    assert _row(p, 0, pages.line("", "1.00")), "asleep: nothing sent"
    s.wake()
    assert p.on
    _lines(p, pages.line("", "0.50"), ["balance", "valve open"])
