# MicroPython side of bench/bench_ram.py: heap taken by importing each
# firmware module, in boot order, as "name bytes" lines.
import gc

MODULES = (
    "codes", "config", "timeutil", "ledger", "metering.tariff", "metering.billing",
    "metering.volume", "metering.pulses", "metering.detect", "metering.debt", "storage.state",
    "storage.eventlog", "storage.record", "valve.intent", "creditpolicy", "credit", "counters",
    "meter", "valve.controller", "card.records", "card.mfrc522",
    "card.mifare", "card.session", "comms.codec", "comms.outbox", "comms.commands", "comms.link",
    "techsession", "service", "main",
)
gc.collect()
last = gc.mem_alloc()
for name in MODULES:
    __import__(name)
    gc.collect()
    now = gc.mem_alloc()
    print(name, now - last)
    last = now
