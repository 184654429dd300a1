# A dot-matrix screen behind the display interface (display/__init__.py):
# a framebuf-based driver such as micropython-lib's ssd1306 (SSD1306_I2C,
# SSD1306_SPI: FrameBuffer's fill/text plus show/poweroff/poweron) shows
# the glass's 8-cell line on its first row and, below it, what that line
# means, in words from a message table in the meter's language
# (config "display_lang"). Only a board with such a display imports this.
#
# framebuf's built-in font is 8 x 8 ASCII: 16 characters on a 128-pixel
# row, and no accents, so the French table is written without them.
import codes
from display import glass as G

ROW = const(10)           # pixel rows per text line
COLS = const(16)          # characters per line on a 128-pixel-wide panel
LANGS = ("en", "fr")      # config.py accepts the same ("display_lang")

# per language: the results E 01..E 21 (codes.py), the valve reasons OFF 01..08,
# then the words of the pages and the status icons
_RESULTS = {
    "en": ("", "already used", "bad card data", "out of range", "old credit", "forged card",
           "over the limit", "other meter", "other region", "card expired", "card locked",
           "refused", "not saved", "unknown card", "read error", "no answer", "card pulled",
           "key refused", "blank card", "not this meter", "other account", "voided",
           "wrong board", "battery too low"),
    "fr": ("", "deja utilisee", "carte illisible", "hors limites", "credit ancien",
           "carte falsifiee", "plafond depasse", "autre compteur", "autre region",
           "carte expiree", "carte bloquee", "refuse", "non enregistre", "carte inconnue",
           "erreur lecture", "pas de reponse", "carte retiree", "cle refusee", "carte vierge",
           "pas ce compteur", "autre compte", "annule", "autre materiel",
           "pile trop faible"),
}
_WHY = {
    "en": ("", "no credit", "closed by office", "valve fault", "leak", "burst", "tamper",
           "battery low", "sensor cut"),
    "fr": ("", "plus de credit", "fermee (service)", "vanne en panne", "fuite", "rupture",
           "fraude", "pile faible", "capteur coupe"),
}
_ALARMS = {   # by the event code the alarm page shows (pages.ALARM_CODES)
    "en": {codes.EV_LEAK: "leak", codes.EV_BURST: "burst", codes.EV_TAMPER: "tamper",
           codes.EV_FLOW_WHILE_CLOSED: "flow, valve shut", codes.EV_SENSOR_FAULT: "sensor fault",
           codes.EV_LOW_BATTERY: "battery low"},
    "fr": {codes.EV_LEAK: "fuite", codes.EV_BURST: "rupture", codes.EV_TAMPER: "fraude",
           codes.EV_FLOW_WHILE_CLOSED: "eau vanne fermee", codes.EV_SENSOR_FAULT: "defaut capteur",
           codes.EV_LOW_BATTERY: "pile faible"},
}
# what the figure is, from the icons that mark it (first match wins), then
# the status icons, one line each
_FIGURE = (G.EMERG | G.MONEY, G.PER_M3, G.TODAY, G.MONTH, G.M3, G.CARD, G.MONEY)
_STATUS = (G.VALVE, G.SHUT, G.LOW, G.PRESS, G.ALARM, G.BATT)
_WORDS = {
    "en": ("emergency credit", "price per m3", "used today", "used this month", "total volume",
           "card / top-up", "balance",
           "valve open", "valve closed", "low credit", "press to open", "alarm", "battery low",
           "valve", "alarms", "battery"),
    "fr": ("credit d'urgence", "prix par m3", "conso du jour", "conso du mois", "volume total",
           "carte / credit", "solde",
           "vanne ouverte", "vanne fermee", "credit bas", "appuyer: ouvrir", "alarme", "pile faible",
           "vanne", "alarmes", "pile"),
}
_W_VALVE = const(13)
_W_ALARMS = const(14)
_W_BATTERY = const(15)


def describe(text, icons, lang="en"):
    """The lines in words under the 8-cell text: what it is, then the status."""
    words = _WORDS[lang]
    parts = text.split()
    out = []
    head = parts[0] if parts else ""
    code = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
    if head == "E" and code is not None:
        names = _RESULTS[lang]
        out.append(names[code] if code < len(names) else "code %d" % code)
    elif head in ("OFF", "OPEn"):
        out.append(words[_W_VALVE])
        if code is not None and code < len(_WHY[lang]):
            out.append(_WHY[lang][code])
    elif head == "AL":
        out.append(words[_W_ALARMS])
        for p in parts[1:]:
            if p.isdigit() and int(p) in _ALARMS[lang]:
                out.append(_ALARMS[lang][int(p)])
    elif head == "bAt":
        out.append(words[_W_BATTERY])
    else:
        for i, mask in enumerate(_FIGURE):
            if icons & mask == mask:
                out.append(words[i])
                break
    for i, mask in enumerate(_STATUS):
        if icons & mask and words[len(_FIGURE) + i] not in out:
            out.append(words[len(_FIGURE) + i])
    return out


class TextScreen:
    """The screen interface on a framebuf-based dot-matrix driver."""

    def __init__(self, fb, rows=6, lang="en"):
        self._fb = fb
        self._rows = rows
        self.lang = lang
        self._last = ("", 0)
        self.asleep = False

    def set_language(self, lang):
        if lang in LANGS:
            self.lang = lang

    def show(self, text, icons):
        self._last = (text, icons)
        if not self.asleep:
            self._draw()

    def _draw(self):
        fb = self._fb
        text, icons = self._last
        fb.fill(0)
        fb.text(text, 0, 0, 1)
        y = ROW + 2
        for line in describe(text, icons, self.lang)[:self._rows - 1]:
            fb.text(line[:COLS], 0, y, 1)
            y += ROW
        fb.show()

    def sleep(self):
        if not self.asleep:
            self._fb.poweroff()
            self.asleep = True

    def wake(self):
        if self.asleep:
            self._draw()           # the panel keeps its RAM: draw, then light
            self._fb.poweron()
            self.asleep = False
