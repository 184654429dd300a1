# Boot: board -> config -> stored state -> meter -> loop.
#
# On a board this file runs at power-up. The simulator and the tests call
# assemble() and run() with the unix board, so they run exactly this code.
import asyncio

import codes
import config
from indicators import Indicators
from meter import Meter
from metering.pulses import CounterSource, IrqSource
from storage.eventlog import EventLog
from storage.state import StateStore
from valve.latching import LatchingValve

FIRMWARE_VERSION = "0.1.0"


def pulse_source(hw, cfg):
    # The board decides: a hardware counter where the chip has PCNT, else IRQs.
    if hw.pulse_counter is not None:
        return CounterSource(hw.pulse_counter)
    return IrqSource(hw.pulse_pin, hw.pulse_trigger, hw.clock.ticks_us, hw.clock.ticks_diff,
                     cfg["debounce_us"])


def assemble(hw, cfg=None):
    """Build the meter from a board's hardware and restore its state."""
    if cfg is None:
        cfg = config.load(hw.state_dir)
    clock = hw.clock
    log = EventLog(hw.state_dir, clock)
    if "_error" in cfg:
        log.add(codes.EV_CONFIG, codes.FORMAT)
    valve = None
    if hw.valve_open_pin is not None:
        valve = LatchingValve(hw.valve_open_pin, hw.valve_close_pin, clock,
                              hw.valve_cfg.get("pulse_ms", 50))
    meter = Meter(cfg, clock, StateStore(hw.state_dir), log, pulse_source(hw, cfg), valve,
                  Indicators(hw.led, hw.buzzer))
    log.add(codes.EV_POWER_UP, 0)
    if not meter.restore():
        meter.save()
    meter.reconcile_valve()
    return meter


async def meter_task(meter, hw):
    period = meter.cfg["poll_ms"]
    while True:
        try:
            meter.poll()
        except Exception as e:  # noqa: BLE001 - metering must outlive any bug
            meter.log.add(codes.EV_SENSOR_FAULT, 0)
            print("meter poll error:", repr(e))
        if hw.wdt is not None:
            hw.wdt.feed()
        await hw.clock.sleep_ms(period)


async def comms_task(link, hw, period_ms=200):
    while True:
        link.step()
        await hw.clock.sleep_ms(period_ms)


def umqtt_factory(client_id, host, port, keepalive):
    from umqtt.simple import MQTTClient
    return MQTTClient(client_id, host, port, keepalive=keepalive)


def make_link(meter, hw, region_key=None):
    from comms.link import MqttLink
    return MqttLink(meter.cfg, meter, hw.net, hw.clock, umqtt_factory, region_key)


async def run(meter, hw, link=None, extra=()):
    tasks = [asyncio.create_task(meter_task(meter, hw))]
    if link is not None:
        tasks.append(asyncio.create_task(comms_task(link, hw)))
    for coro in extra:
        tasks.append(asyncio.create_task(coro))
    await asyncio.gather(*tasks)


def start(board_name, **board_opts):
    import boards
    hw = boards.load(board_name).build(**board_opts)
    meter = assemble(hw)
    asyncio.run(run(meter, hw, make_link(meter, hw)))


if __name__ == "__main__":
    try:
        with open("board.txt") as f:
            name = f.read().strip()
    except OSError:
        name = "esp32_devkitc"
    start(name)
