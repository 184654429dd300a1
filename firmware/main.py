# Boot: board -> config -> stored state -> meter -> loop.
#
# On a board this file runs at power-up: boot() starts the meter on the
# board's thread and returns to the REPL. The simulator and the tests boot the
# unix board the same way, so they run exactly this code (docs/RUNTIME.md).
#
# The first statements close the serial console (docs/SECURITY.md, "Serial
# port, boot and technician access"). The port turns Ctrl-C on for main.py
# just before its first statement, and a Ctrl-C that ends main.py leaves the
# port at its REPL, where secrets.json and the state file are open to anyone.
# So Ctrl-C is masked before any import. On the chip a Ctrl-C that reached
# the UART before the mask is only pending (ports/esp32/uart.c): the VM
# raises it at the next jump, which is the loop inside _mask_ctrl_c(), inside
# the try below, so it is spent there. No jump comes before the mask, so at
# most one can be pending. A development meter turns Ctrl-C back on in
# boot() once it knows it is one.


def _mask_ctrl_c():
    import micropython
    micropython.kbd_intr(-1)
    for _ in (0, 1):   # a jump: the VM raises a pending KeyboardInterrupt here
        pass


try:
    _mask_ctrl_c()
except BaseException:  # noqa: BLE001 - a Ctrl-C from before the mask, spent
    try:
        _mask_ctrl_c()
    except BaseException:  # noqa: BLE001
        pass

try:
    import asyncio

    import codes
    import config
    from indicators import Indicators
    from meter import Meter
    from metering.detect import Detector
    from metering.pulses import CounterSource, IrqSource
    from storage.eventlog import EventLog
    from storage.state import StateStore
    from valve.controller import build_valve
    _import_error = None
except BaseException as _e:  # noqa: BLE001 - a broken deploy: see __main__ below
    _import_error = _e

FIRMWARE_VERSION = "0.1.0"


def pulse_source(hw, cfg):
    # The board decides: the ULP's count on a battery board, a hardware
    # counter where the chip has PCNT, else IRQs.
    if hw.ulp_ram is not None:
        from metering.ulpcount import UlpSource
        return UlpSource(hw.ulp_ram, hw.ulp_fresh)
    if hw.pulse_counter is not None:
        return CounterSource(hw.pulse_counter)
    return IrqSource(hw.pulse_pin, hw.pulse_trigger, hw.clock.ticks_us, hw.clock.ticks_diff,
                     cfg["debounce_us"], hw.direction_pin)


def _check_irq_rate(hw, meter):
    # a sensor faster than the IRQ path can follow loses pulses whenever the
    # scheduler is held (docs/RUNTIME.md): say so, once per boot
    lim = hw.irq_max_k
    num, den = meter.volume.k_num, meter.volume.k_den
    if hw.pulse_counter is None and hw.ulp_ram is None and lim is not None and num > lim * den:
        meter.log.add(codes.EV_CONFIG, codes.RANGE)
        print("K %d/%d pulses/L is above this board's IRQ limit of %d: pulses will be lost"
              " (docs/BOARDS.md)" % (num, den, lim))


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
        # the controller's step() runs inside meter.poll(), from the loop
        valve = build_valve(hw.valve_cfg, hw.valve_open_pin, hw.valve_close_pin, clock, log,
                            getattr(hw, "valve_fb_open_pin", None),
                            getattr(hw, "valve_fb_closed_pin", None))
    # a battery board watches its cell by the charge count (power.py), not
    # by the voltage: a LiSOCl2 cell's is flat, and each wake is a new boot
    detector = Detector(cfg, log, clock.time(), hw.tamper_pin,
                        hw.battery if hw.deepsleep is None else None, hw.sensor_pin)
    meter = Meter(cfg, clock, StateStore(hw.state_dir), log, pulse_source(hw, cfg), valve,
                  Indicators(hw.led, hw.buzzer), detector, history_dir=hw.state_dir)
    meter.persist_config = lambda: config.save(hw.state_dir, cfg)
    if hw.deepsleep is not None:
        from power import CellEstimate
        from window import Schedule
        meter.cell = CellEstimate(hw.battery, cfg["batt_low_mv"])   # restored with the state below
        detector.cell = meter.cell
        meter.window = Schedule()
    # a battery board's deep-sleep wakes are not power-ups; its power-on (a
    # cell put in, or pulled and put back) is arg 1, a CPU reset arg 2
    if hw.deepsleep is None:
        log.add(codes.EV_POWER_UP, 0)
    elif hw.wake_reason in ("power", "reset"):
        log.add(codes.EV_POWER_UP, 1 if hw.wake_reason == "power" else 2)
    if not meter.restore(_exists(hw.state_dir + "/secrets.json")):
        meter.save()
    attach_office(meter, hw)
    meter.reconcile_valve()
    if hw.power_fail_pin is not None:
        _arm_power_fail(hw, meter)
    _check_irq_rate(hw, meter)
    return meter


def _arm_power_fail(hw, meter):
    # A soft IRQ, as every ESP32 pin IRQ: on the main thread it takes the
    # ticker's hold like any caller from outside the meter's thread (it waits
    # for the slice in progress); on the meter's thread hold() is re-entrant
    # and it runs between two bytecodes of the slice. docs/VALVE.md "Power fail"
    from boards import ticker
    t = ticker.for_board(hw)

    def fall(_pin):
        with t.hold():
            meter.power_fail()

    pin = hw.power_fail_pin
    pin.irq(handler=fall, trigger=pin.IRQ_FALLING)


def _exists(path):
    import os
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def attach_office(meter, hw):
    """The office public keys from secrets.json (authority.py). None or bad
    keys give a meter that refuses every office-signed document, and says
    so in its log; metering goes on."""
    import keystore
    sec = keystore.load(hw.state_dir)
    if "office" not in sec:
        return
    import authority
    try:
        meter.attach_office(authority.load(sec, hw.test_build))
    except ValueError:
        meter.log.add(codes.EV_CONFIG, codes.SIGNATURE)


async def meter_task(meter, hw):
    period = meter.cfg["poll_ms"]
    fails = 0
    while True:
        try:
            meter.poll()
            fails = 0
        except Exception as e:  # noqa: BLE001 - metering must outlive any bug
            fails += 1
            if fails == 1:      # once per run of failures: a stuck bug must not fill the flash
                meter.log.add(codes.EV_INTERNAL, 1)     # never raises
                try:
                    print("meter poll error:", repr(e))
                except Exception:  # noqa: BLE001 - a MemoryError while reporting one
                    pass
        if hw.wdt is not None:
            hw.wdt.feed()
        await hw.clock.sleep_ms(period)


async def comms_task(link, hw, period_ms=200):
    # Paced on real time, not on the meter clock: the network runs at the
    # network's speed however fast the simulator runs the meter.
    while True:
        try:
            link.step()
        except Exception as e:  # noqa: BLE001 - the link must not stop the loop
            print("comms error:", repr(e))
        await asyncio.sleep_ms(period_ms)


def attach_card(meter, hw, secrets):
    """The card reader's session, or None. A board without a reader, a meter
    not provisioned with card keys, or keys refused (test keys outside a
    test build) give a meter without cards, never a meter that stops."""
    if hw.card_spi is None:
        return None
    if "card" not in secrets:
        # a reader but no card keys: say so, or the meter just ignores cards
        print("card reader off: secrets.json has no \"card\" keys (cardtool.py meter-secret)")
        return None
    import card
    from card.keys import MeterKeys
    try:
        keys = MeterKeys.from_secrets(secrets["card"], hw.test_build, meter.cfg["meter_id"])
    except (ValueError, KeyError, TypeError) as e:
        print("card reader off: card keys refused:", e)
        meter.log.add(codes.EV_CARD_REJECTED, codes.KEY_EXPIRED)
        return None
    session = card.attach(hw, meter, keys)
    if session is None:
        meter.log.add(codes.EV_CARD_REJECTED, codes.TIMEOUT)   # no reader answers
    return session


async def card_task(session, meter, hw, period_ms=250, display=None):
    from card.records import CARD_USER
    while True:
        try:
            since = meter.log.seq
            code = session.poll()
            # a user tapping their card is there to see the water come back:
            # the tap confirms reopening after a top-up
            if code in (codes.ACCEPTED, codes.USED) and session.last[1] == CARD_USER:
                meter.confirm()
            if code is not None and display is not None:
                display.tap(code, since)   # drawn now: the tap's result within 200 ms
        except Exception as e:  # noqa: BLE001 - a card must never stop the loop
            print("card error:", repr(e))
        await hw.clock.sleep_ms(period_ms)


async def button_task(meter, hw, period_ms=50, display=None):
    # short press: confirms a reopening when one is awaited, else (with a
    # display) wakes it or shows the next page; long press: emergency credit
    from button import Button, SHORT, LONG
    b = Button(hw.button, hw.clock)
    while True:
        press = b.poll()
        try:
            if press == SHORT:
                if display is None:
                    meter.confirm()
                elif meter.awaiting_confirm and meter.confirm() == codes.ACCEPTED:
                    display.confirmed()
                else:
                    display.press()
            elif press == LONG:
                code = meter.request_emergency()
                if display is not None:
                    display.emergency(code)
        except Exception as e:  # noqa: BLE001 - the button must never stop the loop
            print("button error:", repr(e))
        await hw.clock.sleep_ms(period_ms)


async def display_task(display, hw):
    from display.ui import REFRESH_MS
    while True:
        try:
            display.step()
        except Exception as e:  # noqa: BLE001 - a display fault must not stop the loop
            print("display error:", repr(e))
        await hw.clock.sleep_ms(REFRESH_MS)


def attach_display(meter, hw):
    """The customer's display on the board's screen, or None."""
    if getattr(hw, "display", None) is None:
        return None
    import display
    return display.attach(hw, meter)


def user_tasks(meter, hw, session, display=None):
    """The tasks of the customer's side: the card reader, the button and
    the display."""
    tasks = []
    if session is not None:
        tasks.append(card_task(session, meter, hw, display=display))
    if hw.button is not None:
        tasks.append(button_task(meter, hw, display=display))
    if display is not None:
        tasks.append(display_task(display, hw))
    return tasks


def attach_ota(meter, hw, link, board_name):
    """Firmware updates over the link (docs/OTA.md): resumes an update a
    reset interrupted, or runs the new image's trial. A failure here leaves
    a meter without updates, never one that stops."""
    try:
        import ota
        return ota.attach(meter, hw, link, board_name)
    except Exception as e:  # noqa: BLE001
        print("OTA not started: %r" % e)
        return None


def make_link(meter, hw):
    # keys, broker credentials and CA come from <state_dir>/secrets.json
    from comms.link import build_link
    return build_link(meter, hw)


def spawn(meter, hw, link=None, extra=()):
    """Create the firmware's tasks without running the loop: the service
    session's tick then drives it on the board's ticker thread
    (docs/RUNTIME.md)."""
    tasks = [asyncio.create_task(meter_task(meter, hw))]
    if link is not None:
        tasks.append(asyncio.create_task(comms_task(link, hw)))
    for coro in extra:
        tasks.append(asyncio.create_task(coro))
    return tasks


def read_board_txt(path="board.txt"):
    """board.txt: the board name on line 1, then key=value options
    (integers where they parse, "a,b" a tuple; pin.<role>=<gpio> overrides
    the pin map, pin.<role>=none takes the role off it)."""
    name, opts = "esp32_devkitc", {}
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f.read().split("\n")]
    except OSError:
        return name, opts
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines:
        name = lines[0]
    for ln in lines[1:]:
        k, _, v = ln.partition("=")
        k, v = k.strip(), v.strip()
        try:
            v = tuple(int(x) for x in v.split(",")) if "," in v else int(v)
        except ValueError:
            pass
        if k.startswith("pin."):
            # none: the part is not fitted (or its GPIO is wanted elsewhere)
            opts.setdefault("pins", {})[k[4:]] = None if v == "none" else v
        else:
            opts[k] = v
    return name, opts


_last_step = None


def _step(name):
    # boot progress on the console: where a boot stops, for the technician
    global _last_step
    _last_step = name
    print("boot:", name)


def boot(board_name, ready=None, **board_opts):
    """Power-up: validate the board, build the meter, start its tasks on
    the board's ticker thread (the same on every boot).
    Development: return with the meter running behind the REPL prompt.
    Production: keep the main thread in the gate, Ctrl-C masked and the
    REPL closed, until an office-signed service token opens it
    (service.Session.gate); the meter runs on its thread meanwhile.
    Returns the service session, or None (development only). A board or
    state that cannot run gives a clear message and a safe state: in
    development the prompt, in production never (hold_closed).
    ready(session), when given, runs before the meter's thread starts: the
    simulator attaches its displays there, so it misses no event."""
    import micropython
    hw = None
    meter = None
    production = True   # until config and secrets say otherwise: fail closed
    try:
        _step("board " + board_name)
        import boards
        import keystore
        import service
        from boards import validate
        state_dir = board_opts.get("state_dir", "/data")
        sec = keystore.load(state_dir)
        cfg = config.load(state_dir)
        production = service.is_production(cfg, sec)
        if not production:
            micropython.kbd_intr(3)   # development: Ctrl-C interrupts the boot, as always
        mod = boards.load(board_name)
        err = validate.check_module(mod, board_opts.get("pins"))
        if err:
            print("BOARD CONFIG ERROR (%s):" % board_name)
            for e in err:
                print("  " + e)
            print("Meter NOT started; outputs left undriven. Fix board.txt, then reboot.")
            service.boot_failure = "board config (%s): %s" % (board_name, "; ".join(err))
            if production:
                hold_closed(None, None, "board config")
            return None
        w = sec.get("wifi")
        if getattr(mod, "HAS_WIFI", False) and "wifi" not in board_opts:
            if isinstance(w, dict) and isinstance(w.get("ssid", ""), str) and isinstance(w.get("pw", ""), str):
                board_opts["wifi"] = (w.get("ssid", ""), w.get("pw", ""))
            elif w is not None:
                print("secrets.json: 'wifi' is not {ssid, pw}; starting without Wi-Fi")
        hw = mod.build(**board_opts)
        _step("meter")
        meter = assemble(hw, cfg)
        if hw.deepsleep is not None:
            # a battery board: at a power-on the service mode if the serial
            # line asks (batservice.py), else one wake's work (its reporting
            # window when one is due), then deep sleep (docs/BATTERY.md)
            import batservice
            import wake
            s = batservice.offer(meter, hw, production, FIRMWARE_VERSION)
            if s is not None:
                return s
            return wake.cycle(meter, hw, make_link, attach_card(meter, hw, sec), board_name)
        _step("link")
        link = None
        try:
            link = make_link(meter, hw)
        except Exception as e:  # noqa: BLE001 - no MQTT is a degraded meter, not a dead one
            print("MQTT link not started: %r" % e)
        if hw.partitions is not None:
            _step("ota")
            attach_ota(meter, hw, link, board_name)   # no link: a trial fails at once
        _step("cards")
        session = attach_card(meter, hw, sec)
        _step("display")
        display = attach_display(meter, hw)
        spawn(meter, hw, link, user_tasks(meter, hw, session, display))
        s = service.attach(meter, hw, link, FIRMWARE_VERSION)
        s.cards = session
        s.display = display
        if ready is not None:
            ready(s)
        s.background()          # the meter's thread, on every boot (docs/RUNTIME.md)
        if production:
            _step("gate")
            s.gate()            # the main thread reads the serial line, nothing else
        # one write, newline included: the meter's thread is printing already
        print("meter %s running; the REPL is free. help() lists the service commands.\n"
              % meter.cfg["meter_id"], end="")
        return s
    except BaseException as e:  # noqa: BLE001 - never a crash loop, never an open prompt
        if production:
            hold_closed(hw, meter, repr(e))
        if not isinstance(e, Exception):
            raise               # development: Ctrl-C at boot gives the prompt, as always
        import sys
        print("METER FAILED TO START:")
        sys.print_exception(e)
        try:
            import service
            service.boot_failure = "%s at step %r (board %s; board.txt names the board)" % (
                repr(e), _last_step, board_name)
        except ImportError:
            pass
        if hw is not None and hw.wdt is not None:
            from boards import ticker
            ticker.for_board(hw).start(hw.wdt.feed, 1000)
        print("Safe state: metering stopped, watchdog fed. Call a technician.")
        return None


def hold_closed(hw, meter, why):
    """A production boot that failed: never the prompt, never returns. Where
    a meter was built it runs on the board's ticker thread, as on every boot,
    with its loop alone (its meter task keeps the valve policy and feeds the
    watchdog); else the watchdog is fed and the outputs stay undriven. The
    main thread only waits here, Ctrl-C masked. Every failure in here is
    caught and the wait goes on."""
    import micropython
    import time
    micropython.kbd_intr(-1)
    print("METER FAILED TO START (production): %s" % why)
    print("REPL closed. %s. Call a technician." % (
        "Metering goes on" if meter is not None else "Metering stopped, outputs undriven"))
    feed = hw is not None and hw.wdt is not None
    if meter is not None:
        try:
            _meter_alone(meter, hw)
            feed = False            # the meter task feeds it
        except BaseException:  # noqa: BLE001 - then at least the watchdog, from here
            pass
    while True:
        try:
            if feed:
                hw.wdt.feed()
            time.sleep_ms(1000)
        except BaseException:  # noqa: BLE001
            pass


def _meter_alone(meter, hw):
    # the meter task alone on a fresh loop, not what failed; on the thread
    # that already runs (a failure after background()) or on a new one
    from boards import ticker as tk
    t = tk.for_board(hw)
    t.unmask = False
    with t.hold():
        asyncio.new_event_loop()
        asyncio.create_task(meter_task(meter, hw))
    if not t.running:
        t.start(_one_slice, 25)


async def _zero():
    await asyncio.sleep_ms(0)


def _one_slice():
    asyncio.run(_zero())     # every due task once, as Session.tick


def _provisioned(path="board.txt"):
    # without the app's modules nothing can be read properly: a meter that
    # has its secrets file is treated as a production meter (fail closed)
    sd = "/data"
    try:
        with open(path) as f:
            for ln in f.read().split("\n"):
                if ln.startswith("state_dir="):
                    sd = ln[10:].strip()
        with open(sd + "/secrets.json"):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    if _import_error is not None:
        print("METER APP BROKEN: %r" % _import_error)
        if _provisioned():
            hold_closed(None, None, "import")
    else:
        _board, _opts = read_board_txt()
        _session = boot(_board, **_opts)
        from service import *  # noqa: F401,F403 - the technician's commands at the prompt
