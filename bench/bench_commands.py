# Command parsing cost (comms/commands.py): the duplicate-key scan and the
# field checks against json.loads of the same body, for a typical command
# and for the largest body the meter takes (1024-byte payload), as ratios
# measured in this run, plus the heap one parse allocates.
#
#   MICROPYPATH=.frozen:firmware:.:tests/mp:build/lib .venv/bin/micropython bench/bench_commands.py
import gc
import json
import time

from comms import codec
from comms.commands import check_envelope, check_fields, duplicate_keys, parse_body

ROUNDS = 200


def _us(fn, arg):
    t0 = time.ticks_us()
    for _ in range(ROUNDS):
        fn(arg)
    return time.ticks_diff(time.ticks_us(), t0) / ROUNDS


def _alloc(fn, arg):
    gc.collect()
    before = gc.mem_alloc()
    fn(arg)
    return gc.mem_alloc() - before


def _checked(body):
    code, d = parse_body(body)
    return check_envelope(d), check_fields(d["op"], d)


topup = codec.command(42, "topup", a=1, s=17, v=5_000_000, x=1767600000)
dates = ["%02d-%02d" % (1 + i % 12, 1 + i % 28) for i in range(24)]
big = codec.command(43, "cfg", k="friendly_dates", v=dates)
big = big[:-1] + b',"x":0' + b" " * (codec.MAX_DOWNLINK - codec.MAC_HEX - 1 - len(big) - 6) + b"}"
for name, body in (("topup", topup), ("largest", big)):
    load = _us(json.loads, body)
    scan = _us(duplicate_keys, body)
    full = _us(_checked, body)
    print("%-8s %4d B  json.loads %6.0f us  duplicate scan %.2f x  parse+checks %.2f x  heap %d B" % (
        name, len(body), load, scan / load, full / load, _alloc(_checked, body)))
