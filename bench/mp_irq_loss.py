# Pulses lost on an IRQ-counting board, in the unix port: the firmware's own
# IrqSource on the unix board's flow model and soft-IRQ queue model
# (boards/unix/softirq.py), through timelines of the steps that hold the
# ESP32 port's scheduler. bench/bench_irq_loss.py measures the host figures
# and runs this:
#
#   micropython -X heapsize=512K bench/mp_irq_loss.py TLS_PORT CA_DER_FILE REFUSED_PORT
#
# First it measures, on this host: a TLS client handshake against the
# bench's local server (OpenSSL, P-256 certificate), a GC pass over a heap
# holding an assembled meter, and a connect() to a port nobody listens on.
# Prints one JSON document: those figures, the projected hold of each step,
# and for each scenario, board and K the pulses the sensor gave and the
# meter counted.
import gc
import json
import socket
import sys
import time

import boards
import main
from mptest import fresh_dir

Q3_LPH = const(2500)         # DN15 residential meter: Q3 = 2.5 m3/h
KS = (1, 3, 10, 100, 450)    # 3: the C3's limit (docs/BOARDS.md)

# --- what a step holds the scheduler for, on a 240 MHz ESP32 -------------
# Projections, not measurements (no board here); bench_irq_loss.py says how.
C_RATIO = 25                 # host -> ESP32 @ 240 MHz for compiled C, upper end of 15-25
TLS_CALLS = 3                # docs/LINK.md: the handshake's CPU in one call per server record
TLS_CALL_ESP32_US = 200_000  # docs/LINK.md: about 2 P-256 scalar mults per call at ~100 ms
TLS_CALL_ESP32_HIGH_US = 333_333   # the top of its estimate, 1.0 s in all
C3_SLOWER_X10 = 15           # the C3 runs the same code at 160 MHz: x1.5
ERASE_US = 45_000            # 4 KB sector erase, typical (Winbond W25Q32JV: 45 ms, max 400 ms)
SAVE_EVERY_MS = 14_400       # a state save every 10 L (config save_l) at Q3
GC_EVERY_MS = 10_000         # assumed: one collection every 10 s of a busy link
SLICE_HOLD_US = 50_000       # a link step at its bound (docs/LINK.md), for the timer model
COMMS_PERIOD_MS = 200        # main.comms_task
SPAN_MS = 60_000             # each timeline: one minute of Q3 flow


def holds(tls_host, gc_host, conn_host):
    h = {
        "tls": TLS_CALL_ESP32_US,
        "tls_high": max(TLS_CALL_ESP32_HIGH_US, tls_host * C_RATIO // TLS_CALLS),
        "gc": gc_host * C_RATIO,
        "connect": conn_host * C_RATIO,
        "erase": ERASE_US,
    }
    c3 = {}
    for k, v in h.items():
        c3[k] = v if k == "erase" else v * C3_SLOWER_X10 // 10
    return h, c3


def timeline(name, h):
    """(at_ms, kind, us) steps of one scenario; kind 'cpu' holds the queue,
    'flash' also defers the GPIO interrupt. Every scenario has the saves
    and collections a flowing meter makes."""
    span = SPAN_MS
    ev = []
    for t in range(SAVE_EVERY_MS, span, SAVE_EVERY_MS):
        ev.append((t, "flash", h["erase"]))
    for t in range(GC_EVERY_MS // 2, span, GC_EVERY_MS):
        ev.append((t, "cpu", h["gc"]))
    if name == "outage":
        t, b = 500, 1000         # connect attempts to a dead broker, backoff doubling
        while t < span:
            ev.append((t, "cpu", h["connect"]))
            t, b = t + b, b * 2
    elif name == "reconnect":
        ev.append((2_000, "cpu", h["connect"]))
    elif name in ("tls", "tls-high"):
        ev.append((2_000, "cpu", h["connect"]))
        for i in range(TLS_CALLS):   # the link's steps, one comms period apart
            ev.append((2_050 + i * COMMS_PERIOD_MS, "cpu", h["tls" if name == "tls" else "tls_high"]))
    elif name == "timer-model":
        # the rejected design: each slice is a soft callback, so a link step
        # at its 50 ms bound holds the queue every comms period
        for t in range(100, span, COMMS_PERIOD_MS):
            ev.append((t, "cpu", SLICE_HOLD_US))
    ev.sort()
    return span, ev


def run(name, h, k, pulse):
    hw = boards.load("unix").build(state_dir=fresh_dir("irq"), k=(k, 1), pulse=pulse,
                                   valve_open=True)
    src = main.pulse_source(hw, {"debounce_us": 0})
    clock, irq, flow = hw.clock, hw.world.softirq, hw.world.flow
    span, ev = timeline(name, h)
    flow.set_rate_lph(Q3_LPH)
    counted = 0
    for at, kind, us in ev:
        clock.advance_us(at * 1000 - clock.now_us())   # idle: edges run at once
        if kind == "flash":
            irq.flash_op(clock, us)
        else:
            irq.cpu_bound(clock, us)
        counted += src.take()
    clock.advance_us(span * 1000 - clock.now_us())
    flow.set_rate_lph(0)
    clock.advance(100)
    counted += src.take()
    longest = {"cpu": 0, "flash": 0}
    for _, kind, us in ev:
        longest[kind] = max(longest[kind], us)
    return {"scenario": name, "k": k, "pulse": pulse, "emitted": flow.emitted,
            "counted": counted, "dropped": irq.dropped, "coalesced": irq.coalesced,
            "longest_cpu_us": longest["cpu"], "longest_flash_us": longest["flash"]}


def _best_us(fn, n=5):
    best = None
    for _ in range(n):
        t = time.ticks_us()
        fn()
        d = time.ticks_diff(time.ticks_us(), t)
        best = d if best is None or d < best else best
    return best


def measure_tls(port, cadata):
    import ssl                 # as the unix board's HostNet.wrap_tls, handshake in one call
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    setattr(ctx, "verify_mode", ssl.CERT_REQUIRED)
    ctx.load_verify_locations(cadata=cadata)
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
    done = []

    def one():
        s = socket.socket()
        s.connect(addr)
        done.append(ctx.wrap_socket(s, server_hostname="localhost"))
    best = None
    for _ in range(5):
        t = _best_us(one, 1)
        done.pop().close()       # the server serves one connection at a time
        best = t if best is None or t < best else best
    return best


def measure_gc():
    from simkit import make_meter
    keep = make_meter()        # a live meter in the heap, as on the device
    t = _best_us(gc.collect)
    del keep
    return t


def measure_refused_connect(port):
    addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]

    def one():
        s = socket.socket()
        try:
            s.connect(addr)
        except OSError:
            pass                 # refused, as a broker that is down refuses
        s.close()
    return _best_us(one)


def main_():
    port, refused = int(sys.argv[1]), int(sys.argv[3])
    with open(sys.argv[2], "rb") as f:
        cadata = f.read()
    tls_host, gc_host = measure_tls(port, cadata), measure_gc()
    conn_host = measure_refused_connect(refused)
    h, c3 = holds(tls_host, gc_host, conn_host)
    rows = []
    for name in ("outage", "reconnect", "tls", "tls-high", "timer-model"):
        for k in KS:
            rows.append(run(name, c3, k, "irq"))       # ESP32-C3: Pin.irq
            rows.append(run(name, h, k, "counter"))    # ESP32 / S3: PCNT
            gc.collect()
    print(json.dumps({"host_us": {"tls": tls_host, "gc": gc_host, "connect": conn_host},
                      "holds_esp32_us": h, "holds_c3_us": c3, "q3_lph": Q3_LPH,
                      "rows": rows}))


main_()
