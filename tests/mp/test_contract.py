# docs/PROTOCOL.md against the firmware: the document's tables and numbers
# are read from the file and compared with the tables the code uses
# (codes.py, config.py, comms/commands.py, ledger.py, meter.py), so the
# contract and the code cannot drift apart unnoticed.
import codes
import config
import ledger
import meter
from comms import codec, commands, sign

with open("docs/PROTOCOL.md") as _f:
    DOC = _f.read()


def _section(title):
    """The text under the heading that starts with title, to the next heading."""
    i = DOC.index("\n#", DOC.index(title) - 8)
    i = DOC.index("\n", i + 1)
    j = DOC.find("\n#", i)
    return DOC[i:j if j >= 0 else len(DOC)]


def _rows(text, first):
    """Rows (lists of cells) of the table in text whose header starts with first."""
    out = []
    inside = False
    for ln in text.split("\n"):
        ln = ln.strip()
        if not ln.startswith("|"):
            if inside:
                break
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if not inside:
            inside = cells[0] == first
            continue
        if not cells[0].startswith("-"):
            out.append(cells)
    assert out, "no table headed %r" % first
    return out


def _range(cell):
    lo, hi = cell.strip("`").split("..")
    return int(lo), int(hi)


def test_result_codes_table_is_codes_py():
    rows = _rows(_section("## 5. Acks"), "code")
    listed = {}
    for code, name, _ in rows:
        listed[int(code)] = name
        assert codes.result_name(int(code)) == name, (code, name)
    # every answer a command can get is in the table
    for c in (codes.ACCEPTED, codes.USED, codes.FORMAT, codes.RANGE, codes.OLD, codes.SIGNATURE,
              codes.OVER_LIMIT, codes.REFUSED, codes.STORAGE, codes.UNKNOWN):
        assert c in listed, codes.result_name(c)


def test_event_codes_list_is_codes_py():
    text = _section("### 3.3 Records")
    i = text.index("Event codes")
    body = text[text.index("\n", i):text.index(".\n", i)]
    # "1 power-up, 2 credit (arg amount), ..." -> {1: "power-up", ...}
    listed = {}
    depth = 0
    flat = ""
    for ch in body.replace("\n", " "):
        depth += ch == "("
        if depth == 0:
            flat += ch
        depth -= ch == ")"
    for item in flat.split(","):
        words = item.split()
        listed[int(words[0])] = words[1]
    assert listed == {n: codes.event_name(n) for n in range(1, len(codes.EVENT_NAMES))}, listed


def test_why_table_is_codes_py_and_telemetry_carries_every_reason():
    rows = _rows(_section("### 3.3 Records"), "why")
    assert [(int(r[0]), r[1]) for r in rows] == list(enumerate(codes.WHY_NAMES))
    for why in range(len(codes.WHY_NAMES)):
        fl = codec.flags(False, why, 3, confirm=True, staged=True, emergency=True, loss=True)
        d = codec.decode_record(codec.tele(0, 0, 0, 0, fl, 0, 0, None))[0]
        assert (d["why"], d["low"], d["valve"]) == (why, 3, 0), why
        assert fl & codec.F_CONFIRM and fl & codec.F_STAGED and fl & codec.F_EMERGENCY
        assert fl & codec.F_OUTBOX_LOSS and fl < 1 << 11
    # the bit positions the text gives
    text = _section("### 3.3 Records")
    assert "`why = (flags >> 1) & 15`" in text and "`low = (flags >> 5) & 3`" in text
    assert (codec.F_CONFIRM, codec.F_STAGED, codec.F_EMERGENCY, codec.F_OUTBOX_LOSS) == (
        1 << 7, 1 << 8, 1 << 9, 1 << 10)
    for bit, what in ((7, "confirm"), (8, "staged"), (9, "emergency"), (10, "outbox")):
        assert ("bit %d " % bit) in text.replace("\n", " "), what


def test_settings_table_is_the_config_table():
    rows = _rows(_section("### 4.5 Settings"), "#")
    assert tuple(r[1].strip("`") for r in rows) == config.REMOTE
    for num, key, typ, rng in rows:
        key = key.strip("`")
        assert int(num) == config.number(key)
        if key == "reopen":
            assert rng == '`"confirm"` or `"auto"`'
            continue
        if key == "friendly_dates":
            assert config.ITEMS[key] == (0, int(typ.split(" to ")[1].split()[0]))
            continue
        assert _range(rng) == config.RANGES[key], key
        if key in config.ITEMS:
            if "list of 2" in typ:
                assert config.ITEMS[key] == (2, 2)
            else:
                least, most = typ.split(" ints")[0].split("list of ")[1].split(" to ")
                assert config.ITEMS[key] == (int(least), int(most)), key


def test_settings_answers_follow_the_table_at_its_edges():
    # each integer range, just inside and just outside, through the one check
    for key in config.REMOTE:
        if key not in config.RANGES or key in config.ITEMS:
            continue
        lo, hi = config.RANGES[key]
        cfg = None
        for v, want in ((lo, codes.ACCEPTED), (hi, codes.ACCEPTED), (lo - 1, codes.RANGE),
                        (hi + 1, codes.RANGE)):
            # the range on its own; the rules between two settings below
            assert config.check(key, v, cfg, True, pair=False)[0] == want, (key, v)
        assert config.check(key, str(lo), cfg, True)[0] == codes.FORMAT, key
        assert config.check(key, True, cfg, True)[0] == codes.FORMAT, key
    cfg = dict(config.DEFAULTS)
    assert config.check("low2", cfg["low1"], cfg, True)[0] == codes.ACCEPTED
    assert config.check("low2", cfg["low1"] + 1, cfg, True)[0] == codes.RANGE
    assert config.check("low1", cfg["low2"] - 1, cfg, True)[0] == codes.RANGE
    assert config.check("max_topup", cfg["max_balance"] + 1, cfg, True)[0] == codes.RANGE
    assert config.check("max_balance", cfg["max_topup"] - 1, cfg, True)[0] == codes.RANGE
    assert config.check("meter_id", "X", None, True)[0] == codes.UNKNOWN
    assert config.check("friendly_dates", ["01-01"] * 25, None, True)[0] == codes.RANGE
    assert config.check("friendly_days", [0, 1, 2, 3, 4, 5, 6, 0], None, True)[0] == codes.RANGE
    assert config.check("friendly_hours", [1], None, True)[0] == codes.FORMAT
    assert config.check("friendly_hours", [1, 24], None, True)[0] == codes.RANGE
    assert config.check("friendly_days", [True], None, True)[0] == codes.FORMAT


def test_time_window_and_counter_range_are_the_documented_ones():
    row = [r for r in _rows(_section("### 4.4 Commands"), "op") if r[0] == "`time`"][0]
    lo, hi = _range(row[2].split()[0])
    assert (lo, hi + 1) == (commands.TIME_MIN, commands.TIME_MAX)
    assert "`n` command counter, 1 … 2^32−1" in DOC


def test_ledger_window_is_the_documented_boundary():
    text = _section("### 4.4 Commands").replace("\n", " ")
    assert "A new account's window starts 32 below its first credit" in text
    assert ledger.WINDOW == 32
    led = ledger.Ledger()
    led.record("mqtt", 1, 40)
    assert led.check("mqtt", 1, 40 - 32) == codes.OLD
    assert led.check("mqtt", 1, 40 - 31) == codes.ACCEPTED
    led.record("mqtt", 1, 9)
    assert led.check("mqtt", 1, 9) == codes.USED


def test_flow_window_and_downlink_limit_are_the_documented_ones():
    assert "the mean over the last %d s of meter time" % meter.FLOW_WINDOW_S in DOC
    assert "refuses downlink payloads over %d bytes" % codec.MAX_DOWNLINK in DOC


def test_key_derivation_vector():
    text = _section("### 4.2 Keys")
    k = bytes(range(32))
    hexd = "".join("%02x" % b for b in sign.meter_key(k, "M000123"))
    assert ("meter key `%s`" % hexd) in text.replace("\n", " ")
    assert ("broker password `%s`" % sign.mqtt_password(k, "M000123")) in text.replace("\n", " ")


def test_meter_id_rule_is_the_documented_one():
    assert "`<id>` is the meter id: 1 to 16 characters, ASCII letters, digits, `-` and\n`_`" in DOC
    for ok in ("M000123", "a-b_C9", "X" * 16):
        assert config.check("meter_id", ok)[0] == codes.ACCEPTED, ok
    for bad in ("", "X" * 17, "m/1", "m+", "m#", "a b", "é"):
        assert config.check("meter_id", bad)[0] == codes.RANGE, bad


def test_command_fields_table_is_the_parsers_table():
    kinds = {"u32": 1, "0/1": 2, "int": 3, "string": 4, "object": 5, "any": 6}
    got = {}
    for row in _rows(_section("### 4.4 Commands"), "op"):
        fields = []
        if row[1] != "–":
            for part in row[1].split(", "):
                w = part.split()
                fields.append((w[0].strip("`"), kinds[w[1]], w[-1] == "R"))
        got[row[0].strip("`")] = tuple(fields)
    assert got == commands.OPS, got


def test_link_limits_are_the_documented_ones():
    from comms import link, net
    from comms.outbox import Outbox
    from mptest import fresh_dir
    flat = " ".join(DOC.split())
    ob = Outbox(fresh_dir("ob"))
    assert "holds %d segments of %d records (%d records" % (
        ob.max_segs, ob.seg_recs, ob.max_segs * ob.seg_recs) in flat
    assert "(up to %d records, under 900 bytes)" % link.BATCH_RECORDS in flat
    assert "at most %d downlink messages per burst" % link.MAX_INBOX in flat
    assert "Packets: at most %d bytes, fixed header included" % net.MAX_PACKET in flat
    assert "Only the first %d forgeries in a window (%d s of real time" % (
        link.SIG_ALLOWANCE, link.SIG_WINDOW_MS // 1000) in flat
    assert "at most %d h," % (link.SIG_WINDOW_MAX_MS // 3_600_000) in flat
    assert "Reconnects back off exponentially from %d s" % (link.BACKOFF_MIN_MS // 1000) in flat
    assert "`mqtt.backoff_max_s` (default %d s)" % config.DEFAULTS["mqtt"]["backoff_max_s"] in flat
    assert "(`mqtt.timeout_ms`, default %d)" % config.DEFAULTS["mqtt"]["timeout_ms"] in flat


def _layouts():
    """Every "| offset | type | field |" table of the document, in order, as
    (struct format, field names, offsets)."""
    codes_of = {"uint8": "B", "int8": "b", "uint16": "H", "uint32": "I", "uint64": "Q",
                "int64": "q", "bytes8": "8s"}
    out = []
    text = DOC
    while "\n| offset" in text:
        text = text[text.index("\n| offset") + 1:]
        fmt, names, offs = ">", [], []
        for row in _rows(text, "offset"):
            if row[1] not in codes_of:
                break                          # the ack's trailing JSON
            offs.append(int(row[0]))
            fmt += codes_of[row[1]]
            names.append(row[2])
        out.append((fmt, names, offs))
        text = text[1:]
    return out


def test_record_and_ack_layouts_are_the_codecs():
    import struct
    got = _layouts()
    want = [codec.FMT_TELE, codec.FMT_EVENT, codec.FMT_BATT, codec.FMT_SUMMARY, codec.FMT_ACK]
    assert [g[0] for g in got] == want, got
    for fmt, names, offs in got:
        # each offset is where the previous fields end
        for i in range(1, len(offs)):
            assert offs[i] == struct.calcsize(fmt[:i + 1]), (fmt, names[i])
    # the field names telemetry, events and summaries decode to
    for (fmt, names, _), kind in zip(got[:4], (codec.TELE, codec.EVENT, codec.BATT, codec.SUMMARY)):
        rec = codec.decode_record(struct.pack(fmt, kind, *([0] * (len(fmt) - 2))))[0]
        assert all(n in rec for n in names), (names, rec)
    assert "Sizes: telemetry %d, event %d, summary %d." % (
        codec.SIZES[codec.TELE], codec.SIZES[codec.EVENT], codec.SIZES[codec.SUMMARY]) in DOC
    assert "Battery records (kind 4): %d." % codec.SIZES[codec.BATT] in DOC


def test_topic_table_is_the_codecs():
    rows = _rows(_section("## 2. Topics"), "topic")
    listed = sorted(r[0].strip("`").replace("<id>", "M7").replace("<r>", "9") for r in rows)
    want = list(codec.topics("M7", 9).values())
    # the board's manifest topic, and the region's one that only the head-end
    # still feeds, for images before the board topics (docs/OTA.md §4)
    want += [codec.ota_topic(9, "<board>"), "r/9/ota"]
    assert listed == sorted(want), listed


def test_get_state_lists_every_field_the_meter_returns():
    from simkit import make_meter
    m, _hw = make_meter()
    text = _section("### 4.6")
    for key in m.snapshot():
        assert "`%s`" % key in text, "get state returns %r, which §4.6 does not name" % key


def test_time_bounds_and_their_years_agree():
    lo, hi = commands.TIME_MIN, commands.TIME_MAX - 1   # the doc gives the last second
    assert "`%d..%d` (2020 … 2099)" % (lo, hi) in DOC
    assert "2100" not in DOC, "the time range ends in 2099 (%d)" % hi
