# The valve controller: the one object the meter drives.
#
#   open(), close()    new intent; the actuation starts at once (the coil pulse
#                      or the motor start happens inside the call)
#   position           OPEN / CLOSED / MOVING / UNKNOWN (after a failed round)
#   step(now, hour, still_s)   from the meter loop: feedback checks, retries,
#                      backoff, uncommanded-movement watch, exercise
#   reconcile(goal)    at boot: drive only if the feedback does not show goal
#   exercise()         close/open (or open/close) cycle, now
#
# After each actuation the feedback is checked; a mismatch is actuated again,
# up to cfg["retries"] times. Then the round has failed: EV_VALVE_FAULT, the
# position becomes UNKNOWN, and the controller keeps retrying the same goal
# after a backoff that doubles from backoff_s to backoff_max_s: a valve that
# will not close is never given up on, nor one that will not reopen. Without
# feedback every actuation is taken as done once the driver has finished.
import codes
from valve import (POSITION_UNKNOWN, POSITION_CLOSED, POSITION_OPEN, POSITION_MOVING,
                   VF_CLEARED, VF_NOT_OPEN, VF_NOT_CLOSED, VF_FEEDBACK,
                   EX_START, EX_DONE, EX_STUCK, EX_REOPEN, config)
from valve.feedback import Feedback
from valve.latching import LatchingValve
from valve.motor import MotorValve

_IDLE = const(0)
_ACT = const(1)     # the driver is actuating; check the feedback when it is done
_WAIT = const(2)    # a round failed; retry at self._t


class ValveController:
    def __init__(self, driver, feedback, clock, cfg, log=None):
        self.driver = driver
        self.feedback = feedback
        self.clock = clock
        self.log = log
        self.retries = cfg["retries"]
        self.backoff_ms = cfg["backoff_s"] * 1000
        self.backoff_max_ms = cfg["backoff_max_s"] * 1000
        self.exercise_s = cfg["exercise_days"] * 86400
        self.exercise_hour = cfg["exercise_hour"]
        self.quiet_s = cfg["quiet_s"]
        self.exercise_closed = cfg["exercise_closed"]
        self.target = POSITION_UNKNOWN   # the intent: what the meter asked for last
        self.position = POSITION_UNKNOWN
        self.fault = 0                   # VF_* of the fault in force, 0 if none
        self.last_move = 0               # wall seconds of the last actuation (persisted by the meter)
        self.dirty = False               # an exercise finished: the meter should save
        self.exercising = 0              # 0 no, 1 going to the far end, 2 coming back
        self.exercise_result = EX_DONE
        self.actuations = 0
        self.rounds = 0                  # failed rounds toward the current goal
        self._state = _IDLE
        self._goal = POSITION_UNKNOWN
        self._attempts = 0
        self._t = 0
        self._odd = 0                    # idle reads that disagree with position

    # ---------------- what the meter calls ----------------
    def open(self):
        return self._command(POSITION_OPEN)

    def close(self):
        return self._command(POSITION_CLOSED)

    def _command(self, goal):
        self.target = goal
        self.exercising = 0
        self.rounds = 0
        self._attempts = 0
        if self._state == _IDLE and self.position == goal and self.feedback.present \
                and self.feedback.read() == goal:
            return True  # confirmed there already: no needless movement
        self._begin(goal)
        return True

    @property
    def busy(self):
        return self._state != _IDLE

    def reconcile(self, goal):
        """At boot: take goal as the intent; actuate only if the feedback
        does not already show it. Returns True if the valve is driven."""
        self.target = goal
        fb = self.feedback.read()
        if fb == goal:
            self.position = goal
            return False
        self._attempts = 0
        self._begin(goal)
        return True

    def exercise(self):
        """Start a cycle away from the intent and back. False if busy."""
        if self._state != _IDLE or self.target == POSITION_UNKNOWN:
            return False
        self._log(codes.EV_VALVE_EXERCISE, EX_START)
        self.exercising = 1
        self.exercise_result = EX_DONE
        self._attempts = 0
        self._begin(POSITION_CLOSED if self.target == POSITION_OPEN else POSITION_OPEN)
        return True

    def exercise_due(self, now):
        """Has the valve stood still long enough to need exercising?"""
        return (self.exercise_s > 0 and self._state == _IDLE and not self.fault
                and now - self.last_move >= self.exercise_s
                and (self.target == POSITION_OPEN or
                     (self.exercise_closed and self.target == POSITION_CLOSED)))

    def step(self, now=0, hour=-1, still_s=0):
        """From the meter loop. now: wall seconds; hour: local hour (or -1);
        still_s: seconds since the last flow pulse."""
        st = self._state
        if st == _ACT:
            if self.driver.poll():
                self._check()
        elif st == _WAIT:
            if self.feedback.read() == self._goal:
                self._confirmed()          # it got there after all (freed, or moved by hand)
            elif self.clock.ticks_diff(self.clock.ticks_ms(), self._t) >= 0:
                self._attempts = 0
                self._begin(self._goal)
        else:
            self._watch()
            if (self._state == _IDLE and hour == self.exercise_hour and still_s >= self.quiet_s
                    and self.exercise_due(now)):
                self.exercise()

    # ---------------- inside ----------------
    def _log(self, code, arg):
        if self.log is not None:
            self.log.add(code, arg)

    def _begin(self, goal):
        self._goal = goal
        self._attempts += 1
        self._state = _ACT
        self.position = POSITION_MOVING
        self.actuations += 1
        self.last_move = self.clock.time()
        self.driver.start(goal)

    def _check(self):
        fb = self.feedback.read()
        if fb is None or fb == self._goal:
            self._confirmed()
            return
        if self._attempts <= self.retries:
            self._begin(self._goal)
            return
        # the round failed
        self.position = POSITION_UNKNOWN
        if self.feedback.conflict():
            vf = VF_FEEDBACK
        else:
            vf = VF_NOT_OPEN if self._goal == POSITION_OPEN else VF_NOT_CLOSED
        self.fault = vf
        self.rounds += 1
        r = self.rounds
        if r & (r - 1) == 0:
            self._log(codes.EV_VALVE_FAULT, vf + 256 * (r if r < 255 else 255))
        if self.exercising == 1:
            # the far end was not reached: report it, and go back at once
            self.exercise_result = EX_STUCK
            self._log(codes.EV_VALVE_EXERCISE, EX_STUCK)
            self.exercising = 2
            self.rounds = 0
            self._attempts = 0
            self._begin(self.target)
            return
        if self.exercising == 2:
            # could not return to the intent: alarm, and retry like any other
            self.exercising = 0
            self._log(codes.EV_VALVE_EXERCISE, EX_REOPEN)
        delay = self.backoff_ms << (r - 1 if r < 16 else 15)
        if delay > self.backoff_max_ms:
            delay = self.backoff_max_ms
        self._t = self.clock.ticks_add(self.clock.ticks_ms(), delay)
        self._state = _WAIT

    def _confirmed(self):
        g = self._goal
        self.position = g
        self._state = _IDLE
        self._attempts = 0
        self.rounds = 0
        self._odd = 0
        f = self.fault
        if f and self.feedback.present and (f == VF_FEEDBACK or (f == VF_NOT_OPEN) == (g == POSITION_OPEN)):
            self.fault = 0
            self._log(codes.EV_VALVE_FAULT, VF_CLEARED)
        if self.exercising == 1:
            self.exercising = 2
            self._begin(self.target)
        elif self.exercising == 2:
            self.exercising = 0
            self.dirty = True
            if self.exercise_result == EX_DONE:
                self._log(codes.EV_VALVE_EXERCISE, EX_DONE)

    def _watch(self):
        # Idle: the valve should stay where it is. Two reads in a row that
        # disagree with the position mean it was moved without a command.
        if not self.feedback.present or self.position < 0 or self.position == POSITION_MOVING:
            return
        fb = self.feedback.read()
        if fb == self.position:
            self._odd = 0
            return
        self._odd += 1
        if self._odd < 2:
            return
        self._odd = 0
        if fb == POSITION_UNKNOWN:
            self.fault = VF_FEEDBACK
            self._log(codes.EV_VALVE_FAULT, VF_FEEDBACK + 256)
        else:
            self._log(codes.EV_TAMPER, codes.TAMPER_VALVE)
        self.position = fb
        self._attempts = 0
        self._begin(self.target)


def build_valve(board_cfg, open_pin, close_pin, clock, log=None, fb_open_pin=None, fb_closed_pin=None):
    """The controller for a board's valve, from its valve_cfg and pins."""
    cfg = config(board_cfg)
    fb = Feedback(fb_open_pin, fb_closed_pin, cfg["fb_active"])
    if cfg["type"] == "motor":
        return ValveController(MotorValve(open_pin, close_pin, clock, cfg, fb), fb, clock, cfg, log)
    if cfg["type"] == "latching":
        return ValveController(LatchingValve(open_pin, close_pin, clock, cfg), fb, clock, cfg, log)
    raise ValueError("valve type %s" % cfg["type"])
