# Detection: leak, burst, flow while closed, tamper, low battery, sensor cable.
#
# The detector only watches and reports; the meter owns the valve and decides
# what to do with a finding (config: *_close). Each finding raises its event
# once per episode, not once per poll, so a leak does not flood the log.
import codes

# findings, as bits of Detector.active
LEAK = const(1)
BURST = const(2)
FLOW_CLOSED = const(4)
TAMPER = const(8)
BATTERY_LOW = const(16)
BATTERY_CUT = const(32)     # low for longer than the grace period
SENSOR = const(64)

_EVENTS = (
    (LEAK, codes.EV_LEAK), (BURST, codes.EV_BURST), (FLOW_CLOSED, codes.EV_FLOW_WHILE_CLOSED),
    (TAMPER, codes.EV_TAMPER), (BATTERY_LOW, codes.EV_LOW_BATTERY),
    (BATTERY_CUT, codes.EV_LOW_BATTERY), (SENSOR, codes.EV_SENSOR_FAULT),
)


class Detector:
    def __init__(self, cfg, log, now, tamper_pin=None, battery=None, sensor_pin=None):
        self.cfg = cfg
        self.log = log
        self._tamper = tamper_pin
        self._battery = battery
        self._sensor = sensor_pin
        self.active = 0
        self._last_pulse_t = now
        self._last_gap_t = now      # end of the last zero-flow gap long enough to rule out a leak
        self._win_t = now
        self._win_ml = None          # set at the first step: the register may not start at 0
        self._burst_since = None
        self._closed_ml = None      # volume when the valve was last seen seated
        self._batt_low_since = None
        self.cell = None            # battery boards: power.CellEstimate, the charge count

    def restart(self, now, ml):
        """After a restore: windows start from the restored register."""
        self._win_t = now
        self._win_ml = ml
        self._closed_ml = None
        self._last_pulse_t = now
        self._last_gap_t = now

    def _raise(self, bit, arg=0):
        if not self.active & bit:
            self.active |= bit
            for b, ev in _EVENTS:
                if b == bit:
                    self.log.add(ev, arg)

    def _clear(self, bit):
        self.active &= ~bit

    def step(self, now, ml, new_ml, valve_should_be_closed):
        c = self.cfg
        # leak: no zero-flow gap of leak_gap_s within leak_window_s
        if new_ml:
            if now - self._last_pulse_t >= c["leak_gap_s"]:
                self._last_gap_t = now
            self._last_pulse_t = now
        elif now - self._last_pulse_t >= c["leak_gap_s"]:
            self._last_gap_t = now
            self._clear(LEAK)
        if c["leak_window_s"] and now - self._last_gap_t >= c["leak_window_s"]:
            self._raise(LEAK, c["leak_window_s"] // 3600)
        # burst: flow above burst_lph sustained over burst_s
        if self._win_ml is None:
            self._win_ml = ml
            self._win_t = now
        elif now - self._win_t >= c["burst_s"]:
            lph = (ml - self._win_ml) * 3600 // (1000 * (now - self._win_t))
            if c["burst_lph"] and lph > c["burst_lph"]:
                self._raise(BURST, lph)
            else:
                self._clear(BURST)
            self._win_t = now
            self._win_ml = ml
        # flow while the valve should be shut: more than the close overshoot
        if valve_should_be_closed:
            if self._closed_ml is None:
                self._closed_ml = ml
            elif ml - self._closed_ml > c["closed_flow_ml"]:
                self._raise(FLOW_CLOSED, ml - self._closed_ml)
        else:
            self._closed_ml = None
            self._clear(FLOW_CLOSED)
        # tamper inputs are active low (switch to ground, pull-up)
        if self._tamper is not None:
            if self._tamper.value() == 0:
                self._raise(TAMPER, 1)
            else:
                self._clear(TAMPER)
        # sensor cable loop: high when the loop is open
        if self._sensor is not None:
            if self._sensor.value():
                self._raise(SENSOR, 1)
            else:
                self._clear(SENSOR)
        if self._battery is not None:
            self._check_battery(now)
        if self.cell is not None:
            self.active |= self.cell.findings(self.log)

    def _check_battery(self, now):
        c = self.cfg
        try:
            mv = self._battery.millivolts()
        except (OSError, ValueError):
            return    # a failing ADC read must not stop the credit policy
        if mv < c["batt_low_mv"]:
            if self._batt_low_since is None:
                self._batt_low_since = now
            self._raise(BATTERY_LOW, mv)
            if now - self._batt_low_since >= c["batt_grace_s"]:
                self._raise(BATTERY_CUT, mv)
        elif mv >= c["batt_low_mv"] + c["batt_hyst_mv"]:
            self._batt_low_since = None
            self._clear(BATTERY_LOW)
            self._clear(BATTERY_CUT)
