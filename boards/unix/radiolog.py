# What a battery meter's reporting windows did, for the simulator, the
# power bench and the tests: wraps window.run once and records each window
# from the firmware's own link (bytes through the socket, sessions,
# messages) and window.run's own on-time. Nothing of it is modelled.
import window

windows = []           # one dict per window, oldest first
_run = None


def install():
    global _run
    if _run is not None:
        return
    _run = window.run

    def logged(meter, hw, link, ota=None):
        t = meter.clock.time()
        t0 = hw.clock.ticks_ms()
        reset = True
        try:
            ok, on_ms = _run(meter, hw, link, ota)
            reset = False
        except BaseException:
            # the chip reset inside the window (an update's switch): what it
            # did until then; settled as the link stood at the reset
            ok, on_ms = link.settled(), hw.clock.ticks_diff(hw.clock.ticks_ms(), t0)
            raise
        finally:
            tr = link.transport
            windows.append({"t": t, "ok": ok, "on_ms": on_ms, "tx": tr.tx if tr else 0,
                            "rx": tr.rx if tr else 0, "sessions": link.connects,
                            "attempts": link.connects + link.failures, "sent": link.sent,
                            "received": link.received, "reset": reset})
        return ok, on_ms
    window.run = logged
